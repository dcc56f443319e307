"""A worker whose peer died is not a bug: recognised from the backend's error, one line (or
none under advkit's launcher, which names the dead worker, its signal and what comes next)."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch.distributed as dist

from advkit.cli import main
from advkit.commands import info
from advkit.distributed.failures import cause, describe, failure_line
from advkit.distributed.peers import LAUNCHER_ENV, PEER_LOST_EXIT, peer_loss

#: What rank 0 raised when its peer was SIGKILLed during DDP's gradient exchange (torch 2.x).
GLOO_RESET = (
    "Got the following error when running the callback: RuntimeError: Got the following error "
    "when running the callback: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/"
    "transport/tcp/pair.cc:537] Read error [127.0.0.1]:11164: Connection reset by peer. This is "
    "typically caused by a remote worker hanging or bugs in the application."
)

CLOSED = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [::1]:4"
ABORTED = "NCCL communicator was aborted"
TIMED_OUT = "[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms for recv"


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 (the context is the point)
    except BaseException as error:
        return error


@pytest.mark.parametrize(
    ("error", "account"),
    [
        (RuntimeError(GLOO_RESET), "connection reset by peer"),
        (RuntimeError(CLOSED), "connection closed by peer"),
        (RuntimeError(TIMED_OUT), "timed out waiting for it"),
        (dist.DistNetworkError("failed to recv, got 0 bytes"), "the connection failed"),
        (dist.DistBackendError("NCCL communicator was aborted"), f"the {ABORTED}"),
        (_chained(ValueError("while stop"), RuntimeError(GLOO_RESET)), "connection reset by peer"),
    ],
)
def test_a_lost_peer_is_recognised(two_workers, error, account):
    assert peer_loss(error) == account


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("element 0 of tensors does not require grad"),
        RuntimeError("DataLoader worker timed out after 10 seconds"),  # no backend named
        BrokenPipeError(32, "Broken pipe"),  # stdout piped into head
        RuntimeError("Gloo all_gather got tensors of different sizes"),  # a misuse, a bug
    ],
)
def test_other_errors_are_not_a_lost_peer(two_workers, error):
    assert peer_loss(error) is None


def test_one_process_has_no_peers(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert peer_loss(RuntimeError(GLOO_RESET)) is None


def _failing_info(monkeypatch):
    """`advkit models` raising what a collective raises once the other worker is gone."""

    def lose_peer(args):
        raise RuntimeError(GLOO_RESET)

    monkeypatch.setattr(info, "run_models", lose_peer)


def test_a_worker_that_lost_its_peer_says_so_in_one_line(two_workers, monkeypatch, capsys):
    _failing_info(monkeypatch)
    assert main(["models"]) == PEER_LOST_EXIT
    err = capsys.readouterr().err
    assert "bug" not in err and "Traceback" not in err, err
    assert err == (
        "advkit models: worker 0 of 2 lost contact with the other workers (connection reset by "
        "peer): one of them stopped; the launcher's log says which and why\n"
    )


def test_under_advkits_launcher_the_worker_leaves_the_report_to_it(two_workers, monkeypatch,
                                                                    capsys):  # fmt: skip
    monkeypatch.setenv(LAUNCHER_ENV, "1")
    _failing_info(monkeypatch)
    assert main(["models"]) == PEER_LOST_EXIT
    assert capsys.readouterr().err == ""


def _failure(exitcode: int, timestamp: int) -> SimpleNamespace:
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp)


def test_the_cause_is_the_killed_worker_not_the_one_that_lost_it():
    failures = {0: _failure(PEER_LOST_EXIT, 100), 1: _failure(-signal.SIGKILL, 100),
                2: _failure(-signal.SIGTERM, 99)}  # fmt: skip
    assert cause(failures)[0] == 1
    line = failure_line(failures, 3, "restarting all workers (restart 1 of 1)")
    assert line == (
        "advkit: worker 1 of 3 was killed by signal 9 (SIGKILL); restarting all workers "
        "(restart 1 of 1)"
    )
    assert cause({0: _failure(PEER_LOST_EXIT, 1), 1: _failure(2, 5)})[0] == 1
    assert describe(2) == "exited with code 2 (its message is above)"
    assert describe(PEER_LOST_EXIT) == "lost contact with the other workers"

"""The launcher's checks that need no worker: argv for the workers, core count, rendezvous."""

from __future__ import annotations

import logging
import socket

import pytest

from advkit.commands.workers import worker_argv
from advkit.distributed import DistributedError
from advkit.distributed import launch as launch_module


def test_the_workers_get_the_command_line_without_the_launchers_options():
    argv = ["-v", "train", "--nproc", "2", "--epochs=3", "--max-restarts=1", "--rdzv-endpoint",
            "h:1", "--nnodes", "2", "--out", "runs/x"]  # fmt: skip
    assert worker_argv(argv) == ["-v", "train", "--epochs=3", "--out", "runs/x"]


def test_more_workers_than_cores_is_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(launch_module.os, "sched_getaffinity", lambda pid: {0, 1})
    with caplog.at_level(logging.WARNING, logger="advkit.distributed"):
        launch_module.check_nproc(3)
    assert "more workers than this machine's 2 cores" in caplog.text
    with pytest.raises(DistributedError, match="--nproc must be >= 1"):
        launch_module.check_nproc(0)


def test_a_rendezvous_host_that_does_not_answer_is_one_line(monkeypatch):
    monkeypatch.setattr(launch_module, "_is_local", lambda host: False)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    silent = r"no rendezvous answered at 127\.0\.0\.1:\d+ within 1 s"
    with pytest.raises(DistributedError, match=silent):
        launch_module.check_rendezvous(f"127.0.0.1:{port}", nnodes=2, timeout=1)


@pytest.mark.parametrize("endpoint", ["nowhere", "host:", "host:99999", ":29400"])
def test_a_malformed_endpoint_is_refused(endpoint):
    with pytest.raises(DistributedError, match="HOST:PORT"):
        launch_module.check_rendezvous(endpoint, nnodes=1, timeout=1)


def test_several_nodes_need_an_endpoint():
    with pytest.raises(DistributedError, match="--nnodes > 1 needs --rdzv-endpoint"):
        launch_module.launch_local(["train"], 1, nnodes=2)

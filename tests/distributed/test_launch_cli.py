"""``advkit train --nproc 2`` end to end through torch's elastic launcher: a plain run, a worker
killed mid-run and restarted (the run ends with the uninterrupted weights), two "nodes" on
localhost meeting at a c10d rendezvous, and the launcher's one-line errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FASHION_DIR
from tests.distributed.spawn import free_port

pytestmark = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--subset", "768", "--val-size", "256", "--val-examples", "64", "--val-steps",
         "1", "--method", "pgd", "--steps", "1", "--batch-size", "64", "--epochs", "2",
         "--quiet"]  # fmt: skip


def advkit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    short = {"ADVKIT_DIST_TIMEOUT": "60", "ADVKIT_RDZV_TIMEOUT": "60", "OMP_NUM_THREADS": "1"}
    env = os.environ | {"PYTHONPATH": str(REPO / "src")} | short | (env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "advkit", *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def worker_of_rank(launcher: int, rank: int) -> int | None:
    for pid in children(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("launch") / "straight"
    code, out, err = finish(advkit(*TRAIN, "--nproc", "2", "--out", str(run)))
    assert code == 0, err
    assert out.count("trained cnn-small") == 1  # rank 0 alone reports
    return run


def test_nproc_2_trains_one_model_and_records_the_workers(straight_run):
    import json

    meta = json.loads((straight_run / "model.json").read_text())
    assert meta["workers"] == 2
    lines = (straight_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def said(err: str) -> list[str]:
    """The lines of stderr that are not the training's log (``HH:MM:SS INFO ...``, or a WARNING
    such as the health check's on these tiny runs)."""
    return [
        line for line in err.splitlines() if not re.match(r"\d\d:\d\d:\d\d [A-Z]+ advkit", line)
    ]


def kill_worker_after_checkpoint(run: Path, *restarts: str) -> tuple[int, str]:
    """Start a run on 2 workers, SIGKILL worker 1 once a checkpoint exists; (code, stderr)."""
    launcher = advkit(*TRAIN, "--nproc", "2", *restarts, "--checkpoint-every", "2",
                      "--out", str(run))  # fmt: skip
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    victim = worker_of_rank(launcher.pid, 1)
    assert victim is not None and launcher.poll() is None, "the run ended before the kill"
    os.kill(victim, signal.SIGKILL)
    code, _, err = finish(launcher)
    assert "bug" not in err and "Traceback" not in err and "gloo" not in err, err
    return code, err


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(straight_run, tmp_path):
    run = tmp_path / "killed"
    code, err = kill_worker_after_checkpoint(run, "--max-restarts", "1")
    assert code == 0, err
    assert said(err) == [
        "advkit: worker 1 of 2 was killed by signal 9 (SIGKILL); restarting all workers from "
        "the run's last checkpoint (restart 1 of 1)"
    ]
    for name, value in weights(straight_run).items():
        assert torch.equal(value, weights(run)[name]), name


def test_a_killed_worker_without_restarts_is_one_line_saying_how_to_go_on(tmp_path):
    """Rank 0, whose collective failed with gloo's "Connection reset by peer", said "internal
    error, a bug in advkit" with a traceback before the launcher's line."""
    run = tmp_path / "killed"
    code, err = kill_worker_after_checkpoint(run)
    assert code == 1
    assert said(err) == [
        "advkit: worker 1 of 2 was killed by signal 9 (SIGKILL); the launcher stopped the "
        f"others; continue from its last checkpoint with `advkit train --resume {run}`"
    ]


def test_two_nodes_meet_at_a_c10d_rendezvous_on_localhost(straight_run, tmp_path):
    run = tmp_path / "two-nodes"
    endpoint = f"127.0.0.1:{free_port()}"
    node = [*TRAIN, "--nnodes", "2", "--nproc", "1", "--rdzv-endpoint", endpoint, "--out",
            str(run)]  # fmt: skip
    env = {"ADVKIT_RUN_ID": f"two-nodes-{os.getpid()}"}
    first, second = advkit(*node, env=env), advkit(*node, env=env)
    (code1, _, err1), (code2, _, err2) = finish(first), finish(second)
    assert code1 == 0 and code2 == 0, err1 + err2
    for name, value in weights(straight_run).items():
        assert torch.equal(value, weights(run)[name]), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "63"], "must split evenly over 2 workers"),
        (["--rdzv-endpoint", "nowhere"], "--rdzv-endpoint must be HOST:PORT"),
        (["--max-restarts", "-1"], "--max-restarts must be >= 0"),
    ],
)
def test_launcher_mistakes_are_one_line(tmp_path, args, message):
    code, _, err = finish(advkit(*TRAIN, "--nproc", "2", "--out", str(tmp_path / "x"), *args))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def wait_for_checkpoint(launcher: subprocess.Popen, run: Path) -> None:
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    assert launcher.poll() is None, "the run ended before the signal"


def test_sigterm_to_the_launcher_checkpoints_and_the_resumed_run_ends_the_same(
    straight_run, tmp_path
):
    run = tmp_path / "stopped"
    launcher = advkit(*TRAIN, "--nproc", "2", "--checkpoint-every", "2", "--out", str(run))
    wait_for_checkpoint(launcher, run)
    launcher.send_signal(signal.SIGTERM)
    code, _, err = finish(launcher)
    assert code == 128 + signal.SIGTERM, err
    assert err.count("checkpoint saved") == 1, err  # rank 0 alone says it
    code, _, err = finish(advkit("train", "--resume", str(run), "--nproc", "2"))
    assert code == 0, err
    for name, value in weights(straight_run).items():
        assert torch.equal(value, weights(run)[name]), name


def test_a_worker_dying_without_restarts_stops_the_others_with_one_line(tmp_path):
    run = tmp_path / "dies"
    launcher = advkit(*TRAIN, "--nproc", "2", "--checkpoint-every", "2", "--out", str(run))
    wait_for_checkpoint(launcher, run)
    victim = worker_of_rank(launcher.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, _, err = finish(launcher, timeout=120)
    assert code != 0
    assert "worker 1 of 2 was killed by signal 9" in err.strip().splitlines()[-1], err


def test_a_busy_port_is_refused_before_any_worker_starts(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = f"127.0.0.1:{port}"
        launched = advkit(*TRAIN, "--nproc", "2", "--rdzv-endpoint", endpoint, "--out", "x")
        code, _, err = finish(launched)
    assert code == 2
    assert err.strip().splitlines() == [
        f"advkit train: error: port {port} on 127.0.0.1 is in use by another program: choose a "
        "free port in --rdzv-endpoint (or leave it out on one machine)"
    ]


def test_eval_on_two_workers_writes_what_one_process_writes(straight_run, tmp_path):
    import json

    common = ["eval", str(straight_run), "--suite", "autoattack", "--n-examples", "96",
              "--batch-size", "16", "--quiet"]  # fmt: skip
    code, _, err = finish(advkit(*common, "--out", str(tmp_path / "one")))
    assert code == 0, err
    code, out_two, err = finish(advkit(*common, "--out", str(tmp_path / "two"), "--nproc", "2"))
    assert code == 0, err
    assert out_two.count("robust accuracy") == 1  # rank 0 alone reports
    one, two = (json.loads((tmp_path / d / "eval-autoattack.json").read_text())
                for d in ("one", "two"))  # fmt: skip
    assert two.pop("workers") == 2 and one.pop("workers") == 1
    for varying in ("seconds", "timing", "checks", "attack_cost"):
        one.pop(varying), two.pop(varying)
    assert one == two
    assert not list((tmp_path / "two").glob("*.state.pt"))  # per-rank states are cleaned up

"""One writer per run folder: a second writer gets one line naming the holder; a dead holder's
lock is taken over; train, demo and the library hold the folder, eval only its outputs."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from advkit.cli import main
from advkit.runlock import LOCK_FILE, RunLocked, hold_run
from tests.conftest import FASHION_DIR
from tests.evaluation.run_folder import make_run

needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)
SMALL = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "1",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip


def _hold(run_dir: str, purpose: str, ready, release) -> None:
    with hold_run(run_dir, purpose):
        ready.set()
        release.wait(60)


@contextmanager
def held_elsewhere(run_dir: Path, purpose: str = "advkit train") -> Iterator[int]:
    """Another process holds ``run_dir`` while the block runs; yields its pid."""
    with held_by(_hold, str(run_dir), purpose) as pid:
        yield pid


@contextmanager
def held_by(hold, *args) -> Iterator[int]:
    """Another process runs ``hold(*args, ready, release)`` (which takes a lock, sets ready and
    waits for release) while the block runs; yields its pid."""
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    process = ctx.Process(target=hold, args=(*args, ready, release))
    process.start()
    try:
        assert ready.wait(30), "the holder process did not take the lock"
        yield process.pid
    finally:
        release.set()
        process.join(30)


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    run = tmp_path / "run"
    with (
        held_elsewhere(run, "advkit train") as pid,
        pytest.raises(RunLocked) as refused,
        hold_run(run, "advkit eval"),
    ):
        pass
    message = str(refused.value)
    assert f"pid {pid} (advkit train, since " in message and "wait for it" in message
    assert "\n" not in message
    with hold_run(run, "advkit eval"):  # released when the holder ended
        info = json.loads((run / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["purpose"] == "advkit eval"


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    process = ctx.Process(target=_hold, args=(str(run), "advkit train", ready, release))
    process.start()
    assert ready.wait(30)
    os.kill(process.pid, signal.SIGKILL)  # no clean-up: the lock file stays, naming it
    process.join(30)
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == process.pid
    with hold_run(run, "advkit train"):
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_reentrant_in_one_thread_refused_in_another(tmp_path):
    run = tmp_path / "run"
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            with hold_run(run, "advkit eval"):
                pass
        except RunLocked as error:
            errors.append(error)

    with hold_run(run, "advkit demo"):
        with hold_run(run, "training"), hold_run(run, "advkit eval"):
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "another thread" in str(errors[0])
        assert json.loads((run / LOCK_FILE).read_text())["purpose"] == "advkit demo"
    with held_elsewhere(run):  # released after the outermost hold: another process takes it
        pass


@pytest.fixture
def model_run(tmp_path):
    """A run folder with a random cnn-small and a tiny .npz test set."""
    run = make_run(tmp_path, n_test=16, method={"name": "pgd"})
    data = tmp_path / "tiny.npz"
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": "npz", "data_dir": str(data)}))
    return run


def test_eval_reads_a_folder_that_training_holds(model_run, capsys):
    """Reading a run needs no writer's lock: eval holds only the outputs it writes
    (tests/cli/test_output_locks.py)."""
    with held_elsewhere(model_run, "advkit train"):
        assert main(["eval", str(model_run), "--n-examples", "8", "--quiet"]) == 0
        assert main(["eval", str(model_run / "model.safetensors"), "--n-examples", "8"]) == 0
    assert (model_run / "eval-quick.json").is_file()


def test_a_clean_exit_leaves_no_lock_and_no_empty_folder_behind(tmp_path, capsys):
    run = tmp_path / "run"
    with hold_run(run, "advkit train"):
        assert (run / LOCK_FILE).is_file()
    assert not run.exists()  # created by the hold, nothing written: removed
    with hold_run(run, "advkit train"):
        (run / "config.yaml").write_text("epochs: 1\n")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    # a training that fails to start (no such data) leaves no folder
    argv = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none")]
    assert main([*argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert not (tmp_path / "r").exists()


def test_eval_of_a_missing_run_leaves_no_lock_behind(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--quiet"]) == 2
    assert main(["eval", str(tmp_path), "--quiet"]) == 2  # a folder that is no run
    assert not (tmp_path / "nope").exists() and not (tmp_path / LOCK_FILE).exists()


@needs_fashion
def test_library_train_holds_the_folder_before_writing(fashion_small, tmp_path):
    from advkit.config import TrainConfig
    from advkit.training import train

    run = tmp_path / "run"
    config = TrainConfig(epochs=1, steps=1, batch_size=128, val_examples=32, quiet=True)
    with held_elsewhere(run, "advkit eval") as pid:
        with pytest.raises(RunLocked, match=f"pid {pid}"):
            train(config, run, data=fashion_small)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # no config.yaml, nothing


@needs_fashion
@pytest.mark.parametrize(
    "argv",
    [["train", *SMALL], ["train", "--resume", "{run}"], ["demo", "--n-examples", "8", "--quiet"]],
)
def test_train_resume_and_demo_are_refused_while_held(model_run, argv, capsys):
    argv = [a.replace("{run}", str(model_run)) for a in argv]
    if "--resume" not in argv:
        argv += ["--out", str(model_run)]
    with held_elsewhere(model_run, "advkit eval") as pid:
        before = _listing(model_run)
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pid {pid} (advkit eval" in err
    assert _listing(model_run) == before


def _listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != LOCK_FILE}


@needs_fashion
def test_two_trainings_started_together_leave_one_run_and_one_error(tmp_path):
    out = tmp_path / "same"
    commands = [
        [sys.executable, "-m", "advkit", "train", "--out", str(out), "--seed", str(seed), *SMALL]
        for seed in (1, 2)
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for c in commands]  # fmt: skip
    results = [(p.wait(300), p.stdout.read(), p.stderr.read()) for p in started]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    ((_, _, err),) = [r for r in results if r[0] == 2]
    assert err.count("\n") == 1 and "advkit train: error:" in err
    assert "is being written by pid" in err or "already holds a run" in err
    seed = next(s for (code, _, _), s in zip(results, (1, 2), strict=True) if code == 0)
    config = yaml.safe_load((out / "config.yaml").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert config["seed"] == meta["seed"] == seed
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1

"""What ``advkit.fit`` and a training run show: the epoch lines in a script (once, whether or
not the script configured logging; none with quiet=True), the run's ETA, a bar during the
end-of-epoch measurements."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from advkit import progress_display
from advkit.config import TrainConfig
from advkit.training import progress as training_progress
from advkit.training import train

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import torch
    from torch import nn
    import advkit

    def fit(**options):
        torch.manual_seed(0)
        images, labels = torch.rand(96, 1, 6, 6), torch.arange(96) % 3
        net = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
        advkit.fit(net, (images, labels), method="pgd", eps=0.05, epochs=2, batch_size=32,
                   val_size=24, val_examples=16, steps=1, val_steps=1, **options)

    print("== default", file=sys.stderr)
    fit()
    print("== quiet", file=sys.stderr)
    fit(quiet=True)
    logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
    print("== configured", file=sys.stderr)
    fit()
    """
)


def sections(err: str) -> dict[str, str]:
    parts = err.split("== ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def epoch_lines(text: str, epoch: int) -> list[str]:
    return [line for line in text.splitlines() if f"epoch {epoch}/2  loss" in line]


def test_fit_in_a_script_prints_each_epoch_line_once(tmp_path):
    """stderr is a pipe (no terminal), logging unconfigured: the lines come, once each; with
    quiet=True none; after the script configures logging, its handler alone prints them."""
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = sections(done.stderr)
    assert list(found) == ["default", "quiet", "configured"], done.stderr
    for epoch in (1, 2):
        assert len(epoch_lines(found["default"], epoch)) == 1, found["default"]
        assert epoch_lines(found["quiet"], epoch) == [], found["quiet"]
        (line,) = epoch_lines(found["configured"], epoch)
        assert line.startswith("LOG epoch"), found["configured"]
    assert "\r" not in done.stderr  # no bar redrawn in a pipe for a short run


@pytest.fixture
def terminal(monkeypatch):
    """stderr is a terminal: bars are drawn (into pytest's capture)."""
    monkeypatch.setattr(progress_display, "_isatty", lambda stream: True)
    monkeypatch.setattr(progress_display, "IN_NOTEBOOK", False)


def test_training_shows_the_epochs_bars_and_the_measurements_bars(
    fashion_small, tmp_path, capsys, terminal
):
    config = TrainConfig(method="pgd", steps=1, epochs=2, batch_size=128, val_examples=64,
                         val_steps=1)  # fmt: skip
    train(config, tmp_path / "shown", data=fashion_small)
    err = capsys.readouterr().err
    for label in ("epoch 1/2", "epoch 2/2", "epoch 1/2 validation", "epoch 2/2 train sample"):
        assert f"{label}:" in err, (label, err)
    train(replace(config, quiet=True), tmp_path / "quiet", data=fashion_small)
    assert "epoch" not in capsys.readouterr().err


def test_the_run_eta_is_the_mean_epoch_time_times_the_epochs_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(training_progress.time, "perf_counter", lambda: now[0])
    clock = training_progress.RunClock(epochs=10, position=2.0)  # resumed after 2 epochs
    assert clock.eta(2.0) is None  # nothing measured in this session yet
    now[0] = 130.0  # 1.5 epochs in 30 s: 20 s an epoch, 6.5 epochs left
    assert clock.eta(3.5) == pytest.approx(130.0)


def test_the_epoch_lines_of_a_run_end_with_its_eta(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(training_progress.time, "perf_counter", lambda: now[0])
    record = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.5, "lr": 0.1, "train_seconds": 20.0}
    assert "ETA" not in training_progress.epoch_line([record], 4)  # outside a run
    token = training_progress._clock.set(training_progress.RunClock(epochs=4))
    try:
        now[0] = 25.0  # 25 s an epoch, measurements included
        assert training_progress.epoch_line([record], 4).endswith("20.0 s  ETA 1 min 15 s")
        last = record | {"epoch": 4}
        assert "ETA" not in training_progress.epoch_line([record, last], 4)  # nothing left
    finally:
        training_progress._clock.reset(token)


def test_the_epoch_bar_shows_the_run_eta(monkeypatch, terminal):
    now = [0.0]
    monkeypatch.setattr(training_progress.time, "perf_counter", lambda: now[0])
    clock = training_progress.RunClock(epochs=4)
    bar = training_progress.Progress(total=10, desc="epoch 1/4", clock=clock)
    with bar:
        for _ in range(5):
            now[0] += 1.0  # 1 s a batch: 10 s an epoch, 35 s left after 5 batches
            bar.update(totals=None, lr=0.1, batch_images=8)
        assert bar._bar.desc.startswith("epoch 1/4, run ETA 35.0 s")

"""What ``advkit analyze`` shows while it runs: a bar per analysis, counting the long ones' work
to their total; nothing with ``--quiet`` / ``quiet=True``."""

from __future__ import annotations

import re

import pytest

from advkit import progress_display
from advkit.analysis.runner import run_analyses
from advkit.cli import main
from tests.analysis.analysis_helpers import linear_context
from tests.evaluation.run_folder import make_run

LONG = ["large_eps", "layer_criticality", "loss_landscape"]


@pytest.fixture
def log_file(monkeypatch):
    """stderr as a log file, every update written (as if each phase lasted)."""
    monkeypatch.setattr(progress_display, "IN_NOTEBOOK", False)
    monkeypatch.setattr(progress_display, "LOG_INTERVAL", 0.0)


def last_counts(err: str, name: str) -> tuple[int, int]:
    """(done, total) in the last line of ``name``'s bar."""
    lines = [line for line in err.splitlines() if f" {name}:" in line]
    assert lines, err
    done, total = re.search(r"\| (\d+)/(\d+)", lines[-1]).groups()
    return int(done), int(total)


def test_each_analysis_has_a_bar_that_reaches_its_total(log_file, capsys):
    ctx = linear_context(points=8, eps=0.05)
    sets = {"loss_landscape": {"grid": 3, "average": 2}, "large_eps": {"count": 2, "steps": 2},
            "layer_criticality": {"steps": 1}}  # fmt: skip
    outcomes = run_analyses(ctx, LONG, sets)
    assert [o.skipped for o in outcomes] == [None] * 3
    err = capsys.readouterr().err
    for number, name in enumerate(LONG, start=1):
        assert f"analysis {number}/3 {name}:" in err, err
    assert last_counts(err, "loss_landscape") == (3, 3)  # the lines' batch, then each plane's
    assert last_counts(err, "large_eps") == (2, 2)  # one batch of targeted PGD per norm
    assert last_counts(err, "layer_criticality") == (1, 1)  # the baseline: no weights to reset


def test_quiet_analyses_show_nothing(log_file, capsys):
    run_analyses(linear_context(points=4), ["input_gradients"], quiet=True)
    assert capsys.readouterr().err == ""


def test_advkit_analyze_shows_progress_unless_quiet(tmp_path, log_file, capsys):
    run = make_run(tmp_path)
    argv = ["analyze", str(run), "--only", "input_gradients", "--examples", "8"]
    assert main(argv) == 0
    assert "analysis 1/1 input_gradients" in capsys.readouterr().err
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""

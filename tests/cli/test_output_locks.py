"""Evaluations and analyses read a run without its writer's lock and hold only the outputs they
write: other outputs go on side by side, the same outputs are refused naming the holder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from advkit.cli import main
from advkit.runlock import hold_outputs, holder
from tests.cli.test_run_lock import held_by, held_elsewhere
from tests.evaluation.run_folder import make_run, stub_figures

EVAL = ["--n-examples", "4", "--batch-size", "4", "--checks", "none", "--quiet"]


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    stub_figures(monkeypatch)
    return make_run(tmp_path)


def _hold_outputs(folder: str, stem: str, ready, release) -> None:
    with hold_outputs(folder, stem, "advkit eval"):
        ready.set()
        release.wait(60)


@contextmanager
def outputs_held_elsewhere(folder: Path, stem: str) -> Iterator[int]:
    """Another process writes ``folder/stem*`` while the block runs; yields its pid."""
    with held_by(_hold_outputs, str(folder), stem) as pid:
        yield pid


def test_a_run_being_written_elsewhere_is_evaluated_and_analysed(run_dir, tmp_path):
    with held_elsewhere(run_dir, "advkit train"):
        assert main(["eval", str(run_dir), *EVAL, "--out", str(tmp_path / "a")]) == 0
        assert main(["eval", str(run_dir), *EVAL]) == 0  # into the run folder: other files
        assert main(["analyze", str(run_dir), "--only", "per_class", "--examples", "4",
                     "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert (tmp_path / "a" / "eval-quick.json").is_file()
    assert list((tmp_path / "b").glob("analysis*.json"))


def test_evaluations_writing_other_files_run_side_by_side_the_same_are_refused(
    run_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    with outputs_held_elsewhere(out, "eval-quick") as pid:
        assert main(["eval", str(run_dir), *EVAL, "--out", str(tmp_path / "other")]) == 0
        assert main(["eval", str(run_dir), *EVAL, "--out", str(out), "--eps", "0.05"]) == 0
        capsys.readouterr()
        assert main(["eval", str(run_dir), *EVAL, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"eval-quick* (outputs) are being written by pid {pid} (advkit eval" in err
        assert "choose another --out" in err and err.count("\n") == 1
    assert (out / "eval-quick-linf-0.05.json").is_file() and not (out / "eval-quick.json").exists()
    assert main(["eval", str(run_dir), *EVAL, "--out", str(out)]) == 0  # released
    assert not list(out.glob(".*.lock"))


def test_an_analysis_into_the_same_folder_is_refused(run_dir, capsys):
    with outputs_held_elsewhere(run_dir, "analysis") as pid:
        assert main(["analyze", str(run_dir), "--only", "per_class", "--examples", "4"]) == 2
        assert f"being written by pid {pid}" in capsys.readouterr().err


def test_holder_is_none_for_a_free_folder_and_for_this_process(tmp_path):
    assert holder(tmp_path) is None
    with hold_outputs(tmp_path, "x", "advkit eval"):
        assert holder(tmp_path, ".x.lock") is None  # its own hold is no other trainer
    with held_elsewhere(tmp_path) as pid:
        assert holder(tmp_path).startswith(f"pid {pid} (advkit train, since ")
        assert os.getpid() != pid


def test_a_test_only_npz_is_evaluated(run_dir, tmp_path):
    data = np.load(tmp_path / "tiny.npz")
    test_only = tmp_path / "test-only.npz"
    np.savez(test_only, x_test=data["x_test"], y_test=data["y_test"])
    command = ["eval", str(run_dir), *EVAL, "--dataset", "npz", "--data-dir", str(test_only)]
    assert main([*command, "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "eval-quick.json").is_file()

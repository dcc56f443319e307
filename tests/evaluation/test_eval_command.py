"""`advkit eval` end to end on a fake run folder: a random cnn-small and a tiny .npz dataset."""

from __future__ import annotations

import json
import sys

import pytest

from advkit.cli import main
from tests.evaluation.run_folder import make_run


@pytest.fixture
def run_dir(tmp_path):
    """A run folder whose model classifies its 24 test images "correctly" (labels = predictions)."""
    return make_run(tmp_path, method={"name": "pgd"})


def test_eval_writes_json_report_and_figures(run_dir, capsys):
    code = main(["eval", str(run_dir), "--n-examples", "16", "--batch-size", "8", "--quiet",
                 "--sweep", "0,0.05,0.1", "--eps", "8/255"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads((run_dir / "eval-quick-linf-0.03137.json").read_text())  # not the run's eps
    assert data["suite"] == "quick" and data["n_examples"] == 16 and data["norm"] == "linf"
    assert data["eps"] == pytest.approx(8 / 255) and data["clean"] == 1.0
    assert 0 <= data["worst_case"] <= data["pgd20"] <= data["clean"]
    assert [p["eps"] for p in data["sweep"]] == [0, 0.05, 0.1]
    assert isinstance(data["warnings"], list)
    for name in ("eval-quick-linf-0.03137.md", "eval-quick-linf-0.03137-examples.png",
                 "eval-quick-linf-0.03137-sweep.png"):  # fmt: skip
        assert (run_dir / name).stat().st_size > 0
        assert f"wrote {run_dir / name}" in out
    assert "pgd20" in out and "worst_case" in out
    assert not list(run_dir.glob("*.state.pt"))
    assert not (run_dir / "eval-quick.json").exists()


def test_evaluations_at_other_radii_keep_the_main_result(run_dir):
    """Evaluating at another eps or norm writes beside the run's own result, never over it."""
    for extra in ([], ["--eps", "0.05"], ["--norm", "l2", "--eps", "1"]):
        assert main(["eval", str(run_dir), "--n-examples", "8", "--quiet", *extra]) == 0
    written = {p.name for p in run_dir.glob("eval-quick*.json")}
    assert written == {"eval-quick.json", "eval-quick-linf-0.05.json", "eval-quick-l2-1.json"}
    assert json.loads((run_dir / "eval-quick.json").read_text())["eps"] == 0.1


def test_eval_of_a_safetensors_file_with_custom_json_path(run_dir, tmp_path):
    target = tmp_path / "elsewhere" / "result.json"
    code = main(["eval", str(run_dir / "model.safetensors"), "--n-examples", "8", "--quiet",
                 "--json", str(target), "--no-resume"])  # fmt: skip
    assert code == 0
    assert json.loads(target.read_text())["eps"] == 0.1  # the run's training eps
    assert (target.parent / "result.md").exists()  # the report and figures beside the JSON


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--eps", "abc"], "8/255"),
        (["--sweep", "0,-1"], "--sweep"),
        (["--n-examples", "0"], "at least 1"),
    ],
)
def test_user_errors_are_one_line(run_dir, capsys, argv, message):
    assert main(["eval", str(run_dir), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "error" in capsys.readouterr().err


def test_progress_bar_follows_the_callbacks(monkeypatch):
    from advkit.evaluation import Progress
    from advkit.evaluation.eval_bar import EvalBar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with EvalBar("eval", quiet=False) as bar:
        bar(Progress("clean", 1, None, resumed=True))
        bar(Progress("pgd20", 2, 5, resumed=False))
        assert (bar.bar.n, bar.bar.total) == (2, 5)
        bar(Progress("clean", 1, None, resumed=False))  # a new evaluation (the sweep) restarts
        assert bar.bar.n == 1
    with EvalBar("eval", quiet=True) as bar:
        assert bar.bar is None

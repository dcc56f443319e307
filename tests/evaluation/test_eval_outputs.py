"""`advkit eval` never replaces another evaluation silently, and writes where the user points."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from advkit.cli import main
from advkit.evaluation.eval_bar import EvalBar
from advkit.evaluation.outputs import Identity, full_tag, main_tag, state_tag
from tests.evaluation.run_folder import listing, make_run, stub_figures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


@pytest.fixture(autouse=True)
def _stub_figures(monkeypatch):
    stub_figures(monkeypatch)


def evaluate(run: Path, *extra: str, n: int = 8) -> int:
    return main(["eval", str(run), "--n-examples", str(n), "--quiet", *extra])


def examples_of(path: Path) -> int:
    return json.loads(path.read_text())["n_examples"]


def eval_files(run: Path) -> dict[str, int]:
    """{json name: n_examples} of the evaluations in ``run``."""
    return {path.name: examples_of(path) for path in sorted(run.glob("eval-*.json"))}


def test_a_smaller_evaluation_never_replaces_a_larger_one(run_dir, capsys):
    assert evaluate(run_dir, n=16) == 0
    large = (run_dir / "eval-quick.json").read_text()
    capsys.readouterr()
    assert evaluate(run_dir, n=8) == 0
    out = capsys.readouterr().out
    assert (run_dir / "eval-quick.json").read_text() == large
    assert eval_files(run_dir) == {"eval-quick.json": 16, "eval-quick-n8.json": 8}
    assert "note: kept eval-quick.json (16 examples)" in out and "eval-quick-n8.json" in out
    for name in ("eval-quick-n8.md", "eval-quick-n8-examples.png"):
        assert (run_dir / name).stat().st_size > 0 and f"wrote {run_dir / name}" in out


def test_a_larger_evaluation_takes_the_main_name_and_moves_the_smaller_aside(run_dir, capsys):
    assert evaluate(run_dir, n=8) == 0
    capsys.readouterr()
    assert evaluate(run_dir, n=16) == 0
    out = capsys.readouterr().out
    assert eval_files(run_dir) == {"eval-quick.json": 16, "eval-quick-n8.json": 8}
    assert "moved the earlier evaluation in eval-quick.json (8 examples" in out
    report = (run_dir / "eval-quick-n8.md").read_text()
    assert "8 examples" in report and "(eval-quick-n8-examples.png)" in report  # links follow
    assert (run_dir / "eval-quick-n8-examples.png").stat().st_size > 0
    assert "(eval-quick-examples.png)" in (run_dir / "eval-quick.md").read_text()


def test_the_folder_ends_the_same_whatever_the_order(tmp_path):
    first, second = make_run(tmp_path, name="a"), make_run(tmp_path, name="b")
    for n in (8, 16, 12):
        assert evaluate(first, n=n) == 0
    for n in (12, 8, 16):
        assert evaluate(second, n=n) == 0
    assert eval_files(first) == eval_files(second) == {
        "eval-quick.json": 16, "eval-quick-n12.json": 12, "eval-quick-n8.json": 8,
    }  # fmt: skip


def test_the_same_evaluation_again_replaces_itself(run_dir, capsys):
    assert evaluate(run_dir) == 0
    before = listing(run_dir)
    capsys.readouterr()
    assert evaluate(run_dir) == 0
    assert "note:" not in capsys.readouterr().out
    assert listing(run_dir).keys() == before.keys()


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        (["--seed", "1"], "eval-quick-n8-seed1.json"),
        (["--sweep", "0,0.1"], "eval-quick-n8-sweep.json"),
        (["--checks", "none"], "eval-quick-n8-checks-none.json"),
    ],
)
def test_every_option_that_changes_the_evaluation_names_it(run_dir, capsys, extra, name):
    """Of two evaluations of one size, the latest takes the main name; neither is lost."""
    assert evaluate(run_dir) == 0
    assert evaluate(run_dir, *extra) == 0
    assert set(eval_files(run_dir)) == {"eval-quick.json", "eval-quick-n8.json"}
    capsys.readouterr()
    assert evaluate(run_dir) == 0  # the default again: the other one moves to its own name
    assert set(eval_files(run_dir)) == {"eval-quick.json", name}
    assert "removed eval-quick-n8.json: the same evaluation" in capsys.readouterr().out


def test_batch_size_is_part_of_the_name(run_dir):
    assert evaluate(run_dir) == 0
    assert evaluate(run_dir, "--batch-size", "8", n=16) == 0
    assert set(eval_files(run_dir)) == {"eval-quick.json", "eval-quick-n8.json"}
    assert json.loads((run_dir / "eval-quick.json").read_text())["batch_size"] == 8
    tag = full_tag(Identity("quick", "linf", 0.1, 16, batch_size=8), {"eps": 0.1}, None)
    assert tag == "quick-n16-b8"


def test_an_evaluation_of_other_weights_never_stays_the_main_result(tmp_path, capsys):
    run = make_run(tmp_path)
    assert evaluate(run, n=16) == 0
    make_run(tmp_path, seed=1)  # retrained in place: other weights, same folder
    capsys.readouterr()
    assert evaluate(run, n=8) == 0
    assert "of other weights" in capsys.readouterr().out
    files = eval_files(run)
    assert files["eval-quick.json"] == 8
    (old,) = [name for name in files if "-model" in name]
    assert files[old] == 16 and old.startswith("eval-quick-n16-model")


def test_a_file_of_an_older_advkit_is_moved_with_its_report(run_dir):
    legacy = {
        "suite": "quick", "eps": 0.1, "norm": "linf", "n_examples": 8, "attacks": ["pgd20"],
        "clean": 1.0, "pgd20": 0.5, "worst_case": 0.5, "seconds": 1.0, "seed": 0,
        "cascade": False, "warnings": [],
    }  # fmt: skip
    (run_dir / "eval-quick.json").write_text(json.dumps(legacy))
    (run_dir / "report-quick.md").write_text("![grid](eval-quick-examples.png)\n")
    (run_dir / "eval-quick-examples.png").write_bytes(b"png")
    assert evaluate(run_dir) == 0
    assert eval_files(run_dir) == {"eval-quick.json": 8, "eval-quick-n8-checks-full.json": 8}
    assert json.loads((run_dir / "eval-quick-n8-checks-full.json").read_text()) == legacy
    report = (run_dir / "eval-quick-n8-checks-full.md").read_text()
    assert report == "![grid](eval-quick-n8-checks-full-examples.png)\n"
    assert (run_dir / "eval-quick-n8-checks-full-examples.png").read_bytes() == b"png"
    assert not (run_dir / "report-quick.md").exists()


def test_an_unreadable_main_file_is_left_alone(run_dir, capsys):
    (run_dir / "eval-quick.json").write_text("{not json")
    assert evaluate(run_dir) == 0
    assert (run_dir / "eval-quick.json").read_text() == "{not json"
    assert "left" in capsys.readouterr().out and examples_of(run_dir / "eval-quick-n8.json") == 8


def test_json_elsewhere_writes_nothing_in_the_run_folder(run_dir, tmp_path, capsys):
    before = listing(run_dir)
    target = tmp_path / "elsewhere" / "result.json"
    assert evaluate(run_dir, "--json", str(target), "--sweep", "0,0.1") == 0
    assert listing(run_dir) == before
    out = capsys.readouterr().out
    for name in ("result.json", "result.md", "result-examples.png", "result-sweep.png"):
        assert (target.parent / name).stat().st_size > 0 and f"wrote {target.parent / name}" in out
    assert "(result-examples.png)" in (target.parent / "result.md").read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "result-examples.png", "result-sweep.png", "result.json", "result.md",
    ]  # fmt: skip


def test_json_over_another_evaluation_says_so(run_dir, tmp_path, capsys):
    target = tmp_path / "result.json"
    assert evaluate(run_dir, "--json", str(target), n=16) == 0
    capsys.readouterr()
    assert evaluate(run_dir, "--json", str(target), n=8) == 0
    assert f"note: replaced {target} (16 examples)" in capsys.readouterr().out
    assert examples_of(target) == 8


def test_out_puts_every_output_in_that_folder(run_dir, tmp_path):
    before = listing(run_dir)
    out = tmp_path / "evals"
    for n in (16, 8):
        assert evaluate(run_dir, "--out", str(out), "--sweep", "0,0.1", n=n) == 0
    assert listing(run_dir) == before
    assert eval_files(out) == {"eval-quick.json": 16, "eval-quick-n8-sweep.json": 8}
    assert (out / "eval-quick-sweep.png").exists() and (out / "eval-quick-n8-sweep.md").exists()


def test_json_and_out_together_are_refused(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate(run_dir, "--json", str(tmp_path / "a.json"), "--out", str(tmp_path))
    assert "not allowed with" in capsys.readouterr().err


def interrupt_after(monkeypatch, reports: int) -> list:
    """Make the evaluation's progress callback raise KeyboardInterrupt after ``reports`` calls
    (0: never); returns the list of Progress events seen."""
    seen = []

    def call(self, progress):
        if progress.live:  # a report while an attack runs, between the chunks' reports
            return
        seen.append(progress)
        if reports and len(seen) >= reports:
            raise KeyboardInterrupt

    monkeypatch.setattr(EvalBar, "__call__", call)
    return seen


def test_resumable_states_of_different_evaluations_are_kept_apart(run_dir, monkeypatch):
    interrupt_after(monkeypatch, 3)  # clean chunks 0 and 1, then pgd20 chunk 0 are saved
    assert evaluate(run_dir, "--batch-size", "8", n=16) == 130
    states = sorted(p.name for p in run_dir.glob("*.state.pt"))
    assert states == ["eval-quick-n16-b8.state.pt"]
    interrupt_after(monkeypatch, 0)
    assert evaluate(run_dir, "--batch-size", "8") == 0  # another one, run to the end in between
    assert sorted(p.name for p in run_dir.glob("*.state.pt")) == states
    seen = interrupt_after(monkeypatch, 0)
    assert evaluate(run_dir, "--batch-size", "8", n=16) == 0
    resumed = [event.phase for event in seen if event.resumed]
    assert resumed == ["clean", "clean", "pgd20"]
    assert not list(run_dir.glob("*.state.pt"))


def test_json_state_lies_beside_the_json(run_dir, tmp_path, monkeypatch):
    target = tmp_path / "out" / "result.json"
    interrupt_after(monkeypatch, 1)
    assert evaluate(run_dir, "--json", str(target)) == 130
    assert [p.name for p in target.parent.iterdir()] == ["result.state.pt"]
    assert not list(run_dir.glob("*.state.pt"))


def test_tags():
    threat = {"norm": "linf", "eps": 0.1}
    own = Identity("quick", "linf", 0.1, 500)
    assert main_tag("quick", 0.1, "linf", threat) == "quick"
    assert main_tag("quick", 0.05, "linf", threat) == "quick-linf-0.05"
    assert state_tag(own, threat) == full_tag(own, threat, None) == "quick-n500"
    other = Identity("paper", "l2", 1.0, 500, seed=3, sweep=(0.0, 1.0), checks="full", model="ab")
    assert full_tag(other, threat, "cd") == "paper-l2-1-n500-seed3-sweep-checks-full-modelab"
    assert state_tag(other, threat) == "paper-l2-1-n500-seed3"


def test_summarize_runs_reads_the_main_result(run_dir):
    """benchmarks/summarize_runs.py reads eval-<suite>.json: the largest evaluation."""
    for n in (16, 8):
        assert evaluate(run_dir, "--suite", "restarts", n=n) == 0
    spec = importlib.util.spec_from_file_location(
        "summarize_runs", REPO / "benchmarks" / "summarize_runs.py"
    )
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    row = summarize.load_run(run_dir)
    assert row["restarts"]["n_examples"] == 16
    assert "| 16 |" in summarize.table([row])

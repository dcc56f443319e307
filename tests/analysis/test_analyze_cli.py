"""``advkit analyze`` as a user drives it: the files it writes, --only, --set, several runs side
by side, re-runs that keep what was there, and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from advkit.analysis import ANALYSES
from advkit.cli import main
from tests.analysis.analysis_helpers import SMALL_EXAMPLES, shrink_defaults
from tests.cli.test_output_locks import outputs_held_elsewhere


@pytest.fixture
def small(monkeypatch):
    shrink_defaults(monkeypatch)


@pytest.fixture
def runs(trained_runs, tmp_path):
    """Copies of the session's run folders (without checkpoints): each test writes its own."""
    copies = {}
    for method, folder in trained_runs.items():
        copies[method] = tmp_path / method
        shutil.copytree(folder, copies[method], ignore=shutil.ignore_patterns("checkpoints"))
    return copies


def analyze(*argv, capsys) -> tuple[int, str, str]:
    """Exit status (argparse's own errors included), stdout and stderr of one command."""
    try:
        code = main(["analyze", *map(str, argv)])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def read(path) -> dict:
    return json.loads(path.read_text())


def test_analyze_writes_json_report_and_figures_into_the_run(runs, small, capsys):
    run = runs["pgd"]
    code, out, _ = analyze(run, capsys=capsys)
    assert code == 0
    data = read(run / "analysis.json")
    assert list(data) == ["settings", *ANALYSES.names()]
    settings = data["settings"]
    assert settings["examples"] == SMALL_EXAMPLES and settings["seed"] == 0
    assert settings["eps"] == pytest.approx(0.1) and settings["norm"] == "linf"
    assert settings["advkit_version"] and settings["torch_version"]
    assert settings["analyses"]["loss_landscape"]["options"]["grid"] == 5
    assert set(data["loss_landscape"]["rise_at_eps"]) == {"adversarial", "random"}
    report = (run / "analysis.md").read_text()
    for name in ANALYSES.names():
        assert f"## {name}" in report
        for figure in settings["analyses"][name]["figures"]:
            assert figure.startswith(f"analysis-{name}-") and (run / figure).is_file()
            assert f"]({figure})" in report
    assert "loss_landscape: rise_at_eps.adversarial" in out and "wrote" in out


def test_a_rerun_of_one_analysis_keeps_the_others(runs, small, capsys):
    run = runs["natural"]
    assert analyze(run, "--only", "loss_landscape", capsys=capsys)[0] == 0
    first = read(run / "analysis.json")
    assert list(first) == ["settings", "loss_landscape"]
    assert analyze(run, "--only", "input_gradients", capsys=capsys)[0] == 0
    both = read(run / "analysis.json")
    assert list(both) == ["settings", "input_gradients", "loss_landscape"]
    assert both["loss_landscape"] == first["loss_landscape"]
    report = (run / "analysis.md").read_text()
    assert "## loss_landscape" in report and "## input_gradients" in report
    for figure in both["settings"]["analyses"]["loss_landscape"]["figures"]:
        assert (run / figure).is_file() and f"]({figure})" in report


def test_other_settings_go_to_a_file_named_after_them(runs, small, capsys):
    run = runs["pgd"]
    assert analyze(run, "--only", "loss_landscape", capsys=capsys)[0] == 0
    default = (run / "analysis.json").read_text()
    assert analyze(run, "--only", "loss_landscape", "--set", "loss_landscape.grid=7",
                   capsys=capsys)[0] == 0  # fmt: skip
    tagged = read(run / "analysis-loss_landscape.grid7.json")
    assert tagged["settings"]["set"] == {"loss_landscape.grid": 7}
    assert tagged["settings"]["analyses"]["loss_landscape"]["options"]["grid"] == 7
    assert len(tagged["loss_landscape"]["profile"]["radii"]) == 7
    assert (run / "analysis-loss_landscape.grid7-loss_landscape-profile.png").is_file()
    assert analyze(run, "--only", "input_gradients", "--seed", "1", capsys=capsys)[0] == 0
    assert read(run / "analysis-seed1.json")["settings"]["seed"] == 1
    assert (run / "analysis.json").read_text() == default  # untouched by either


def test_two_runs_side_by_side(runs, small, tmp_path, capsys):
    out_dir = tmp_path / "compare"
    assert analyze(runs["natural"], runs["pgd"], "--out", out_dir, capsys=capsys)[0] == 0
    data = read(out_dir / "analysis.json")
    assert set(data["settings"]["runs"]) == {"natural", "pgd"}
    for name in ANALYSES.names():
        assert set(data[name]) == {"natural", "pgd"}
        assert data[name]["pgd"] == read(runs["pgd"] / "analysis.json")[name]
        figures = data["settings"]["analyses"][name]["figures"]
        assert figures and all((out_dir / figure).is_file() for figure in figures)
    report = (out_dir / "analysis.md").read_text()
    assert "| | natural | pgd |" in report and "rise_at_eps.adversarial" in report


def test_a_run_without_history_skips_what_needs_it(runs, small, capsys, monkeypatch):
    monkeypatch.setitem(ANALYSES.meta("input_gradients"), "needs_history", True)
    run = runs["pgd"]
    (run / "metrics.jsonl").unlink()
    code, out, _ = analyze(run, "--only", "input_gradients", capsys=capsys)
    assert code == 0 and "input_gradients: skipped" in out
    data = read(run / "analysis.json")
    assert "metrics.jsonl" in data["input_gradients"]["skipped"]
    assert "Skipped:" in (run / "analysis.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{empty}"], "no model weights"),
        (["{run}", "--only", "nope"], "invalid choice: 'nope'"),
        (["{run}", "--set", "loss_landscape.gird=3"], "no option 'gird'"),
        (["{run}", "--set", "grid=3"], "ANALYSIS.KEY=VALUE"),
        (["{run}", "{run}"], "add --out DIR"),
        (["{run}", "--examples", "0"], "at least 1"),
        (["{run}", "--only", "loss_landscape", "--set", "loss_landscape.grid=4"], "odd number"),
    ],
)  # fmt: skip
def test_errors_are_one_line(runs, small, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(run=runs["pgd"], empty=tmp_path / "empty") for a in argv]
    code, _, err = analyze(*argv, capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "empty" / ".lock").exists()


def test_one_run_with_out_is_written_there_instead(runs, small, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    assert analyze(runs["natural"], "--only", "input_gradients", "--out", elsewhere,
                   capsys=capsys)[0] == 0  # fmt: skip
    assert list(read(elsewhere / "analysis.json")) == ["settings", "input_gradients"]
    assert not (runs["natural"] / "analysis.json").exists()


def test_a_run_being_written_elsewhere_is_refused(runs, small, capsys):
    """Another analysis writing the same files (a training holding the run is no obstacle to
    reading it: tests/cli/test_output_locks.py)."""
    with outputs_held_elsewhere(runs["pgd"], "analysis") as pid:
        code, _, err = analyze(runs["pgd"], "--only", "input_gradients", capsys=capsys)
    assert code == 2 and f"pid {pid}" in err and len(err.strip().splitlines()) == 1
    assert not (runs["pgd"] / "analysis.json").exists()


def test_the_printed_numbers_follow_the_declared_headline_order():
    from advkit.analysis.runner import headline

    line = headline("input_gradients", {"image_correlation": 0.1, "alignment": 0.2, "x": 3})
    assert line == "alignment 0.2, image_correlation 0.1"


@pytest.mark.parametrize("refused", [".png", ".json"])
def test_a_full_disk_prints_the_numbers_and_leaves_no_figure_without_its_json(
    runs, small, capsys, monkeypatch, refused
):
    """Figures were written as each analysis finished and the JSON at the end: a full disk left
    PNGs without results (or lost the headline of the analysis whose figure failed)."""
    from tests.disk_faults import refuse_writes

    run = runs["natural"]
    refuse_writes(monkeypatch, lambda name: name.startswith("analysis") and name.endswith(refused))
    code, out, err = analyze(run, "--only", "loss_landscape", capsys=capsys)
    assert code == 2 and "bug" not in err and err.count("\n") == 1, err
    assert "loss_landscape: " in out  # the headline numbers, printed before any write
    assert f"cannot write {run / 'analysis'}" in err and "no space is left" in err
    assert not list(run.glob("analysis*.png")) and not list(run.glob(".*.tmp"))
    if refused == ".png":
        assert read(run / "analysis.json")["loss_landscape"]
        assert f"the results are in {run / 'analysis.json'}" in err
    else:
        assert not list(run.glob("analysis*"))

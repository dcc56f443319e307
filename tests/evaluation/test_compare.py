"""advkit.compare: choosing each run's evaluation, refusing what is not comparable, the table
in Markdown, CSV and LaTeX, and writing it. Evaluations are written by advkit's report code."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import advkit
from advkit.comparison import CompareError, compare
from advkit.comparison.select import MissingEvaluationError
from advkit.errors import CorruptFileError, UserError
from tests.evaluation.compare_runs import add_eval, make_run


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    """run pgd_a (clean 170/200, pgd20 120) and trades (clean 160, pgd20 130)."""
    a = make_run(tmp_path, "pgd_a", weights=b"a")
    b = make_run(tmp_path, "trades", method="trades", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120})
    add_eval(b, {"clean": 160, "pgd20": 130})
    return a, b


def test_table_of_two_runs_in_order_with_intervals_and_best(two: tuple[Path, Path]) -> None:
    a, b = two
    table = compare([a, b])
    assert [row.label for row in table.rows] == ["pgd_a", "trades"]
    assert table.accuracy_columns == ["clean", "pgd20", "worst_case"]
    data = json.loads((a / "eval-quick.json").read_text())
    cell = table.rows[0].cells["clean"]
    assert (cell.value, [cell.low, cell.high]) == (0.85, data["intervals"]["clean"])
    lines = table.to_markdown().splitlines()
    assert lines[0] == "| run | method | train eps | model | clean | pgd20 | worst case |"
    assert "| pgd_a | pgd | 0.1 | cnn-small | **85.0** [79.3, 89.3] |" in lines[2]
    assert "| 60.0 [" in lines[2] and "| **65.0** [" in lines[3]  # the best pgd20 is trades'
    assert "| 80.0 [" in lines[3]
    assert any("the first 200 test examples, suite quick, L-inf eps=0.1" in n for n in table.notes)


def test_interval_bounds_are_rounded_outwards(two: tuple[Path, Path]) -> None:
    table = compare(two)
    cell = table.rows[0].cells["clean"]  # 170/200: [0.7939, 0.8929] -> [79.3, 89.3]
    assert (cell.low, cell.high) == (0.7939, 0.8929)
    assert "**85.0** [79.3, 89.3]" in table.to_markdown()
    cell = table.rows[1].cells["pgd20"]  # 130/200: [0.5816, 0.7128] -> [58.1, 71.3]
    assert (cell.low, cell.high) == (0.5816, 0.7128)
    assert "**65.0** [58.1, 71.3]" in table.to_markdown()


def test_csv_has_fractions_and_low_high_columns(two: tuple[Path, Path]) -> None:
    rows = list(csv.DictReader(io.StringIO(compare(two).to_csv())))
    assert [row["run"] for row in rows] == ["pgd_a", "trades"]
    assert float(rows[1]["pgd20"]) == 0.65
    data = json.loads((two[1] / "eval-quick.json").read_text())
    assert [float(rows[1]["pgd20_low"]), float(rows[1]["pgd20_high"])] == data["intervals"]["pgd20"]
    assert rows[0]["method"] == "pgd" and rows[1]["method"] == "trades"
    assert rows[0]["n_examples"] == "200" and rows[0]["suite"] == "quick"
    assert rows[0]["evaluation"].endswith("eval-quick.json")


def test_latex_uses_booktabs_and_escapes(tmp_path: Path) -> None:
    a = make_run(tmp_path, "pgd_50%", weights=b"a")
    b = make_run(tmp_path, "b&c", weights=b"b")
    add_eval(a, {"clean": 150, "apgd_ce": 100}, suite="autoattack")
    add_eval(b, {"clean": 140, "apgd_ce": 110}, suite="autoattack")
    text = compare([a, b]).to_latex()
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"pgd\_50\% &" in text and r"b\&c &" in text and r"apgd\_ce" in text
    assert r"\textbf{75.0} {\footnotesize [" in text
    body = [line for line in text.splitlines() if not line.startswith("%")]
    assert all("_" not in line.replace(r"\_", "") for line in body)
    assert "% - autoattack ran as a cascade: each attack column counts" in text


def test_several_suites_are_ambiguous_until_one_is_chosen(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run")
    add_eval(run, {"clean": 170, "pgd20": 120})
    add_eval(run, {"clean": 170, "fgsm": 150, "pgd20": 110}, suite="paper")
    with pytest.raises(CompareError) as info:
        compare([run])
    message = str(info.value)
    assert "eval-quick.json" in message and "eval-paper.json" in message
    assert "--suite" in message and "\n" not in message
    table = compare([run], suite="paper")
    assert table.rows[0].evaluation.path.name == "eval-paper.json"
    assert table.rows[0].cells["pgd20"].value == 0.55


def test_the_runs_own_threat_comes_first_then_eps_chooses(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run", eps=0.1)
    add_eval(run, {"clean": 170, "pgd20": 120})
    add_eval(run, {"clean": 170, "pgd20": 60}, eps=0.2)
    assert compare([run]).rows[0].cells["pgd20"].value == 0.6
    chosen = compare([run], eps="1/5").rows[0]
    assert chosen.evaluation.path.name == "eval-quick-linf-0.2.json"
    assert chosen.cells["pgd20"].value == 0.3


def test_the_largest_evaluation_unless_a_count_is_asked(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run")
    add_eval(run, {"clean": 50, "pgd20": 20}, n=100)
    add_eval(run, {"clean": 170, "pgd20": 120}, n=200)  # displaces the 100 to eval-quick-n100
    assert compare([run]).rows[0].evaluation.n_examples == 200
    assert compare([run], n_examples=100).rows[0].evaluation.path.name == "eval-quick-n100.json"


def test_evaluations_of_the_weights_the_run_holds_come_first(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run", weights=b"new")
    old = tmp_path / "old.safetensors"
    old.write_bytes(b"old")
    add_eval(run, {"clean": 190, "pgd20": 150}, n=200, weights=old)
    add_eval(run, {"clean": 80, "pgd20": 40}, n=100)
    table = compare([run])
    assert table.rows[0].evaluation.n_examples == 100
    assert not any("other weights" in n for n in table.notes)
    table.rows[0].evaluation.path.unlink()
    table = compare([run])  # only the other weights' evaluation: shown, and said so
    assert table.rows[0].evaluation.n_examples == 200
    assert any("other weights than the run's model.safetensors" in n for n in table.notes)


def test_a_run_without_evaluation_is_an_error_or_listed_missing(two, tmp_path: Path) -> None:
    bare = make_run(tmp_path, "bare")
    with pytest.raises(MissingEvaluationError, match=r"advkit eval .*bare.* first"):
        compare([*two, bare])
    table = compare([*two, bare], skip_missing=True)
    assert [row.label for row in table.rows] == ["pgd_a", "trades", "bare"]
    assert table.rows[2].cells == {}
    last = table.to_markdown().splitlines()[4]
    assert last.startswith("| bare | pgd | 0.1 | cnn-small | — | — | — |")
    assert any(n.startswith("bare: missing: no evaluation; run `advkit eval") for n in table.notes)
    assert list(csv.DictReader(io.StringIO(table.to_csv())))[2]["evaluation"] == "missing"
    with pytest.raises(CompareError, match="none of the runs"):
        compare([bare], skip_missing=True)


def test_no_fitting_evaluation_lists_what_there_is(two: tuple[Path, Path]) -> None:
    with pytest.raises(MissingEvaluationError) as info:
        compare(two, suite="paper")
    message = str(info.value)
    assert "suite paper" in message and "quick L-inf eps=0.1, 200 examples" in message
    assert "--suite paper" in message and "--skip-missing" in message


def test_different_examples_are_refused_unless_allowed(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a", weights=b"a"), make_run(tmp_path, "b", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120}, n=200)
    add_eval(b, {"clean": 90, "pgd20": 70}, n=100)
    with pytest.raises(CompareError) as info:
        compare([a, b])
    message = str(info.value)
    assert "examples (a 200, b 100)" in message and "--allow-mixed" in message
    assert "--n-examples" in message
    table = compare([a, b], allow_mixed=True)
    assert table.mixed == ["examples"]
    assert "examples" in table.label_columns
    text = table.to_markdown()
    assert "**" not in text.split("\n\n")[0]  # nothing marked best
    assert "Not comparable: evaluated on different test examples, so a difference" in text
    assert "| a | pgd | 0.1 | cnn-small | 200 |" in text
    add_eval(a, {"clean": 80, "pgd20": 50}, n=100)  # now both have 100: the error says so
    with pytest.raises(CompareError, match=r"every run has one on 100 examples: --n-examples 100"):
        compare([a, b])
    assert compare([a, b], n_examples=100).rows[0].cells["clean"].value == 0.8


def test_different_threats_and_suites_are_refused(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a", weights=b"a"), make_run(tmp_path, "b", eps=0.2, weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120})
    add_eval(b, {"clean": 160, "pgd20": 100}, eps=0.2)
    with pytest.raises(CompareError, match=r"eval eps \(a 0.1, b 0.2\)"):
        compare([a, b])
    add_eval(b, {"clean": 160, "pgd20": 110}, eps=0.1)
    assert compare([a, b], eps=0.1).rows[1].cells["pgd20"].value == 0.55
    c = make_run(tmp_path, "c", weights=b"c")
    add_eval(c, {"clean": 160, "fgsm": 150, "pgd20": 100}, suite="paper")
    with pytest.raises(CompareError, match=r"suite \(a quick, c paper\)"):
        compare([a, c])
    table = compare([a, c], allow_mixed=True)
    assert table.accuracy_columns == ["clean", "pgd20", "fgsm", "pgd100", "cw100", "pgd20x10",
                                      "worst_case"]  # fmt: skip
    assert "| — |" in table.to_markdown()  # a's quick suite has no fgsm


def test_other_attack_settings_in_one_suite_are_refused(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a", weights=b"a"), make_run(tmp_path, "b", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120})
    path = add_eval(b, {"clean": 160, "pgd20": 110})
    data = json.loads(path.read_text())
    data["attack_params"]["pgd20"]["steps"] = 10
    path.write_text(json.dumps(data))
    with pytest.raises(CompareError, match=r"differ in attack settings \(of pgd20\)"):
        compare([a, b])
    assert compare([a, b], allow_mixed=True).mixed == ["attack_settings"]


def test_sort_and_columns(two: tuple[Path, Path]) -> None:
    table = compare(two, sort="pgd20")
    assert [row.label for row in table.rows] == ["trades", "pgd_a"]
    assert [row.label for row in compare(two, sort="method").rows] == ["pgd_a", "trades"]
    table = compare(two, columns=["run", "worst_case"], sort="pgd20")  # sorted by a hidden one
    assert table.to_markdown().splitlines()[0] == "| run | worst case |"
    assert [row.label for row in table.rows] == ["trades", "pgd_a"]
    assert next(csv.reader(io.StringIO(table.to_csv()))) == [
        "run", "worst_case", "worst_case_low", "worst_case_high"
    ]  # fmt: skip
    with pytest.raises(CompareError, match="unknown column pgd99: choose from run, method"):
        compare(two, columns=["run", "pgd99"])
    with pytest.raises(CompareError, match="cannot sort by pgd99"):
        compare(two, sort="pgd99")


def test_warnings_and_skipped_checks_are_said(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a", weights=b"a"), make_run(tmp_path, "b", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 160}, warnings=("zero_gradient: gradients vanish",))
    add_eval(b, {"clean": 160, "pgd20": 110}, checks="none")
    notes = compare([a, b]).notes
    assert any(n.startswith("a: 1 sanity check(s) fired") and "vanish" in n for n in notes)
    assert "b: no sanity checks ran (--checks none)." in notes


def test_write_is_atomic_keeps_existing_and_takes_the_suffix(two, tmp_path: Path) -> None:
    table = compare(two)
    out = tmp_path / "out" / "table.tex"
    assert table.write(out) == out
    assert out.read_text() == table.to_latex()
    out.write_text("mine")
    with pytest.raises(CompareError, match="exists: choose another --out, or pass --force"):
        table.write(out)
    assert out.read_text() == "mine"
    table.write(out, force=True)
    assert out.read_text() == table.to_latex()
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.tex"]  # no temporary left
    table.write(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == table.to_csv()
    with pytest.raises(CompareError, match=r"cannot tell the format of .*table\.txt"):
        table.write(tmp_path / "table.txt")
    table.write(tmp_path / "table.txt", "markdown")
    with pytest.raises(CompareError, match=r"--format csv does not fit t\.md"):
        table.write(tmp_path / "t.md", "csv")


def test_files_that_are_not_evaluations(two, tmp_path: Path) -> None:
    bad = two[0] / "eval-quick.json"
    bad.write_text('{"suite": "quick", ')
    with pytest.raises(CorruptFileError, match=r"eval-quick\.json is truncated or corrupt"):
        compare(two)
    bad.write_text('{"notes": 1}')
    with pytest.raises(CompareError, match="is not an evaluation written by `advkit eval`"):
        compare(two)
    with pytest.raises(CompareError, match="does not exist"):
        compare([tmp_path / "nowhere"])
    with pytest.raises(CompareError, match="not a run folder"):
        compare([tmp_path])


def test_what_to_run_names_the_folder_to_evaluate(two, tmp_path: Path) -> None:
    json_file = two[0] / "eval-quick.json"
    with pytest.raises(MissingEvaluationError) as info:
        compare([json_file], suite="paper")
    assert f"run `advkit eval {two[0]} --suite paper`" in str(info.value)  # the run, not its JSON
    out = tmp_path / "evals"
    add_eval(out, {"clean": 150, "pgd20": 100}, run_threat={})
    with pytest.raises(MissingEvaluationError) as info:
        compare([out], suite="paper")
    assert f"run `advkit eval ... --suite paper --out {out}`" in str(info.value)


def test_an_eval_out_folder_and_a_json_file(two, tmp_path: Path) -> None:
    out = tmp_path / "evals" / "mine"
    add_eval(out, {"clean": 150, "pgd20": 100}, run_threat={})
    json_file = next(out.glob("eval-*.json"))
    table = compare([two[0], out, json_file])
    assert [row.label for row in table.rows] == ["pgd_a", "mine", json_file.stem]
    assert table.rows[1].label_value("model") == "cnn-small"  # from the evaluation
    assert table.rows[1].label_value("method") == ""


def test_old_files_without_intervals_get_them(two: tuple[Path, Path]) -> None:
    path = two[0] / "eval-quick.json"
    data = json.loads(path.read_text())
    intervals = data.pop("intervals")
    del data["confidence"]
    path.write_text(json.dumps(data))
    cell = compare(two).rows[0].cells["pgd20"]
    assert [cell.low, cell.high] == intervals["pgd20"]


def test_same_names_are_told_apart_and_architecture_options_shown(tmp_path: Path) -> None:
    a = make_run(tmp_path / "x", "run", architecture="wrn", model_kwargs={"depth": 16})
    b = make_run(tmp_path / "y", "run", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120})
    add_eval(b, {"clean": 160, "pgd20": 110})
    table = compare([a, b])
    assert [row.label for row in table.rows] == ["x/run", "y/run"]
    assert table.rows[0].label_value("model") == "wrn (depth=16)"


def test_exported_and_errors_are_user_errors(two: tuple[Path, Path]) -> None:
    assert advkit.compare is compare and "compare" in advkit.__all__
    assert advkit.compare(two).rows[1].label == "trades"
    assert issubclass(CompareError, UserError)
    with pytest.raises(CompareError, match="at least one run"):
        compare([])

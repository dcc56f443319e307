"""`advkit compare`: the table on stdout or in a file, one-line errors, and end to end from a
tiny real run that `advkit train` and `advkit eval` made."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from advkit.cli import main
from tests.conftest import requires_fashion_mnist
from tests.evaluation.compare_runs import add_eval, make_run


@pytest.fixture
def runs(tmp_path: Path) -> list[str]:
    a = make_run(tmp_path, "pgd", weights=b"a")
    b = make_run(tmp_path, "trades", method="trades", weights=b"b")
    add_eval(a, {"clean": 170, "pgd20": 120})
    add_eval(b, {"clean": 160, "pgd20": 130})
    return [str(a), str(b)]


def test_markdown_on_stdout_by_default(runs, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *runs]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| run | method | train eps | model | clean | pgd20 | worst case |"
    assert out[3].startswith("| trades | trades | 0.1 | cnn-small | 80.0 [")
    assert "**65.0** [58.1, 71.3]" in out[3]


def test_csv_columns_and_sort(runs, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *runs, "--format", "csv", "--columns", "run,clean", "pgd20"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["run", "clean", "clean_low", "clean_high", "pgd20", "pgd20_low",
                       "pgd20_high"]  # fmt: skip
    assert main(["compare", *runs, "--format", "csv", "--sort", "pgd20"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["run"] for row in rows] == ["trades", "pgd"]


def test_out_writes_once_then_needs_force(runs, tmp_path, capsys) -> None:
    out = tmp_path / "table.tex"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| run |") and printed.endswith(f"wrote {out}\n")
    assert r"\begin{tabular}" in out.read_text()
    out.write_text("kept")
    assert main(["compare", *runs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists: choose another --out, or pass --force" in err
    assert out.read_text() == "kept"
    assert main(["compare", *runs, "--out", str(out), "--force"]) == 0
    assert r"\toprule" in out.read_text()
    assert main(["compare", *runs, "--out", str(tmp_path / "t.md"), "--format", "csv"]) == 2
    assert "--format csv does not fit t.md" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()


def test_errors_are_one_line(runs, tmp_path, capsys) -> None:
    bare = make_run(tmp_path, "bare")
    assert main(["compare", *runs, str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advkit compare: error: ") and err.count("\n") == 1
    assert f"run `advkit eval {bare}` first" in err and "--skip-missing" in err
    assert main(["compare", *runs, str(bare), "--skip-missing"]) == 0
    assert "| bare | pgd | 0.1 | cnn-small | — | — | — |" in capsys.readouterr().out
    add_eval(bare, {"clean": 100, "pgd20": 50}, n=100)
    assert main(["compare", *runs, str(bare)]) == 2
    err = capsys.readouterr().err
    assert "examples (pgd 200, trades 200, bare 100)" in err and "--allow-mixed" in err
    assert err.count("\n") == 1 and "internal error" not in err
    assert main(["compare", *runs, str(bare), "--allow-mixed"]) == 0
    assert "Not comparable" in capsys.readouterr().out
    assert main(["compare", *runs, "--eps", "8/0"]) == 2
    assert "expected a number such as 0.1 or 8/255" in capsys.readouterr().err


@pytest.mark.slow
@requires_fashion_mnist
def test_end_to_end_from_a_tiny_real_run(tmp_path, capsys, monkeypatch) -> None:
    from tests.evaluation.run_folder import stub_figures

    stub_figures(monkeypatch)
    run = tmp_path / "a"
    train = ["train", "--subset", "600", "--val-size", "100", "--epochs", "1", "--quiet"]
    assert main([*train, "--out", str(run)]) == 0
    assert main(["eval", str(run), "--n-examples", "200", "--quiet", "--checks", "none"]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(run / "eval-quick.json"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["run"] for row in rows] == ["a", "a-2"]  # the folder and its JSON: one run
    import json

    data = json.loads((run / "eval-quick.json").read_text())
    assert rows[0]["method"] == "pgd" and rows[0]["model"] == "cnn-small"
    assert rows[0]["n_examples"] == "200" and rows[0]["dataset"] == "fashion-mnist"
    for column in ("clean", *data["attacks"], "worst_case"):
        assert float(rows[0][column]) == data[column]
        assert [float(rows[0][f"{column}_low"]), float(rows[0][f"{column}_high"])] == (
            data["intervals"][column]
        )


def test_a_failed_write_names_the_file_and_leaves_nothing(runs, tmp_path, capsys, monkeypatch):
    def full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "table.md"
    assert main(["compare", *runs, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("| run |")  # the table was shown before the write failed
    err = captured.err
    assert err.count("\n") == 1 and "no space is left" in err and str(out) in err
    assert str(out) in err and ".tmp" not in err  # the file asked for, not the temporary one
    assert list(tmp_path.glob("*.md")) == [] and list(tmp_path.glob(".*tmp")) == []

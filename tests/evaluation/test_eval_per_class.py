"""Clean and worst-case robust accuracy per class, with intervals and class names, in the JSON
and the Markdown report, computed from the per-sample outcomes the evaluation already has."""

from __future__ import annotations

import json

import pytest
import torch

from advkit.cli import main
from advkit.evaluation import evaluate, markdown_report, report_dict
from advkit.evaluation.per_class import per_class_rows
from tests.evaluation.conftest import NUM_CLASSES
from tests.evaluation.run_folder import make_run, stub_figures

NAMES = [f"kind{i}" for i in range(NUM_CLASSES)]


def test_rows_count_each_classs_outcomes():
    labels = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2, 2, 2])
    clean = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=torch.bool)
    worst = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1, 1, 0], dtype=torch.bool)
    rows = per_class_rows(labels, {"clean": clean, "worst_case": worst}, ["a", "b", "c"])
    assert [(r["class"], r["name"], r["n_examples"]) for r in rows] == [(0, "a", 4), (2, "c", 6)]
    assert rows[0]["clean"] == 0.75 and rows[0]["worst_case"] == 0.25
    assert rows[1]["clean"] == 1.0 and rows[1]["worst_case"] == pytest.approx(5 / 6, abs=1e-6)
    low, high = rows[0]["intervals"]["worst_case"]
    assert 0 < low < 0.25 < high < 1 and rows[1]["intervals"]["clean"][1] == 1.0
    assert "name" not in per_class_rows(labels, {"clean": clean})[0]


def test_the_report_has_every_class_of_the_evaluation(model, data):
    result = evaluate(model, *data, "quick", eps=0.05, batch_size=20)
    report = report_dict(result, class_names=NAMES)
    rows = report["per_class"]
    labels = data[1]
    assert [row["class"] for row in rows] == sorted(set(labels.tolist()))
    assert sum(row["n_examples"] for row in rows) == len(labels)
    for row in rows:
        members = labels == row["class"]
        assert row["name"] == NAMES[row["class"]]
        assert row["clean"] == pytest.approx(float(result.clean[members].float().mean()), abs=1e-6)
        assert row["worst_case"] == pytest.approx(
            float(result.worst_case[members].float().mean()), abs=1e-6
        )
        for column in ("clean", "worst_case"):
            low, high = row["intervals"][column]
            assert low <= row[column] <= high
    weighted = sum(row["worst_case"] * row["n_examples"] for row in rows) / len(labels)
    assert weighted == pytest.approx(report["worst_case"], abs=1e-5)
    markdown = markdown_report(report, title="run")
    assert "## Per class" in markdown and "| worst case | 95% interval |" in markdown
    first = rows[0]
    assert f"| {first['class']} {first['name']} | {first['n_examples']} |" in markdown


def test_advkit_eval_writes_per_class_with_the_runs_class_names(tmp_path, monkeypatch):
    stub_figures(monkeypatch)
    run = make_run(tmp_path)
    meta = json.loads((run / "model.json").read_text())
    names = [f"digit {i}" for i in range(10)]
    (run / "model.json").write_text(json.dumps({**meta, "class_names": names}))
    assert main(["eval", str(run), "--n-examples", "16", "--batch-size", "8", "--quiet",
                 "--checks", "none"]) == 0  # fmt: skip
    data = json.loads((run / "eval-quick.json").read_text())
    rows = data["per_class"]
    assert sum(row["n_examples"] for row in rows) == 16
    assert all(row["name"] == names[row["class"]] for row in rows)
    assert "## Per class" in (run / "eval-quick.md").read_text()

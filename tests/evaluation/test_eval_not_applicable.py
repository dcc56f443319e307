"""A sanity check with nothing to test on an evaluation (no PGD-100 column to compare, no eps
sweep, no point left for Square) is reported as "not applicable" with the reason, in the JSON,
the terminal table and the Markdown: never as "quiet", which reads as passed."""

from __future__ import annotations

import pytest

from advkit.evaluation import evaluate, format_table, markdown_report, report_dict
from advkit.evaluation.checks import CheckContext, check_all

EPS = 0.05


def runs_of(report) -> dict[str, dict]:
    return {run["name"]: run for run in report.to_dict()["runs"]}


def test_checks_without_their_columns_or_sweep_do_not_apply(model, data):
    result = evaluate(model, *data, "quick", eps=EPS, batch_size=20)
    context = CheckContext(model, data[0][:16], data[1][:16], eps=EPS,
                           accuracies=result.accuracies(), n_examples=40)  # fmt: skip
    runs = runs_of(check_all(context, ["more_steps", "sweep_rises", "deterministic"]))
    assert runs["more_steps"]["status"] == "not applicable"
    assert "no PGD-20 and PGD-100 columns" in runs["more_steps"]["not_applicable"]
    assert runs["sweep_rises"]["status"] == "not applicable"
    assert "--sweep" in runs["sweep_rises"]["not_applicable"]
    assert not runs["more_steps"]["fired"] and runs["more_steps"]["skipped"] is None
    assert runs["deterministic"]["status"] == "quiet"
    assert runs["deterministic"]["not_applicable"] is None


def test_black_box_does_not_apply_when_nothing_withstood_the_gradient_attacks(model, data):
    inputs, labels = data
    wrong = (labels + 1) % 5  # every point misclassified: nothing left for Square to break
    context = CheckContext(model, inputs[:16], wrong[:16], eps=EPS, level="full")
    run = runs_of(check_all(context, ["black_box"]))["black_box"]
    assert run["status"] == "not applicable" and "nothing left for Square" in run["not_applicable"]
    cascade = CheckContext(model, inputs[:16], labels[:16], eps=EPS, cascade=True, n_examples=40,
                           accuracies={"clean": 0.5, "apgd_ce": 0.0, "square": 0.0})  # fmt: skip
    assert runs_of(check_all(cascade, ["black_box"]))["black_box"]["status"] == "not applicable"


@pytest.mark.parametrize("sweep", [None, [(0.0, 0.9), (0.05, 0.5)]])
def test_the_reports_say_not_applicable_and_why(model, data, sweep):
    result = evaluate(model, *data, "quick", eps=EPS, batch_size=20)
    context = CheckContext(model, data[0][:16], data[1][:16], eps=EPS, n_examples=40,
                           accuracies=result.accuracies(), sweep=sweep or ())  # fmt: skip
    checks = check_all(context, ["more_steps", "sweep_rises", "deterministic"])
    report = report_dict(result, sweep=sweep, checks=checks)
    table = format_table(report)
    markdown = markdown_report(report, title="run")
    assert "not applicable: more_steps (the evaluation has no PGD-20 and PGD-100" in table
    ran = next(line for line in table.splitlines() if line.startswith("checks "))
    assert "deterministic" in ran and "more_steps" not in ran  # the line of those that ran
    assert "| more_steps | not applicable: the evaluation has no PGD-20" in markdown
    assert "| deterministic | quiet" in markdown
    assert "| more_steps | quiet" not in markdown
    if sweep is None:
        assert "; sweep_rises (no eps sweep" in table
        assert "| sweep_rises | not applicable: no eps sweep" in markdown
        assert "more_steps, sweep_rises did not apply" in markdown
    else:
        assert "| sweep_rises | quiet" in markdown and "sweep_rises (" not in table

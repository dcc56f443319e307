"""per_class: per-class counts and accuracies add up to the overall ones, the confusion matrix
under attack holds every point, and the class names label the entries."""

from __future__ import annotations

import pytest
import torch

from advkit.analysis import ANALYSES
from advkit.analysis.measure import logits_of
from tests.analysis.run_context import run_context
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist


@pytest.fixture(scope="module")
def pgd_result(trained_runs):
    ctx = run_context(trained_runs["pgd"], examples=300, options={"steps": 3})
    return ctx, ANALYSES.get("per_class")(ctx)


def test_per_class_numbers_add_up_to_the_overall_ones(pgd_result):
    ctx, result = pgd_result
    s = result.summary
    entries = s["per_class"]
    assert [e["class"] for e in entries] == list(range(10))
    assert [e["name"] for e in entries] == ctx.class_names
    assert sum(e["n"] for e in entries) == s["examples"] == 300
    n = s["examples"]
    clean = sum(e["clean"] * e["n"] for e in entries if e["n"]) / n
    robust = sum(e["robust"] * e["n"] for e in entries if e["n"]) / n
    assert clean == pytest.approx(s["clean"], abs=1e-3)
    assert robust == pytest.approx(s["robust"], abs=1e-3)
    direct = (logits_of(ctx.model, ctx.inputs).argmax(1) == ctx.labels).double().mean().item()
    assert s["clean"] == pytest.approx(direct, abs=1e-4)
    confusion = torch.tensor(s["confusion_under_attack"])
    assert confusion.sum(1).tolist() == [e["n"] for e in entries]
    assert confusion.diagonal().sum().item() / n == pytest.approx(s["robust"], abs=1e-4)
    assert 0 < s["robust"] < s["clean"]


def test_the_report_has_both_panels_and_a_table(pgd_result):
    _, result = pgd_result
    assert set(result.figures) == {"classes"} and len(result.figures["classes"].axes) == 3
    assert "| class | name | n | clean | robust |" in result.markdown
    assert "Least robust" in result.markdown


def test_the_same_seed_gives_the_same_numbers(trained_runs, pgd_result):
    ctx = run_context(trained_runs["pgd"], examples=300, options={"steps": 3})
    assert ANALYSES.get("per_class")(ctx).summary == pgd_result[1].summary


def test_compare_draws_every_run(trained_runs, pgd_result):
    natural = ANALYSES.get("per_class")(
        run_context(trained_runs["natural"], 100, options={"steps": 1})
    )
    figures = ANALYSES.meta("per_class")["compare"]({"natural": natural, "pgd": pgd_result[1]})
    assert set(figures) == {"accuracy"}

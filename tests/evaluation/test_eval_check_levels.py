"""--checks none|fast|full: what runs, what it costs (counted, not timed), and what it reports."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
import torch

from advkit import runs
from advkit.cli import main
from advkit.evaluation import CHECKS, CheckContext, evaluate, session
from advkit.evaluation.checks import (
    FAST_CALLS,
    FAST_COST_PER_POINT,
    FAST_FRACTION,
    FAST_MIN_BUDGET,
    check_all,
    check_sample_size,
    fast_budget,
)
from advkit.evaluation.cost import CALL_COST, count_forwards
from advkit.evaluation.eval_bar import bar_factory
from advkit.humanize import format_duration
from tests.evaluation.conftest import SHAPE, Constant, Quantized, RandomInEval, Softmaxed
from tests.evaluation.conftest import linear_model as make_linear
from tests.evaluation.run_folder import make_run, stub_figures


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    stub_figures(monkeypatch)
    return make_run(tmp_path)


def test_checks_none_runs_no_check(run_dir, monkeypatch, capsys):
    def refuse(context):
        raise AssertionError("a check ran under --checks none")

    for name in CHECKS.names():
        monkeypatch.setitem(CHECKS._items, name, refuse)
    assert main(["eval", str(run_dir), "--n-examples", "8", "--quiet", "--checks", "none"]) == 0
    assert "no sanity checks (--checks none)" in capsys.readouterr().out
    (path,) = run_dir.glob("eval-*.json")
    data = json.loads(path.read_text())
    assert data["checks"]["level"] == "none" and data["checks"]["runs"] == []
    assert "Not run (--checks none)" in path.with_suffix(".md").read_text()


def test_each_check_is_timed_and_counted_in_the_json_report_and_output(run_dir, capsys):
    assert main(["eval", str(run_dir), "--n-examples", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    data = json.loads((run_dir / "eval-quick.json").read_text())
    checks = data["checks"]
    assert checks["level"] == "fast" and checks["sample"] == 16
    assert [run["name"] for run in checks["runs"]][-1] == "black_box"
    assert {run["name"] for run in checks["runs"]} == set(CHECKS.names())
    for run in checks["runs"]:
        assert run["seconds"] >= 0 and run["cost"] >= 0
    assert checks["cost"] == sum(run["cost"] for run in checks["runs"]) > 0
    timing = data["timing"]
    assert set(timing) == {"loading", "attacks", "checks", "figures", "total"}
    assert timing["total"] >= timing["attacks"] + timing["checks"]
    assert timing["checks"] == pytest.approx(checks["seconds"], abs=2e-3)
    assert data["attack_cost"] > 0
    assert f"checks {format_duration(checks['seconds'])} (fast)" in out.splitlines()[0]
    assert (
        "checks fast on 16 points: " in out and f"total {format_duration(timing['total'])}" in out
    )
    report = (run_dir / "eval-quick.md").read_text()
    assert "| check | result | seconds | forward-equivalents |" in report
    for name in CHECKS.names():
        assert f"| {name} | " in report


class Meter:
    """Counts the model's forward calls by phase ("attacks" or "checks"), independently of
    advkit.evaluation.cost, and prices them as the bound does."""

    def __init__(self) -> None:
        self.phase = "other"
        self.costs: dict[str, int] = {}

    def hook(self, module, args) -> None:
        cost = len(args[0]) * (2 if torch.is_grad_enabled() else 1) + CALL_COST
        self.costs[self.phase] = self.costs.get(self.phase, 0) + cost

    def during(self, phase: str, function):
        def wrapped(*args, **kwargs):
            self.phase = phase
            try:
                return function(*args, **kwargs)
            finally:
                self.phase = "other"

        return wrapped


@pytest.mark.parametrize(("suite", "regime"), [("quick", "floor"), ("paper", "fraction")])
def test_the_default_checks_cost_at_most_the_stated_bound(run_dir, monkeypatch, suite, regime):
    meter = Meter()
    load = runs.load_model

    def load_and_meter(*args, **kwargs):
        model = load(*args, **kwargs)
        model.register_forward_pre_hook(meter.hook)
        return model

    monkeypatch.setattr(runs, "load_model", load_and_meter)
    monkeypatch.setattr(session, "evaluate", meter.during("attacks", session.evaluate))
    monkeypatch.setattr(session, "check_all", meter.during("checks", session.check_all))
    assert main(["eval", str(run_dir), "--suite", suite, "--n-examples", "24", "--quiet"]) == 0
    attacks, checks = meter.costs["attacks"], meter.costs["checks"]
    bound = max(FAST_FRACTION * attacks, FAST_MIN_BUDGET)
    assert (regime == "fraction") == (FAST_FRACTION * attacks > FAST_MIN_BUDGET)
    assert 0 < checks <= bound
    data = json.loads((run_dir / f"eval-{suite}.json").read_text())
    assert data["attack_cost"] == attacks and data["checks"]["cost"] == checks


def test_the_fast_per_point_cost_is_what_the_sizing_assumes(model, data):
    inputs, labels = data
    context = CheckContext(model, inputs[:20], labels[:20], eps=0.02, level="fast")
    fixed = [name for name in CHECKS.names() if not CHECKS.meta(name).get("last")]
    report = check_all(context, fixed)
    assert report.cost == 20 * FAST_COST_PER_POINT + CALL_COST * FAST_CALLS


def test_budget_and_sample_sizes():
    assert fast_budget(0) == FAST_MIN_BUDGET and fast_budget(40_000) == 10_000
    assert check_sample_size("full", 1000) == 64 and check_sample_size("full", 10) == 10
    assert check_sample_size("fast", 1000, FAST_MIN_BUDGET) == 16
    assert check_sample_size("fast", 8, FAST_MIN_BUDGET) == 8
    assert check_sample_size("fast", 1000, 10**6) == 64
    assert 16 < check_sample_size("fast", 1000, 2000) < 64
    with pytest.raises(ValueError, match="fast, full"):
        check_sample_size("thorough", 10)


def test_the_fast_black_box_check_fits_its_budget_or_says_it_was_skipped(masked_model, data):
    inputs, labels = data[0][:32], masked_model(data[0][:32]).argmax(1)
    robust = torch.ones(32, dtype=torch.bool)
    context = CheckContext(masked_model, inputs, labels, eps=0.02, level="fast", robust=robust)
    for budget in (100, 500, 2000):
        (outcome,) = check_all(replace(context, budget=budget), ["black_box"]).outcomes
        assert outcome.cost <= budget
        assert (outcome.skipped is not None) == (budget == 100)
        if outcome.skipped:
            assert "--checks full" in outcome.skipped and outcome.warning is None


def test_progress_names_each_check_black_box_last(model, data):
    seen = []
    context = CheckContext(model, data[0][:16], data[1][:16], eps=0.02, level="fast", budget=800)
    check_all(context, progress=seen.append)
    assert [event.phase for event in seen[:-1]][-1] == "black_box"
    assert {event.phase for event in seen[:-1]} == set(CHECKS.names())
    assert [event.done for event in seen] == list(range(len(CHECKS) + 1))
    assert all(event.total == len(CHECKS) for event in seen)


def fast_warnings(model, eps: float, n: int) -> list[str]:
    """Evaluate ``model`` (quick suite) on ``n`` points it classifies "correctly", then run the
    fast checks sized from that evaluation as the CLI does: the names of the checks that fired."""
    inputs = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model(inputs).argmax(dim=1)
    with count_forwards(model) as count:
        result = evaluate(model, inputs, labels, "quick", eps=eps, batch_size=64)
    budget = fast_budget(count.cost)
    size = check_sample_size("fast", n, budget)
    context = CheckContext(
        model, inputs[:size], labels[:size], eps=eps, accuracies=result.accuracies(),
        n_examples=n, level="fast", budget=budget, robust=result.worst_case[:size],
    )  # fmt: skip
    report = check_all(context)
    assert report.cost <= budget
    return [outcome.name for outcome in report.outcomes if outcome.warning]


@pytest.mark.parametrize(
    ("build", "eps", "expected"),
    [
        (make_linear, 0.02, []),
        (lambda: Quantized(make_linear()), 0.02, ["large_eps", "zero_gradient", "black_box"]),
        (lambda: Quantized(make_linear()), 0.1, ["catastrophic_overfitting"]),
        (Constant, 0.02, ["large_eps"]),
        (lambda: RandomInEval(make_linear()), 0.02, ["deterministic"]),
        (lambda: Softmaxed(make_linear()), 0.02, ["probabilities"]),
    ],
)
def test_the_fast_level_catches_what_the_full_one_does(build, eps, expected):
    """The masked-model cases of test_eval_checks.py, at the fast level's size after a
    200-point evaluation."""
    fired = fast_warnings(build(), eps, 200)
    assert set(expected) <= set(fired)
    if not expected:
        assert fired == []


def test_at_the_floor_budget_a_masked_model_still_warns(masked_model):
    """After a 40-point evaluation Square gets few queries, but the gradient checks fire."""
    assert "zero_gradient" in fast_warnings(masked_model, 0.02, 40)


def test_the_full_level_keeps_its_fixed_size(model, data):
    context = CheckContext(model, data[0][:32], data[1][:32], eps=0.02)  # level "full"
    with count_forwards(model) as count:
        report = check_all(context, ["large_eps"])
    assert report.budget is None and report.level == "full"
    assert count.grad_images == 20 * 32  # PGD-20, as before the levels


def test_report_headline_and_table_without_a_checks_record():
    """A JSON written before the checks were recorded still renders."""
    from advkit.evaluation.report import format_table, headline

    data = {
        "suite": "quick", "eps": 0.1, "norm": "linf", "n_examples": 8, "seconds": 1.25,
        "attacks": ["pgd20"], "clean": 1.0, "pgd20": 0.5, "worst_case": 0.5, "warnings": [],
    }  # fmt: skip
    assert headline(data).endswith("8 examples, 1.2 s")
    assert "total" not in format_table(data)


def test_cli_checks_bar(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with bar_factory(quiet=False)("checks fast", "check") as bar:
        assert bar.bar.unit == "check"


def test_help_states_the_bound(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"at most {FAST_FRACTION:.0%} of what the attacks cost" in help_text
    assert f"or {FAST_MIN_BUDGET} image forward passes" in help_text

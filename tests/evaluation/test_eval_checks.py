"""Each sanity check fires on a model built to trigger it and stays quiet on a normal one."""

from __future__ import annotations

import pytest

from advkit.evaluation import CHECKS, CheckContext, eps_sweep, evaluate, run_checks

EPS = 0.02


def context(model, data, eps=EPS, **kwargs) -> CheckContext:
    inputs, _ = data
    labels = kwargs.pop("labels", None)
    if labels is None:
        labels = model(inputs).argmax(dim=1)
    return CheckContext(model, inputs[:32], labels[:32], eps=eps, **kwargs)


def fired(ctx: CheckContext, *names: str) -> list[str]:
    return [name for name in names if run_checks(ctx, [name])]


def test_quiet_on_a_normal_model(model, data):
    result = evaluate(model, *data, "paper", eps=EPS, batch_size=16)
    sweep = eps_sweep(model, *data, [0, 0.01, 0.02, 0.05], batch_size=16)
    ctx = context(
        model,
        data,
        labels=data[1],
        accuracies=result.accuracies(),
        n_examples=result.n_examples,
        sweep=sweep,
    )
    assert run_checks(ctx) == []


def test_probabilities_instead_of_logits(softmax_model, data):
    warnings = run_checks(context(softmax_model, data), ["probabilities"])
    assert len(warnings) == 1 and "logits" in warnings[0]


def test_random_model_is_not_deterministic(random_model, data):
    warnings = run_checks(context(random_model, data, labels=data[1]))
    assert any("not deterministic" in w for w in warnings)


def test_masked_gradients_trigger_zero_gradient_and_black_box(masked_model, data):
    ctx = context(masked_model, data)
    assert fired(ctx, "zero_gradient", "black_box") == ["zero_gradient", "black_box"]
    assert fired(ctx, "probabilities", "deterministic") == []


def test_random_start_fgsm_beating_fgsm_at_zero(masked_model, data):
    ctx = context(masked_model, data, eps=0.1)
    warnings = run_checks(ctx, ["catastrophic_overfitting"])
    assert len(warnings) == 1 and "random start" in warnings[0]


def test_constant_model_robust_at_huge_eps(constant_model, data):
    warnings = run_checks(context(constant_model, data), ["large_eps"])
    assert len(warnings) == 1 and "uniform grey" in warnings[0]


@pytest.mark.parametrize(
    ("name", "fields", "needle"),
    [
        ("catastrophic_overfitting", {"accuracies": {"fgsm": 0.7, "pgd20": 0.2}}, "FGSM robust"),
        ("more_steps", {"accuracies": {"pgd20": 0.40, "pgd100": 0.48}}, "more attack steps"),
        ("sweep_rises", {"sweep": [(0.0, 0.9), (0.1, 0.3), (0.2, 0.5)]}, "rises with the radius"),
        (
            "black_box",
            {
                "cascade": True,
                "accuracies": {
                    "clean": 0.9,
                    "apgd_ce": 0.5,
                    "apgd_t": 0.45,
                    "square": 0.40,
                    "worst_case": 0.40,
                },
            },
            "Square",
        ),
    ],
)
def test_checks_reading_the_accuracies(model, data, name, fields, needle):
    ctx = context(model, data, n_examples=1000, **fields)
    warnings = run_checks(ctx, [name])
    assert len(warnings) == 1 and needle in warnings[0]


@pytest.mark.parametrize(
    "fields",
    [
        {"accuracies": {"fgsm": 0.5, "pgd20": 0.4, "pgd100": 0.401}},
        {"sweep": [(0.0, 0.9), (0.1, 0.5), (0.2, 0.501)]},
        {"cascade": True, "accuracies": {"apgd_t": 0.45, "square": 0.449}},
    ],
)
def test_noise_sized_differences_stay_quiet(model, data, fields):
    ctx = context(model, data, n_examples=1000, **fields)
    assert run_checks(ctx, ["catastrophic_overfitting", "more_steps", "sweep_rises"]) == []
    assert run_checks(ctx, ["black_box"]) == []


def test_eps_sweep_is_non_increasing_on_a_linear_model(model, data):
    sweep = eps_sweep(model, *data, [0, 0.01, 0.02, 0.03, 0.05, 0.1], batch_size=16)
    accuracies = [acc for _, acc in sweep]
    assert [eps for eps, _ in sweep] == [0, 0.01, 0.02, 0.03, 0.05, 0.1]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > accuracies[-1]


def test_every_check_is_registered():
    assert set(CHECKS) == {
        "black_box",
        "catastrophic_overfitting",
        "deterministic",
        "large_eps",
        "more_steps",
        "probabilities",
        "sweep_rises",
        "zero_gradient",
    }


def test_black_box_check_runs_square_for_l2_too(masked_model, data):
    ctx = context(masked_model, data, eps=1.0, norm="l2")
    assert fired(ctx, "zero_gradient", "black_box") == ["zero_gradient", "black_box"]

"""Every attack against closed-form optimal attacks on linear classifiers."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from advkit.attacks import apgd, apgd_targeted, fgsm, pgd, square
from tests.attacks.attacks_support import linear_problem, other_real_class

#: (id, norm, attack(model, inputs, labels, eps=...) -> adv_inputs)
ATTACKS = [
    ("fgsm-linf", "linf", partial(fgsm, norm="linf")),
    ("fgsm-l2", "l2", partial(fgsm, norm="l2")),
    ("pgd-linf", "linf", partial(pgd, norm="linf", steps=20)),
    ("pgd-l2", "l2", partial(pgd, norm="l2", steps=20)),
    ("pgd-cw-linf", "linf", partial(pgd, norm="linf", steps=20, loss="cw")),
    ("apgd-ce-linf", "linf", partial(apgd, norm="linf", steps=20, seed=0)),
    ("apgd-ce-l2", "l2", partial(apgd, norm="l2", steps=20, seed=0)),
    ("apgd-dlr-linf", "linf", partial(apgd, norm="linf", steps=20, loss="dlr", seed=0)),
    ("apgd-dlr-l2", "l2", partial(apgd, norm="l2", steps=20, loss="dlr", seed=0)),
    ("apgd-t-linf", "linf", partial(apgd_targeted, norm="linf", steps=20, seed=0)),
    ("apgd-t-l2", "l2", partial(apgd_targeted, norm="l2", steps=20, seed=0)),
    ("square-linf", "linf", partial(square, queries=1000, seed=0)),
    ("square-l2", "l2", partial(square, norm="l2", queries=5000, seed=0)),
]
IDS = [name for name, _, _ in ATTACKS]


@pytest.fixture(scope="module")
def binary():
    """Binary linear classifier (two real classes, two dummies for the DLR losses)."""
    return linear_problem(num_classes=4, real_classes=2, n=64, seed=0)


@pytest.fixture(scope="module")
def results(binary):
    """Each attack run once per norm at eps = the median optimal eps (half breakable)."""
    out = {}
    for name, norm, attack in ATTACKS:
        eps = binary.optimal_eps(norm).median().item()
        out[name] = (eps, norm, attack(binary.model, binary.inputs, binary.labels, eps=eps))
    return out


@pytest.mark.parametrize("name", IDS)
def test_finds_every_adversarial_that_exists_with_margin(binary, results, name) -> None:
    eps, norm, adv_inputs = results[name]
    easy = binary.optimal_eps(norm) < eps / 1.25
    assert easy.sum() >= 10
    fooled = binary.fooled(adv_inputs)
    assert fooled[easy].all(), f"{name} missed {int((~fooled[easy]).sum())} breakable samples"


@pytest.mark.parametrize("name", IDS)
def test_never_fools_below_the_optimal_eps(binary, results, name) -> None:
    eps, norm, adv_inputs = results[name]
    impossible = binary.optimal_eps(norm) > eps * (1 + 1e-4)
    assert impossible.sum() >= 10
    assert not binary.fooled(adv_inputs)[impossible].any()


@pytest.mark.parametrize("name", [n for n in IDS if not n.startswith("square")])
def test_achieved_margin_close_to_the_optimum(binary, results, name) -> None:
    """Where no adversarial exists, gradient attacks should still reach the best margin."""
    eps, norm, adv_inputs = results[name]
    impossible = binary.optimal_eps(norm) > eps * (1 + 1e-4)
    target = other_real_class(binary)
    ratio = binary.margin_gain(adv_inputs, target) / binary.best_gain(eps, norm, target)
    assert ratio[impossible].min() > 0.9
    assert ratio.max() < 1 + 1e-4


@pytest.mark.parametrize(("name", "floor"), [("square-linf", 0.85), ("square-l2", 0.75)])
def test_square_margin_close_to_the_optimum(binary, results, name, floor) -> None:
    """Random search gets most of the way to the optimal margin (less for L2: a dense optimum
    direction, built from local blocks)."""
    eps, norm, adv_inputs = results[name]
    impossible = binary.optimal_eps(norm) > eps * (1 + 1e-4)
    target = other_real_class(binary)
    ratio = binary.margin_gain(adv_inputs, target) / binary.best_gain(eps, norm, target)
    assert ratio[impossible].mean() > floor
    assert ratio.max() < 1 + 1e-4


@pytest.mark.parametrize(
    "name, attack",
    [
        ("pgd-cw", partial(pgd, steps=50, loss="cw")),
        ("apgd-dlr", partial(apgd, steps=50, loss="dlr", seed=0)),
        ("apgd-cw", partial(apgd, steps=50, loss="cw", seed=0)),
        ("apgd-t", partial(apgd_targeted, steps=50, seed=0)),
        ("square", partial(square, queries=1000, seed=0)),
    ],
)
def test_multiclass_linear(name, attack) -> None:
    """Ten competing classes: misclassification is a union of half-spaces, still closed form."""
    problem = linear_problem(num_classes=10, real_classes=10, n=48, seed=1)
    optimal = problem.optimal_eps("linf")
    eps = optimal.median().item()
    fooled = problem.fooled(attack(problem.model, problem.inputs, problem.labels, eps=eps))
    assert fooled[optimal < eps / 1.25].all()
    assert not fooled[optimal > eps * (1 + 1e-4)].any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_pgd_reaches_the_target(binary, norm) -> None:
    optimal = binary.optimal_eps(norm)
    eps = optimal.median().item()
    target = other_real_class(binary)
    adv_inputs = pgd(
        binary.model, binary.inputs, target, eps=eps, norm=norm, steps=20, targeted=True
    )
    reached = binary.logits(adv_inputs).argmax(dim=1) == target
    assert reached[optimal < eps / 1.25].all()
    assert not reached[optimal > eps * (1 + 1e-4)].any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_apgd_reaches_the_target(binary, norm) -> None:
    optimal = binary.optimal_eps(norm)
    eps = optimal.median().item()
    target = other_real_class(binary)
    adv_inputs = apgd(
        binary.model, binary.inputs, target, eps=eps, norm=norm, steps=20, targeted=True, seed=0
    )
    reached = binary.logits(adv_inputs).argmax(dim=1) == target
    assert reached[optimal < eps / 1.25].all()


def test_targeted_square_reaches_the_target(binary) -> None:
    optimal = binary.optimal_eps("linf")
    eps = optimal.median().item()
    target = other_real_class(binary)
    adv_inputs = square(binary.model, binary.inputs, target, eps=eps, queries=500, targeted=True)
    reached = binary.logits(adv_inputs).argmax(dim=1) == target
    assert reached[optimal < eps / 1.25].all()


def test_per_sample_eps(binary) -> None:
    """A per-sample radius just above each sample's optimum breaks every sample."""
    for norm in ("linf", "l2"):
        eps = binary.optimal_eps(norm) * 1.25
        adv_inputs = apgd(binary.model, binary.inputs, binary.labels, eps=eps, norm=norm, steps=20)
        assert binary.fooled(adv_inputs).all()
        assert (
            binary.inputs.sub(adv_inputs)
            .flatten(1)
            .norm(p=float("inf") if norm == "linf" else 2, dim=1)
            <= eps + 1e-6
        ).all()
    eps = binary.optimal_eps("linf") * 1.25
    adv_inputs = square(binary.model, binary.inputs, binary.labels, eps=eps, queries=300, seed=0)
    assert binary.fooled(adv_inputs).all()


@torch.no_grad()
def test_restarts_are_never_weaker_than_one_run() -> None:
    problem = linear_problem(num_classes=10, real_classes=10, n=48, seed=2)
    eps = problem.optimal_eps("l2").median().item() * 1.1
    args = (problem.model, problem.inputs, problem.labels)
    with torch.enable_grad():
        one = apgd(*args, eps=eps, norm="l2", steps=10, seed=3)
        three = apgd(*args, eps=eps, norm="l2", steps=10, seed=3, restarts=3)
    fooled_one, fooled_three = problem.fooled(one), problem.fooled(three)
    assert (fooled_one <= fooled_three).all()
    from advkit.attacks.losses import cross_entropy

    kept = ~fooled_three
    loss_one = cross_entropy(problem.logits(one), problem.labels)[kept]
    loss_three = cross_entropy(problem.logits(three), problem.labels)[kept]
    assert (loss_three >= loss_one - 1e-4).all()

    with torch.enable_grad():
        torch.manual_seed(5)
        one = pgd(*args, eps=eps, norm="l2", steps=5)
        torch.manual_seed(5)
        three = pgd(*args, eps=eps, norm="l2", steps=5, restarts=3)
    assert (problem.fooled(one) <= problem.fooled(three)).all()

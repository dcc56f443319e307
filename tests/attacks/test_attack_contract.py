"""The contract every attack keeps: budget, box, shapes, mode, parameter gradients, errors."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advkit.attacks import apgd, apgd_targeted, attack_mode, fgsm, pgd, pgd_delta, square
from advkit.attacks.losses import cross_entropy
from advkit.threat import LinfThreat
from tests.attacks.attacks_support import Quantize, linear_problem, small_net

#: (id, norm, attack(model, inputs, labels, eps=...)), few steps: the contract, not the strength.
ATTACKS = [
    ("fgsm-linf", "linf", partial(fgsm, norm="linf")),
    ("fgsm-rs-l2", "l2", partial(fgsm, norm="l2", random_start=True)),
    ("pgd-linf", "linf", partial(pgd, norm="linf", steps=3)),
    ("pgd-l2", "l2", partial(pgd, norm="l2", steps=3, restarts=2)),
    ("pgd-cw-linf", "linf", partial(pgd, norm="linf", steps=3, loss="cw")),
    ("apgd-ce-linf", "linf", partial(apgd, norm="linf", steps=4, restarts=2)),
    ("apgd-dlr-l2", "l2", partial(apgd, norm="l2", steps=4, loss="dlr")),
    ("apgd-t-linf", "linf", partial(apgd_targeted, norm="linf", steps=3, num_target_classes=2)),
    ("apgd-t-l2", "l2", partial(apgd_targeted, norm="l2", steps=3, num_target_classes=2)),
    ("square-linf", "linf", partial(square, queries=30)),
    ("square-l2", "l2", partial(square, norm="l2", queries=30)),
]
IDS = [name for name, _, _ in ATTACKS]
NET = small_net()


def _size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    return delta.flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)


@pytest.mark.parametrize(("name", "norm", "attack"), ATTACKS, ids=IDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 5),
    eps=st.sampled_from([0.0, 1e-3, 0.05, 0.3, 1.0, 3.0]),
    layout=st.sampled_from(["uniform", "binary", "zeros", "ones"]),
)
def test_budget_and_box(name, norm, attack, seed, n, eps, layout) -> None:
    generator = torch.Generator().manual_seed(seed)
    shape = (n, 3, 4, 4)
    inputs = {
        "uniform": torch.rand(shape, generator=generator),
        "binary": torch.randint(0, 2, shape, generator=generator).float(),
        "zeros": torch.zeros(shape),
        "ones": torch.ones(shape),
    }[layout]
    labels = torch.randint(0, 5, (n,), generator=generator)
    if norm == "linf":
        eps = min(eps, 1.0)  # larger L-inf radii are refused (tests/attacks/test_attack_inputs.py)
    torch.manual_seed(seed)
    adv_inputs = attack(NET, inputs, labels, eps=eps)
    assert adv_inputs.shape == inputs.shape and adv_inputs.dtype == inputs.dtype
    assert torch.isfinite(adv_inputs).all()
    assert adv_inputs.min() >= 0 and adv_inputs.max() <= 1
    assert (_size(adv_inputs - inputs, norm) <= eps * (1 + 1e-5) + 1e-6).all()


@pytest.mark.parametrize(("name", "norm", "attack"), ATTACKS, ids=IDS)
def test_mode_parameters_and_inputs_untouched(name, norm, attack) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(48, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(16, 5),
    )  # fmt: skip
    model.train()
    model[2].running_mean.uniform_()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = torch.rand(6, 3, 4, 4)
    inputs_copy = inputs.clone()
    labels = torch.randint(0, 5, (6,))
    attack(model, inputs, labels, eps=0.1)
    assert all(module.training for module in model.modules())
    assert all(p.grad is None for p in model.parameters())
    # Exact: an attack must not write to the model's state or its inputs at all.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(inputs, inputs_copy)
    model.eval()
    attack(model, inputs, labels, eps=0.1)
    assert not any(module.training for module in model.modules())


@pytest.mark.parametrize(("name", "norm", "attack"), ATTACKS, ids=IDS)
def test_bfloat16_autocast(name, norm, attack) -> None:
    inputs, labels = torch.rand(4, 3, 4, 4), torch.arange(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adv_inputs = attack(NET, inputs, labels, eps=0.1)
    assert adv_inputs.dtype == torch.float32
    assert (_size(adv_inputs - inputs, norm) <= 0.1 * (1 + 1e-5) + 1e-6).all()


def test_seed_makes_runs_reproducible_and_leaves_global_rng() -> None:
    inputs, labels = torch.rand(4, 3, 4, 4), torch.arange(4)
    for attack in (
        partial(apgd, steps=3),
        partial(apgd_targeted, steps=3),
        partial(square, queries=20),
    ):
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        first = attack(NET, inputs, labels, eps=0.1, seed=7)
        assert torch.equal(torch.rand(3), expected)
        # Exact: the same call on the same tensors in this process replays the same arithmetic.
        assert torch.equal(first, attack(NET, inputs, labels, eps=0.1, seed=7))


def test_user_errors_say_what_to_change() -> None:
    inputs, labels = torch.rand(2, 3, 4, 4), torch.arange(2)
    binary = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with pytest.raises(ValueError, match="square supports norm in"):
        square(NET, inputs, labels, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="eps must be"):
        apgd(NET, inputs, labels, eps=-0.1)
    with pytest.raises(ValueError, match="unknown norm"):
        apgd(NET, inputs, labels, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="loss='ce'"):
        apgd(binary, inputs, labels, eps=0.1, loss="dlr")
    with pytest.raises(ValueError, match="steps"):
        apgd(NET, inputs, labels, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="queries"):
        square(NET, inputs, labels, eps=0.1, queries=0)
    with pytest.raises(ValueError, match="apgd_targeted"):
        apgd(NET, inputs, labels, eps=0.1, loss="dlr", targeted=True)


def test_binary_models_work_with_targeted_apgd() -> None:
    """Fewer than 4 classes: APGD-T falls back to the targeted margin."""
    problem = linear_problem(num_classes=2, real_classes=2, n=32, seed=4)
    optimal = problem.optimal_eps("linf")
    eps = optimal.median().item()
    adv_inputs = apgd_targeted(problem.model, problem.inputs, problem.labels, eps=eps, steps=10)
    fooled = problem.fooled(adv_inputs)
    assert fooled[optimal < eps / 1.25].all()
    assert not fooled[optimal > eps * (1 + 1e-4)].any()


def test_gradient_masking_defeats_pgd_but_not_square() -> None:
    """A quantizing front end zeroes every input gradient: PGD and APGD stay at their random start,
    the gradient-free Square attack still finds the adversarial examples."""
    generator = torch.Generator().manual_seed(0)
    features = 256
    weight = torch.randn(features, generator=generator)
    candidates = torch.randint(1, 4, (4000, 1, 16, 16), generator=generator) / 4.0
    best_shift = 0.25 * weight.abs().sum()
    scores = candidates.flatten(1) @ weight
    bias = 0.5 * best_shift - scores.median()
    margins = scores + bias  # logit of class 0 minus logit of class 1
    keep = (margins > 0.4 * best_shift) & (margins < 0.6 * best_shift)
    inputs = candidates[keep][:24]
    assert len(inputs) == 24
    linear = nn.Linear(features, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([weight, -weight]) / 2)
        linear.bias.copy_(torch.stack([bias, -bias]) / 2)
    model = nn.Sequential(Quantize(), nn.Flatten(), linear)
    labels = torch.zeros(24, dtype=torch.long)
    assert (model(inputs).argmax(dim=1) == labels).all()

    def fooled(adv_inputs: torch.Tensor) -> torch.Tensor:
        return model(adv_inputs).argmax(dim=1) != labels

    eps = 0.2
    torch.manual_seed(0)
    assert not fooled(pgd(model, inputs, labels, eps=eps, steps=20)).any()
    assert not fooled(apgd(model, inputs, labels, eps=eps, steps=20, seed=0)).any()
    assert fooled(square(model, inputs, labels, eps=eps, queries=1000, seed=0)).all()


class _GenericLinf(LinfThreat):
    """The same L-inf threat, but not recognized by pgd_delta's fused L-inf path."""


@pytest.mark.parametrize("targeted", [False, True])
def test_fused_linf_pgd_matches_the_generic_loop(targeted) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(8, 3, 4, 4, generator=generator)
    inputs[:2] = inputs[:2].round()  # some pixels on the box faces
    labels = torch.randint(0, 5, (8,), generator=generator)
    eps = torch.full((8,), 0.1)
    eps[:4] = 0.03
    start = LinfThreat().random_init(inputs, eps)
    args = dict(eps=eps, steps=7, step_size=0.02, loss_fn=cross_entropy, targeted=targeted)
    with attack_mode(NET):
        fused = pgd_delta(NET, inputs, labels, start.clone(), threat=LinfThreat(), **args)
        generic = pgd_delta(NET, inputs, labels, start.clone(), threat=_GenericLinf(), **args)
    torch.testing.assert_close(fused, generic, atol=1e-6, rtol=0)


def test_pgd_per_sample_eps_with_restarts() -> None:
    problem = linear_problem(num_classes=4, real_classes=2, n=32, seed=6)
    optimal = problem.optimal_eps("linf")
    eps = torch.where(torch.arange(32) % 2 == 0, optimal * 1.25, optimal * 0.8)
    torch.manual_seed(0)
    adv_inputs = pgd(problem.model, problem.inputs, problem.labels, eps=eps, steps=10, restarts=3)
    assert torch.equal(problem.fooled(adv_inputs), torch.arange(32) % 2 == 0)
    assert ((adv_inputs - problem.inputs).flatten(1).abs().amax(dim=1) <= eps + 1e-6).all()

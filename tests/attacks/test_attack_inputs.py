"""Every public attack refuses inputs, labels and budgets that cannot be right, with the fix."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from advkit.attacks import ATTACKS, AttackStage, fgsm
from advkit.errors import BudgetError, InputError, UserError
from tests.attacks.attacks_support import small_net

#: Few steps per registered attack: the checks, not the strength. A new attack needs a row.
FAST_ARGS = {
    "fgsm": {"eps": 0.1},
    "pgd": {"eps": 0.1, "steps": 2},
    "apgd": {"eps": 0.1, "steps": 2},
    "apgd-t": {"eps": 0.1, "steps": 2, "num_target_classes": 2},
    "square": {"eps": 0.1, "queries": 3},
    "cascade": {
        "eps": 0.1,
        "stages": [AttackStage("fgsm", partial(fgsm, eps=0.1))],
    },
}
NET = small_net()  # (N, 3, 4, 4) inputs, 5 classes


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 4, 4, generator=generator), torch.arange(n) % 5


def test_every_registered_attack_has_test_arguments() -> None:
    assert set(FAST_ARGS) == set(ATTACKS.names())


@pytest.mark.parametrize("name", ATTACKS.names())
def test_accepts_unit_inputs(name) -> None:
    inputs, labels = _batch()
    out = ATTACKS.get(name)(NET, inputs, labels, **FAST_ARGS[name])
    assert out is not None


@pytest.mark.parametrize("name", ATTACKS.names())
def test_refuses_pixel_values_in_0_255(name) -> None:
    inputs, labels = _batch()
    with pytest.raises(InputError, match=r"must be in \[0, 1\].*divide them by 255"):
        ATTACKS.get(name)(NET, inputs * 255, labels, **FAST_ARGS[name])


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: x - 0.5, "normalization belongs in the model"),
        (lambda x: x.masked_fill(x > 0.5, float("nan")), "NaN"),
        (lambda x: (x * 255).to(torch.uint8), r"float\(\) / 255"),
    ],
    ids=["normalized", "nan", "uint8"],
)
def test_refuses_other_inputs_outside_the_unit_box(name, make, message) -> None:
    inputs, labels = _batch()
    with pytest.raises(InputError, match=message):
        ATTACKS.get(name)(NET, make(inputs), labels, **FAST_ARGS[name])


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([0, 1, 2, 7]), "below the model's 5 outputs, got a label 7"),
        (torch.tensor([0, 1, -1, 2]), "class indices >= 0"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), "integer class indices"),
        (torch.tensor([0, 1]), r"labels \(N,\)"),
    ],
    ids=["too-large", "negative", "float", "count"],
)
def test_refuses_labels_that_are_not_class_indices(name, labels, message) -> None:
    inputs, _ = _batch()
    with pytest.raises(InputError, match=message):
        ATTACKS.get(name)(NET, inputs, labels, **FAST_ARGS[name])


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize(
    ("eps", "message"),
    [
        (8, "L-inf radius of 8 in \\[0,1\\] pixel units.*did you mean 8/255\\?"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (-0.1, ">= 0"),
        (10**400, "too large"),
        (torch.tensor([0.1, 0.1, 2.0, 0.1]), "did you mean 2/255"),
    ],
    ids=["8", "nan", "inf", "negative", "huge-int", "per-sample"],
)
def test_refuses_budgets_no_threat_model_means(name, eps, message) -> None:
    inputs, labels = _batch()
    args = FAST_ARGS[name] | {"eps": eps}
    with pytest.raises(BudgetError, match=message):
        ATTACKS.get(name)(NET, inputs, labels, **args)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "square"])
def test_refuses_an_l2_radius_beyond_the_inputs_diameter(name) -> None:
    inputs, labels = _batch()  # 3x4x4 inputs: diameter sqrt(48) = 6.93
    attack = ATTACKS.get(name)
    attack(NET, inputs, labels, **FAST_ARGS[name] | {"eps": 6.9, "norm": "l2"})
    with pytest.raises(BudgetError, match=r"L2 radius of 7 .*diameter of the \[0,1\] box"):
        attack(NET, inputs, labels, **FAST_ARGS[name] | {"eps": 7.0, "norm": "l2"})


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_refuses_a_step_size_in_0_255_units(name) -> None:
    inputs, labels = _batch()
    with pytest.raises(BudgetError, match=r"step_size 2 is an L-inf step.*did you mean 2/255"):
        ATTACKS.get(name)(NET, inputs, labels, **FAST_ARGS[name] | {"step_size": 2})


def test_errors_are_user_errors_and_value_errors() -> None:
    """Callers that caught ValueError keep working; the CLI prints them as one line."""
    inputs, labels = _batch()
    with pytest.raises(ValueError) as caught:
        ATTACKS.get("pgd")(NET, inputs * 255, labels, eps=0.1)
    assert isinstance(caught.value, UserError)


def test_fgsm_checks_once_and_keeps_its_default_step() -> None:
    """FGSM-RS's default step 1.25 * eps may exceed 1 at eps = 1: only a step the user gives is
    checked, and FGSM does not check again when it hands over to PGD."""
    inputs, labels = _batch()
    out = fgsm(NET, inputs, labels, eps=1.0, random_start=True)
    assert out.min() >= 0 and out.max() <= 1

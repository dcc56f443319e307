"""Budgets and numbers that cannot be right are refused with the fix, from Python, YAML and CLI."""

from __future__ import annotations

import dataclasses
import math
from typing import get_type_hints

import numpy as np
import pytest
import torch

from advkit.config import ConfigError, TrainConfig, coerce_field, load_config
from advkit.data import DataSplits, TensorData
from advkit.errors import BudgetError, UserError
from advkit.threat import check_budget
from advkit.training import Trainer

HINTS = get_type_hints(TrainConfig)
INT_FIELDS = [
    name for name, hint in HINTS.items() if "int" in str(hint) and "bool" not in str(hint)
]
PAIR_FIELDS = [name for name, hint in HINTS.items() if "list[float]" in str(hint)]
FLOAT_FIELDS = [
    name for name, hint in HINTS.items() if "float" in str(hint) and name not in PAIR_FIELDS
]
NUMERIC_FIELDS = INT_FIELDS + FLOAT_FIELDS


def test_every_numeric_field_is_covered() -> None:
    assert {"eps", "step_size", "lr", "steps", "epochs", "seed", "val_size"} <= set(NUMERIC_FIELDS)


# ----------------------------------------------------------------------------- check_budget
@pytest.mark.parametrize(
    ("eps", "norm", "shape", "message"),
    [
        (8, "linf", None, r"eps 8 is an L-inf radius of 8 in \[0,1\] pixel units, larger than "
         r"the whole pixel range; did you mean 8/255\?"),
        (1.0001, "linf", None, "did you mean"),
        (300, "linf", None, r"write it in \[0,1\] units"),
        (29, "l2", (1, 28, 28), r"L2 radius of 29 .* diameter of the \[0,1\] box of 1x28x28"),
        (-0.1, "linf", None, ">= 0"),
        (float("nan"), "l2", None, "finite"),
        (math.inf, "linf", None, "finite"),
        (10**400, "l2", None, "too large"),
        (True, "linf", None, "must be a number"),
        ("8/255", "linf", None, "must be a number"),
        (torch.tensor([0.1, 1.5]), "linf", None, "1.5/255"),
        (torch.tensor([0.1, float("nan")]), "linf", None, "finite"),
    ],
)  # fmt: skip
def test_check_budget_refuses(eps, norm, shape, message) -> None:
    with pytest.raises(BudgetError, match=message):
        check_budget(eps, norm, shape)


@pytest.mark.parametrize(
    ("eps", "norm", "shape"),
    [(0, "linf", None), (1, "linf", None), (8 / 255, "linf", (3, 32, 32)), (28, "l2", (1, 28, 28)),
     (100, "l2", None), (torch.tensor([0.0, 0.5]), "linf", None), (torch.tensor([]), "l2", None)],
)  # fmt: skip
def test_check_budget_accepts(eps, norm, shape) -> None:
    check_budget(eps, norm, shape)


def test_zero_only_where_allowed() -> None:
    with pytest.raises(BudgetError, match=r"--eps must be > 0"):
        check_budget(0.0, "linf", name="--eps", allow_zero=False)


# ----------------------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"eps": 8}, "did you mean 8/255"),
        ({"eps": "8"}, "did you mean 8/255"),
        ({"step_size": 2}, r"step_size 2 is an L-inf step .*did you mean 2/255"),
        ({"step_size": 0}, "step_size must be > 0"),
        ({"eps": "1e400"}, "finite"),
        ({"eps": 10**400}, "finite"),
        ({"eps": math.nan}, "finite"),
        ({"lr": "inf"}, "finite"),
        ({"lr": "abc"}, "lr: expected a number"),
        ({"momentum": 1.5}, r"momentum must be in \[0, 1\)"),
        ({"epochs": 10**400}, "too large"),
    ],
)
def test_config_refuses(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values).validate()
    with pytest.raises(ConfigError, match=message):
        load_config(None, values)


def test_python_values_parse_like_the_cli() -> None:
    config = TrainConfig(eps="8/255", step_size="2/255", epochs="3", steps="5", nesterov="yes")
    assert config.eps == pytest.approx(8 / 255) and config.step_size == pytest.approx(2 / 255)
    assert (config.epochs, config.steps, config.nesterov) == (3, 5, True)
    assert isinstance(config.epochs, int) and isinstance(config.eps, float)
    assert dataclasses.replace(config, eps="4/255").eps == pytest.approx(4 / 255)


def test_values_assigned_later_are_checked_by_validate() -> None:
    config = TrainConfig()
    config.eps = "8"
    with pytest.raises(ConfigError, match="did you mean 8/255"):
        config.validate()


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_no_numeric_field_takes_a_bool(name) -> None:
    """YAML ``steps: true`` must not become 1: a boolean is not a number, in any numeric field."""
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**{name: True})
    with pytest.raises(ConfigError, match=name):
        coerce_field(name, False)


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "abc", [1, 2]])
def test_no_numeric_field_takes_a_non_finite_or_non_number(name, value) -> None:
    with pytest.raises(ConfigError, match=name):
        coerce_field(name, value)


@pytest.mark.parametrize("name", PAIR_FIELDS)
@pytest.mark.parametrize(
    "value", [[1.0, "nan"], ["inf", 2], [True, 1], "abc", "1", [1], [1, 2, 3], 5, True]
)
def test_pair_fields_take_exactly_two_finite_numbers(name, value) -> None:
    with pytest.raises(ConfigError, match=name):
        coerce_field(name, value)
    assert coerce_field(name, "0 8/255") == [0.0, pytest.approx(8 / 255)]
    assert coerce_field(name, (1, 2.5)) == [1.0, 2.5]


@pytest.mark.parametrize("name", INT_FIELDS)
def test_integer_fields_refuse_fractions_and_accept_whole_numbers(name) -> None:
    with pytest.raises(ConfigError, match=f"{name} expects int"):
        coerce_field(name, 2.5)
    assert coerce_field(name, 2.0) == 2 and coerce_field(name, "2") == 2
    assert coerce_field(name, "2.0") == 2


def test_yaml_values_that_are_not_numbers(tmp_path) -> None:
    for text, message in [
        ("steps: true\n", "steps expects int, got True"),
        ("epochs: 2.5\n", "epochs expects int"),
        ('lr: "abc"\n', "lr: expected a number"),
        ("eps: .inf\n", "finite"),
        ("eps: 1e400\n", "finite"),
        ("eps: 8\n", "did you mean 8/255"),
        ("batch_size: yes\n", "batch_size expects int"),
        ("model: [a, b]\n", "model expects str"),
    ]:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_augment_none_means_no_augmentation_not_the_default() -> None:
    """``--augment none`` asks for no augmentation; it must not turn into None (the dataset's
    default, crop-flip on CIFAR)."""
    assert load_config(None, {"augment": "none"}).augment == "none"
    assert load_config(None, {"subset": "none"}).subset is None


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(UserError):
        TrainConfig(epochs=True)


# ----------------------------------------------------------------------------- once data is known
def _tiny_splits() -> DataSplits:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8)
    data = TensorData.from_numpy(images, rng.integers(0, 2, 32))
    return DataSplits(
        train=data, val=data.take(torch.arange(8)), test=data, num_classes=2, mean=(0.5,),
        std=(0.25,), augment="none", dataset="tiny", class_names=None,
    )  # fmt: skip


def test_l2_radius_is_checked_against_the_data_once_loaded() -> None:
    """At config time the input shape is unknown; the trainer checks the L2 radius against the
    diameter sqrt(1*28*28) = 28 of the data it was given."""
    config = TrainConfig(norm="l2", eps=29, epochs=1, quiet=True, val_examples=8).validate()
    with pytest.raises(ConfigError, match=r"L2 radius of 29 .*1x28x28"):
        Trainer(config, data=_tiny_splits())
    Trainer(dataclasses.replace(config, eps=27), data=_tiny_splits())
    with pytest.raises(ConfigError, match=r"step_size 30 is an L2 step"):
        Trainer(dataclasses.replace(config, eps=1, step_size=30), data=_tiny_splits())

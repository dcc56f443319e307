from __future__ import annotations

import pytest

from advkit.config import ConfigError, TrainConfig, load_config
from advkit.config_values import parse_eps


@pytest.mark.parametrize(
    ("text", "value"), [("0.1", 0.1), ("8/255", 8 / 255), (" 2 / 255", 2 / 255), (0.3, 0.3)]
)
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["eight", "1/0", "", True])
def test_parse_eps_rejects(text):
    with pytest.raises(ConfigError, match="8/255"):
        parse_eps(text)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eps: 8/255\nsteps: 3\nmethod: natural\nema-decay: 0.99\n")
    config = load_config(path, {"steps": "5"})
    assert config.eps == pytest.approx(8 / 255)
    assert config.steps == 5
    assert config.method == "natural"
    assert config.ema_decay == 0.99


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"eps": "-0.1"}, "eps must be"),
        ({"steps": "0"}, "steps must be >= 1"),
        ({"epochs": "1.5"}, "epochs expects int"),
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"norm": "l1"}, "norm must be one of linf, l2"),
        ({"select": "worst"}, "select must be one of"),
        ({"label_smoothing": "1"}, "label_smoothing"),
        ({"co_drop": "1.5"}, "co_drop must be in"),
        ({"init": "uniform"}, "init must be one of"),
        ({"nesterov": "maybe"}, "nesterov expects bool"),
        ({"method": "gradalign", "compile": "true"}, "without --compile"),
    ],
)
def test_invalid_values_fail_with_a_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_validate():
    assert TrainConfig().validate().eps == 0.1


def test_config_by_shipped_recipe_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a name, not a path relative to the caller
    assert load_config("fashion-mnist-demo").method == "free"
    with pytest.raises(ConfigError, match=r"shipped recipes: .*fashion-mnist-demo"):
        load_config("no-such-recipe")


def test_every_shipped_recipe_loads_and_builds_its_method():
    from advkit.methods import METHODS
    from advkit.recipes import RECIPES_DIR

    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert {"fashion-mnist-demo", "mnist-fast", "mnist-pgd40"} <= set(names)
    for name in names:
        config = load_config(name)
        METHODS.get(config.method).from_config(config)

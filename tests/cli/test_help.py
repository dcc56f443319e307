"""What the CLI tells a user before anything runs: help with every default, choices from one
source, and plain-text listings."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from advkit.cli import build_parser, main
from advkit.commands import train_options as train_command
from advkit.config import CHOICES, ConfigError, TrainConfig

#: reStructuredText / Markdown markup that must not reach a terminal.
MARKUP = re.compile(r"``|`|:[a-z]+:|\*\*")


def subparser(name: str) -> argparse.ArgumentParser:
    actions = build_parser()._subparsers._group_actions[0]
    return actions.choices[name]


def train_actions() -> dict[str, argparse.Action]:
    return {a.dest: a for a in subparser("train")._actions}


def test_every_fixed_choice_field_is_an_argparse_choice_from_the_same_table():
    actions = train_actions()
    for field, allowed in CHOICES.items():
        assert actions[field].choices == [v for v in allowed if v is not None], field
    for field, registry in train_command.REGISTRIES.items():
        assert actions[field].choices == registry.names(), field
    # The table is the one validate() uses: each value it offers is accepted, others are not.
    companions = {"lalr_base": {"optimizer": "lalr"}, "amp_dtype": {"amp": True}}  # need another
    for field, allowed in CHOICES.items():
        for value in allowed:
            TrainConfig(**{field: value, **companions.get(field, {})}).validate()
        with pytest.raises(ConfigError, match=field):
            TrainConfig(**{field: "nope"}).validate()


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--init", "uniform"], "init"), (["--co-guard", "on"], "co-guard"),
     (["--optimizer", "adamw"], "optimizer"), (["--select", "worst"], "select")],
)  # fmt: skip
def test_a_wrong_choice_is_refused_by_the_parser_listing_the_choices(argv, field, capsys):
    with pytest.raises(SystemExit):
        main(["train", *argv])
    err = capsys.readouterr().err
    assert f"--{field}: invalid choice" in err and "choose from" in err


def test_every_train_option_shows_the_config_default():
    actions = train_actions()
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for field in train_command.OPTIONS:
        action = actions[field]
        assert action.default is None, f"{field}: argparse must not shadow YAML values"
        help_text = action.help % {"default": None}  # argparse's own formatting step
        default = defaults[field]
        if isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "" if default is None else default  # None: the help says what it means
        assert re.search(rf"\(default: {re.escape(str(shown))}", help_text), (field, help_text)
        assert "(default: None)" not in help_text


def test_the_full_help_renders_and_lists_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert out.count("(default:") >= len(train_command.OPTIONS)
    assert "(default: 0.0005)" in out and "40% of updates" in out


@pytest.mark.parametrize("command", ["eval", "demo", "analyze"])
def test_eval_and_demo_options_say_their_default(command):
    for action in subparser(command)._actions:
        if action.option_strings and action.dest != "help" and action.nargs != 0:
            assert "default" in (action.help or ""), (command, action.dest)
        if action.dest == "suite":
            assert action.choices, f"{command} --suite must be an argparse choice"


@pytest.mark.parametrize("command", ["methods", "models", "datasets"])
def test_listings_are_plain_text(command, capsys):
    assert main([command]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert not MARKUP.search(out), MARKUP.search(out)


def test_every_method_has_a_one_line_description(capsys):
    from advkit.methods import METHODS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in METHODS.names():
        description = METHODS.meta(name).get("description", "")
        assert description and "\n" not in description, name
        assert re.search(rf"^{name}\s+\S", out, re.MULTILINE), name

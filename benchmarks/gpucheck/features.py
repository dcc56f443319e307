"""What this advkit offers, read from its own CLI parser and registries at run time, so that a
method, suite, option or command added later is checked without editing this script."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cache

#: A shipped recipe of the fast-AT CIFAR-10 benchmark, used when ``advkit recipes`` lists one.
FAST_AT_RECIPES = ("cifar10-fast", "cifar10-fast-at", "cifar-fast")


@cache
def _commands() -> dict[str, argparse.ArgumentParser]:
    from advkit.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("advkit's parser has no subcommands")


def has_command(name: str) -> bool:
    """Whether ``advkit --help`` lists the subcommand ``name``."""
    return name in _commands()


def options(command: str) -> frozenset[str]:
    """The option strings ``advkit COMMAND --help`` lists (empty for a missing command)."""
    parser = _commands().get(command)
    return frozenset(parser._option_string_actions) if parser is not None else frozenset()


@dataclass(frozen=True)
class Features:
    """The parts of advkit the checks are built from."""

    methods: list[str]
    suites: list[str]
    amp_dtype: bool  # advkit train --amp-dtype {bf16,fp16}
    certify: bool  # an advkit certify command
    certify_options: frozenset[str] = field(default_factory=frozenset)
    fast_at_recipe: str | None = None


def read_features() -> Features:
    """The methods and suites from their registries, the optional options and commands from the
    parser: one source of truth, the same one ``advkit --help`` prints."""
    from advkit.evaluation.suites import SUITES
    from advkit.methods import METHODS
    from advkit.recipes import recipe_names

    recipes = set(recipe_names())
    return Features(
        methods=METHODS.names(),
        suites=SUITES.names(),
        amp_dtype="--amp-dtype" in options("train"),
        certify=has_command("certify"),
        certify_options=options("certify"),
        fast_at_recipe=next((name for name in FAST_AT_RECIPES if name in recipes), None),
    )

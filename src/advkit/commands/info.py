"""``advkit models``, ``datasets``, ``methods`` and ``recipes``: what the registries hold and
which training recipes ship with advkit.

Descriptions come from registry metadata and are printed as plain text (no reStructuredText or
Markdown markup), wrapped to the terminal.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from collections.abc import Iterable

from advkit.data import DATASETS, ENV_VAR, DataNotFoundError, resolve_data_dir
from advkit.humanize import plain_text
from advkit.methods import METHODS
from advkit.models import list_models
from advkit.recipes import recipe_names, recipe_summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list model architectures")
    models.set_defaults(handler=run_models)
    datasets = subparsers.add_parser("datasets", help="list datasets and where they are read from")
    datasets.set_defaults(handler=run_datasets)
    methods = subparsers.add_parser("methods", help="list training methods")
    methods.set_defaults(handler=run_methods)
    recipes = subparsers.add_parser(
        "recipes", help="list shipped training recipes (advkit train --config NAME)"
    )
    recipes.set_defaults(handler=run_recipes)


def table(rows: Iterable[tuple[str, str]], width: int | None = None) -> str:
    """``name  text`` rows, the text as plain text wrapped beside the name column."""
    rows = [(name, plain_text(text)) for name, text in rows]
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    column = max(len(name) for name, _ in rows) + 2
    wrap = textwrap.TextWrapper(
        width=max(width, column + 30), subsequent_indent=" " * column, break_on_hyphens=False
    )
    return "\n".join(wrap.fill(f"{name:<{column}}{text}") for name, text in rows)


def run_models(args: argparse.Namespace) -> int:
    del args
    print(table(list_models()))
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    del args
    rows = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        rows.append((name, _facts(spec)))
        rows.append(("", f"read from: {_where(name, spec.default_dir)}"))
        rows.append(("", spec.how_to_get))
    print(table(rows))
    return 0


def run_methods(args: argparse.Namespace) -> int:
    del args
    print(table((name, METHODS.meta(name).get("description", "")) for name in METHODS.names()))
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    del args
    print(table((name, recipe_summary(name)) for name in recipe_names()))
    return 0


def _facts(spec) -> str:
    classes = f"{spec.num_classes} classes" if spec.num_classes else "classes from the files"
    shape = "x".join(map(str, spec.image_shape)) + " images" if spec.image_shape else "any size"
    return f"{classes}, {shape}, training augmentation {spec.augment}"


def _where(name: str, default_dir: str | None) -> str:
    places = ["--data-dir", f"${ENV_VAR}/{name} or ${ENV_VAR}", default_dir]
    try:
        found = f"found in {resolve_data_dir(name, None)}"
    except DataNotFoundError:
        found = "not found without --data-dir"
    return f"{', else '.join(p for p in places if p)} ({found})"

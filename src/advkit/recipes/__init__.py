"""YAML training recipes shipped with the package (``advkit train --config <path>``)."""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).parent


def recipe_names() -> list[str]:
    """The shipped recipes' names (file stems), sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """Path of the recipe ``name`` (file stem); ValueError listing the recipes otherwise."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(recipe_names())}")
    return path

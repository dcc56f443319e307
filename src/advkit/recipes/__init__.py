"""YAML training recipes shipped with the package (``advkit train --config <path>``)."""

from __future__ import annotations

import re
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


def recipe_summary(name: str) -> str:
    """The first sentence of the recipe's leading comment (what ``advkit recipes`` shows)."""
    lines = []
    for line in recipe_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    end = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.(\s|$)", text)  # not "et al.", "e.g."
    return text if end is None else text[: end.start() + 1]

"""Clean and worst-case robust accuracy per class, from the per-sample outcomes an evaluation
already has (no attack is run again).

A model can look robust on average while one class is nearly always broken; the per-class table
shows it. Each class's interval is a Wilson score interval over that class's examples only, so
it is wide for a class with few of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from advkit.evaluation.intervals import DEFAULT_CONFIDENCE, wilson_interval

#: The columns given per class: accuracy without attack, and robust to every attack of the suite.
COLUMNS = ("clean", "worst_case")


def per_class_rows(
    labels: Tensor,
    outcomes: Mapping[str, Tensor],
    class_names: Sequence[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[dict[str, Any]]:
    """One row per class present in ``labels`` (N,): ``class`` (index), ``name`` (when
    ``class_names`` has it), ``n_examples``, and per column of ``outcomes`` ({column: (N,) bool})
    its accuracy and ``intervals`` {column: [low, high]} at ``confidence``."""
    labels = labels.detach().cpu().long()
    rows = []
    for index in torch.unique(labels).tolist():
        members = labels == index
        n = int(members.sum())
        row: dict[str, Any] = {"class": int(index)}
        if class_names is not None and 0 <= index < len(class_names):
            row["name"] = str(class_names[index])
        row["n_examples"] = n
        intervals = {}
        for column, values in outcomes.items():
            hits = int(values.detach().cpu().bool()[members].sum())
            row[column] = round(hits / n, 6)
            low, high = wilson_interval(hits, n, confidence)
            intervals[column] = [math.floor(low * 1e4) / 1e4, math.ceil(high * 1e4) / 1e4]
        row["intervals"] = intervals
        rows.append(row)
    return rows


def per_class_markdown(data: Mapping[str, Any]) -> list[str]:
    """The report's per-class section (none when the JSON has no ``per_class``)."""
    rows = data.get("per_class")
    if not rows:
        return []
    level = f"{data.get('confidence', DEFAULT_CONFIDENCE):.0%} interval"
    lines = [
        "",
        "## Per class",
        "",
        f"| class | examples | clean | {level} | worst case | {level} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = f"{row['class']} {row['name']}" if row.get("name") else str(row["class"])
        cells = [name, str(row["n_examples"])]
        for column in COLUMNS:
            low, high = row["intervals"][column]
            cells += [f"{row[column]:.2%}", f"[{low:.1%}, {high:.1%}]"]
        lines.append("| " + " | ".join(cells) + " |")
    weakest = min(rows, key=lambda row: row["worst_case"])
    label = weakest.get("name") or f"class {weakest['class']}"
    lines += [
        "",
        f"Worst case per class: each class's examples robust to every attack of the suite (no "
        f"attack is rerun). Least robust: {label} at {weakest['worst_case']:.1%}. Each interval "
        "is over that class's examples only.",
    ]
    return lines

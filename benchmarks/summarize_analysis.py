"""Print the Markdown table of BENCHMARKS.md's analysis section from runs' analysis.json files.

Usage: .venv/bin/python benchmarks/summarize_analysis.py RUN [RUN ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (
    ("loss rise at eps, adv. / random", "loss_landscape"),
    ("curvature, adv.", "loss_landscape"),
    ("grad. alignment", "grad_alignment"),
    ("input grad. / image alignment", "input_gradients"),
    ("large-eps L-inf target conf.", "large_eps"),
    ("most critical layer", "layer_criticality"),
    ("best epoch, final robust gap", "overfitting"),
    ("weakest class (robust)", "per_class"),
)


def _cells(data: dict[str, Any]) -> list[str]:
    land = data.get("loss_landscape", {})
    rise, curve = land.get("rise_at_eps", {}), land.get("curvature", {})
    layers = data.get("layer_criticality", {}).get("layers") or []
    top = max(layers, key=lambda layer: layer["criticality"], default=None)
    over = data.get("overfitting", {})
    classes = data.get("per_class", {}).get("per_class") or []
    weakest = min(classes, key=lambda c: c["robust"], default=None)
    large = data.get("large_eps", {}).get("linf", {})
    return [
        f"{rise.get('adversarial', float('nan')):.3f} / {rise.get('random', float('nan')):.4f}",
        f"{curve.get('adversarial', float('nan')):.2f}",
        f"{data.get('grad_alignment', {}).get('mean', float('nan')):.3f}",
        f"{data.get('input_gradients', {}).get('alignment', float('nan')):.3f}",
        f"{large.get('target_confidence', float('nan')):.2f}",
        f"{top['name']} ({top['criticality']:.1f})" if top else "-",
        f"{over.get('best_epoch', '-')}, {over.get('final_gap', float('nan')):.3f}",
        f"{weakest.get('name') or weakest['class']} ({weakest['robust']:.0%})" if weakest else "-",
    ]


def main(runs: list[str]) -> None:
    print("| run | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in runs:
        data = json.loads((Path(run) / "analysis.json").read_text())
        print(f"| {Path(run).name} | " + " | ".join(_cells(data)) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The table of benchmarks/defaults_table.sh: per run, the validation accuracies of every epoch
and of the selected one, and whether training learned (chance = 1 / classes).

Usage: python benchmarks/summarize_defaults.py OUT_DIR [OUT_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(out: Path) -> list[str]:
    lines = []
    for meta_file in sorted(out.glob("*/model.json")):
        run = meta_file.parent
        meta = json.loads(meta_file.read_text())
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        per_epoch = " ".join(
            f"{100 * r.get('val_clean', 0):.0f}/{100 * r.get('val_pgd', r.get('val_clean', 0)):.0f}"
            for r in history
        )
        warnings = sorted({w["kind"] for r in history for w in r.get("health", [])})
        lines.append(
            f"| {meta['dataset']} | {meta['method']['name']} | {meta['threat']['eps']:.4g} "
            f"| {100 * (meta['val_clean'] or 0):.1f} | {100 * (meta['val_pgd'] or 0):.1f} "
            f"| {per_epoch} | {', '.join(warnings) or '-'} |"
        )
    return lines


def main() -> None:
    for out in map(Path, sys.argv[1:]):
        print(f"\n{out}\n")
        print(
            "| dataset | method | eps | val clean % | val PGD-10 % | per epoch clean/PGD | "
            "warnings |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows(out)))


if __name__ == "__main__":
    main()

"""Summarize DAT run folders (benchmarks/dat_table.sh) as the DAT paper's tables: accuracies,
communication C and total time T per epoch, bytes per iteration.

    .venv/bin/python benchmarks/summarize_dat.py runs/dat [--runs at fast dat-pgd ...]

Reads model.json (workers, optimizer, compression, per-run sums of epoch_seconds, comm_seconds
and bytes), metrics.jsonl (the median epoch) and eval-paper.json / eval-autoattack.json. C and T
are means per epoch; val PGD is the selected epoch's validation accuracy (what learning rates
were chosen by).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from summarize_runs import load_run


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _median_epoch(path: Path) -> float:
    """The median epoch's seconds: robust to epochs slowed by other jobs on the machine."""
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["epoch_seconds"] for r in records)


def _gradients(path: Path, comm: dict) -> str:
    """The compression, "+ EF" with error feedback (from the run's config.yaml)."""
    import yaml

    config = yaml.safe_load((path / "config.yaml").read_text())
    return comm.get("compression", "none") + (" + EF" if config.get("error_feedback") else "")


def row(run: dict) -> list[str]:
    meta = run["meta"]
    comm = meta.get("communication", {})
    epochs = max(meta["epochs"], 1)
    paper, autoattack = run.get("paper", {}), run.get("autoattack", {})
    workers = meta.get("workers", 1)
    wire = comm.get("comm_wire_bytes_per_iter", 0)
    return [
        run["name"],
        f"{meta['method']['name']}",
        f"{workers} x {meta['batch_size'] // workers}",
        meta["optimizer"]["name"] + f" {meta['optimizer']['lr']:.3g}",
        _gradients(run["path"], comm) if workers > 1 else "-",
        _pct(paper.get("clean")),
        _pct(paper.get("pgd20")),
        _pct(autoattack.get("worst_case")),
        _pct(meta.get("val_pgd")),
        f"{comm['comm_seconds'] / epochs:.2f}" if workers > 1 else "NA",
        f"{comm.get('epoch_seconds', meta['train_seconds']) / epochs:.1f}",
        f"{_median_epoch(run['path']):.1f}",
        f"{wire / 1e3:.1f}" if workers > 1 else "NA",
    ]


HEAD = ["run", "method", "workers x batch", "optimizer", "gradients", "clean %", "PGD-20 %",
        "AA-style %", "val PGD %", "C s/epoch", "T s/epoch", "T median",
        "wire kB/iter"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", nargs="+", help="run names in table order (default: all)")
    args = parser.parse_args()
    names = args.runs or sorted(p.name for p in args.folder.iterdir())
    runs = [load_run(args.folder / n) | {"path": args.folder / n}
            for n in names if (args.folder / n / "model.json").is_file()]  # fmt: skip
    print("| " + " | ".join(HEAD) + " |")
    print("|---" * len(HEAD) + "|")
    for run in runs:
        print("| " + " | ".join(row(run)) + " |")


if __name__ == "__main__":
    main()

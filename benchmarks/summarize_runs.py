"""Summarize evaluated run folders as a Markdown table in the shape of the Free-AT paper's.

    python benchmarks/summarize_runs.py runs/fmnist [--free-plot free-m.png]

Reads each run's model.json (method, train time) and eval-paper.json / eval-autoattack.json /
eval-restarts.json (written by `advkit eval`: each the largest evaluation of that suite at the
run's own threat model; smaller or otherwise different ones lie beside it as
eval-<suite>-n<N>...json and are not read), and prints one row per run. With --free-plot, also
plots clean and robust accuracy of the Free-m runs against m.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("paper", "clean", "clean"),
    ("paper", "pgd20", "PGD-20"),
    ("paper", "pgd100", "PGD-100"),
    ("paper", "cw100", "CW-100"),
    ("paper", "pgd20x10", "PGD-20 x10"),
    ("autoattack", "worst_case", "AA-style"),
    ("restarts", "pgd50x10", "PGD-50 x10"),
]

SUITE_NAMES = ("paper", "autoattack", "restarts")


def load_run(run: Path) -> dict:
    row = {"name": run.name, "meta": json.loads((run / "model.json").read_text())}
    for suite in {suite for suite, _, _ in COLUMNS}:
        path = run / f"eval-{suite}.json"
        if path.is_file():
            row[suite] = json.loads(path.read_text())
    return row


def describe(meta: dict) -> str:
    method = meta["method"]
    extra = {"pgd": "steps", "trades": "steps", "free": "replays"}.get(method["name"])
    label = method["name"] + (f" ({extra}={method[extra]})" if extra else "")
    return f"{label}, {meta['epochs']} ep"


def table(rows: list[dict]) -> str:
    present = [c for c in COLUMNS if c[1] == "clean" or any(c[0] in r for r in rows)]
    head = ["run", "method", *[label for _, _, label in present], "train min", "n eval"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["name"], describe(row["meta"])]
        for suite, key, _ in present:
            value = row.get(suite, {}).get(key)
            if key == "clean":  # in every suite: take it from the one on the most images
                evaluated = [row[s] for s in SUITE_NAMES if s in row]
                value = (
                    max(evaluated, key=lambda e: e["n_examples"])["clean"] if evaluated else None
                )
            cells.append("" if value is None else f"{100 * value:.1f}%")
        sizes = {s: row[s]["n_examples"] for s in SUITE_NAMES if s in row}
        n = ", ".join(f"{s} {k}" for s, k in sizes.items())
        if len(set(sizes.values())) == 1:  # all suites on the same images: one number
            n = str(next(iter(sizes.values())))
        cells += [f"{row['meta']['train_seconds'] / 60:.1f}", n]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_free(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    free = sorted(
        (r for r in rows if r["meta"]["method"]["name"] == "free" and "paper" in r),
        key=lambda r: r["meta"]["method"]["replays"],
    )
    if not free:
        raise SystemExit("no evaluated free runs to plot")
    # Compare at one budget of weight updates (epochs x m): the most common one among the runs.
    budgets = [r["meta"]["epochs"] * r["meta"]["method"]["replays"] for r in free]
    budget = max(set(budgets), key=budgets.count)
    free = [r for r, b in zip(free, budgets, strict=True) if b == budget]
    ms = [r["meta"]["method"]["replays"] for r in free]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in [("clean", "clean"), ("pgd20", "PGD-20"), ("worst_case", "worst case")]:
        ax.plot(ms, [100 * r["paper"][key] for r in free], marker="o", label=label)
    ax.set_xlabel("replays m")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(ms)
    ax.set_title(f"Free-m, equal weight updates ({budget} x batches)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of run folders")
    parser.add_argument("--free-plot", type=Path, help="write the Free m-sensitivity plot here")
    args = parser.parse_args()
    runs = sorted(p for p in args.folder.iterdir() if (p / "model.json").is_file())
    rows = [load_run(run) for run in runs]
    print(table(rows))
    if args.free_plot:
        plot_free(rows, args.free_plot)
        print(f"wrote {args.free_plot}")


if __name__ == "__main__":
    main()

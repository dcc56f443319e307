"""``advkit compare``: several runs' evaluations as one table (Markdown, CSV or LaTeX).

advkit compare runs/pgd runs/trades runs/free                 # Markdown on stdout
advkit compare runs/* --suite paper --sort worst_case --out table.tex

Reads the evaluation JSONs ``advkit eval`` wrote; never runs an attack.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from advkit.comparison import compare
from advkit.comparison.render import FORMATS, format_for, render
from advkit.threat import THREATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="one table of several runs' evaluations, with intervals",
        description="Put the evaluations that `advkit eval` wrote for several runs into one "
        "table: a row per run (its method, training eps and model), a column per accuracy "
        "(clean, each attack, worst case), each with its Wilson interval, the best of each "
        "column in bold. Runs not evaluated alike (dataset, test examples, suite, threat, "
        "attack settings, confidence) are refused unless --allow-mixed. Never runs an attack.",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="run folder, folder written by `advkit eval --out`, or evaluation JSON",
    )  # fmt: skip
    parser.add_argument(
        "--suite",
        help="use each run's evaluation by this suite (default: the run's only one)",
    )
    parser.add_argument(
        "--eps",
        help="use the evaluations at this radius, [0,1] pixel units, e.g. 0.1 or 8/255 "
        "(default: the run's training eps, else its only one)",
    )
    parser.add_argument(
        "--norm", choices=THREATS.names(),
        help="use the evaluations in this norm (default: the run's training norm)",
    )  # fmt: skip
    parser.add_argument(
        "--n-examples", type=int, metavar="N",
        help="use the evaluations on N test images (count; default: each run's largest)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=list(FORMATS), dest="fmt",
        help="markdown, csv or latex (default: markdown, or what --out's suffix names: .md, "
        ".csv, .tex)",
    )  # fmt: skip
    parser.add_argument(
        "--out", metavar="FILE",
        help="write the table to FILE (atomically; an existing file is kept unless --force); "
        "default: print it",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="let --out replace an existing file")
    parser.add_argument(
        "--columns", nargs="+", metavar="COLUMN",
        help="the columns to show (comma- or space-separated; descriptive ones first): run, "
        "method, train_eps, model, dataset, suite, eps, examples, confidence, clean, an "
        "attack's name, worst_case (default: run, method, train_eps, model, every accuracy)",
    )  # fmt: skip
    parser.add_argument(
        "--sort", metavar="COLUMN",
        help="order the rows by this column, highest accuracy first (default: as given)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-mixed", action="store_true",
        help="show runs evaluated differently side by side, the differences as columns",
    )  # fmt: skip
    parser.add_argument(
        "--skip-missing", action="store_true",
        help="list a run without a fitting evaluation as missing instead of stopping",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    columns = [c for item in args.columns for c in item.split(",") if c] if args.columns else None
    fmt = format_for(Path(args.out), args.fmt) if args.out else args.fmt or "markdown"
    table = compare(
        args.runs, suite=args.suite, eps=args.eps, norm=args.norm, n_examples=args.n_examples,
        allow_mixed=args.allow_mixed, skip_missing=args.skip_missing, sort=args.sort,
        columns=columns,
    )  # fmt: skip
    if args.out is None:
        print(render(table, fmt), end="")
        return 0
    print(table.to_markdown(), end="")
    path = table.write(Path(args.out), fmt, force=args.force)
    print(f"wrote {path}")
    return 0

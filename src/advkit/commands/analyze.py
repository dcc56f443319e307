"""``advkit analyze``: what (adversarial) training did to a model, as figures and numbers.

advkit analyze runs/pgd                                  # every analysis, into runs/pgd
advkit analyze runs/pgd --only loss_landscape --set loss_landscape.grid=41
advkit analyze runs/natural runs/pgd runs/free --out runs/compare   # side by side
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from advkit import runs
from advkit.analysis import ANALYSES, runner
from advkit.analysis.report import RunWriter, Written, labels_for, write_comparison
from advkit.analysis.runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXAMPLES,
    LoadedRun,
    Outcome,
    headline,
    load_run,
    parse_sets,
    run_analyses,
    run_folder,
    select,
)
from advkit.config_values import ConfigError
from advkit.devices import resolve_device
from advkit.humanize import format_eps
from advkit.run_checkpoints import outputs_folder
from advkit.run_checkpoints import title as title_of
from advkit.runlock import hold_outputs
from advkit.threat import THREATS

#: What every file an analysis writes is named after (analysis.json, analysis-<tag>.md, ...).
ANALYSIS_STEM = "analysis"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    names = "; ".join(f"{name}: {ANALYSES.meta(name)['description']}" for name in ANALYSES.names())
    parser = subparsers.add_parser(
        "analyze",
        help="figures and numbers of what training did to a model (loss landscape, ...)",
        description="Run analyses on trained runs and write analysis.json (one key per "
        "analysis, plus settings), analysis.md and PNG figures analysis-<name>-<figure>.png "
        "into each run folder. Results made with other settings than the run's defaults (eps, "
        "--examples, --seed, --set, ...) go to analysis-<tag>.json naming what differs; a "
        "re-run of some analyses keeps the others' results. With several runs, also draws "
        f"them side by side into --out DIR. Analyses: {names}. Their options (--set "
        f"NAME.KEY=VALUE) and defaults: {_options_text()}.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder(s), a run's checkpoint (RUN/checkpoints/best.safetensors, last.pt, "
        "init.safetensors: outputs in RUN/checkpoint-<name>/), or model .safetensors files",
    )
    parser.add_argument(
        "--only", nargs="+", choices=ANALYSES.names(), metavar="NAME",
        help=f"run only these analyses (default: all; choose from {', '.join(ANALYSES.names())})",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME.KEY=VALUE", dest="sets",
        help="an analysis's option, e.g. loss_landscape.grid=41 (repeatable; default: the "
        "analysis's own defaults, listed in analysis.json under settings.analyses)",
    )  # fmt: skip
    parser.add_argument(
        "--examples", type=int, metavar="N",
        help=f"test points analysed, a fixed sample drawn by --seed (count, default "
        f"{DEFAULT_EXAMPLES})",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the test sample and of every random draw (integer, default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--eps",
        help="radius in [0,1] pixel units, e.g. 0.1 or 8/255 (default: the run's training eps)",
    )
    parser.add_argument(
        "--norm", choices=THREATS.names(), help="threat model norm (default: the run's)"
    )
    parser.add_argument(
        "--out", metavar="DIR",
        help="with several runs: the folder of the side-by-side comparison (required); with one "
        "run: write its outputs there instead of the run folder (default: the run folder)",
    )  # fmt: skip
    parser.add_argument(
        "--dataset",
        help="dataset of the test points (default: the one the run was trained on); its images "
        "and classes must match the model's",
    )
    parser.add_argument(
        "--data-dir",
        help="folder (or .npz file) holding the dataset's files (default: the run's, then "
        "$ADVKIT_DATA)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="B",
        help=f"images per forward pass (count, default {DEFAULT_BATCH_SIZE})",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def _options_text() -> str:
    parts = []
    for name in ANALYSES.names():
        options = ANALYSES.meta(name).get("options") or {}
        listed = ", ".join(f"{key}={value}" for key, value in options.items())
        parts.append(f"{name}: {listed or 'none'}")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Check everything first (runs, --set, --out), then analyse each run holding its folder."""
    folders = [run_folder(path) for path in args.runs]
    names = select(args.only)
    sets = parse_sets(args.sets, names)
    if len(args.runs) > 1 and not args.out:
        raise ConfigError(
            f"{len(args.runs)} runs are drawn side by side into a folder: add --out DIR"
        )
    device = resolve_device(args.device)
    examples = runner.DEFAULT_EXAMPLES if args.examples is None else args.examples
    labels = [
        label if checkpoint is None else f"{label}/{checkpoint.tag}"
        for label, checkpoint in zip(
            labels_for(folders), map(runs.model_checkpoint, args.runs), strict=True
        )
    ]
    loaded: list[LoadedRun] = []
    outcomes: list[list[Outcome]] = []
    started = time.perf_counter()
    for path, label in zip(args.runs, labels, strict=True):
        target = Path(args.out) if args.out and len(args.runs) == 1 else outputs_folder(path)
        if runs.model_checkpoint(path) is not None:
            print(f"analyzing {title_of(path)}")
        # The run is only read: the lock is on what this writes (another --out runs beside it).
        with hold_outputs(target, ANALYSIS_STEM, "advkit analyze"):
            run_started = time.perf_counter()
            loaded_run = load_run(
                path, examples=examples, seed=args.seed, device=device, eps=args.eps,
                norm=args.norm, dataset=args.dataset, data_dir=args.data_dir,
                batch_size=args.batch_size, label=label,
            )  # fmt: skip
            ctx = loaded_run.context
            print(f"{label}: {len(ctx.inputs)} test points, {ctx.norm} eps {format_eps(ctx.eps)} "
                  f"(loaded in {time.perf_counter() - run_started:.1f} s)")  # fmt: skip
            writer = RunWriter(target, loaded_run, sets)
            results = run_analyses(ctx, names, sets, on_done=functools.partial(_report, writer),
                                   quiet=args.quiet)  # fmt: skip
            written = writer.finish()
        _print_written(written)
        loaded.append(loaded_run)
        outcomes.append(results)
    if len(loaded) > 1:
        out = Path(args.out)
        with hold_outputs(out, ANALYSIS_STEM, "advkit analyze"):
            _print_written(write_comparison(out, loaded, outcomes, sets))
    print(f"analyzed {len(loaded)} run(s) in {time.perf_counter() - started:.1f} s")
    return 0


def _report(writer: RunWriter, outcome: Outcome) -> None:
    """Draw the outcome's figures (its time includes them; written after the results), then
    print its line."""
    writer.add(outcome)
    if outcome.result is not None:
        outcome.result.figures.clear()  # drawn: their memory is not needed any more
    if outcome.result is None:
        line = f"skipped: {outcome.skipped}"
    else:
        line = headline(outcome.name, outcome.result.summary) or "done"
    print(f"  {outcome.name}: {line} ({outcome.seconds:.1f} s)")
    sys.stdout.flush()


def _print_written(written: Written) -> None:
    for note in written.notes:
        print(f"note: {note}")
    for path in written.paths:
        print(f"wrote {path}")

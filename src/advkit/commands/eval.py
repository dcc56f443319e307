"""``advkit eval``: attack a trained model, run the sanity checks, write JSON, Markdown and PNGs."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from advkit import runs
from advkit.config import parse_eps
from advkit.data import load_dataset
from advkit.evaluation import (
    SUITES,
    CheckContext,
    Progress,
    attack_examples,
    build_suite,
    eps_sweep,
    evaluate,
    format_table,
    markdown_report,
    report_dict,
    run_checks,
    write_json,
)
from advkit.evaluation.plots import plot_examples, plot_sweep
from advkit.evaluation.report import write_markdown
from advkit.threat import THREATS, check_budget
from advkit.training.trainer import resolve_device

#: Test images the sanity checks run on (the first ones evaluated).
CHECK_EXAMPLES = 64
#: Test images shown in the example grid.
GRID_EXAMPLES = 8


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    suites = "; ".join(f"{name}: {SUITES.meta(name)['description']}" for name in SUITES.names())
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained model's robustness",
        description="Attack a trained model on the first N test images, run sanity checks for "
        "gradient masking and write eval-<suite>.json, report-<suite>.md and PNGs beside the run "
        "(with -<norm>-<eps> after <suite> when --eps/--norm differ from the run's own). "
        "An interrupted evaluation resumes where it stopped.",
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        help="run folder, or a model .safetensors file with its .json metadata beside it",
    )
    parser.add_argument(
        "--suite",
        choices=SUITES.names(),
        default="quick",
        help=f"attacks to run (default quick). {suites}",
    )
    parser.add_argument(
        "--eps",
        help="perturbation radius in [0,1] pixel units, e.g. 0.1 or "
        "8/255 (default: the run's training eps)",
    )
    parser.add_argument(
        "--norm", choices=THREATS.names(), help="threat model norm (default: the run's)"
    )
    parser.add_argument(
        "--n-examples",
        type=int,
        default=1000,
        metavar="N",
        help="evaluate the first N test images (count, default 1000)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        metavar="B",
        help="images per attack batch (count, default 256)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="where to write the results JSON (file path, default RUN_DIR/eval-<suite>.json)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder (or .npz file) holding the dataset's files "
        "(default: the run's, then $ADVKIT_DATA)",
    )
    parser.add_argument(
        "--sweep",
        metavar="EPS_LIST",
        help="also plot PGD-20 robust accuracy "
        "at these radii (comma-separated, pixel units, e.g. 0,0.05,0.1)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the attacks (integer, default 0)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="ignore saved progress of an interrupted evaluation",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    meta = runs.load_metadata(args.run)
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    eps, norm = _threat(args, meta)
    if args.n_examples < 1 or args.batch_size < 1:
        raise ValueError("--n-examples and --batch-size must be at least 1 (counts of images)")
    sweep_eps = parse_eps_list(args.sweep, norm) if args.sweep else None
    device = resolve_device(args.device)
    model = runs.load_model(args.run, device)
    splits = load_dataset(meta["dataset"], args.data_dir or meta.get("data_dir"), val_size=0)
    test = splits.test.take(torch.arange(min(args.n_examples, len(splits.test))))
    suite = build_suite(args.suite, eps=eps, norm=norm, seed=args.seed)
    tag = _output_tag(suite.name, eps, norm, meta)

    state_path = run_dir / f"eval-{tag}.state.pt"
    if args.no_resume:
        state_path.unlink(missing_ok=True)
    with _Bar(f"eval {suite.name}", args.quiet) as bar:
        result = evaluate(
            model, test, None, suite, eps=eps, norm=norm, batch_size=args.batch_size,
            seed=args.seed, state_path=state_path, progress=bar,
        )  # fmt: skip
    sweep = None
    if sweep_eps:
        with _Bar("eps sweep", args.quiet) as bar:
            sweep = eps_sweep(model, test, None, sweep_eps, norm=norm, batch_size=args.batch_size,
                              seed=args.seed, progress=bar)  # fmt: skip

    sample = test.take(torch.arange(min(CHECK_EXAMPLES, len(test))))
    warnings = run_checks(
        CheckContext(
            model, sample.images, sample.labels, eps=eps, norm=norm, seed=args.seed,
            accuracies=result.accuracies(), n_examples=result.n_examples, cascade=result.cascade,
            sweep=sweep or (),
        )
    )  # fmt: skip
    data = report_dict(result, warnings, sweep)
    written = [write_json(args.json or run_dir / f"eval-{tag}.json", data)]
    class_names = splits.class_names or meta.get("class_names")
    images = _write_figures(run_dir, tag, suite, model, test, sweep, norm, class_names, written)
    report = markdown_report(
        data, title=run_dir.resolve().name, metadata=meta, images=images,
        descriptions={entry.name: entry.description for entry in suite.attacks},
    )  # fmt: skip
    written.append(write_markdown(run_dir / f"report-{tag}.md", report))
    print(format_table(data))
    for path in written:
        print(f"wrote {path}")
    return 0


def parse_eps_list(text: str, norm: str | None = None) -> list[float]:
    """``"0,0.05,8/255"`` -> radii in pixel units (checked against ``norm``'s ball if given)."""
    values = [parse_eps(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 0 for value in values):
        raise ValueError(
            f"--sweep needs comma-separated radii >= 0 such as 0,0.05,0.1, got {text!r}"
        )
    for value in values:
        if norm is not None:
            check_budget(value, norm, name="--sweep radius")
    return values


def _threat(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[float, str]:
    threat = meta.get("threat") or {}
    norm = args.norm or threat.get("norm") or "linf"
    if args.eps is not None:
        eps = parse_eps(args.eps)
    elif threat.get("eps"):
        eps = float(threat["eps"])
    else:
        raise ValueError(
            "this run was trained without a perturbation budget (eps 0); choose the radius to "
            "evaluate with --eps, e.g. --eps 8/255"
        )
    check_budget(eps, norm, name="--eps" if args.eps is not None else "eps", allow_zero=False)
    return eps, norm


def _output_tag(suite_name: str, eps: float, norm: str, meta: dict[str, Any]) -> str:
    """File-name tag of an evaluation: the suite's name at the run's own threat model, else the
    suite, norm and eps (so that evaluating at another radius never overwrites the main result)."""
    threat = meta.get("threat") or {}
    own_norm = threat.get("norm") or "linf"
    own_eps = float(threat.get("eps") or 0.0)
    if norm == own_norm and math.isclose(eps, own_eps, rel_tol=1e-9, abs_tol=1e-12):
        return suite_name
    return f"{suite_name}-{norm}-{eps:.4g}"


def _write_figures(
    run_dir: Path,
    tag: str,
    suite: Any,
    model: torch.nn.Module,
    test: Any,
    sweep: list[tuple[float, float]] | None,
    norm: str,
    class_names: list[str] | None,
    written: list[Path],
) -> dict[str, str]:
    """The example grid and (with a sweep) the sweep plot; returns {caption: relative path}."""
    images = {}
    first = test.take(torch.arange(min(4 * GRID_EXAMPLES, len(test))))
    examples = attack_examples(model, first.images, first.labels, suite, count=GRID_EXAMPLES)
    grid = plot_examples(
        run_dir / f"eval-{tag}-examples.png", examples.clean, examples.adversarial,
        examples.labels, examples.clean_predictions, examples.adversarial_predictions,
        class_names=class_names, attack=examples.attack,
    )  # fmt: skip
    written.append(grid)
    images[f"Examples ({examples.attack})"] = grid.name
    if sweep:
        plot = plot_sweep(run_dir / "eval-sweep.png", sweep, norm=norm, title=run_dir.name)
        written.append(plot)
        images["Robust accuracy against eps"] = plot.name
    return images


class _Bar:
    """A tqdm bar fed by ``evaluate``'s progress callback; silent off a terminal or if quiet."""

    def __init__(self, desc: str, quiet: bool) -> None:
        disable = quiet or not sys.stderr.isatty()
        self.bar = (
            None if disable else tqdm(desc=desc, unit="chunk", leave=False, dynamic_ncols=True)
        )

    def __call__(self, progress: Progress) -> None:
        if self.bar is None:
            return
        if progress.done < self.bar.n:
            self.bar.reset()
        if progress.total is not None and self.bar.total != progress.total:
            self.bar.total = progress.total
        self.bar.set_postfix_str(progress.phase, refresh=False)
        self.bar.update(progress.done - self.bar.n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

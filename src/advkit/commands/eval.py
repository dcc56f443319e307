"""``advkit eval``: attack a trained model, run the sanity checks, write JSON, Markdown and PNGs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from advkit import runs
from advkit.commands import eval_external
from advkit.commands.eval_external import add_external_options, origin_fingerprint
from advkit.commands.workers import add_worker_options
from advkit.config_values import parse_eps
from advkit.devices import resolve_device
from advkit.distributed import BACKENDS, World, close_world, init_world, worker_device
from advkit.evaluation import SUITES, Suite, build_suite, format_table
from advkit.evaluation.checks import (
    CHECK_LEVELS,
    DEFAULT_CHECK_LEVEL,
    FAST_FRACTION,
    FAST_MIN_BUDGET,
)
from advkit.evaluation.eval_bar import bar_factory
from advkit.evaluation.intervals import DEFAULT_CONFIDENCE
from advkit.evaluation.outputs import Identity, Placement, main_tag, state_path
from advkit.evaluation.provenance import provenance
from advkit.evaluation.session import run_evaluation
from advkit.run_checkpoints import outputs_folder
from advkit.run_checkpoints import title as title_of
from advkit.runlock import hold_outputs
from advkit.threat import THREATS, check_budget


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    suites = "; ".join(f"{name}: {SUITES.meta(name)['description']}" for name in SUITES.names())
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained model's robustness",
        description="Attack a trained model on the first N test images, run sanity checks for "
        "gradient masking and write eval-<suite>.json, eval-<suite>.md and PNGs beside the run "
        "(with -<norm>-<eps> after <suite> when --eps/--norm differ from the run's own). "
        "eval-<suite>.json holds the largest evaluation; a smaller or otherwise different one "
        "is written as eval-<suite>-n<N>[-seed<S>...].json, and one that a larger evaluation "
        "displaces is moved there: no evaluation replaces another silently. "
        "An interrupted evaluation resumes where it stopped. A model advkit did not train is "
        "evaluated the same way with --model REF --weights FILE --dataset NAME --eps EPS "
        "instead of RUN, its outputs in --out DIR (default <weights folder>/<weights "
        "stem>-eval/).",
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        help="run folder; one of its checkpoints (RUN/checkpoints/best.safetensors, last.pt, "
        "init.safetensors: rebuilt with the run's model.json, outputs in RUN/checkpoint-<name>/); "
        "or a model .safetensors file with its .json metadata beside it (or leave it out and "
        "give --model REF --weights FILE --dataset NAME, below)",
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
        "8/255 (default: the run's training eps; required with --model)",
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
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--json",
        metavar="PATH",
        help="write the results JSON to this file, and the report, figures and resumable state "
        "beside it with the same stem (PATH.md, PATH-examples.png, ...); default: "
        "RUN_DIR/eval-<suite>.json",
    )
    where.add_argument(
        "--out",
        metavar="DIR",
        help="write all outputs (JSON, report, figures, state) into this folder, named as in "
        "the run folder (default RUN_DIR; with --model, <weights folder>/<weights stem>-eval)",
    )
    parser.add_argument(
        "--checks",
        choices=CHECK_LEVELS,
        default=DEFAULT_CHECK_LEVEL,
        help=f"sanity checks for gradient masking (default {DEFAULT_CHECK_LEVEL}). fast: every "
        f"check, sized to cost at most {FAST_FRACTION * 100:.0f}%% of what the attacks cost "
        f"(counted in images, backward passes and model calls), or {FAST_MIN_BUDGET} image "
        "forward passes "
        "(about PGD-20 on 16 images) if that is more; full: each at its full size (64 points, "
        "PGD-20 with CE and CW loss, Square with 300 queries), which can cost more than a small "
        "evaluation; none: skip them",
    )
    parser.add_argument(
        "--dataset",
        help="dataset to evaluate on (default: the one the run was trained on; required with "
        "--model); its images and classes must match the model's",
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
        "at these radii (comma-separated, pixel units, e.g. 0,0.05,0.1; default: none)",
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
    parser.add_argument(
        "--per-sample", action="store_true",
        help="also record each example's outcome (1 correct, 0 not) per column in the JSON",
    )  # fmt: skip
    parser.add_argument(
        "--confidence", type=float, default=DEFAULT_CONFIDENCE, metavar="C",
        help=f"level of the accuracies' Wilson score intervals (default {DEFAULT_CONFIDENCE})",
    )  # fmt: skip
    parser.add_argument(
        "--dist-backend", choices=BACKENDS, default="auto",
        help="torch.distributed backend with several workers (default auto: gloo on CPU, nccl "
        "on CUDA)",
    )  # fmt: skip
    add_external_options(parser)
    add_worker_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, holding only the outputs it writes (:func:`_outputs`): the model is read, so
    evaluations writing other files (another --out, suite or radius) run side by side, and one
    writing the same files is refused, naming the holder."""
    folder, stem = _outputs(args)
    with hold_outputs(folder, stem, "advkit eval"):
        return _evaluate(args)


def _outputs(args: argparse.Namespace) -> tuple[Path, str]:
    """(folder, stem) of the files this evaluation writes or moves: ``--json PATH``'s, else
    ``eval-<suite>[-<norm>-<eps>]*`` in ``--out`` or the model's outputs folder."""
    if args.json:
        path = Path(args.json)
        return path.parent, path.with_suffix("").name
    if eval_external.is_external(args):
        eps, norm = runs.threat_of({}, args.eps, args.norm, purpose="evaluate")
        return eval_external.output_folder(args), f"eval-{main_tag(args.suite, eps, norm, {})}"
    meta = runs.load_metadata(args.run)  # its errors before anything is written
    eps, norm = runs.threat_of(meta, args.eps, args.norm, purpose="evaluate")
    folder = Path(args.out) if args.out else outputs_folder(args.run)
    return folder, f"eval-{main_tag(args.suite, eps, norm, meta.get('threat') or {})}"


def _evaluate(args: argparse.Namespace) -> int:
    """One worker's part: with several (``--nproc``, torchrun), the attacks' chunks are shared
    out; rank 0 then runs the sweep and the checks and writes what one process writes."""
    world = init_world(resolve_device(args.device), args.dist_backend)
    try:
        return _evaluate_in(args, world)
    finally:
        close_world(world)


def _evaluate_in(args: argparse.Namespace, world: World) -> int:
    started = time.perf_counter()
    if args.run is None:
        return _evaluate_external(args, world, started)
    meta = runs.load_metadata(args.run)
    run_dir = outputs_folder(args.run)  # a checkpoint's: RUN/checkpoint-<name>
    if "checkpoint" in meta and world.is_writer:
        print(f"evaluating {title_of(args.run)}")
    eps, norm = runs.threat_of(meta, args.eps, args.norm, purpose="evaluate")
    if args.n_examples < 1 or args.batch_size < 1:
        raise ValueError("--n-examples and --batch-size must be at least 1 (counts of images)")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), e.g. 0.95; got {args.confidence}")
    sweep_eps = parse_eps_list(args.sweep, norm) if args.sweep else None
    device = worker_device(resolve_device(args.device), world)
    model = runs.load_model(args.run, device)
    splits = runs.load_test_data(meta, dataset=args.dataset, data_dir=args.data_dir)
    test = splits.test.take(torch.arange(min(args.n_examples, len(splits.test))))
    suite = build_suite(args.suite, eps=eps, norm=norm, seed=args.seed)
    class_names = splits.class_names or meta.get("class_names")
    weights = runs.model_paths(args.run)[0]
    measured = provenance(architecture=meta.get("architecture"), indices=range(len(test)),
                          weights_path=weights)  # fmt: skip
    _evaluate_and_write(args, meta, run_dir, model, test, suite, eps, norm, sweep_eps, class_names,
                        started, world, model_id=measured["weights_sha256"][:16],
                        title=title_of(args.run),
                        extra={**measured, **_checkpoint_of(meta)})  # fmt: skip
    return 0


def _checkpoint_of(meta: dict[str, Any]) -> dict[str, Any]:
    """What the results record of the checkpoint evaluated (nothing for the run's model)."""
    return {"checkpoint": meta["checkpoint"]} if "checkpoint" in meta else {}


def _evaluate_external(args: argparse.Namespace, world: World, started: float) -> int:
    """``--model REF --weights FILE --dataset NAME``: outputs in ``--out`` (or beside the
    weights, ``eval_external.output_folder``), the report naming REF and the weights."""
    eps, norm = runs.threat_of({}, args.eps, args.norm, purpose="evaluate")
    if args.n_examples < 1 or args.batch_size < 1:
        raise ValueError("--n-examples and --batch-size must be at least 1 (counts of images)")
    sweep_eps = parse_eps_list(args.sweep, norm) if args.sweep else None
    device = worker_device(resolve_device(args.device), world)
    model, splits, meta, origin = eval_external.load(args, device)
    test = splits.test.take(torch.arange(min(args.n_examples, len(splits.test))))
    suite = build_suite(args.suite, eps=eps, norm=norm, seed=args.seed)
    measured = provenance(architecture=args.model, indices=range(len(test)),
                          weights_path=args.weights)  # fmt: skip
    _evaluate_and_write(args, meta, eval_external.output_folder(args), model, test, suite, eps,
                        norm, sweep_eps, splits.class_names, started, world,
                        model_id=origin_fingerprint(origin), title=Path(args.weights).name,
                        extra={"model_origin": origin, **measured})  # fmt: skip
    return 0


def _evaluate_and_write(
    args: argparse.Namespace,
    meta: dict[str, Any],
    folder: Path,
    model: torch.nn.Module,
    test: Any,
    suite: Suite,
    eps: float,
    norm: str,
    sweep_eps: list[float] | None,
    class_names: list[str] | None,
    started: float,
    world: World,
    *,
    model_id: str,
    title: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Attacks, sweep, checks (:func:`run_evaluation`), then the outputs where ``args`` says
    (``--json``, ``--out``, else ``folder``; see ``outputs``). ``model_id`` tells models apart
    (the weights' fingerprint)."""
    run_threat = meta.get("threat") or {}
    identity = Identity(
        suite=suite.name, norm=norm, eps=eps, n_examples=len(test), seed=args.seed,
        batch_size=args.batch_size, sweep=tuple(sweep_eps or ()), checks=args.checks,
        model=model_id,
    )  # fmt: skip
    folder = Path(args.out) if args.out else folder
    if args.json:
        state = Path(args.json).with_suffix(".state.pt")
    else:
        state = state_path(folder, identity, run_threat)
    if world.size > 1:  # each worker resumes its own chunks
        state = state.with_name(f"{state.name.removesuffix('.state.pt')}.rank{world.rank}of"
                                f"{world.size}.state.pt")  # fmt: skip
    if args.no_resume:
        state.unlink(missing_ok=True)
    bar = bar_factory(args.quiet or not world.is_writer)
    evaluation = run_evaluation(
        model, test, suite, eps=eps, norm=norm, batch_size=args.batch_size, seed=args.seed,
        checks=args.checks, sweep_eps=sweep_eps, state_path=state, world=world, bar=bar,
        extra={"model": identity.model, **(extra or {})},
        timing={"loading": time.perf_counter() - started}, started=started,
        title=title, metadata=meta, class_names=class_names, run_threat=run_threat,
        confidence=args.confidence, per_sample=args.per_sample,
    )  # fmt: skip
    if evaluation is None:  # not the writer
        return
    print(format_table(evaluation.finish()), flush=True)  # the results, before any file
    written = evaluation.write(None if args.json else folder, json_path=args.json or None)
    _print_placement(written.placement, written.paths)


def _print_placement(placement: Placement, written: list[Path]) -> None:
    for note in placement.notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")


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

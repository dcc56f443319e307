"""``advkit train``: options map one-to-one onto ``advkit.config.TrainConfig`` fields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from advkit import runs
from advkit.commands.train_options import OPTIONS, choices, help_text
from advkit.commands.workers import add_worker_options
from advkit.config import TrainConfig, load_config, read_config_file
from advkit.config_resume import RESUMABLE_FIELDS
from advkit.data import DataError, can_stream
from advkit.data.loading_path import cannot_stream
from advkit.distributed.world import World, current_rank, restarted
from advkit.evaluation.provenance import model_arguments, model_text
from advkit.humanize import format_duration, format_eps
from advkit.methods import METHODS
from advkit.models.reference import is_user_model
from advkit.models.user_factory import check_factory
from advkit.recipes import recipe_names
from advkit.runlock import hold_run
from advkit.training import TrainingInterrupted, train


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model", description="Train a classifier, writing a run folder. "
        "Values come from the defaults, then --config YAML, then these options.",
    )  # fmt: skip
    recipes = ", ".join(recipe_names())
    parser.add_argument("--config", help="YAML file of config keys (same names as the options), "
                        f"or the name of a shipped recipe: {recipes}")  # fmt: skip
    parser.add_argument("--out", help="run folder to write (default runs/<method>-<dataset>)")
    resumable = ", ".join("--" + f.replace("_", "-") for f in sorted(RESUMABLE_FIELDS - {"out"}))
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its "
                        f"last checkpoint with its config.yaml; options (and --config) may change "
                        f"only {resumable}; others must equal the run's")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    add_worker_options(parser)
    for field, (_, extra) in OPTIONS.items():
        flag = extra.get("flag", "--" + field.replace("_", "-"))
        if "action" in extra:
            parser.add_argument(flag, dest=field, action=extra["action"], default=None,
                                metavar=extra["metavar"], help=help_text(field))  # fmt: skip
        elif extra.get("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text(field))  # fmt: skip
        else:
            shape = {key: extra[key] for key in ("nargs", "metavar") if key in extra}
            parser.add_argument(flag, default=None, choices=choices(field), help=help_text(field),
                                **shape)  # fmt: skip
    parser.set_defaults(handler=run, precheck=check_before_launch)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        field: getattr(args, field)
        for field in [*OPTIONS, "quiet"]
        if getattr(args, field) is not None
    }


def check_before_launch(args: argparse.Namespace, workers: int) -> Path:
    """What would fail on every worker, said once before any starts; returns the run folder."""
    if args.resume:
        config = load_config(Path(args.resume) / runs.CONFIG_FILE, complete=True)
    else:
        config = load_config(args.config, _overrides(args))
    World(0, workers).check_divides(config.batch_size)
    if config.data_loading == "stream" and not can_stream(config.dataset):
        raise DataError(cannot_stream(config.dataset))
    METHODS.get(config.method).from_config(config)  # options the method refuses
    if not args.resume and is_user_model(config.model):  # its file, factory and arguments
        check_factory(config.model, config.model_args or {})
    return Path(args.resume or _run_folder(args, config))


def run(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    if args.resume:
        return _resume(args, overrides)
    config = load_config(args.config, overrides)
    run_dir = _run_folder(args, config)
    config.out = str(run_dir)
    with hold_run(run_dir, "advkit train", hint=" or choose another --out"):
        # A restarted worker finds its own run's checkpoint: the library resumes it.
        if (run_dir / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT).exists() and not restarted():
            raise ValueError(
                f"{run_dir} already holds a run: continue it with "
                f"`advkit train --resume {run_dir}` or choose another --out"
            )
        return _train(config, run_dir, resume=False)


def _run_folder(args: argparse.Namespace, config: TrainConfig) -> Path:
    """Where a new run goes: --out, else the config's ``out``, else runs/<method>-<dataset>."""
    return Path(args.out or config.out or f"runs/{config.method}-{config.dataset}")


def _resume(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Continue the run in ``--resume``: its config.yaml, changed by --config and the options
    only where ``RESUMABLE_FIELDS`` allow (the library refuses the rest, naming them)."""
    run_dir = Path(args.resume)
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise runs.RunError(f"{run_dir} is not a run folder (no {runs.CONFIG_FILE})")
    changes = read_config_file(args.config) if args.config else {}
    changes.update(overrides)
    out = args.out or changes.pop("out", None)
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise ValueError(
            f"--out {out} is not the resumed run's folder {run_dir}: a run continues in its own "
            "folder; drop --out, or start a new run without --resume"
        )
    with hold_run(run_dir, "advkit train"):
        saved = load_config(run_dir / runs.CONFIG_FILE, complete=True)
        if saved.out is None or Path(saved.out).resolve() != run_dir.resolve():
            changes["out"] = str(run_dir)  # the folder was moved (or never recorded)
        config = load_config(run_dir / runs.CONFIG_FILE, changes, complete=True)
        return _train(config, run_dir, resume=True)


def _train(config: TrainConfig, run_dir: Path, *, resume: bool) -> int:
    """Train (every worker calls this); rank 0 alone reports."""
    try:
        result = train(config, run_dir, resume=resume)
    except TrainingInterrupted as stopped:
        if current_rank() == 0:
            print(f"advkit train: {stopped}", file=sys.stderr)
        return 130
    if current_rank() == 0:
        print(summarize(result.metadata, run_dir))
    return 0


def summarize(meta: dict[str, Any], run_dir: Path) -> str:
    """A few lines on what was trained and where it is."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    architecture = meta["architecture"]
    model = model_text(architecture, model_arguments(architecture, meta.get("model_kwargs")))

    return (
        f"trained {model} with {meta['method']['name']} on {meta['dataset']} "
        f"({meta['threat']['norm']} eps={format_eps(meta['threat']['eps'])}) in "
        f"{format_duration(meta['train_seconds'])}\n"
        f"selected epoch {meta['selected_epoch']} ({meta['selected']}): validation clean "
        f"{pct(meta['val_clean'])}, PGD {pct(meta['val_pgd'])}\n"
        f"{health_lines(meta.get('health', []))}"
        f"run folder: {run_dir}  (evaluate: advkit eval {run_dir} --suite paper)"
    )


def health_lines(health: list[dict[str, Any]]) -> str:
    """The run's health findings still true at its end, one warning line each."""
    lines = []
    for item in health:
        if not item.get("still", True):
            continue
        epochs = [e for e in item["epochs"] if e]
        when = f" (epoch{'s' if len(epochs) > 1 else ''} {_span(epochs)})" if epochs else ""
        lines.append(f"WARNING{when}: {item['message']}\n")
    return "".join(lines)


def _span(epochs: list[int]) -> str:
    return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"


__all__ = ["OPTIONS", "TrainConfig", "add_parser", "run"]

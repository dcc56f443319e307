"""``advkit train``: options map one-to-one onto ``advkit.config.TrainConfig`` fields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from advkit import runs
from advkit.commands.workers import add_worker_options
from advkit.config import CHOICES, TrainConfig, load_config, read_config_file
from advkit.config_resume import RESUMABLE_FIELDS
from advkit.data import DATASETS, DataError, can_stream
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
from advkit.training.schedules import SCHEDULES

#: field -> (help text with unit, extra). Every TrainConfig field but out/quiet. In extra, "bool"
#: makes a --flag/--no-flag pair and "default" says in words what an unset (None) field means;
#: the help shows TrainConfig's default, the choices come from config.CHOICES or a registry.
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "dataset": ("dataset name (see advkit datasets)", {}),
    "data_dir": (
        "folder (or .npz file) holding the dataset's standard files",
        {"default": "$ADVKIT_DATA, then the dataset's system folder"},
    ),
    "val_size": ("training images held out for validation and model selection (count)", {}),
    "subset": (
        "use only the first N training images, for quick runs (count)",
        {"default": "all"},
    ),
    "augment": (
        "training augmentation",
        {"default": "the dataset's own: crop-flip for CIFAR, none for the others"},
    ),
    "data_loading": (
        "how training data is read: memory (decoded once), stream (decoded per batch by "
        "--data-workers processes: image folders, Datasets) or auto (stream when the decoded "
        "training split exceeds half the available memory, $ADVKIT_MEMORY_BUDGET to override; "
        "array formats always load into memory)",
        {},
    ),
    "data_workers": (
        "data-decoding worker processes of the streamed or image-folder path (count; 0 decodes "
        "in the training process)",
        {"default": "the CPUs per training process less one, 1 to 8"},
    ),
    "model": (
        "architecture: a registered name (see advkit models), or your own as "
        "path/to/file.py:FACTORY or package.module:FACTORY, FACTORY a function or class "
        "returning an nn.Module that maps [0,1] images to logits (given num_classes and "
        "in_channels if it takes them, and the --model-arg values); the run folder keeps a copy "
        "of a file",
        {},
    ),
    "model_args": (
        "a keyword argument of the model, NAME=VALUE, repeatable (e.g. --model wrn --model-arg "
        "depth=16 --model-arg widen_factor=4; advkit models lists them)",
        {
            "default": "the model's own",
            "flag": "--model-arg",
            "action": "append",
            "metavar": "NAME=VALUE",
        },
    ),
    "channels_last": (
        "use the channels_last memory format (13-27% faster for a BatchNorm CNN on a CPU, "
        "little for cnn-small; BENCHMARKS.md)",
        {"bool": True},
    ),
    "normalize": (
        "standardize inputs by the training set's per-channel mean and std inside the model "
        "(--no-normalize feeds raw [0,1] pixels, as Wong et al.'s MNIST net)",
        {"bool": True},
    ),
    "method": ("training method (see advkit methods)", {}),
    "norm": ("threat model", {}),
    "eps": ("perturbation radius in [0,1] pixel units, e.g. 0.1 or 8/255", {}),
    "eps_warmup_epochs": (
        "ramp eps linearly from 0 over this many epochs (passes) at the start, so that the model "
        "learns before the attack is at full strength; 0 turns it off",
        {"default": "auto: a quarter of the passes, at most 5"},
    ),
    "steps": (
        "attack steps per batch for pgd and trades (count)",
        {"default": "the method's own: 7 for pgd, 10 for trades"},
    ),
    "step_size": (
        "attack step size in pixel units",
        {
            "default": "the method's own: 2.5*eps/steps for pgd and trades, 1.25*eps for fast, "
            "eps for free and gradalign"
        },
    ),
    "attack_train_mode": ("run the training attack with BatchNorm in train mode", {"bool": True}),
    "replays": ("free: times each minibatch is replayed, m (count)", {}),
    "paper_epochs": (
        "free: run epochs/replays passes over the data, so the number of weight "
        "updates equals natural training for --epochs (the paper's convention); "
        "otherwise --epochs counts passes over the data",
        {"bool": True},
    ),
    "init": (
        "fast: perturbation start: zero, random (uniform in the ball, clipped to [0,1]), ball "
        "(uniform in the ball, unclipped: Wong et al.'s MNIST code) or previous (the last "
        "batch's perturbation)",
        {},
    ),
    "grad_align_lambda": ("gradalign: weight of the gradient-alignment regularizer", {}),
    "beta": ("trades: weight of the KL(clean || adversarial) term", {}),
    "label_smoothing": ("label smoothing of the training loss, in [0, 1)", {}),
    "clean_weight": (
        "pgd, fast: add this weight times the clean loss to the adversarial loss (DAT's "
        "lambda; 1 in DAT's code, 0 is Madry's)",
        {},
    ),
    "epochs": ("passes over the training data (count)", {}),
    "batch_size": ("images per minibatch (count)", {}),
    "optimizer": (
        "optimizer: sgd (with --momentum, --nesterov), adam, or lalr (DAT's layer-wise "
        "adaptive learning rate: each layer moves by lr times its clipped weight norm)",
        {},
    ),
    "lalr_base": (
        "lalr: base direction, adam (Adam moments without bias correction: LAMB-like) or sgd "
        "(momentum: LARS-like)",
        {"default": "adam"},
    ),
    "lalr_clip": (
        "lalr: bounds C_L C_U of the weight norm in the layer-wise ratio",
        {"default": "0 10, DAT's", "nargs": 2, "metavar": ("C_L", "C_U")},
    ),
    "lalr_exclude_1d": (
        "lalr: biases and norm layers take the plain base step, without the layer-wise ratio "
        "(timm's convention; DAT adapts every layer)",
        {"bool": True},
    ),
    "lr": ("peak learning rate (at --base-batch-size, see --lr-scaling)", {}),
    "lr_scaling": (
        "scale --lr to the batch size: linear (lr * B / base), sqrt (lr * sqrt(B / base)) or none",
        {},
    ),
    "base_batch_size": ("the batch size --lr is given for, under --lr-scaling (count)", {}),
    "momentum": ("SGD momentum", {}),
    "nesterov": ("Nesterov momentum", {"bool": True}),
    "weight_decay": ("L2 weight decay (not applied to biases and norm layers)", {}),
    "schedule": ("learning-rate schedule", {}),
    "warmup_epochs": ("linear learning-rate warm-up length in epochs", {}),
    "grad_clip": ("clip the gradient norm to this value", {"default": "off"}),
    "ema_decay": (
        "keep an EMA of the weights with this decay (e.g. 0.999) and use it for "
        "validation and the final model",
        {"default": "off"},
    ),
    "val_examples": ("validation images evaluated each epoch (count)", {}),
    "val_steps": ("PGD steps of the per-epoch validation attack (count)", {}),
    "select": ("final model: best (by validation PGD accuracy) or last epoch", {}),
    "co_guard": ("catastrophic-overfitting guard: off, warn, rollback or stop", {}),
    "co_drop": (
        "guard: collapse when PGD accuracy falls by more than this fraction of its best (0-1)",
        {},
    ),
    "co_check_every": (
        "guard: also check every N weight updates (0: once per epoch); "
        "each check is in metrics.jsonl under co_checks",
        {},
    ),
    "co_step_factor": ("guard: attack step-size factor applied after a rollback", {}),
    "co_max_rollbacks": (
        "guard: rollbacks allowed before a further collapse stops training (count)",
        {},
    ),
    "track_train_sample": (
        "each epoch, clean and PGD accuracy and loss on a fixed sample of --val-examples "
        "training images (unaugmented; the validation attack): the robust generalization gap "
        "that advkit analyze --only overfitting draws; costs about one more validation",
        {"bool": True},
    ),
    "track_test_sample": (
        "each epoch, the same on a fixed sample of --val-examples test images, for curves only "
        "(never for model selection); costs about one more validation",
        {"bool": True},
    ),
    "track_grad_align": (
        "each epoch, GradAlign's input-gradient cosine on the validation images "
        "(val_grad_align in metrics.jsonl and curves.png): catastrophic overfitting shows as "
        "it falling; costs two input gradients per validation image",
        {"bool": True},
    ),
    "seed": ("random seed (data order, init, attacks)", {}),
    "device": ("auto, cpu, cuda or cuda:N", {}),
    "compile": (
        "torch.compile the model (1.1-1.5x faster steps on CPU after a slow first "
        "compile; not with gradalign)",
        {"bool": True},
    ),
    "amp": (
        "autocast the training steps to bfloat16 (for GPUs; attack and training losses "
        "stay float32)",
        {"bool": True},
    ),
    "checkpoint_every": ("also checkpoint every N batches (0: once per epoch)", {}),
    "sync_bn": (
        "with several CUDA workers, BatchNorm statistics over the whole global batch "
        "(torch's SyncBatchNorm; not on CPU, where they stay per worker's shard)",
        {"bool": True},
    ),
    "dist_backend": (
        "torch.distributed backend with several workers: auto (gloo on CPU, nccl on CUDA), "
        "gloo or nccl",
        {},
    ),
    "log": (
        "also log the per-epoch metrics as tensorboard (event files in RUN/tensorboard; "
        "pip install 'advkit[tensorboard]') or csv (RUN/metrics.csv); repeatable",
        {"default": "metrics.jsonl only", "action": "append", "metavar": "{csv,tensorboard}"},
    ),
    "grad_compression": (
        "with several workers, how gradients are exchanged: none (fp32 all-reduce), fp16, bf16, "
        "int8 (stochastic rounding, all-gather: DAT's), int8-2sided (all-to-all, sum, "
        "requantize, all-gather: a quarter of fp32's bytes at any worker count) or powersgd",
        {},
    ),
    "powersgd_rank": ("powersgd: rank of the low-rank gradient approximation", {}),
    "error_feedback": (
        "int8, int8-2sided: carry each step's quantization error into the next step",
        {"bool": True},
    ),
}


#: Fields whose values are the names in a registry (a model may also be a reference to a
#: factory, so its names are checked by the config, not by argparse).
REGISTRIES = {"dataset": DATASETS, "method": METHODS, "schedule": SCHEDULES}


def choices(field: str) -> list[str] | None:
    """The values ``--field`` accepts: a registry's names or ``config.CHOICES``; None if free."""
    if field in REGISTRIES:
        return REGISTRIES[field].names()
    if field in CHOICES:
        return [value for value in CHOICES[field] if value is not None]
    return None


def default_text(field: str) -> str:
    """TrainConfig's default for ``field`` as the help shows it (argparse's own default stays None
    so that a YAML value is overridden only by an option actually given)."""
    extra = OPTIONS[field][1]
    if "default" in extra:
        return extra["default"]
    value = TrainConfig.__dataclass_fields__[field].default
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        raise RuntimeError(f"OPTIONS[{field!r}] must say what an unset {field} means")
    return str(value)


def help_text(field: str) -> str:
    """The option's help: what it is, its unit, the meaning of each choice where the registry
    has one, and its default (argparse-escaped)."""
    text, _ = OPTIONS[field]
    if field == "schedule":
        text += ": " + "; ".join(
            f"{name}: {SCHEDULES.meta(name)['help']}" for name in SCHEDULES.names()
        )
    return f"{text} (default: {default_text(field)})".replace("%", "%%")


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

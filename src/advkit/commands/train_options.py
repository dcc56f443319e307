"""``advkit train``'s options: one per ``advkit.config.TrainConfig`` field, each with its help
(unit, default, choices from the config or a registry)."""

from __future__ import annotations

from typing import Any

from advkit.config import CHOICES, TrainConfig
from advkit.data import DATASETS
from advkit.methods import METHODS
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
        {"default": "the dataset's: preact-resnet18 for CIFAR, cnn-small for the others"},
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
    "eps": (
        "perturbation radius in [0,1] pixel units, e.g. 0.1 or 8/255",
        {
            "default": "the dataset's budget: L-inf 0.1 for MNIST and Fashion-MNIST, 8/255 for "
            "CIFAR and other data; L2 2.0 for the 28x28 sets, 0.5 for the others"
        },
    ),
    "eps_warmup_epochs": (
        "ramp eps linearly from 0 over this many epochs (passes) at the start, so that the model "
        "learns before the attack is at full strength; 0 turns it off",
        {"default": "auto: a quarter of the passes, at most 5"},
    ),
    "steps": (
        "attack steps per batch for pgd, trades and smoothadv (count)",
        {"default": "the method's own: 7 for pgd, 10 for trades and smoothadv"},
    ),
    "step_size": (
        "attack step size in pixel units",
        {
            "default": "the method's own: 2.5*eps/steps for pgd and trades, 1.25*eps for fast, "
            "eps for free and gradalign, 2*eps/steps for smoothadv"
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
    "sigma": (
        "gaussian, smoothadv, consistency, macer: standard deviation of the Gaussian noise added "
        "to the [0,1] images in front of the model's normalization (pixel units, like --eps)",
        {"default": "0.25"},
    ),
    "noise_clip": (
        "gaussian, smoothadv, consistency, macer: clip the noisy images to [0,1] (the papers' code "
        "does not)",
        {"bool": True},
    ),
    "num_noise": (
        "gaussian, smoothadv, consistency, macer: noise copies per image, m, all trained on "
        "(count; smoothadv's attack holds them fixed)",
        {"default": "the method's own: 2 for consistency, 16 for macer, 1 for the others"},
    ),
    "consistency_lambda": (
        "consistency: weight of the KL(mean || each copy) term (the paper's lambda)",
        {"default": "10 (the paper's code; its MNIST runs use 20)"},
    ),
    "consistency_eta": (
        "consistency: weight of the entropy of the copies' mean prediction (the paper's eta)",
        {"default": "0.5"},
    ),
    "macer_lambda": (
        "macer: weight of the hinge on the certified radius (the paper's lambda)",
        {"default": "12 (the paper's code; Jeong & Shin's MNIST runs: 16, 6 at sigma 1)"},
    ),
    "macer_gamma": ("macer: the hinge's margin (the paper's gamma)", {"default": "8"}),
    "macer_beta": (
        "macer: inverse temperature of the softmax in the radius term (the paper's beta)",
        {"default": "16"},
    ),
    "macer_deferred_epochs": (
        "macer: passes over the data trained without the radius hinge first (at a high "
        "learning rate the hinge can stop all learning: MACER trains at --lr 0.01)",
        {"default": "0, the paper's code (Jeong & Shin defer it a third of the run)"},
    ),
    "eps_hold_epochs": (
        "train at eps 0 for this many epochs (passes) before the eps ramp starts (IBP's warm-up, "
        "Gowal et al. 2018); the ramp then takes --eps-warmup-epochs",
        {},
    ),
    "kappa": (
        "ibp: weight of the clean loss once eps is full, the worst-case loss taking 1 - kappa; "
        "it falls linearly from 1 as eps ramps up (Gowal et al.'s kappa_final)",
        {},
    ),
    "bounds": (
        "ibp: the worst-case logits' bounds: ibp (interval bounds), or crown-ibp (Zhang et al. "
        "2020: beta x CROWN-IBP + (1 - beta) x interval bounds, beta falling from 1 to 0 as eps "
        "ramps up; chain networks without pooling)",
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
        "autocast the training steps (attacks and weight update) to --amp-dtype, for GPUs; "
        "attack and training losses stay float32, validation and evaluation run in float32",
        {"bool": True},
    ),
    "amp_dtype": (
        "with --amp: bf16 (bfloat16), or fp16 (float16 with dynamic loss scaling of the weight "
        "update and of the attacks' input gradients; the scale is checkpointed); refused "
        "without --amp, and where torch cannot autocast the device to it",
        {"default": "bf16"},
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

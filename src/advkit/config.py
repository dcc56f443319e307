"""Training configuration: one dataclass, loaded from YAML, overridden from the CLI, validated.

How each value is read lives in ``config_values``; what a resumed run may change, in
``config_resume``.

Precedence: dataclass defaults < YAML file (``--config``) < command-line options. The resolved
config is written to the run folder, so a run can be repeated from its own ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from advkit.config_values import ConfigError, coerce_value, flag_name, shown_value
from advkit.distributed.compression import COMPRESSIONS, check_options
from advkit.errors import BudgetError, reading
from advkit.files import write_text

#: The fields that take one of a few fixed names, and those names: what ``validate`` accepts and
#: what ``advkit train`` offers as choices (None: the field may be left unset). Fields named by a
#: registry (dataset, method, schedule) are checked against the registry instead, and the model
#: is a registered name or a reference to a factory (``advkit.models.reference``).
CHOICES: dict[str, tuple[str | None, ...]] = {
    "norm": ("linf", "l2"),
    "init": ("zero", "random", "ball", "previous"),
    "select": ("best", "last"),
    "co_guard": ("off", "warn", "rollback", "stop"),
    "optimizer": ("sgd", "adam", "lalr"),
    "lr_scaling": ("none", "sqrt", "linear"),
    "lalr_base": (None, "adam", "sgd"),
    "grad_compression": COMPRESSIONS,
    "augment": (None, "none", "crop-flip"),
    "dist_backend": ("auto", "gloo", "nccl"),
    "data_loading": ("auto", "memory", "stream"),
    "amp_dtype": (None, "bf16", "fp16"),
    "bounds": ("ibp", "crown-ibp"),
}

#: Optional fields whose unset value is chosen at run time: "auto" reads as unset (None).
AUTO_FIELDS = frozenset({"data_workers", "eps_warmup_epochs"})

#: Fields newer than some run folders: a run's config.yaml may lack them, and then takes their
#: default, which is what those runs did (``amp_dtype`` None: bfloat16, the only dtype before;
#: the randomized-smoothing and interval-bound options unset: those runs took none).
ADDED_FIELDS = frozenset({"amp_dtype", "sigma", "noise_clip", "num_noise", "consistency_lambda",
                          "consistency_eta", "macer_lambda", "macer_gamma",
                          "macer_beta", "macer_deferred_epochs", "eps_hold_epochs", "kappa",
                          "bounds"})  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units: eps and step sizes in [0, 1] pixel units."""

    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int = 5000
    subset: int | None = None
    augment: str | None = None  # None: the dataset's default ("none" or "crop-flip")
    data_loading: str = "auto"  # memory, stream, or auto: stream what exceeds the memory budget
    data_workers: int | None = None  # decoding processes; None: auto (data.loading_path)
    # model
    model: str | None = None  # a registered name, path/to/file.py:FACTORY or pkg.module:FACTORY
    model_args: dict[str, Any] | None = None  # keyword arguments of the model's factory
    channels_last: bool = False
    normalize: bool = True  # False: the model sees raw [0, 1] pixels (mean 0, std 1)
    # method and threat model
    method: str = "pgd"
    norm: str = "linf"
    eps: float | None = None  # None: the dataset's standard budget (data.specs.data_defaults)
    eps_warmup_epochs: float | None = None  # None: auto (training.eps_schedule); 0: off
    steps: int | None = None  # None: the method's own (pgd 7, trades 10)
    step_size: float | None = None
    attack_train_mode: bool = False
    replays: int = 4
    paper_epochs: bool = False
    init: str = "random"
    grad_align_lambda: float = 0.2
    beta: float = 6.0
    label_smoothing: float = 0.0
    clean_weight: float = 0.0  # pgd, fast: + clean_weight * loss(clean), DAT's lambda
    # randomized smoothing (gaussian, smoothadv, consistency); None: the method's own
    sigma: float | None = None  # noise std in pixel units; None: 0.25
    noise_clip: bool = False  # clip the noisy images to [0, 1]
    num_noise: int | None = None  # m, noise copies per image; None: 1 (2 for consistency)
    consistency_lambda: float | None = None  # consistency: KL weight; None: 10
    consistency_eta: float | None = None  # consistency: entropy weight; None: 0.5
    macer_lambda: float | None = None  # macer: weight of the radius hinge; None: 12
    macer_gamma: float | None = None  # macer: the hinge's margin; None: 8
    macer_beta: float | None = None  # macer: the softmax's inverse temperature; None: 16
    macer_deferred_epochs: int | None = None  # macer: passes without the hinge; None: 0
    # interval bound propagation (Gowal et al. 2018)
    eps_hold_epochs: float = 0.0  # passes at eps 0 before the eps ramp starts (IBP's warm-up)
    kappa: float = 0.5  # ibp: the clean loss's weight once eps is full (from 1 over the ramp)
    bounds: str = "ibp"  # ibp: ibp, or crown-ibp (CROWN-IBP's weight 1 -> 0 over the ramp)
    # optimization
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_scaling: str = "none"  # the peak LR follows batch_size / base_batch_size
    base_batch_size: int = 128
    lalr_base: str | None = None  # None: adam (with optimizer lalr)
    lalr_clip: list[float] | None = None  # None: [0, 10], DAT's
    lalr_exclude_1d: bool = False
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cyclic"
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    # validation, model selection, guards
    val_examples: int = 1000
    val_steps: int = 10
    select: str = "best"
    co_guard: str = "off"
    co_drop: float = 0.2
    co_check_every: int = 0
    co_step_factor: float = 0.5
    co_max_rollbacks: int = 3
    # per-epoch measurements that describe the run and never steer it (resumable)
    track_train_sample: bool = True  # clean/PGD on val_examples fixed training images
    track_test_sample: bool = False  # clean/PGD on val_examples fixed test images
    track_grad_align: bool = False  # GradAlign's cosine on the validation images
    # run
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    amp: bool = False
    amp_dtype: str | None = None  # bf16 or fp16 (loss-scaled), with amp only; None: bf16
    checkpoint_every: int = 0
    sync_bn: bool = False  # SyncBatchNorm across workers (CUDA only)
    dist_backend: str = "auto"  # torch.distributed backend with several workers: gloo, nccl
    grad_compression: str = "none"  # how workers exchange gradients (DDP communication hook)
    powersgd_rank: int = 1
    error_feedback: bool = False
    out: str | None = None
    log: list[str] | None = None  # also log metrics as: csv, tensorboard
    quiet: bool = False

    def __post_init__(self) -> None:
        self._coerce()

    def _fill_data_defaults(self) -> None:
        """An unset model or eps takes the dataset's (its standard budget under ``norm``, a model
        that takes its images): one rule for the CLI, YAML, ``advkit.fit`` and Python."""
        if self.model is None or self.eps is None:
            from advkit.data.specs import data_defaults  # the data layer sits above the config

            model, eps = data_defaults(self.dataset, self.norm)
            self.model = model if self.model is None else self.model
            self.eps = eps if self.eps is None else self.eps

    def _coerce(self) -> None:
        """Convert every field as YAML and the command line do (``eps="8/255"``, ``epochs="3"``;
        ``epochs=True`` is refused): one parser for Python, YAML and CLI values."""
        for item in fields(self):
            setattr(self, item.name, coerce_field(item.name, getattr(self, item.name)))
        self._fill_data_defaults()

    def validate(self) -> TrainConfig:
        """Check values that need no registry; raises ConfigError saying what to change.

        Fields are coerced again first, so values assigned after construction are checked too.
        The L2 radius is checked against the input's diameter once the data is known
        (:meth:`check_budgets`)."""
        self._coerce()
        positive_ints = ["steps", "replays", "epochs", "batch_size", "val_steps",
                         "base_batch_size", "powersgd_rank", "num_noise"]  # fmt: skip
        for name in positive_ints:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ["eps_warmup_epochs", "grad_align_lambda", "beta", "weight_decay",
                        "warmup_epochs", "momentum", "val_size", "val_examples",
                        "checkpoint_every", "co_check_every", "co_max_rollbacks",
                        "clean_weight", "consistency_lambda", "consistency_eta", "macer_lambda",
                        "macer_gamma", "macer_beta", "macer_deferred_epochs",
                        "eps_hold_epochs"]  # fmt: skip
        for name in non_negative:
            value = getattr(self, name)
            if value is None and (name in AUTO_FIELDS or name.startswith(("consistency_",
                                                                          "macer_"))):  # fmt: skip
                continue
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), e.g. 0.9, got {self.momentum}")
        if self.data_workers is not None and self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0 processes, got {self.data_workers}")
        if self.subset is not None and self.subset < 1:
            raise ConfigError(f"subset must be >= 1 images, got {self.subset}")
        if not 0 <= self.kappa <= 1:
            raise ConfigError(
                f"kappa must be in [0, 1] (ibp's final clean weight), got {self.kappa}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in (0, 1), e.g. 0.999, got {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")
        if not 0 < self.co_drop < 1:
            raise ConfigError(
                f"co_drop must be in (0, 1), a fraction of the best, got {self.co_drop}"
            )
        if not 0 < self.co_step_factor < 1:
            raise ConfigError(f"co_step_factor must be in (0, 1), got {self.co_step_factor}")
        if self.compile and self.method == "gradalign" and self.grad_align_lambda > 0:
            raise ConfigError(
                "gradalign needs double backpropagation, which torch.compile does not support: "
                "train gradalign without --compile"
            )
        choices = CHOICES
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ConfigError(f"{name} must be one of {shown}; got {getattr(self, name)!r}")
        self._check_needs()
        from advkit.models.reference import ModelReferenceError, check_reference

        try:  # the form only: a file or module is read when the model is built
            check_reference(self.model)
        except ModelReferenceError as error:
            raise ConfigError(str(error)) from None
        from advkit.training.metric_logs import check_logs  # the training package imports this

        check_logs(self.log)
        self.check_budgets()
        return self

    def _check_needs(self) -> None:
        """Options that only mean something beside another option: refused without it."""
        if self.optimizer != "lalr":
            given = [name for name in ("lalr_base", "lalr_clip") if getattr(self, name)]
            given += ["lalr_exclude_1d"] if self.lalr_exclude_1d else []
            if given:
                raise ConfigError(
                    f"{flag_name(given[0])} sets the layer-wise adaptive optimizer: add "
                    f"--optimizer lalr, or drop it (the optimizer is {self.optimizer})"
                )
        if self.lalr_clip is not None:
            low, high = self.lalr_clip
            if not 0 <= low <= high:
                raise ConfigError(
                    f"--lalr-clip C_L C_U bounds the weight norm and needs 0 <= C_L <= C_U, got "
                    f"{shown_value(low)} {shown_value(high)} (DAT's: 0 10)"
                )
        if self.amp_dtype is not None and not self.amp:
            raise ConfigError(
                f"--amp-dtype {self.amp_dtype} sets the dtype --amp autocasts to: add --amp, or "
                "drop --amp-dtype (training is float32 without --amp)"
            )
        check_options(self.grad_compression, powersgd_rank=self.powersgd_rank,
                      error_feedback=self.error_feedback)  # fmt: skip

    def check_budgets(self, input_shape: tuple[int, ...] | None = None) -> None:
        """eps and step_size against the threat model (:func:`advkit.threat.check_budget`); with
        ``input_shape`` (C, H, W) also the L2 radius against the inputs' diameter."""
        from advkit.threat import check_budget

        try:
            check_budget(self.eps, self.norm, input_shape, name="eps")
            if self.step_size is not None:
                check_budget(
                    self.step_size, self.norm, input_shape, name="step_size", allow_zero=False
                )
            if self.sigma is not None:
                from advkit.attacks.smoothing import check_sigma

                check_sigma(self.sigma, name="sigma")
        except BudgetError as error:
            raise ConfigError(str(error)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


def coerce_field(name: str, value: Any) -> Any:
    """Convert a YAML, CLI or Python value to the type of field ``name``; ConfigError if it can't.

    Numbers accept ``8/255``; integers accept whole floats (``2.0``) but never booleans, and
    must fit in 64 bits; booleans accept true/false, yes/no, on/off, 1/0."""
    hints = _field_types()
    if name in AUTO_FIELDS and isinstance(value, str) and value.strip().lower() == "auto":
        return None
    if name not in hints:
        known = ", ".join(f.name for f in fields(TrainConfig))
        raise ConfigError(f"unknown config key {name!r}; known keys: {known}")
    return coerce_value(name, hints[name], value)


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    complete: bool = False,
) -> TrainConfig:
    """Defaults, then the YAML file (a path, or the name of a recipe shipped in
    ``advkit/recipes``), then ``overrides``; validated.

    ``complete``: the file is a run folder's resolved config, which sets every field; a missing
    key means it was cut short (its defaults would silently change the run), a ConfigError, but
    for ``ADDED_FIELDS``, which older runs did not write."""
    values: dict[str, Any] = {}
    if path is not None:
        path = _config_file(path)
        values.update(read_config_file(path))
        lost = [f.name for f in fields(TrainConfig) if f.name not in values.keys() | ADDED_FIELDS]
        if complete and lost:
            from advkit.runs import repair_hint

            shown = ", ".join(lost[:4]) + (", ..." if len(lost) > 4 else "")
            raise ConfigError(
                f"{path} lacks {len(lost)} of the run's options ({shown}): it is truncated or "
                f"from another advkit version; {repair_hint(path)}"
            )
    values.update(overrides or {})
    unknown = sorted(set(values) - set(_field_types()))
    if unknown:
        known = ", ".join(f.name for f in fields(TrainConfig))
        raise ConfigError(f"unknown config key {unknown[0]!r}; known keys: {known}")
    return TrainConfig(**values).validate()


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The keys (``-`` read as ``_``) and values of a YAML file; ConfigError naming the file if it
    is not readable YAML holding a mapping."""
    from advkit.runs import repair_hint

    with reading(path, repair_hint(path), problem="is not valid YAML", error_type=ConfigError):
        loaded = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The keys a YAML file (or shipped recipe) sets, uncoerced; no defaults added."""
    return read_yaml_mapping(_config_file(path))


def _config_file(path: str | Path) -> Path:
    """``path`` if it is a file, else the shipped recipe of that name; ConfigError otherwise."""
    from advkit.recipes import RECIPES_DIR, recipe_names

    path = Path(path)
    if path.is_file():
        return path
    recipe = RECIPES_DIR / f"{path.name}.yaml"
    if path.parent == Path(".") and not path.suffix and recipe.is_file():
        return recipe
    raise ConfigError(
        f"config file {path} does not exist (shipped recipes: {', '.join(recipe_names())})"
    )


def save_config(config: TrainConfig, path: Path) -> None:
    """config.yaml, atomically: a refused write keeps the run's earlier config whole."""
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))

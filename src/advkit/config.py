"""Training configuration: one dataclass, loaded from YAML, overridden from the CLI, validated.

Precedence: dataclass defaults < YAML file (``--config``) < command-line options. The resolved
config is written to the run folder, so a run can be repeated from its own ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from advkit.distributed.compression import COMPRESSIONS, check_options
from advkit.errors import BudgetError, UserError, reading

#: The largest integer a field may hold (torch and numpy overflow beyond int64).
_INT_MAX = 2**63 - 1


class ConfigError(UserError, ValueError):
    """A configuration value or key a user must change."""


def parse_eps(text: str | float | int) -> float:
    """Parse a pixel-unit budget or any real number: ``0.1``, ``8/255`` or ``8 / 255``.

    Refuses booleans, nan, inf and values too large for a float (``1e400``, ``10**400``)."""
    if isinstance(text, bool):
        raise ConfigError(f"expected a number such as 0.1 or 8/255, got {text!r}")
    try:
        value = float(text) if isinstance(text, int | float) else _parse_real(str(text))
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError(f"expected a number such as 0.1 or 8/255, got {text!r}") from None
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        shown = text if len(str(text)) <= 20 else f"{str(text)[:12]}..."
        raise ConfigError(f"expected a finite number such as 0.1 or 8/255, got {shown!r}")
    return value


def _parse_real(text: str) -> float:
    """``"0.1"``, ``"inf"``, ``"1e400"`` (inf) or a fraction ``"8 / 255"``."""
    text = text.replace(" ", "")
    try:
        return float(text)
    except ValueError:
        return float(Fraction(text))


#: The fields that take one of a few fixed names, and those names: what ``validate`` accepts and
#: what ``advkit train`` offers as choices (None: the field may be left unset). Fields named by a
#: registry (dataset, model, method, schedule) are checked against the registry instead.
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
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units: eps and step sizes in [0, 1] pixel units."""

    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int = 5000
    subset: int | None = None
    augment: str | None = None  # None: the dataset's default ("none" or "crop-flip")
    # model
    model: str = "cnn-small"
    model_args: dict[str, Any] | None = None  # keyword arguments of the model's factory
    channels_last: bool = False
    normalize: bool = True  # False: the model sees raw [0, 1] pixels (mean 0, std 1)
    # method and threat model
    method: str = "pgd"
    norm: str = "linf"
    eps: float = 0.1
    eps_warmup_epochs: float = 0.0
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
    # run
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    amp: bool = False
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

    def _coerce(self) -> None:
        """Convert every field as YAML and the command line do (``eps="8/255"``, ``epochs="3"``;
        ``epochs=True`` is refused): one parser for Python, YAML and CLI values."""
        for item in fields(self):
            setattr(self, item.name, coerce_field(item.name, getattr(self, item.name)))

    def validate(self) -> TrainConfig:
        """Check values that need no registry; raises ConfigError saying what to change.

        Fields are coerced again first, so values assigned after construction are checked too.
        The L2 radius is checked against the input's diameter once the data is known
        (:meth:`check_budgets`)."""
        self._coerce()
        positive_ints = ["steps", "replays", "epochs", "batch_size", "val_steps",
                         "base_batch_size", "powersgd_rank"]  # fmt: skip
        for name in positive_ints:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ["eps_warmup_epochs", "grad_align_lambda", "beta", "weight_decay",
                        "warmup_epochs", "momentum", "val_size", "val_examples",
                        "checkpoint_every", "co_check_every", "co_max_rollbacks",
                        "clean_weight"]  # fmt: skip
        for name in non_negative:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), e.g. 0.9, got {self.momentum}")
        if self.subset is not None and self.subset < 1:
            raise ConfigError(f"subset must be >= 1 images, got {self.subset}")
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
                    f"{_flag(given[0])} sets the layer-wise adaptive optimizer: add --optimizer "
                    f"lalr, or drop it (the optimizer is {self.optimizer})"
                )
        if self.lalr_clip is not None:
            low, high = self.lalr_clip
            if not 0 <= low <= high:
                raise ConfigError(
                    f"--lalr-clip C_L C_U bounds the weight norm and needs 0 <= C_L <= C_U, got "
                    f"{_shown(low)} {_shown(high)} (DAT's: 0 10)"
                )
        check_options(self.grad_compression, powersgd_rank=self.powersgd_rank,
                      error_feedback=self.error_feedback)  # fmt: skip
        if self.powersgd_rank != 1 and self.grad_compression != "powersgd":
            raise ConfigError(
                "--powersgd-rank sets PowerSGD's rank: add --grad-compression powersgd, or drop it"
            )

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
        except BudgetError as error:
            raise ConfigError(str(error)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Fields a resumed run may change: where, how and how long it runs, never what it trains.
#: ``epochs``: the LR schedule is then spread over the new total of updates from the current one
#: on (see ``Trainer.resume``); fewer epochs than already trained are refused there.
#: ``co_check_every`` only while the guard merely measures (off/warn): when it rolls back or
#: stops, its checks steer the run.
RESUMABLE_FIELDS = frozenset(
    {"epochs", "data_dir", "out", "device", "quiet", "checkpoint_every", "compile",
     "channels_last", "co_check_every", "dist_backend", "log"}
)  # fmt: skip

#: What of the run the other fields define, for the message refusing their change on resume.
_RUN_DEFINES = {
    "data": "dataset val_size subset augment",
    "model": "model model_args normalize sync_bn",
    "threat model": "norm eps eps_warmup_epochs steps step_size init",
    "method": "method replays paper_epochs grad_align_lambda beta label_smoothing "
    "attack_train_mode clean_weight",
    "optimization": "batch_size optimizer lr lr_scaling base_batch_size lalr_base lalr_clip "
    "lalr_exclude_1d momentum nesterov weight_decay schedule warmup_epochs grad_clip ema_decay amp",
    "gradient exchange": "grad_compression powersgd_rank error_feedback",
    "seed": "seed",
    "validation and guard": "val_examples val_steps select co_guard co_drop co_check_every "
    "co_step_factor co_max_rollbacks",
}
_DEFINED_BY = {name: what for what, names in _RUN_DEFINES.items() for name in names.split()}


def resume_changes(saved: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """What ``new`` changes of a run whose config is ``saved``, as {field: (old, new)}.

    Only :data:`RESUMABLE_FIELDS` may differ; any other field given another value raises a
    ConfigError naming the option and both values (the same value as the run's is no change).
    """
    resumable = set(RESUMABLE_FIELDS)
    if saved.co_guard not in ("off", "warn"):
        resumable.discard("co_check_every")
    changes, refused = {}, []
    for name in (f.name for f in fields(TrainConfig)):
        old, value = getattr(saved, name), getattr(new, name)
        if _same(old, value):
            continue
        if name in resumable:
            changes[name] = (old, value)
        else:
            refused.append(name)
    if refused:
        first, *rest = refused
        said = [f"{_flag(first)} {_shown(getattr(new, first))} differs from the run's "
                f"{_shown(getattr(saved, first))}"]  # fmt: skip
        said += [f"{_flag(n)} {_shown(getattr(new, n))} from its {_shown(getattr(saved, n))}"
                 for n in rest]  # fmt: skip
        kept = list(dict.fromkeys(_DEFINED_BY.get(n, "configuration") for n in refused))
        kept_text = " and ".join([", ".join(kept[:-1]), kept[-1]] if len(kept) > 1 else kept)
        raise ConfigError(
            f"{', '.join(said)}: a resumed run keeps its {kept_text}; start a new run with --out"
        )
    return changes


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0)
    return old == new


def _flag(name: str) -> str:
    return "--model-arg" if name == "model_args" else "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        short = f"{value:.6g}"
        ratio = Fraction(value).limit_denominator(1024) if math.isfinite(value) else None
        if float(short) != value and ratio is not None and math.isclose(ratio, value):
            return f"{short} ({ratio})"  # 0.0313725 (8/255)
        return short
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


_EPS_FIELDS = {"eps", "step_size"}


@functools.cache
def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


def coerce_field(name: str, value: Any) -> Any:
    """Convert a YAML, CLI or Python value to the type of field ``name``; ConfigError if it can't.

    Numbers accept ``8/255``; integers accept whole floats (``2.0``) but never booleans, and
    must fit in 64 bits; booleans accept true/false, yes/no, on/off, 1/0."""
    hints = _field_types()
    if name not in hints:
        known = ", ".join(f.name for f in fields(TrainConfig))
        raise ConfigError(f"unknown config key {name!r}; known keys: {known}")
    hint = hints[name]
    optional = type(None) in getattr(hint, "__args__", ())
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    empty = isinstance(value, str) and value.lower() in ("none", "null") and base is not str
    if value is None or (optional and empty):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    try:
        if getattr(base, "__origin__", None) is dict:
            return parse_model_args(value)
        if getattr(base, "__origin__", None) is list and base.__args__ == (str,):
            return _parse_names(value)
        if getattr(base, "__origin__", None) is list:
            return _parse_pair(value)
        if base is bool:
            return _parse_bool(value)
        if base is int:
            return _parse_int(value)
        if base is float:
            return parse_eps(value)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError
        return str(value)
    except ConfigError as error:
        raise ConfigError(f"{name}: {error}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{name} expects {base.__name__}, got {value!r}") from None


def parse_model_args(value: Any) -> dict[str, Any]:
    """A model's keyword arguments: a mapping (YAML), or ``NAME=VALUE`` strings (the CLI's
    repeated ``--model-arg``), each value read as YAML reads a scalar (``28`` an int, ``0.3`` a
    float, ``true`` a bool, anything else a string); the model's factory checks names and types."""
    if isinstance(value, dict):
        items = list(value.items())
    else:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list | tuple):
            raise ConfigError(f"expected NAME=VALUE pairs such as depth=28, got {value!r}")
        items = []
        for text in texts:
            name, sep, raw = str(text).partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"--model-arg takes NAME=VALUE, e.g. depth=28; got {text!r}")
            items.append((name.strip(), _scalar(raw.strip())))
    parsed = {}
    for name, item in items:
        if not isinstance(item, str | int | float | bool) and item is not None:
            raise ConfigError(f"model argument {name} must be a number, bool or string")
        parsed[str(name)] = item
    return parsed


def _scalar(text: str) -> Any:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return loaded if isinstance(loaded, str | int | float | bool) else text


def _parse_names(value: Any) -> list[str]:
    """Names: a list (YAML, the CLI's repeated option) or one string, commas splitting it."""
    texts = value.split(",") if isinstance(value, str) else value
    if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"expected names such as csv,tensorboard, got {value!r}")
    names = [t.strip() for text in texts for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(names))


def _parse_pair(value: Any) -> list[float]:
    """Two numbers: a list or tuple (YAML, CLI), or a string "0 10" / "0,10"."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"expected two numbers such as 0 10, got {value!r}")
    return [parse_eps(item) for item in value]


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if isinstance(value, str | int) and lowered in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str | int) and lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError


def _parse_int(value: Any) -> int:
    """A whole number: an int, a whole float, or a string of either; bool is not a number."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            value = float(text)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        value = int(value)
    if not isinstance(value, int):
        raise ValueError
    if abs(value) > _INT_MAX:
        raise ConfigError(f"{str(value)[:12]}... is too large (at most {_INT_MAX})")
    return value


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    complete: bool = False,
) -> TrainConfig:
    """Defaults, then the YAML file (a path, or the name of a recipe shipped in
    ``advkit/recipes``), then ``overrides``; validated.

    ``complete``: the file is a run folder's resolved config, which sets every field; a missing
    key means it was cut short (its defaults would silently change the run), a ConfigError."""
    values: dict[str, Any] = {}
    if path is not None:
        path = _config_file(path)
        values.update(read_config_file(path))
        lost = [f.name for f in fields(TrainConfig) if f.name not in values]
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
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

"""Training configuration: one dataclass, loaded from YAML, overridden from the CLI, validated.

Precedence: dataclass defaults < YAML file (``--config``) < command-line options. The resolved
config is written to the run folder, so a run can be repeated from its own ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration value or key a user must change."""


def parse_eps(text: str | float | int) -> float:
    """Parse a pixel-unit budget: ``0.1``, ``8/255`` or ``8 / 255``."""
    if isinstance(text, bool):
        raise ConfigError(f"expected a number such as 0.1 or 8/255, got {text!r}")
    if isinstance(text, int | float):
        return float(text)
    try:
        return float(Fraction(str(text).replace(" ", "")))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"expected a number such as 0.1 or 8/255, got {text!r}") from None


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
    # optimization
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
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
    dist_backend: str = "auto"  # torch.distributed backend with several workers: gloo, nccl
    out: str | None = None
    quiet: bool = False

    def validate(self) -> TrainConfig:
        """Check values that need no registry; raises ConfigError saying what to change."""
        positive_ints = ["steps", "replays", "epochs", "batch_size", "val_steps"]
        for name in positive_ints:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ["eps", "eps_warmup_epochs", "grad_align_lambda", "beta", "weight_decay",
                        "warmup_epochs", "momentum", "val_size", "val_examples",
                        "checkpoint_every", "co_check_every", "co_max_rollbacks"]  # fmt: skip
        for name in non_negative:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.step_size is not None and self.step_size <= 0:
            raise ConfigError(f"step_size must be > 0 (pixel units), got {self.step_size}")
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
        choices = {
            "norm": ("linf", "l2"),
            "init": ("zero", "random", "ball", "previous"),
            "select": ("best", "last"),
            "co_guard": ("off", "warn", "rollback", "stop"),
            "optimizer": ("sgd", "adam"),
            "augment": (None, "none", "crop-flip"),
            "dist_backend": ("auto", "gloo", "nccl"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ConfigError(f"{name} must be one of {shown}; got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_EPS_FIELDS = {"eps", "step_size"}


def coerce_field(name: str, value: Any) -> Any:
    """Convert a YAML or CLI value to the type of field ``name``; ConfigError if it can't."""
    hints = get_type_hints(TrainConfig)
    if name not in hints:
        known = ", ".join(f.name for f in fields(TrainConfig))
        raise ConfigError(f"unknown config key {name!r}; known keys: {known}")
    hint = hints[name]
    optional = type(None) in getattr(hint, "__args__", ())
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    try:
        if name in _EPS_FIELDS:
            return parse_eps(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            return float(parse_eps(value))
        return str(value)
    except ConfigError as error:
        raise ConfigError(f"{name}: {error}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{name} expects {base.__name__}, got {value!r}") from None


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then the YAML file (a path, or the name of a recipe shipped in
    ``advkit/recipes``), then ``overrides``; validated."""
    values: dict[str, Any] = {}
    if path is not None:
        path = _config_file(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update(overrides or {})
    coerced = {name: coerce_field(name, value) for name, value in values.items()}
    return TrainConfig(**coerced).validate()


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

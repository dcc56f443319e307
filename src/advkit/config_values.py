"""How a configuration value is read: one parser for Python, YAML and command-line values.

Each TrainConfig field's type hint says how its values are read (``coerce_value``): numbers
accept ``8/255``, integers refuse booleans and fractions, booleans take yes/no words, a model's
arguments come as ``NAME=VALUE``. ``flag_name`` and ``shown_value`` write a field and a value
the way a user types them, for messages.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import yaml

from advkit.errors import UserError

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


def coerce_value(name: str, hint: Any, value: Any) -> Any:
    """Convert a YAML, CLI or Python ``value`` to ``hint``, the type of the config field ``name``;
    ConfigError if it can't.

    Numbers accept ``8/255``; integers accept whole floats (``2.0``) but never booleans, and
    must fit in 64 bits; booleans accept true/false, yes/no, on/off, 1/0; a pair of floats
    ``0 10``; names ``csv,tensorboard``; a model's arguments ``NAME=VALUE``."""
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
        if str(name) in _SET_BY_ADVKIT:
            raise ConfigError(
                f"{name} is set by advkit ({_SET_BY_ADVKIT[str(name)]}): drop --model-arg {name}"
            )
        parsed[str(name)] = item
    return parsed


#: Arguments of a model that advkit sets itself, and from what.
_SET_BY_ADVKIT = {
    "num_classes": "the dataset's number of classes",
    "in_channels": "the images' number of channels",
    "mean": "the normalization advkit puts in front of the model",
    "std": "the normalization advkit puts in front of the model",
}


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


def flag_name(name: str) -> str:
    """The command-line option of config field ``name``."""
    return "--model-arg" if name == "model_args" else "--" + name.replace("_", "-")


def shown_value(value: Any) -> str:
    """``value`` as a user would type it: 0.0313725 (8/255), true, none."""
    if isinstance(value, float):
        short = f"{value:.6g}"
        ratio = Fraction(value).limit_denominator(1024) if math.isfinite(value) else None
        if float(short) != value and ratio is not None and math.isclose(ratio, value):
            return f"{short} ({ratio})"  # 0.0313725 (8/255)
        return short
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)

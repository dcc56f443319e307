"""Atomic, code-free checkpoint files.

Writes go through :mod:`advkit.files`: to a temporary file in the same folder, fsynced, then
renamed over the target, so a kill or a full disk at any moment leaves either the old file or the
new one, never half of one, and a refused write is a one-line error naming the file. Reads never
execute pickled code: tensors from safetensors, other state with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from advkit.errors import CorruptFileError, WeightsMismatchError, reading
from advkit.files import atomic_write as atomic_write  # where callers have imported it from
from advkit.files import atomic_write_stream, write_bytes, write_text
from advkit.runs import repair_hint


def save_state(state: dict[str, Any], path: Path) -> None:
    """Save a training state (tensors, numbers, strings, lists, dicts) atomically; a full disk,
    a read-only folder... is a :class:`advkit.errors.WriteError` and the old file stays."""
    size = _nbytes(state) + 1024  # the zip archive's own records
    atomic_write_stream(path, lambda handle: torch.save(state, handle), size=size)


def _nbytes(value: Any) -> int:
    """About the bytes a save of ``value`` (tensors in nested dicts, lists, tuples) needs."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size() + 128  # and its zip record
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(item) for item in value)
    return len(value) if isinstance(value, str | bytes) else 8


def load_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a state saved by ``save_state``; refuses anything but plain data (weights_only).

    A truncated, corrupt or foreign file raises :class:`advkit.errors.CorruptFileError` naming
    the file and what to do (:func:`advkit.runs.repair_hint`)."""
    with reading(path, repair_hint(path)):
        state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise CorruptFileError(
            f"{path} holds a {type(state).__name__}, not a saved state: {repair_hint(path)}"
        )
    return state


def save_weights(
    tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Save a state dict as safetensors, atomically (tensors made contiguous and CPU)."""
    flat = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    write_bytes(path, save(flat, metadata=metadata))


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Tensors of a safetensors file; CorruptFileError naming the file if it is not readable."""
    with reading(path, repair_hint(path)):
        return load_file(str(path), device=str(device))


def load_weights_into(
    model: nn.Module, tensors: dict[str, Tensor], path: Path, expected: str = "the model",
    *, hint: str | None = None,
) -> None:  # fmt: skip
    """``model.load_state_dict(tensors)``, or a WeightsMismatchError saying which keys and shapes
    of ``path`` do not fit ``expected`` (a description of the architecture), and ``hint`` (what
    to do; default :func:`advkit.runs.repair_hint`)."""
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        own = model.state_dict()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        shapes = [
            f"{name} is {tuple(tensors[name].shape)} in the file, "
            f"{tuple(own[name].shape)} in the model"
            for name in own
            if name in tensors and tensors[name].shape != own[name].shape
        ]
        parts = [_listed(missing, "missing"), _listed(unexpected, "unexpected"), *shapes[:2]]
        details = "; ".join(part for part in parts if part) or "see -v"
        raise WeightsMismatchError(
            f"the weights in {path} do not fit {expected} ({details}): {hint or repair_hint(path)}"
        ) from error


def _listed(names: list[str], what: str) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} {what} key{'s' if len(names) > 1 else ''} ({shown})"


def save_json(data: dict[str, Any], path: Path) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False))


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; CorruptFileError naming the file if it is not valid JSON."""
    with reading(path, repair_hint(path)):
        return json.loads(Path(path).read_bytes().decode("utf-8"))

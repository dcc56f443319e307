"""Atomic, code-free checkpoint files.

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target, so a
kill at any moment leaves either the old file or the new one, never half of one. Reads never
execute pickled code: tensors from safetensors, other state with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, fsync the file, then rename it to ``path`` and fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(state: dict[str, Any], path: Path) -> None:
    """Save a training state (tensors, numbers, strings, lists, dicts) atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a state saved by ``save_state``; refuses anything but plain data (weights_only)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def save_weights(
    tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Save a state dict as safetensors, atomically (tensors made contiguous and CPU)."""
    flat = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    return load_file(str(path), device=str(device))


def save_json(data: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=False)))

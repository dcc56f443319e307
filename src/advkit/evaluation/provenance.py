"""What an evaluation's JSON records about what was measured: software, weights, examples.

Enough for a reviewer to tell two results apart and to rerun one: the versions, a hash of the
exact weights file (or of the weights themselves for a model given from Python), the
architecture and the test examples' indices.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: Keys of an evaluation's JSON written by :func:`provenance`, in the order the report shows them.
PROVENANCE_KEYS = ("architecture", "weights_sha256", "advkit_version", "torch_version")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(model: nn.Module) -> str:
    """The SHA-256 of a model's state dict: names, dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def provenance(
    *,
    architecture: str | None,
    indices: Sequence[int],
    weights_path: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """The provenance keys: ``weights_sha256`` hashes ``weights_path`` when given, else the
    ``model``'s state dict; ``indices`` are the evaluated examples' positions in the test set."""
    from advkit import __version__

    if weights_path is not None:
        weights = file_sha256(weights_path)
    elif model is not None:
        weights = state_sha256(model)
    else:
        raise ValueError("provenance needs weights_path or model to hash the weights")
    return {
        "architecture": architecture,
        "weights_sha256": weights,
        "advkit_version": __version__,
        "torch_version": torch.__version__,
        "indices": [int(i) for i in indices],
    }

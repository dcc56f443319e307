"""What an evaluation's JSON records about what was measured: software, weights, examples.

Enough for a reviewer to tell two results apart and to rerun one: the versions, a hash of the
exact weights file (or of the weights themselves for a model given from Python), the
architecture and the test examples' indices.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

#: Keys of an evaluation's JSON written by :func:`provenance`, in the order the report shows them.
PROVENANCE_KEYS = ("architecture", "weights_sha256", "advkit_version", "torch_version")


#: Arguments every model factory takes from the data, not from the user: no part of its name.
DATA_ARGUMENTS = ("num_classes", "in_channels")


def model_arguments(
    architecture: str | None, model_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The arguments ``architecture`` was built with: for a registered name its factory's
    defaults (``wrn``: depth 28, widen_factor 10, dropout 0.0) updated with ``model_kwargs``;
    for anything else (a user's file, a Python class) ``model_kwargs`` alone, unimported."""
    from advkit.models import MODELS

    arguments: dict[str, Any] = {}
    if architecture and architecture in MODELS.names():
        for name, parameter in inspect.signature(MODELS.get(architecture)).parameters.items():
            if name not in DATA_ARGUMENTS and parameter.default is not inspect.Parameter.empty:
                arguments[name] = parameter.default
    return {**arguments, **dict(model_kwargs or {})}


def model_text(architecture: str | None, arguments: Mapping[str, Any] | None = None) -> str:
    """The model as a report names it, ``wrn (depth=28, widen_factor=10, dropout=0.0)``: the
    architecture with its ``arguments`` (the name alone says neither depth nor width)."""
    name = str(architecture) if architecture else "model"
    args = ", ".join(f"{key}={value!r}" for key, value in (arguments or {}).items())
    return f"{name} ({args})" if args else name


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

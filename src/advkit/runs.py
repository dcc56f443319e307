"""The run folder: the unit a user handles.

RUN_DIR/
  config.yaml            resolved training config
  metrics.jsonl          one JSON line per epoch
  checkpoints/last.pt    full training state (torch.load(weights_only=True))
  checkpoints/best.safetensors + best.json   weights selected by validation PGD accuracy
  model.safetensors      the final model's weights
  model.json             architecture, normalization, dataset, threat model, method, times
  curves.png             training curves
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.safetensors"
META_FORMAT = "advkit-model/1"


class RunError(FileNotFoundError):
    """A run folder or model file that is missing or incomplete."""


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) for a run folder or a ``.safetensors`` file with its ``.json`` beside."""
    path = Path(path)
    if path.is_dir():
        weights, meta = path / MODEL_FILE, path / META_FILE
    elif path.suffix == ".safetensors":
        weights, meta = path, path.with_suffix(".json")
    else:
        raise RunError(f"{path} is neither a run folder nor a .safetensors model file")
    if not weights.is_file():
        hint = " (is training finished? `advkit train --resume` it)" if path.is_dir() else ""
        raise RunError(f"no model weights at {weights}{hint}")
    if not meta.is_file():
        raise RunError(f"no model metadata at {meta}: it must lie beside the weights")
    return weights, meta


def load_metadata(path: str | Path) -> dict[str, Any]:
    """The model's metadata (architecture, normalization, dataset, threat model, method, ...)."""
    _, meta_path = model_paths(path)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{meta_path} is not valid JSON: {error}") from None
    missing = {"architecture", "num_classes", "mean", "std"} - set(meta)
    if missing:
        raise RunError(f"{meta_path} lacks {', '.join(sorted(missing))}")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model in eval mode, taking inputs in [0, 1] (normalization is inside)."""
    from advkit.models import create_model

    weights_path, _ = model_paths(path)
    meta = load_metadata(path)
    model = create_model(
        meta["architecture"], num_classes=meta["num_classes"], mean=meta["mean"], std=meta["std"],
        **meta.get("model_kwargs", {}),
    )  # fmt: skip
    model.load_state_dict(load_file(str(weights_path)))
    return model.to(device).eval()

"""A run's checkpoints as models: ``RUN/checkpoints/best.safetensors`` (or ``last.pt``,
``init.safetensors``) names the weights of one epoch of the run, rebuilt and evaluated with the
run's own metadata (``RUN/model.json``), never with a file beside the weights.

:func:`find_checkpoint` says whether a path is such a checkpoint and which epoch it holds (from
``best.json``, or the position saved in ``last.pt``); :func:`checkpoint_weights` reads its
model weights (from ``last.pt``: the EMA weights when the run keeps an average, with BatchNorm
statistics averaged over the workers, as the run's own model is saved).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advkit import runs

#: The checkpoints a run writes, by file name: what each holds.
KNOWN = {
    runs.BEST_WEIGHTS: "best",
    runs.LAST_CHECKPOINT: "last",
    runs.INIT_WEIGHTS: "init",
}
#: model.json keys that describe the run's final model, not another checkpoint of it.
FINAL_ONLY = ("selected", "selected_epoch", "val_clean", "val_pgd")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file of a run folder, and the point of training it holds."""

    path: Path
    run: Path
    name: str  # "best", "last", "init", or the stem of another file in checkpoints/
    epoch: int | None  # epochs completed (0: before training); None when not recorded
    batch: int = 0  # batches into the next epoch (a checkpoint saved mid-epoch)

    @property
    def tag(self) -> str:
        """What names this checkpoint's outputs apart from the run's own: ``checkpoint-best``."""
        return f"checkpoint-{self.name}"

    def describe(self) -> str:
        """'checkpoint best (epoch 3)', 'checkpoint init (before training)', ..."""
        if self.epoch is None:
            when = "epoch not recorded"
        elif self.epoch == 0 and self.batch == 0:
            when = "before training"
        elif self.batch:
            when = f"epoch {self.epoch}, {self.batch} batches into epoch {self.epoch + 1}"
        else:
            when = f"epoch {self.epoch}"
        return f"checkpoint {self.name} ({when})"

    def record(self) -> dict[str, Any]:
        """What model.json-derived metadata records of the checkpoint."""
        return {
            "file": str(self.path.relative_to(self.run)),
            "name": self.name,
            "epoch": self.epoch,
            "batch": self.batch,
        }


def find_checkpoint(path: str | Path) -> Checkpoint | None:
    """The checkpoint ``path`` names when it is a weights file in a run's ``checkpoints/`` folder
    (a run folder is one holding model.json or config.yaml); None for anything else."""
    path = Path(path)
    run = path.parent.parent
    if path.parent.name != runs.CHECKPOINT_DIR or path.suffix not in (".safetensors", ".pt"):
        return None
    if not ((run / runs.META_FILE).is_file() or (run / runs.CONFIG_FILE).is_file()):
        return None
    if not path.is_file():
        raise runs.RunError(f"no checkpoint at {path}: {_present(path.parent)}")
    name = KNOWN.get(path.name, path.stem)
    if path.name == runs.INIT_WEIGHTS:
        return Checkpoint(path, run, name, 0)
    if path.suffix == ".pt":
        stat = path.stat()
        epoch, batch = _position(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        return Checkpoint(path, run, name, epoch, batch)
    return Checkpoint(path, run, name, _recorded_epoch(path.with_suffix(".json")))


def _present(folder: Path) -> str:
    found = sorted(p.name for p in folder.glob("*") if p.suffix in (".safetensors", ".pt"))
    return f"the run's checkpoints are {', '.join(found)}" if found else "it holds no checkpoints"


def _recorded_epoch(path: Path) -> int | None:
    """The epoch in best.json (None when absent or unreadable: the weights are still usable)."""
    try:
        return _int(json.loads(path.read_text()).get("epoch"))
    except (OSError, ValueError, AttributeError):
        return None


@functools.lru_cache(maxsize=8)
def _position(path: str, mtime_ns: int, size: int) -> tuple[int | None, int]:
    """(epoch, batch) saved in a training state, read once per version of the file."""
    state = _state(Path(path))
    return _int(state.get("epoch")), _int(state.get("batch")) or 0


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _state(path: Path) -> dict[str, Any]:
    from advkit.training.checkpoint import load_state

    return load_state(path)


def checkpoint_weights(checkpoint: Checkpoint | str | Path) -> dict[str, Tensor]:
    """The model weights a checkpoint (or its path) holds, as the run's own model.safetensors
    holds them."""
    from advkit.training.checkpoint import load_weights

    if not isinstance(checkpoint, Checkpoint):
        found = find_checkpoint(checkpoint)
        if found is None:
            raise runs.RunError(f"{checkpoint} is no checkpoint of a run (RUN/checkpoints/FILE)")
        checkpoint = found
    if checkpoint.path.suffix == ".safetensors":
        return load_weights(checkpoint.path)
    state = _state(checkpoint.path)
    ema = state.get("ema")
    shares = [
        rank.get("ema_buffers" if ema else "buffers") or {} for rank in state.get("ranks") or []
    ]
    tensors = ema if ema else state.get("model")
    if not isinstance(tensors, dict):
        raise runs.RunError(
            f"{checkpoint.path} holds no model weights: {runs.repair_hint(checkpoint.path)}"
        )
    weights = {k: v for k, v in tensors.items() if k != "n_averaged"}
    if len(shares) > 1:  # each worker's BatchNorm statistics, averaged as the final model's
        for key in shares[0]:
            if key in weights and all(key in share for share in shares):
                weights[key] = torch.stack([share[key].float() for share in shares]).mean(0)
    if ema:
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    return weights


def checkpoint_metadata(meta: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """The run's metadata for one of its checkpoints: what describes the final model alone
    (its selection, validation accuracy) left out, the checkpoint recorded."""
    own = {key: value for key, value in meta.items() if key not in FINAL_ONLY}
    own["checkpoint"] = checkpoint.record()
    return own


def outputs_folder(path: str | Path) -> Path:
    """Where evaluating or analysing the model ``path`` names writes by default: the run folder
    for a run's own model, ``RUN/checkpoint-<name>/`` for one of its checkpoints (so they never
    replace the run's own results), the folder of a loose model file."""
    path = Path(path)
    checkpoint = find_checkpoint(path)
    if checkpoint is not None:
        return checkpoint.run / checkpoint.tag
    return path if path.is_dir() else path.parent


def title(path: str | Path) -> str:
    """The model's name in reports: the run's, with the checkpoint described if it is one."""
    path = Path(path)
    checkpoint = find_checkpoint(path)
    if checkpoint is not None:
        return f"{checkpoint.run.resolve().name} {checkpoint.describe()}"
    return (path if path.is_dir() else path.parent).resolve().name

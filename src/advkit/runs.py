"""The run folder: the unit a user handles.

RUN_DIR/
  config.yaml            resolved training config
  metrics.jsonl          one JSON line per epoch
  checkpoints/last.pt    full training state (torch.load(weights_only=True))
  checkpoints/best.safetensors + best.json   weights selected by validation PGD accuracy
  checkpoints/init.safetensors   the weights training started from (written once)
  model.safetensors      the final model's weights
  model.json             architecture, normalization, dataset, threat model, method, times
  model_source/FILE.py   a copy of the model's file, for a model given as path/to/FILE.py:factory
  curves.png             training curves
  resumes.jsonl          one JSON line per resume: where it resumed and the options it changed
  .lock                  held by the one process writing the folder (advkit.runlock)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from advkit.errors import UserError
from advkit.models.exported import is_in_process

if TYPE_CHECKING:
    from advkit.data import DataSplits, StreamingSplits
    from advkit.run_checkpoints import Checkpoint

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RESUMES_FILE = "resumes.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.safetensors"
INIT_WEIGHTS = "init.safetensors"
META_FORMAT = "advkit-model/1"


class RunError(UserError, FileNotFoundError):
    """A run folder or model file that is missing or incomplete."""


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) for a run folder, one of a run's checkpoints (``RUN/checkpoints/
    best.safetensors``, ``last.pt``, ...: the run's model.json), or a ``.safetensors`` file with
    its ``.json`` beside."""
    from advkit.run_checkpoints import find_checkpoint

    path = Path(path)
    checkpoint = find_checkpoint(path)
    if checkpoint is not None:
        weights, meta = checkpoint.path, checkpoint.run / META_FILE
        if not meta.is_file():
            raise RunError(
                f"{checkpoint.run} has no {META_FILE} yet, which rebuilding its checkpoints "
                f"needs: {_unfinished(checkpoint.run)}"
            )
        return weights, meta
    if path.is_dir() and path.name == CHECKPOINT_DIR and (path.parent / CONFIG_FILE).is_file():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pt"))
        raise RunError(
            f"{path} is a run's checkpoints folder: name one checkpoint, e.g. "
            f"{path / BEST_WEIGHTS} (it holds {', '.join(found) or 'none yet'}), or the run "
            f"folder {path.parent} for its model"
        )
    if path.is_dir():
        weights, meta = path / MODEL_FILE, path / META_FILE
    elif path.suffix == ".safetensors":
        weights, meta = path, path.with_suffix(".json")
    else:
        raise RunError(
            f"{path} is neither a run folder, a run's checkpoint (RUN/{CHECKPOINT_DIR}/FILE) nor "
            "a .safetensors model file"
        )
    if not weights.is_file():
        if path.is_dir() and ((path / CONFIG_FILE).is_file() or (path / CHECKPOINT_DIR).is_dir()):
            raise RunError(f"{path} holds no model yet ({MODEL_FILE}): {_unfinished(path)}")
        raise RunError(f"no model weights at {weights}")
    if not meta.is_file():
        raise RunError(f"no model metadata at {meta}: it must lie beside the weights")
    return weights, meta


def _unfinished(run: Path) -> str:
    """Why a run has no model yet, and what to do: its trainer named, or how to finish it."""
    from advkit.runlock import holder

    who = holder(run)
    if who is not None:
        return f"it is being trained by {who}; wait for training to end"
    return f"training has not finished; `advkit train --resume {run}` completes it"


def model_checkpoint(path: str | Path) -> Checkpoint | None:
    """The :class:`advkit.run_checkpoints.Checkpoint` ``path`` names, or None (a run's model)."""
    from advkit.run_checkpoints import find_checkpoint

    return find_checkpoint(path)


#: Keys of model.json that rebuilding the model needs, with the type each must have.
_META_KEYS: dict[str, type | tuple[type, ...]] = {
    "architecture": str, "num_classes": int, "mean": list, "std": list,
}  # fmt: skip


def load_metadata(path: str | Path) -> dict[str, Any]:
    """The model's metadata (architecture, normalization, dataset, threat model, method, ...)."""
    from advkit.training.checkpoint import read_json

    _, meta_path = model_paths(path)
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise RunError(f"{meta_path} must hold a JSON object: {repair_hint(meta_path)}")
    missing = set(_META_KEYS) - set(meta)
    if missing:
        raise RunError(f"{meta_path} lacks {', '.join(sorted(missing))}: {repair_hint(meta_path)}")
    wrong = [key for key, kind in _META_KEYS.items() if not isinstance(meta[key], kind)]
    if wrong or isinstance(meta["num_classes"], bool) or meta["num_classes"] < 1:
        raise RunError(
            f"{meta_path} holds invalid {', '.join(wrong) or 'num_classes'}: "
            f"{repair_hint(meta_path)}"
        )
    checkpoint = model_checkpoint(path)
    if checkpoint is not None:
        from advkit.run_checkpoints import checkpoint_metadata

        return checkpoint_metadata(meta, checkpoint)
    return meta


def threat_of(
    meta: dict[str, Any] | Any, eps: str | float | None, norm: str | None, *, purpose: str
) -> tuple[float, str]:
    """The radius and norm to ``purpose`` ("evaluate", "analyse") a model at: ``eps``/``norm``
    (as given on the command line) where given, else the run's own threat model; a ConfigError
    for a run trained without a budget and no ``eps``."""
    from advkit.config_values import ConfigError, parse_eps
    from advkit.threat import check_budget

    threat = meta.get("threat") or {}
    norm = norm or threat.get("norm") or "linf"
    if eps is not None:
        value = parse_eps(eps)
    elif threat.get("eps"):
        value = float(threat["eps"])
    else:
        raise ConfigError(
            "this run was trained without a perturbation budget (eps 0); choose the radius to "
            f"{purpose} at with --eps, e.g. --eps 8/255"
        )
    check_budget(value, norm, name="--eps" if eps is not None else "eps", allow_zero=False)
    return value, norm


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model in eval mode, taking inputs in [0, 1] (normalization is inside); a model
    given as a file is rebuilt from the copy in the run folder (``model_source/``)."""
    from advkit.models import create_model
    from advkit.models.model_source import rebuild_reference
    from advkit.run_checkpoints import checkpoint_weights
    from advkit.training.checkpoint import load_weights, load_weights_into

    weights_path, meta_path = model_paths(path)
    meta = load_metadata(path)
    checkpoint = model_checkpoint(path)
    if is_in_process(meta["architecture"]):
        if checkpoint is not None:
            raise RunError(
                f"{weights_path} holds weights of {meta['architecture']}, a module passed to "
                "advkit.fit, which advkit cannot rebuild by name: build the module yourself, "
                "wrap it in advkit.models.NormalizedModel(module, mean, std) and load "
                "advkit.run_checkpoints.checkpoint_weights(PATH) into that"
            )
        return _load_exported(meta, meta_path).to(device).eval()
    model = create_model(
        rebuild_reference(meta, meta_path.parent), num_classes=meta["num_classes"],
        mean=meta["mean"], std=meta["std"], **meta.get("model_kwargs", {}),
    )  # fmt: skip
    weights = load_weights(weights_path) if checkpoint is None else checkpoint_weights(checkpoint)
    load_weights_into(
        model, weights, weights_path,
        f"{meta['architecture']} with {meta['num_classes']} classes as {meta_path.name} says",
        hint=mismatch_hint(weights_path, meta_path),
    )  # fmt: skip
    return model.to(device).eval()


def _load_exported(meta: dict[str, Any], meta_path: Path) -> nn.Module:
    """The code-free copy of a model a Python caller passed to ``advkit.fit``."""
    from advkit.models.exported import load_exported

    exported = meta.get("exported") or {}
    if "file" not in exported:
        why = f" ({exported['error']})" if "error" in exported else ""
        raise RunError(
            f"{meta_path.parent} holds the weights of {meta['architecture']}, a module passed to "
            f"advkit.fit, but no exported copy of it{why}: build the module yourself and load "
            f"{meta_path.with_name(MODEL_FILE).name} into it (advkit.training.checkpoint."
            "load_weights)"
        )
    program = meta_path.parent / exported["file"]
    if not program.is_file():
        raise RunError(f"{program} is missing: copy the whole run folder, model.pt2 included")
    return load_exported(program)


def load_test_data(
    meta: dict[str, Any], *, dataset: str | None = None, data_dir: str | Path | None = None
) -> DataSplits | StreamingSplits:
    """The data to evaluate a model on: the dataset its metadata records (or ``dataset``),
    from ``data_dir`` or else the recorded folder, checked to fit the model (:func:`check_fits`).

    Never another dataset than the one named: if it cannot be loaded, the error says so.
    """
    from advkit.data import DATASETS, open_splits

    recorded = meta.get("dataset")
    name = dataset or recorded
    if not name:
        raise RunError(
            "the model's metadata records no dataset: name its test data with --dataset "
            "(and --data-dir)"
        )
    if name not in DATASETS.names():
        raise RunError(
            f"the model was trained on {name!r}, which is no dataset advkit reads "
            f"({', '.join(DATASETS.names())}): evaluate it on a copy of that data saved as "
            "--dataset npz --data-dir FILE.npz"
        )
    folder = data_dir or (meta.get("data_dir") if name == recorded else None)
    splits = open_splits(name, folder, val_size=0, for_training=False)  # decoded when taken
    check_fits(meta, splits, f"{name} test data" + (f" from {folder}" if folder else ""))
    return splits


def check_fits(
    meta: dict[str, Any], splits: DataSplits | StreamingSplits, what: str = "the test data"
) -> None:
    """Refuse data whose image shape (C, H, W), class count or class names are not the model's."""
    from advkit.data import DataError, get_spec, image_shape

    hint = "pass the data the model was trained on with --dataset/--data-dir"
    shape = list(image_shape(splits.test))
    expected = meta.get("input_shape")
    if expected is not None and list(expected) != shape:
        raise DataError(
            f"{what} holds {_shape(shape)} images but the model takes {_shape(expected)} "
            f"(C, H, W): {hint}"
        )
    if expected is None and len(meta["mean"]) != shape[0]:
        raise DataError(f"{what} has {shape[0]} channels but the model {len(meta['mean'])}: {hint}")
    classes = int(meta["num_classes"])
    # Without a fixed count or names (npz), the count is the largest label + 1: fewer may fit.
    known = get_spec(splits.dataset).num_classes is not None or splits.class_names is not None
    if splits.num_classes > classes or (known and splits.num_classes != classes):
        raise DataError(f"{what} has {splits.num_classes} classes but the model {classes}: {hint}")
    names, own = splits.class_names, meta.get("class_names")
    if names is not None and own is not None and list(names) != list(own):
        i = next((i for i, (a, b) in enumerate(zip(names, own, strict=False)) if a != b), 0)
        raise DataError(
            f"{what} names class {i} {names[i]!r}, the model {own[i]!r}: another dataset? {hint}"
        )


def _shape(shape: list[int]) -> str:
    return "x".join(str(n) for n in shape)


def repair_hint(path: str | Path) -> str:
    """What to do about a damaged or unreadable file of a run folder, chosen by its name.

    Deleting is advised only for the damaged file itself, and only where nothing is lost by it
    (what it held is rebuilt or was optional); never for a folder, whose other files are sound.
    """
    path = Path(path)
    run = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
    in_run = (run / CONFIG_FILE).is_file() or (run / CHECKPOINT_DIR).is_dir()
    has_last = (run / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
    anew = (
        f"train the run anew into another folder (`advkit train --config {run / CONFIG_FILE} "
        "--out NEW_FOLDER`)"
    )
    if path.name.endswith(".state.pt"):
        return "delete it (or pass --no-resume) to start the evaluation over"
    if not in_run and path.suffix in (".yaml", ".yml"):
        return "fix it: one `key: value` per line, keys as the options of `advkit train --help`"
    if not in_run:
        return "restore it or replace it with a good copy"
    if path.name == LAST_CHECKPOINT:
        return (
            f"restore it from a backup, or {anew}; the run's model and other checkpoints stay "
            "usable as they are"
        )
    if path.name == BEST_WEIGHTS:
        return (
            "restore it from a backup, or delete it (this file alone: a resumed run then ends with "
            "its last epoch's weights); the run's model is not affected"
        )
    if path.name == "best.json":
        return "restore it from a backup, or delete it (this file alone: it only records the epoch)"
    if path.name in (MODEL_FILE, META_FILE) and has_last:
        return f"rebuild it from the checkpoints with `advkit train --resume {run}`"
    if path.name in (MODEL_FILE, META_FILE):
        return "restore it from a backup (the run has no checkpoint to rebuild it from)"
    if path.name == CONFIG_FILE:
        return (
            "restore it from a backup (it records the run's options); the run's model stays "
            "usable without it"
        )
    if path.name == METRICS_FILE and has_last:
        return f"`advkit train --resume {run}` rewrites it from the checkpoint"
    if path.name.startswith("eval-") and path.suffix == ".json":
        return "delete this file alone, then run the evaluation again"
    if path.name == INIT_WEIGHTS:
        return (
            "restore it from a backup, or delete it (this file alone: analyses then skip "
            "re-initialization)"
        )
    return "restore it from a backup, or move it out of the run folder"


def mismatch_hint(weights: str | Path, meta: str | Path) -> str:
    """What to do about weights that do not fit the model their metadata describes: neither file
    need be damaged (copied from different runs?), so nothing is to be deleted."""
    return (
        f"{Path(weights).name} and {Path(meta).name} come from different models: give the weights "
        "with the metadata they were saved with (restore the one that was replaced)"
    )

"""Models advkit did not train: their weights read without running code, and their evaluation.

``advkit eval --model REF --weights FILE`` builds the model ``REF`` names (a registered name or a
factory reference, :mod:`advkit.models.reference`), loads ``FILE`` into it (:func:`load_external`)
and evaluates it as it evaluates a run; ``advkit.evaluate(model, data, ...)`` (:func:`evaluate`)
does the same for a module in hand. Weights come from safetensors or from
``torch.load(weights_only=True)``, never from unpickled code: a state dict of the bare network,
of advkit's ``NormalizedModel`` (``normalize.*``/``net.*``), or a dict holding one under
``"state_dict"`` or ``"model"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advkit.data.labels import check_label_range
from advkit.data.user_data import as_tensor_data
from advkit.errors import UserError, WeightsMismatchError, reading
from advkit.evaluation.evaluate import model_device
from advkit.evaluation.provenance import file_sha256
from advkit.evaluation.session import Evaluation, run_evaluation
from advkit.evaluation.suites import Suite, build_suite
from advkit.models import NormalizedModel, create_model
from advkit.models.user_factory import check_output, output_count

#: Files read with safetensors; the others with torch.load(weights_only=True).
SAFETENSORS = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: Keys of a checkpoint dict under which the state dict may lie.
STATE_KEYS = ("state_dict", "model", "model_state_dict")
#: Prefixes every key may carry from a wrapper (DDP, torch.compile), removed before loading.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SAVE_HINT = (
    "save the weights alone: torch.save(model.state_dict(), PATH) or "
    "safetensors.torch.save_file(model.state_dict(), PATH)"
)


class ExternalModelError(UserError, ValueError):
    """Weights or data of an external evaluation that cannot be used as given."""


# ---------------------------------------------------------------------------- weights
def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a ``.safetensors`` or torch (``.pt``, ``.pth``, ...) file, read without
    unpickling code, unwrapped from a checkpoint dict and from DDP's ``module.`` prefix."""
    from advkit.training.checkpoint import load_weights

    path = Path(path)
    if not path.is_file():
        raise ExternalModelError(f"weights file {path} does not exist: give the file's path")
    if path.suffix == SAFETENSORS:
        return _strip_prefixes(load_weights(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise ExternalModelError(
            f"weights file {path} is neither {SAFETENSORS} nor a torch file "
            f"({', '.join(TORCH_SUFFIXES)}): {_SAVE_HINT}"
        )
    with reading(path, _SAVE_HINT, problem="is not a readable torch file"):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    return _strip_prefixes(_state_dict_of(loaded, path))


def _state_dict_of(loaded: Any, path: Path) -> dict[str, Tensor]:
    """The tensors of a state dict, or of one under a checkpoint's STATE_KEYS."""
    candidates = [loaded]
    if isinstance(loaded, Mapping):
        candidates += [loaded.get(key) for key in STATE_KEYS]
    for found in candidates:
        if _is_state_dict(found):
            return {str(key): value for key, value in found.items()}
    if isinstance(loaded, Mapping):
        keys = ", ".join(map(str, list(loaded)[:6])) or "none"
        raise ExternalModelError(
            f"{path} holds a dict that is no state dict and has none under "
            f"{'/'.join(STATE_KEYS)} (its keys: {keys}): {_SAVE_HINT}"
        )
    raise ExternalModelError(
        f"{path} holds {type(loaded).__name__!r}, not a state dict: {_SAVE_HINT}"
    )


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(item, Tensor) for item in value.values())
    )


def _strip_prefixes(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if tensors and all(key.startswith(prefix) for key in tensors):
            tensors = {key.removeprefix(prefix): value for key, value in tensors.items()}
    return tensors


def load_external(
    reference: str,
    weights: str | os.PathLike[str],
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    model_args: Mapping[str, Any] | None = None,
    exact_classes: bool = True,
) -> tuple[NormalizedModel, dict[str, Any]]:
    """The model ``reference`` builds for (C, H, W) ``input_shape`` images and ``num_classes``,
    with the weights of ``weights``, in eval mode; and the record of where it came from.

    Without ``mean``/``std`` the model normalizes itself (an identity ``Normalize`` goes in
    front), unless the weights are a ``NormalizedModel``'s, which carry their own. With them,
    that normalization is put inside. ``exact_classes`` False lets the model have more outputs
    than the data has classes (data whose class count is only its largest label + 1)."""
    channels = int(input_shape[0])
    if (mean is None) != (std is None):
        raise ExternalModelError("--mean and --std go together: give both (one value per channel)")
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != channels:
            raise ExternalModelError(
                f"{name} has {len(values)} values but the images have {channels} channels: give "
                "one per channel"
            )
    tensors = read_state_dict(weights)
    own_norm = "normalize.mean" in tensors and "normalize.std" in tensors
    if own_norm and mean is not None:
        stored = (tensors["normalize.mean"].tolist(), tensors["normalize.std"].tolist())
        if not (_close(stored[0], mean) and _close(stored[1], std)):
            raise ExternalModelError(
                f"{weights} holds advkit's own normalization (mean {_rounded(stored[0])}, std "
                f"{_rounded(stored[1])}): drop --mean/--std, or give those values"
            )
    identity = mean is None
    mean = (0.0,) * channels if mean is None else tuple(mean)
    std = (1.0,) * channels if std is None else tuple(std)
    model = create_model(reference, num_classes=num_classes, mean=mean, std=std,
                         **dict(model_args or {}))  # fmt: skip
    target: nn.Module = model if own_norm else model.net
    if own_norm:  # the normalization comes from the file; its shape is checked below
        identity = False
    _load_strict(target, tensors, Path(weights), reference, model_args or {})
    model.eval()
    check_output(model, tuple(input_shape), num_classes, reference, at_least=not exact_classes)
    record = {
        "reference": reference, "model_kwargs": dict(model_args or {}),
        "weights": str(Path(weights).resolve()), "weights_sha256": file_sha256(weights),
        "normalization": None if identity else {
            "mean": model.normalize.mean.tolist(), "std": model.normalize.std.tolist(),
        },
    }  # fmt: skip
    return model, record


def _load_strict(
    target: nn.Module, tensors: dict[str, Tensor], path: Path, reference: str,
    model_args: Mapping[str, Any],
) -> None:  # fmt: skip
    """``target.load_state_dict(tensors)``, or one line with the counts and a few example keys
    of what is missing, unexpected or of another shape."""
    own = target.state_dict()
    missing = [key for key in own if key not in tensors]
    unexpected = [key for key in tensors if key not in own]
    shapes = [
        f"{key} {tuple(tensors[key].shape)} in the file, {tuple(own[key].shape)} in the model"
        for key in own
        if key in tensors and tensors[key].shape != own[key].shape
    ]
    if missing or unexpected or shapes:
        parts = [_listed(missing, "missing"), _listed(unexpected, "unexpected")]
        if shapes:
            parts.append(f"{len(shapes)} of another shape ({'; '.join(shapes[:2])})")
        args = ", ".join(f"{k}={v!r}" for k, v in model_args.items())
        raise WeightsMismatchError(
            f"the weights in {path} do not fit the model {reference} builds"
            + (f" with {args}" if args else "")
            + f" ({', '.join(p for p in parts if p)}): give the --model/--model-arg it was "
            "trained with, or weights saved from that model's state_dict()"
        )
    target.load_state_dict(tensors)


def _listed(keys: list[str], what: str) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return f"{len(keys)} {what} key{'s' if len(keys) > 1 else ''} ({shown})"


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7) for x, y in zip(a, b, strict=True)
    )


def _rounded(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# ---------------------------------------------------------------------------- advkit.evaluate
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    eps: float,
    suite: str | Suite = "quick",
    norm: str = "linf",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    n_examples: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    checks: str = "fast",
    sweep: Sequence[float] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    quiet: bool = False,
) -> Evaluation:
    """Evaluate any ``model`` mapping [0, 1] images to logits as ``advkit eval`` does: the
    attacks of ``suite`` at radius ``eps`` (pixel units), then the sanity checks (``checks``:
    fast, full or none) and, with ``sweep`` radii, PGD-20 at each.

    ``data``: a dataset name (its test split, from ``data_dir`` or the default folder), an
    ``(images, labels)`` pair of tensors or numpy arrays (images uint8, or float in [0, 1];
    (N, C, H, W) or (N, H, W)), or a TensorData; the first ``n_examples`` are evaluated (default
    all). ``mean``/``std`` put that normalization inside the model. With ``out_dir`` the JSON,
    Markdown report and figures are written there, never replacing another evaluation (as
    ``Evaluation.write(out_dir)`` does later). Progress bars on stderr (the attack, its
    examples, ETAs) unless ``quiet``."""
    from advkit.data import DATASETS, load_dataset
    from advkit.evaluation.eval_bar import bar_factory
    from advkit.evaluation.evaluate import _fingerprint
    from advkit.evaluation.outputs import main_tag
    from advkit.runlock import hold_outputs
    from advkit.threat import check_budget

    if not isinstance(model, nn.Module):
        raise ExternalModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (mean is None) != (std is None):
        raise ExternalModelError("mean and std go together: give both (one value per channel)")
    if mean is not None:
        model = NormalizedModel(model, mean, std).to(model_device(model))
    class_names, exact, dataset = None, False, None
    if isinstance(data, str):
        if data not in DATASETS.names():
            raise ExternalModelError(
                f"unknown dataset {data!r}; choose one of {', '.join(DATASETS.names())}, or pass "
                "(images, labels)"
            )
        splits = load_dataset(data, data_dir, val_size=0, for_training=False)
        test, class_names, dataset = splits.test, splits.class_names, data
        num_classes, exact = splits.num_classes, True
    else:
        test = as_tensor_data(data, "data")
        if len(test) == 0:
            raise ExternalModelError("data holds no images: pass at least one")
        num_classes = int(test.labels.max()) + 1
    if n_examples is not None:
        if n_examples < 1:
            raise ExternalModelError(f"n_examples must be at least 1, got {n_examples}")
        test = test.take(torch.arange(min(n_examples, len(test))))
    shape = tuple(test.images.shape[1:])
    check_budget(eps, norm, shape, allow_zero=False)
    name = title or type(model).__name__
    if not exact:  # labels from the caller: refused beyond the model's classes, not the reverse
        outputs = output_count(model, shape, name)
        check_label_range(test.labels, outputs, "data", f"the model has {outputs} outputs")
    check_output(model, shape, max(num_classes, 2), name, at_least=not exact)
    suite = build_suite(suite, eps=eps, norm=norm, seed=seed) if isinstance(suite, str) else suite
    sweep_eps = [float(value) for value in sweep] if sweep else None
    for value in sweep_eps or ():
        check_budget(value, norm, shape, name="sweep radius")
    origin = {"python": f"{type(model).__module__}.{type(model).__qualname__}",
              "dataset": dataset or "given images"}  # fmt: skip
    evaluation = run_evaluation(
        model, test, suite, eps=eps, norm=norm, batch_size=batch_size, seed=seed, checks=checks,
        sweep_eps=sweep_eps, title=name, class_names=class_names, bar=bar_factory(quiet),
        extra={"model": _fingerprint(model.state_dict().items()), "model_origin": origin},
        metadata={"architecture": origin["python"], "dataset": origin["dataset"],
                  "model_origin": origin},
    )  # fmt: skip
    if evaluation is None:  # only on a worker other than rank 0, which this is not
        raise RuntimeError("advkit.evaluate runs in one process")
    if out_dir is not None:
        stem = f"eval-{main_tag(suite.name, eps, norm, {})}"
        with hold_outputs(out_dir, stem, "advkit.evaluate", hint=" or choose another out_dir"):
            evaluation.write(out_dir)
    return evaluation

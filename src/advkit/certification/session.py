"""One certification as ``advkit certify`` and ``advkit.certify`` make it: the parameters
checked, CERTIFY over the samples (:mod:`advkit.certification.runner`), the empirical column on
the writer, and the :class:`Certification` that reports it.

Also :func:`certify`, the Python entry: any module mapping [0, 1] images to logits, on a dataset
name, an ``(images, labels)`` pair or a TensorData.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advkit.certification.empirical import DEFAULT_M, DEFAULT_STEPS, empirical_column
from advkit.certification.outputs import (
    DEFAULT_ALPHA,
    DEFAULT_N,
    DEFAULT_N0,
    DEFAULT_SEED,
    DEFAULT_SKIP,
    stem,
)
from advkit.certification.report import Certification, default_radii
from advkit.certification.runner import certify_samples
from advkit.certification.smoothing import (
    DEFAULT_BATCH_SIZE,
    CertifyArgumentError,
    Smooth,
    check_draws,
    check_sigma,
)
from advkit.certification.statistics import clopper_pearson_lower, needed_n, radius_cap
from advkit.distributed import World

log = logging.getLogger("advkit.certification")

#: Training methods that add Gaussian noise (their model.json records a sigma).
NOISE_METHODS = ("gaussian", "smoothadv", "consistency")
DEFAULT_EMPIRICAL_EXAMPLES = 20
DEFAULT_EMPIRICAL_N = 1000


def check_parameters(sigma: float, n0: int, n: int, alpha: float, *, skip: int = 1,
                     n_examples: int = 1) -> float:  # fmt: skip
    """Every parameter checked, each failure one line saying what to change; sigma as float."""
    sigma = check_sigma(sigma)
    check_draws(n0, n, alpha)
    if skip < 1 or n_examples < 1:
        raise CertifyArgumentError("--skip and --n-examples must be at least 1 (counts of images)")
    if radius_cap(sigma, n, alpha) <= 0:
        bound = clopper_pearson_lower(n, n, alpha)
        raise CertifyArgumentError(
            f"with --n {n} and --alpha {alpha:g} every point abstains (even {n} of {n} draws "
            f"agreeing bound the top class's probability only by {bound:.3f} < 1/2): use --n "
            f"{needed_n(alpha)} or more (--n 100000 is Cohen et al.'s)"
        )
    return sigma


def noise_warning(method: Any, sigma: float) -> str | None:
    """A warning for certifying a model trained without Gaussian noise (or at another sigma),
    from model.json's ``method`` (``{"name": ..., "sigma": ...}``); None if it fits."""
    if method is None:
        return None
    name = method.get("name") if isinstance(method, Mapping) else str(method)
    trained = method.get("sigma") if isinstance(method, Mapping) else None
    if name not in NOISE_METHODS and trained is None:
        return (
            f"the model was trained with --method {name}, without Gaussian noise: its smoothed "
            f"classifier at sigma {sigma:g} will certify little (train with --method gaussian "
            f"--sigma {sigma:g} for a model made to be smoothed)"
        )
    if trained is not None and abs(float(trained) - sigma) > 1e-9:
        return (
            f"the model was trained with noise sigma {float(trained):g}, certified at sigma "
            f"{sigma:g}: expect fewer certificates than at its own sigma"
        )
    return None


def run_certification(
    model: nn.Module,
    test: Any,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA,
    n_examples: int | None = None,
    skip: int = DEFAULT_SKIP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    radii: Sequence[float] | None = None,
    confidence: float = 0.95,
    empirical_examples: int = DEFAULT_EMPIRICAL_EXAMPLES,
    empirical_n: int = DEFAULT_EMPIRICAL_N,
    empirical_m: int = DEFAULT_M,
    empirical_steps: int = DEFAULT_STEPS,
    device: torch.device | str | None = None,
    state_path: Path | None = None,
    world: World | None = None,
    quiet: bool = False,
    model_id: str = "",
    extra: Mapping[str, Any] | None = None,
    title: str = "model",
    warnings: Sequence[str] = (),
    save_every: float = 5.0,
    state_paths: Sequence[Path] = (),
) -> Certification | None:
    """CERTIFY every ``skip``-th image of ``test`` (the first ``n_examples`` of those), then, on
    the writer, the empirical column on the first ``empirical_examples``; None on other workers."""
    started = time.perf_counter()
    world = world or World()
    sigma = check_parameters(sigma, n0, n, alpha, skip=skip, n_examples=n_examples or 1)
    if not 0 < confidence < 1:
        raise CertifyArgumentError(f"--confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    indices = list(range(0, len(test), skip))[: n_examples or None]
    smooth = Smooth(model, sigma, seed=seed)
    for text in warnings:
        log.warning("%s", text)
    results = certify_samples(
        smooth, test, indices, n0=n0, n=n, alpha=alpha, batch_size=batch_size, device=device,
        state_path=state_path, model_id=model_id, world=world, quiet=quiet,
        save_every=save_every,
    )  # fmt: skip
    if results is None:
        return None
    if not state_paths and state_path is not None:
        state_paths = [state_path]
    timing = {"certify": time.perf_counter() - started}
    cap = radius_cap(sigma, n, alpha)
    radii = sorted({float(r) for r in radii}) if radii else default_radii(cap)
    cert = Certification(
        results, sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed, batch_size=batch_size,
        skip=skip, radii=radii, confidence=confidence, timing=timing, title=title,
        warnings=list(warnings), state_paths=list(state_paths),
        extra={"model": model_id, "workers": world.size, **(extra or {})},
    )  # fmt: skip
    count = min(empirical_examples, len(results))
    if count > 0:
        clock = time.perf_counter()
        chosen = test.take(torch.tensor(results.indices[:count], dtype=torch.int64))
        inputs = chosen.inputs(slice(0, count)).to(device)
        attacked = [r for r in radii if r <= cap]
        cert.empirical = empirical_column(
            smooth, inputs, chosen.labels.to(device), results.indices[:count],
            results.radii[:count], results.correct[:count], attacked, n=empirical_n,
            alpha=alpha, batch_size=batch_size, confidence=confidence, m=empirical_m,
            steps=empirical_steps,
        )  # fmt: skip
        cert.empirical_settings = {"examples": count, "n": empirical_n, "m": empirical_m,
                                   "steps": empirical_steps}  # fmt: skip
        cert.timing["empirical"] = time.perf_counter() - clock
    for flag in cert.flags():
        log.error("%s", flag)
    return cert


def certify(
    model: nn.Module,
    data: Any,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA,
    n_examples: int | None = None,
    skip: int = DEFAULT_SKIP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    radii: Sequence[float] | None = None,
    empirical_examples: int = DEFAULT_EMPIRICAL_EXAMPLES,
    empirical_n: int = DEFAULT_EMPIRICAL_N,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    quiet: bool = False,
) -> Certification:
    """Certify any ``model`` mapping [0, 1] images to logits as ``advkit certify`` does, and
    return the same :class:`Certification` (``.write(out_dir)`` writes its JSON, Markdown and
    figure; with ``out_dir`` that is done at once, resumably: a killed call run again goes on).

    ``data``: a dataset name (its test split), an ``(images, labels)`` pair (uint8, or float in
    [0, 1]) or a TensorData; ``mean``/``std`` put that normalization inside the model."""
    from advkit.data import DATASETS, load_dataset
    from advkit.data.user_data import as_tensor_data
    from advkit.evaluation.evaluate import _fingerprint, model_device
    from advkit.models import NormalizedModel
    from advkit.runlock import hold_outputs

    if not isinstance(model, nn.Module):
        raise CertifyArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (mean is None) != (std is None):
        raise CertifyArgumentError("mean and std go together: give both (one value per channel)")
    if mean is not None:
        model = NormalizedModel(model, mean, std).to(model_device(model))
    if isinstance(data, str):
        if data not in DATASETS.names():
            raise CertifyArgumentError(
                f"unknown dataset {data!r}; choose one of {', '.join(DATASETS.names())}, or pass "
                "(images, labels)"
            )
        test = load_dataset(data, data_dir, val_size=0, for_training=False).test
    else:
        test = as_tensor_data(data, "data")
    sigma = check_parameters(sigma, n0, n, alpha, skip=skip, n_examples=n_examples or 1)
    model_id = _fingerprint(model.state_dict().items())
    name = title or type(model).__name__
    origin = {"python": f"{type(model).__module__}.{type(model).__qualname__}",
              "dataset": data if isinstance(data, str) else "given images"}  # fmt: skip
    count = len(range(0, len(test), skip)[: n_examples or None])
    kwargs: dict[str, Any] = dict(
        sigma=sigma, n0=n0, n=n, alpha=alpha, n_examples=n_examples, skip=skip,
        batch_size=batch_size, seed=seed, radii=radii, empirical_examples=empirical_examples,
        empirical_n=empirical_n, quiet=quiet, model_id=model_id, title=name,
        extra={"model_origin": origin, "architecture": origin["python"]},
    )  # fmt: skip
    if out_dir is None:
        return _written_by_this_process(run_certification(model, test, **kwargs))
    base = stem(sigma, n0=n0, n=n, alpha=alpha, n_examples=count, skip=skip, seed=seed)
    folder = Path(out_dir)
    with hold_outputs(folder, base, "advkit.certify", hint=" or choose another out_dir"):
        state = folder / f"{base}.state.pt"
        cert = _written_by_this_process(run_certification(model, test, state_path=state, **kwargs))
        cert.write(folder)
    return cert


def _written_by_this_process(cert: Certification | None) -> Certification:
    if cert is None:  # only on a worker other than rank 0, which advkit.certify never is
        raise RuntimeError("advkit.certify runs in one process")
    return cert


__all__ = ["certify", "check_parameters", "noise_warning", "run_certification"]

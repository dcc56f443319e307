"""CERTIFY over a test set: one sample after another, resumable, shared out over workers.

Each worker takes a contiguous shard of the samples (``World.shard``) and certifies them one by
one; after each sample (at most every ``save_every`` seconds) its per-sample results are saved
(:class:`advkit.evaluation.state.EvalState`, atomic), so a killed certification resumes at the
first sample it had not saved. The state files stay until the report is written
(:meth:`advkit.certification.report.Certification.write` removes them): a failed write loses
nothing. Since every draw is keyed by the sample's index, any number of
workers, and any resume point, give the certificates of one uninterrupted process. The writer
gathers the shards in rank order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advkit import progress_display
from advkit.certification.smoothing import ABSTAIN, Smooth
from advkit.distributed import World
from advkit.evaluation.state import EvalState
from advkit.humanize import format_duration

log = logging.getLogger("advkit.certification")

#: The state's phase name; its chunks are the samples' positions in the certified list.
PHASE = "certify"


@dataclass
class SampleResults:
    """Per-sample results, in the order certified: the test-set index, the true label, the
    prediction (ABSTAIN = -1), the radius (pixel units, L2), and the seconds it took."""

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    radii: np.ndarray
    seconds: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @property
    def abstained(self) -> np.ndarray:
        return self.predictions == ABSTAIN

    def __len__(self) -> int:
        return len(self.indices)


def state_key(smooth: Smooth, *, n0: int, n: int, alpha: float, batch_size: int,
              indices: Sequence[int], model_id: str) -> dict[str, Any]:  # fmt: skip
    """What a saved state must match to be resumed: everything its certificates depend on."""
    listed = hashlib.sha256(json.dumps([int(i) for i in indices]).encode()).hexdigest()[:16]
    return {"sigma": smooth.sigma, "seed": smooth.seed, "n0": n0, "n": n, "alpha": alpha,
            "batch_size": batch_size, "indices": listed, "model": model_id}  # fmt: skip


def certify_samples(
    smooth: Smooth,
    test: Any,
    indices: Sequence[int],
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    state_path: Path | None = None,
    model_id: str = "",
    world: World | None = None,
    quiet: bool = False,
    save_every: float = 5.0,
) -> SampleResults | None:
    """CERTIFY the test samples at ``indices`` (positions in ``test``, a TensorData or
    streamed split); the writer gets every sample's results, the other workers None."""
    world = world or World()
    indices = [int(i) for i in indices]
    mine = list(range(len(indices)))[world.shard(len(indices))]
    key = state_key(smooth, n0=n0, n=n, alpha=alpha, batch_size=batch_size, indices=indices,
                    model_id=model_id)  # fmt: skip
    state = EvalState.open(state_path, key)
    count = len(mine)
    for name, dtype in (("predictions", torch.int64), ("radii", torch.float64),
                        ("seconds", torch.float64)):  # fmt: skip
        if state.values.get(name) is None or len(state.values[name]) != count:
            state.values[name] = torch.zeros(count, dtype=dtype)
            state.done = {}
    done = sum(1 for position in mine if state.is_done(PHASE, position))
    if done:
        log.info("resuming the certification: %d of %d samples done", done, count)
    subset = test.take(torch.tensor([indices[p] for p in mine], dtype=torch.int64))
    labels = subset.labels.clone()
    tracker = _Tracker(count, done, n0 + n, quiet or not world.is_writer, world.size)
    last_save = time.perf_counter()
    with tracker:
        for slot, position in enumerate(mine):
            if state.is_done(PHASE, position):
                continue
            clock = time.perf_counter()
            inputs = subset.inputs(slice(slot, slot + 1))[0].to(device)
            certificate = smooth.certify_one(inputs, n0, n, alpha, sample_id=indices[position],
                                             batch_size=batch_size,
                                             on_draws=tracker.draws)  # fmt: skip
            seconds = time.perf_counter() - clock
            state.values["predictions"][slot] = certificate.prediction
            state.values["radii"][slot] = certificate.radius
            state.values["seconds"][slot] = seconds
            state.done.setdefault(PHASE, set()).add(position)
            tracker.sample(certificate.prediction == int(labels[slot]) and certificate.radius > 0,
                           certificate.abstained)  # fmt: skip
            if time.perf_counter() - last_save >= save_every:
                state.save()
                last_save = time.perf_counter()
    state.save()
    own = {"predictions": state.values["predictions"].numpy(),
           "radii": state.values["radii"].numpy(), "seconds": state.values["seconds"].numpy(),
           "labels": labels.numpy()}  # fmt: skip
    parts = world.gather_objects(own)
    if parts is None:
        return None
    return SampleResults(
        indices=np.asarray(indices, dtype=np.int64),
        labels=np.concatenate([part["labels"] for part in parts]).astype(np.int64),
        predictions=np.concatenate([part["predictions"] for part in parts]).astype(np.int64),
        radii=np.concatenate([part["radii"] for part in parts]).astype(np.float64),
        seconds=np.concatenate([part["seconds"] for part in parts]).astype(np.float64),
    )  # fmt: skip


class _Tracker:
    """The certification's bar (draws done of all), with samples done, certified, abstained and
    the ETA; off a terminal a line at most every 30 s."""

    def __init__(self, samples: int, done: int, per_sample: int, quiet: bool, workers: int):
        self.samples, self.done, self.per_sample = samples, done, per_sample
        self.workers = workers
        self.certified = self.abstained = 0
        self.started = time.perf_counter()
        self.fresh_draws = 0
        self.bar = progress_display.bar(
            "certify", total=samples * per_sample, unit="draw", quiet=quiet,
            initial=done * per_sample,
        )  # fmt: skip

    def draws(self, count: int) -> None:
        self.fresh_draws += count
        self.bar.update(count)

    def sample(self, certified: bool, abstained: bool) -> None:
        self.done += 1
        self.certified += int(certified)
        self.abstained += int(abstained)
        rate = self.fresh_draws / max(time.perf_counter() - self.started, 1e-9)
        left = (self.samples - self.done) * self.per_sample / rate if rate > 0 else None
        eta = "?" if left is None else format_duration(left)
        shard = " (this worker's shard)" if self.workers > 1 else ""
        self.bar.set_postfix_str(
            f"{self.done}/{self.samples} samples{shard}, certified {self.certified}, abstained "
            f"{self.abstained}, ETA {eta}", refresh=False,
        )  # fmt: skip

    def __enter__(self) -> _Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

"""Run a suite of attacks on a test set and record, per sample, which attacks it withstands.

A sample is robust to an attack when it is correctly classified clean *and* under the attack, so
robust accuracy (over all evaluated samples) is never above clean accuracy. Attacks only run on
the samples classified correctly, in chunks of ``batch_size``; before each chunk torch's RNG is
seeded from (seed, attack, chunk) so a resumed evaluation reproduces an uninterrupted one, and
so that W workers, each taking every W-th chunk, reproduce one process: their per-sample
outcomes are summed over the workers after each pass (no padding, no sample counted twice).
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advkit.attacks import AttackStage, attack_mode, cascade
from advkit.data.tensors import unit_float
from advkit.distributed import World
from advkit.evaluation.attack_progress import AttackClock, Status
from advkit.evaluation.state import EvalState
from advkit.evaluation.suites import AttackEntry, Suite, build_suite
from advkit.threat import check_budget, check_unit_range, get_threat

CLEAN = "clean"
CASCADE = "cascade"


@dataclass(frozen=True)
class Progress(Status):
    """Reported after every chunk: the phase ("clean", an attack, "cascade"), units finished so
    far in the whole evaluation (a unit: a chunk of the clean pass, one attack on one chunk; in
    a cascade, one stage on one chunk), the total (an upper bound until clean accuracy is
    known) and whether the unit was read from saved state rather than computed.

    ``live`` reports come between those, while an attack runs (``done`` then has a fraction of
    the running unit, from the model calls so far). The attacks' reports also say which attack
    runs (``attack``, number ``attack_index`` of ``attacks``), its examples done of the total
    (this worker's; chunks whose turn of the attack is over), the examples still robust after
    it so far, and the seconds left, estimated, for the attack (in a cascade: on this chunk) and
    for the whole evaluation (None until something is measured to estimate from)."""

    phase: str
    done: float
    total: int | None
    resumed: bool
    live: bool = False


ProgressFn = Callable[[Progress], None]


@dataclass
class EvalResult:
    """Per-sample outcomes of one evaluation.

    Attributes:
        clean: (N,) bool, correctly classified without attack.
        robust: attack name -> (N,) bool, correctly classified clean and under that attack (for a
            cascade suite: under that attack and every earlier one).
        worst_case: (N,) bool, robust to every attack of the suite.
        seconds: compute time, summed over resumed sessions.
        earlier_seconds: of ``seconds``, what earlier (interrupted) sessions spent; 0 for an
            evaluation done in one go.
        labels: (N,) the evaluated samples' labels (for per-class accuracies), or None.
    """

    suite: str
    eps: float
    norm: str
    seed: int
    clean: Tensor
    robust: dict[str, Tensor]
    worst_case: Tensor
    seconds: float
    cascade: bool = False
    earlier_seconds: float = 0.0
    labels: Tensor | None = None

    @property
    def n_examples(self) -> int:
        return len(self.clean)

    def accuracies(self) -> dict[str, float]:
        """{"clean": ..., <attack>: ..., "worst_case": ...}: fractions of all evaluated samples."""
        columns = {CLEAN: self.clean, **self.robust, "worst_case": self.worst_case}
        return {name: float(values.float().mean()) for name, values in columns.items()}


def evaluate(
    model: nn.Module,
    inputs_or_data: Any,
    labels: Tensor | None = None,
    suite: str | Suite = "quick",
    *,
    eps: float,
    norm: str = "linf",
    batch_size: int = 256,
    seed: int = 0,
    state_path: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    world: World | None = None,
    keep_state: bool = False,
) -> EvalResult:
    """Evaluate ``model`` against the attacks of ``suite`` at radius ``eps`` (pixel units).

    Args:
        inputs_or_data: (N, C, H, W) inputs, float in [0, 1] or uint8, with ``labels`` (N,); or a
            dataset split with ``.images`` and ``.labels`` (then leave ``labels`` out).
        suite: a name in ``SUITES`` or a built ``Suite``.
        state_path: save per-sample results after every chunk there and resume from it; the file
            is deleted once the evaluation completes (with ``keep_state``, left to the caller,
            who deletes it once the results are safely written).
        progress: called with a ``Progress`` after every chunk (for progress bars).
        world: the workers sharing the evaluation (every one calls ``evaluate``; each returns
            the whole result). Each keeps its own ``state_path`` (give each rank its own file).
    """
    world = world or World()
    if isinstance(suite, str):
        suite = build_suite(suite, eps=eps, norm=norm, seed=seed)
    images, labels = _as_tensors(inputs_or_data, labels)
    check_budget(eps, norm, tuple(images.shape[1:]))
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1 (samples per batch), got {batch_size}")
    key: dict[str, Any] = {
        "suite": suite.name, "eps": float(eps), "norm": norm, "n_examples": len(labels),
        "seed": int(seed), "batch_size": int(batch_size), "world": [world.rank, world.size],
    }  # fmt: skip
    if state_path is not None:  # never resume with other weights or other test images
        key["model"] = _fingerprint(model.state_dict().items())
        key["data"] = _fingerprint([("images", images), ("labels", labels)])
    state = EvalState.open(state_path, key)
    runner = _Runner(
        model, images, labels, state, eps=float(eps), norm=norm, seed=seed,
        batch_size=batch_size, phases=len(suite.attacks), progress=progress, world=world,
        clock=AttackClock.of(model, suite.attacks, suite.cascade),
    )  # fmt: skip
    clean = runner.clean_pass()
    correct = clean.nonzero().squeeze(1)
    runner.set_total(correct)
    if suite.cascade:
        robust = runner.cascade_pass(suite, correct)
        worst = robust[suite.attacks[-1].name].clone()
    else:
        robust = {entry.name: runner.attack_pass(entry, correct) for entry in suite.attacks}
        worst = clean.clone()
        for values in robust.values():
            worst &= values
    seconds = runner.seconds()
    if not keep_state:
        state.remove()
    return EvalResult(
        suite=suite.name, eps=float(eps), norm=norm, seed=int(seed), clean=clean, robust=robust,
        worst_case=worst, seconds=seconds, cascade=suite.cascade,
        earlier_seconds=runner.prior_seconds, labels=labels,
    )  # fmt: skip


class _Runner:
    """The chunked loops of one evaluation, sharing the state, RNG seeding and progress."""

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        state: EvalState,
        *,
        eps: float,
        norm: str,
        seed: int,
        batch_size: int,
        phases: int,
        progress: ProgressFn | None,
        world: World,
        clock: AttackClock,
    ) -> None:
        self.model, self.images, self.labels, self.state = model, images, labels, state
        self.world = world
        self.device = model_device(model)
        self.seed, self.batch_size = seed, batch_size
        self.phases, self.progress = phases, progress
        self.started = time.perf_counter()
        self.prior_seconds = state.seconds
        self.done, self.total = 0, None
        self.budget = (eps, norm)
        self.clock = clock
        clean_chunks = len(range(world.rank, _count_chunks(len(labels), batch_size), world.size))
        self.total = clean_chunks * (1 + phases)  # at most: every example classified correctly

    def seconds(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.started

    def clean_pass(self) -> Tensor:
        n = len(self.labels)
        clean = self.state.values.setdefault(CLEAN, torch.zeros(n, dtype=torch.bool))
        mine = torch.zeros(n, dtype=torch.bool)
        for chunk, index in self._my_chunks(torch.arange(n), mine):
            if not self._skip(CLEAN, chunk):
                x, y = self._batch(index)
                clean[index] = predict(self.model, x).eq(y).cpu()
                self._finish(CLEAN, chunk)
        self.state.values[CLEAN] = self._combine(clean, mine)
        return self.state.values[CLEAN].clone()

    def attack_pass(self, entry: AttackEntry, correct: Tensor) -> Tensor:
        clean = self.state.values[CLEAN]
        robust = self.state.values.setdefault(entry.name, clean.clone())
        mine = torch.zeros(len(clean), dtype=torch.bool)
        for chunk, index in self._my_chunks(correct, mine):
            if not self._skip(entry.name, chunk, robust[index]):
                x, y = self._batch(index)
                self.clock.start(entry.name, len(index))
                self._report(entry.name, live=True)
                with self._seeded(entry.name, chunk), self._counting(entry.name):
                    adversarial = entry.attack(self.model, x, y)
                robust[index] = self._still_correct(x, adversarial, y)
                self.clock.done(entry.name, int(robust[index].sum()))
                self._finish(entry.name, chunk)
        return self._combine(robust, mine)

    def cascade_pass(self, suite: Suite, correct: Tensor) -> dict[str, Tensor]:
        clean = self.state.values[CLEAN]
        names = suite.names()
        robust = {name: self.state.values.setdefault(name, clean.clone()) for name in names}
        stages = [AttackStage(entry.name, entry.attack) for entry in suite.attacks]
        eps, norm = self.budget
        mine = torch.zeros(len(clean), dtype=torch.bool)
        for chunk, index in self._my_chunks(correct, mine):
            if not self._skip(CASCADE, chunk, *(robust[name][index] for name in names)):
                x, y = self._batch(index)
                with self._seeded(CASCADE, chunk), self._counting(CASCADE):
                    outcome = cascade(
                        self.model, x, y, stages, batch_size=self.batch_size, eps=eps, norm=norm,
                        on_stage=self._stage,
                    )  # fmt: skip
                for name, mask in zip(names, outcome.robust_masks.cpu(), strict=True):
                    robust[name][index] = mask
                self.clock.done(names[-1], int(robust[names[-1]][index].sum()))
                self._finish(CASCADE, chunk)
        return {name: self._combine(values, mine) for name, values in robust.items()}

    def _my_chunks(self, index: Tensor, mine: Tensor) -> Iterator[tuple[int, Tensor]]:
        """(number, sample indices) of this worker's chunks: every W-th, marked in ``mine``."""
        for chunk, part in enumerate(_chunks(index, self.batch_size)):
            if chunk % self.world.size == self.world.rank:
                mine[part] = True
                yield chunk, part

    def _combine(self, values: Tensor, mine: Tensor) -> Tensor:
        """Every worker's outcomes for its own samples, joined (a copy; alone, ``values``)."""
        if self.world.size == 1:
            return values.clone()
        # int32 counts travel on every backend (NCCL needs them on the GPU).
        counts = (values & mine).to(device=self.device, dtype=torch.int32)
        combined = self.world.all_reduce_sum(counts).cpu().bool()
        return torch.where(mine, values, combined)

    def _still_correct(self, inputs: Tensor, adversarial: Tensor, labels: Tensor) -> Tensor:
        _check_budget(inputs, adversarial, *self.budget)
        return predict(self.model, adversarial).eq(labels).cpu()

    def _batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The chunk on the device: the stored pixels travel (uint8: a quarter of float32's
        bytes), converted there (the same bits as on the host)."""
        images = self.images[index].to(self.device, non_blocking=True)
        return unit_float(images), self.labels[index].to(self.device, non_blocking=True)

    @contextmanager
    def _seeded(self, phase: str, chunk: int) -> Iterator[None]:
        """Seed torch's RNG from (seed, phase, chunk); the caller's RNG state is restored after."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(zlib.crc32(f"{self.seed}/{phase}/{chunk}".encode()))
            yield

    def set_total(self, correct: Tensor) -> None:
        """Once clean accuracy is known: this worker's units of the whole evaluation."""
        sizes = [len(part) for chunk, part in enumerate(_chunks(correct, self.batch_size))
                 if chunk % self.world.size == self.world.rank]  # fmt: skip
        self.total = self.done + self.phases * len(sizes)
        self.clock.plan(sizes)

    def _skip(self, phase: str, chunk: int, *robust: Tensor) -> bool:
        """Whether saved state has the chunk's ``phase`` done (then reported, one unit per
        attack, ``robust`` its outcomes)."""
        if not self.state.is_done(phase, chunk):
            return False
        if phase == CLEAN:
            self._report(phase, resumed=True)
        for name, values in zip(self.clock.attacks if phase == CASCADE else [phase], robust,
                                strict=False):  # fmt: skip
            self.clock.done(name, int(values.sum()), computed=False)
            self._report(phase, resumed=True)
        return True

    def _finish(self, phase: str, chunk: int) -> None:
        self.state.mark_done(phase, chunk, self.seconds())
        self._report(phase, resumed=False)

    def _stage(self, index: int, name: str, attacking: int) -> None:
        """A cascade stage starts on ``attacking`` examples of the chunk: the one before it is a
        unit done, with those still robust."""
        if index > 0:
            self.clock.done(list(self.clock.attacks)[index - 1], attacking)
            self._report(CASCADE, resumed=False)
        self.clock.start(name, attacking)
        self._report(CASCADE, live=True)

    def _counting(self, phase: str) -> AbstractContextManager[None]:
        """Count the model's calls for the live reports: no hook in the attacks' loop when
        nobody watches."""
        if self.progress is None:
            return nullcontext()
        return self.clock.counting(self._live(phase))

    def _live(self, phase: str) -> Callable[[float], None]:
        return lambda fraction: self._report(phase, live=True, fraction=fraction)

    def _report(
        self, phase: str, *, resumed: bool = False, live: bool = False, fraction: float = 0.0
    ) -> None:
        self.done += 0 if live else 1
        if self.progress is not None:
            status = vars(self.clock.status()) if phase != CLEAN else {}
            self.progress(Progress(phase, self.done + fraction, self.total, resumed, live,
                                   **status))  # fmt: skip


def predict(model: nn.Module, inputs: Tensor) -> Tensor:
    """Predicted labels in eval mode, without gradients."""
    with torch.no_grad(), attack_mode(model, train=False):
        return model(inputs).argmax(dim=1)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _as_tensors(inputs_or_data: Any, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    if isinstance(inputs_or_data, Tensor):
        images = inputs_or_data
        if labels is None:
            raise ValueError(
                "pass the labels with the inputs: evaluate(model, inputs, labels, ...)"
            )
    else:
        images, labels = inputs_or_data.images, inputs_or_data.labels
    labels = torch.as_tensor(labels).long().cpu()
    images = images.detach().cpu()
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"need as many labels as inputs and at least one sample, got {len(images)} inputs "
            f"and {len(labels)} labels"
        )
    if images.dtype != torch.uint8:
        check_unit_range(images)
    return images, labels


def _chunks(index: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Consecutive pieces of ``index`` of at most ``batch_size`` (none for an empty index)."""
    if len(index):
        yield from index.split(batch_size)


def _count_chunks(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def _fingerprint(tensors: Iterable[tuple[str, Tensor]]) -> str:
    """A short hash of named tensors (weights, data), to tell evaluations apart."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _check_budget(inputs: Tensor, adversarial: Tensor, eps: float, norm: str) -> None:
    """Fail loudly if an attack returned inputs outside the eps-ball or the [0, 1] box."""
    size = get_threat(norm).norm(adversarial - inputs).max()
    largest, low, high = torch.stack([size, adversarial.min(), adversarial.max()]).tolist()
    if largest > eps * (1 + 1e-4) + 1e-6 or low < -1e-6 or high > 1 + 1e-6:
        raise RuntimeError(
            f"an attack returned inputs outside the {norm} ball of radius {eps} or the [0, 1] box "
            f"(largest perturbation {largest:.6g}, values in [{low:.3g}, {high:.3g}]); this is a "
            "bug in the attack and its numbers would be meaningless"
        )

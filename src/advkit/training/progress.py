"""What a user watches during training: a progress bar over an epoch's batches showing loss,
accuracy, LR, images/s and the run's ETA; a bar over each end-of-epoch measurement
(validation, the tracked samples, the guard's checks); one readable log line per epoch
(``epoch_line``); and the plan of a run before it starts (``training_plan``).

Bars come from :mod:`advkit.progress_display` (a terminal, a notebook, or a log file written a
line at a time); none with ``quiet`` or on a worker other than the writer. Postfix updates read
tensors back from the device only every ``refresh`` steps so the bar costs no synchronization
in between; the ETA is the mean time of this session's epochs (measurements included) times
the epochs left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from advkit import progress_display
from advkit.config import TrainConfig
from advkit.distributed import World
from advkit.humanize import format_duration, format_eps
from advkit.methods import Method
from advkit.training.optim import scaled_lr


class Trainer(Protocol):
    """What this module reads of a trainer (``advkit.training.trainer.Trainer``), named here so
    that the display does not import the loop it displays."""

    config: TrainConfig
    world: World
    method: Method
    best: Any
    train_data: Any
    epoch: int
    batch: int
    epochs: int
    batches_per_epoch: int
    total_updates: int


class RunClock:
    """The run's progress in epochs (fractional) against wall time since this session began:
    ``eta`` is the mean time of an epoch so far times the epochs left."""

    def __init__(self, epochs: int, position: float = 0.0, *, quiet: bool = False) -> None:
        self.epochs = epochs
        self.first = position  # where this session started (a resumed run starts mid-way)
        self.started = time.perf_counter()
        self.epoch = int(position)  # the epoch being trained or measured (0-based)
        self.quiet = quiet

    def eta(self, position: float) -> float | None:
        """Seconds left at ``position`` epochs done (None until some progress is made)."""
        done = position - self.first
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * max(self.epochs - position, 0.0)

    def label(self) -> str:
        return f"epoch {self.epoch + 1}/{self.epochs}"


_clock: ContextVar[RunClock | None] = ContextVar("advkit_run_clock", default=None)


@contextmanager
def showing_run(trainer: Trainer) -> Iterator[RunClock]:
    """The run's clock while ``trainer`` trains: the epoch bars read their ETA from it, the
    measurements (:func:`measurement_bar`) their label and whether to show anything."""
    position = trainer.epoch + trainer.batch / trainer.batches_per_epoch
    quiet = trainer.config.quiet or not trainer.world.is_writer
    token = _clock.set(RunClock(trainer.epochs, position, quiet=quiet))
    try:
        yield _clock.get()
    finally:
        _clock.reset(token)


def epoch_bar(trainer: Trainer) -> Progress:
    """The bar of the epoch ``trainer`` starts (or continues) now."""
    clock = _clock.get() or RunClock(trainer.epochs, trainer.epoch + trainer.batch
                                     / trainer.batches_per_epoch)  # fmt: skip
    clock.epoch = trainer.epoch
    quiet = trainer.config.quiet or not trainer.world.is_writer
    return Progress(total=trainer.batches_per_epoch, initial=trainer.batch, desc=clock.label(),
                    disable=quiet, clock=clock)  # fmt: skip


@contextmanager
def measurement_bar(desc: str, total: int) -> Iterator[Any]:
    """A bar over ``total`` batches of an end-of-epoch measurement while a run shows progress
    (:func:`showing_run`), labelled with the epoch; a disabled one otherwise."""
    clock = _clock.get()
    quiet = clock is None or clock.quiet
    label = f"{clock.label()} {desc}" if clock is not None else desc
    bar = progress_display.bar(label, total, unit="batch", quiet=quiet)
    try:
        yield bar
    finally:
        bar.close()


class Progress:
    """The bar of one epoch (a disabled one draws nothing and costs nothing)."""

    def __init__(
        self, total: int, initial: int = 0, desc: str = "", disable: bool = False,
        refresh: int = 20, clock: RunClock | None = None,
    ) -> None:  # fmt: skip
        self.disable = disable
        self.refresh = refresh
        self.total = total
        self.desc = desc
        self.clock = clock
        self._bar = None if disable else progress_display.bar(
            desc, total, unit="batch", initial=initial
        )  # fmt: skip
        self._steps = 0
        self._images = 0
        self._started = time.perf_counter()
        self._shown = self._started

    def update(self, totals: Any, lr: float, batch_images: int) -> None:
        if self._bar is None:
            return
        self._steps += 1
        self._images += batch_images
        now = time.perf_counter()
        if self.clock is not None and now - self._shown >= 1.0:
            self._shown = now
            eta = self.clock.eta(self.clock.epoch + (self._bar.n + 1) / max(self.total, 1))
            if eta is not None:
                self._bar.set_description(f"{self.desc}, run ETA {format_duration(eta)}",
                                          refresh=False)  # fmt: skip
        if self._steps % self.refresh == 0:
            seen = max(totals.seen, 1)
            rate = self._images / max(now - self._started, 1e-9)
            self._bar.set_postfix(
                loss=f"{totals.loss.item() / seen:.3f}", acc=f"{totals.correct.item() / seen:.3f}",
                lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False,
            )  # fmt: skip
        self._bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def epoch_line(history: list[dict[str, Any]], epochs: int) -> str:
    """The last epoch of ``history`` as one readable log line, e.g.

    ``epoch 3/10  loss 0.812  acc 71.2%  val clean 80.1%  PGD 63.4%  lr 0.0421  42.0 s``

    (with several workers: ``42.0 s (communicating 1.3 s)``; during a run that shows its
    progress, :func:`showing_run`, and with epochs left: ``  ETA 4 min 12 s``, the run's).

    The time is the epoch's own training time; metrics.jsonl keeps every value at full precision.
    """
    record = history[-1]
    before = history[-2]["train_seconds"] if len(history) > 1 else 0.0
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"loss {record['train_loss']:.3f}",
        f"acc {_percent(record['train_acc'])}",
    ]
    extra = [k for k in record if k.startswith("train_") and k not in _TRAIN_KEYS
             and not k.startswith("train_sample_")]  # fmt: skip
    parts += [f"{k.removeprefix('train_')} {record[k]:.3g}" for k in extra]
    if "val_clean" in record:
        parts.append(f"val clean {_percent(record['val_clean'])}")
    if "val_pgd" in record:
        parts.append(f"PGD {_percent(record['val_pgd'])}")
    if "train_sample_pgd" in record:
        parts.append(f"train sample PGD {_percent(record['train_sample_pgd'])}")
    if "val_grad_align" in record:
        parts.append(f"grad align {record['val_grad_align']:.3f}")
    if "co_pgd" in record:
        guard = f"guard FGSM {_percent(record['co_fgsm'])} PGD {_percent(record['co_pgd'])}"
        parts.append(guard + (" COLLAPSED" if record.get("co_collapsed") else ""))
    parts.append(f"lr {record['lr']:.3g}")
    parts.append(format_duration(record["train_seconds"] - before))
    if record.get("comm_iterations"):
        parts[-1] += f" (communicating {format_duration(record['comm_seconds'])})"
    clock = _clock.get()
    eta = clock.eta(record["epoch"]) if clock is not None and record["epoch"] < epochs else None
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return "  ".join(parts)


_TRAIN_KEYS = {"train_loss", "train_acc", "train_seconds"}


def diverged_line(trainer: Trainer, train_loss: float) -> str:
    """The warning of a run stopped by a non-finite training loss: what is kept, what to do."""
    if trainer.config.select != "best":
        kept = "--select last keeps its weights, which are not finite"
    elif trainer.best.epoch:
        kept = f"epoch {trainer.best.epoch}'s weights (best validation) are kept"
    else:
        kept = "no earlier epoch gave a model to keep"
    return (
        f"training diverged in epoch {trainer.epoch} (train loss {train_loss}): stopped; {kept}; "
        f"train again with a lower --lr (this run's peak: {scaled_lr(trainer.config):.3g}) or a "
        "longer warm-up"
    )


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


#: Method attributes that every method has or that rarely matter to a reader of the plan.
_PLAN_SKIP = {"norm", "label_smoothing", "step_scale", "attack_train_mode", "random_start"}


def training_plan(trainer: Trainer) -> str:
    """What a trainer will run, from its resolved config and method, in three lines, e.g.

    ``free (replays 4), linf eps=0.1, cnn-small on fashion-mnist``
    ``12 passes over 55000 training images (epochs 48 in the Free-AT paper's count: ...)``
    ``430 minibatches of 128 per pass, 4 weight updates each: 20640 weight updates``
    """
    config, method = trainer.config, trainer.method
    settings = [
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in method.describe().items()
        if key not in _PLAN_SKIP and value is not None
    ]
    what = config.method + (f" ({', '.join(settings)})" if settings else "")
    threat = f"{config.norm} eps={format_eps(config.eps)}" if method.adversarial else "no attack"
    updates = method.updates_per_batch
    passes = f"{trainer.epochs} {'pass' if trainer.epochs == 1 else 'passes'} over "
    passes += f"{len(trainer.train_data)} training images"
    if config.paper_epochs and updates > 1:
        passes += f" (epochs {config.epochs} in the Free-AT paper's count: passes x {updates})"
    steps = f"{trainer.batches_per_epoch} minibatches of {config.batch_size} per pass"
    steps += f", {updates} weight updates each" if updates > 1 else ""
    steps += f": {trainer.total_updates} weight updates"
    return f"{what}, {threat}, {config.model} on {config.dataset}\n{passes}\n{steps}"

"""Running the sanity checks: what they see, at which level, within what budget, timed.

Two levels (``CheckContext.level``) run the same checks at two sizes. "full" runs each at a fixed
size: 64 points, PGD-20 with CE and CW loss to find the points the black-box check attacks, and
Square with 300 queries. "fast" (the CLI's default) is sized from a budget in forward-equivalents
(see ``advkit.evaluation.cost``): the per-point checks cost at most ``FAST_COST_PER_POINT`` each
(the large-eps check takes 5 PGD steps instead of 20), and the black-box check, run last, attacks
the points the evaluation itself left robust with Square, its query count sized to what is left
of the budget. ``fast_budget`` sets that budget to ``FAST_FRACTION`` of the evaluation's own cost,
or ``FAST_MIN_BUDGET`` if that is larger, and ``check_sample_size`` sizes the sample to fit it.
The fast level drops no check; it gives up power: fewer points (16 to 64), and a black-box check
that trusts the evaluation's own attacks (for the quick suite, PGD-20 with CE loss only) and gets
fewer queries; at the smallest budget Square runs 25 queries on a few points, where the gradient
checks (zero gradient, large eps) still flag a masked model.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from advkit.data.tensors import unit_float
from advkit.evaluation.cost import CALL_COST, count_forwards
from advkit.evaluation.evaluate import Progress, ProgressFn, model_device
from advkit.registry import Registry

#: ``--checks`` levels: "none" runs no check; see the module docstring for the other two.
CHECK_LEVELS = ("none", "fast", "full")
DEFAULT_CHECK_LEVEL = "fast"
#: Sample points of the full level (and the most of the fast one).
FULL_SAMPLE = 64
#: The fast level spends at most this fraction of the evaluation's cost (forward-equivalents) ...
FAST_FRACTION = 0.25
#: ... or this many forward-equivalents (about PGD-20 on 16 points) if that is more.
FAST_MIN_BUDGET = 640
#: The fast level's sample is never smaller than this (unless fewer points were evaluated).
FAST_MIN_SAMPLE = 16
#: Forward-equivalents per sample point of every fast check but black_box: 1 + 2 for the output
#: checks, 2 for the input gradient, 6 for the two FGSMs, 11 for PGD-5 at the large radius ...
FAST_COST_PER_POINT = 22
#: ... and their model calls, each costing ``CALL_COST`` whatever the sample size.
FAST_CALLS = 14
#: PGD steps of the fast level's large-eps check (a radius that large needs few steps).
FAST_LARGE_EPS_STEPS = 5
#: The fast black-box check attacks fewer points rather than run Square with fewer queries.
FAST_MIN_QUERIES = 25


@dataclass
class CheckContext:
    """What the checks see.

    Attributes:
        inputs, labels: a small sample of the evaluated set (float in [0, 1]), e.g. 64 points.
        eps, norm: the evaluation's threat model (eps in pixel units).
        accuracies: the evaluation's robust accuracies by column (``EvalResult.accuracies()``).
        n_examples: how many samples those accuracies are over (for the noise margin).
        cascade: whether the accuracies are cumulative (a cascade suite such as autoattack).
        sweep: ``[(eps, robust accuracy), ...]`` of an eps sweep, if one was run.
        level: "full" or "fast" (see the module docstring).
        budget: forward-equivalents the checks still may spend (fast level; None: no limit).
        robust: (len(inputs),) bool, the points of the sample that withstood every attack of the
            evaluation (``EvalResult.worst_case``); the fast black-box check attacks those. None:
            it finds them with PGD-20 itself.
    """

    model: nn.Module
    inputs: Tensor
    labels: Tensor
    eps: float
    norm: str = "linf"
    seed: int = 0
    accuracies: dict[str, float] = field(default_factory=dict)
    n_examples: int = 0
    cascade: bool = False
    sweep: Sequence[tuple[float, float]] = ()
    level: str = "full"
    budget: int | None = None
    robust: Tensor | None = None


#: A check returns its warning, or None when it tested and saw nothing; it raises CheckSkipped
#: (no budget) or CheckNotApplicable (nothing to test) with the reason.
CheckFn = Callable[[CheckContext], str | None]
#: Metadata ``last=True``: the check sizes itself to what the others left of the budget.
CHECKS: Registry[CheckFn] = Registry("sanity check")


class CheckSkipped(Exception):
    """Raised by a check that cannot run meaningfully within its budget; the reason is reported."""


class CheckNotApplicable(Exception):
    """Raised by a check with nothing to test on this evaluation (e.g. no PGD-100 column to
    compare with PGD-20); the reason is reported, and the check is not read as passed."""


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: its warning (None: quiet), wall time, cost in forward-equivalents, why
    it was skipped (None: it ran) and why it did not apply (None: it did)."""

    name: str
    warning: str | None
    seconds: float
    cost: int
    skipped: str | None = None
    not_applicable: str | None = None

    @property
    def status(self) -> str:
        """ "fired", "quiet" (it tested and saw nothing), "skipped" or "not applicable"."""
        if self.skipped is not None:
            return "skipped"
        if self.not_applicable is not None:
            return "not applicable"
        return "quiet" if self.warning is None else "fired"


@dataclass(frozen=True)
class CheckReport:
    """The checks of one evaluation: level, sample size, budget (None: unbounded) and outcomes."""

    level: str
    sample: int
    budget: int | None
    outcomes: tuple[CheckOutcome, ...] = ()

    @property
    def warnings(self) -> list[str]:
        return [o.warning for o in self.outcomes if o.warning is not None]

    @property
    def seconds(self) -> float:
        return sum(outcome.seconds for outcome in self.outcomes)

    @property
    def cost(self) -> int:
        return sum(outcome.cost for outcome in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: level, sample, budget, total seconds and cost, one entry per check."""
        return {
            "level": self.level, "sample": self.sample, "budget": self.budget,
            "seconds": round(self.seconds, 3), "cost": self.cost,
            "runs": [
                {"name": o.name, "status": o.status, "fired": o.warning is not None,
                 "seconds": round(o.seconds, 3), "cost": o.cost, "skipped": o.skipped,
                 "not_applicable": o.not_applicable}
                for o in self.outcomes
            ],
        }  # fmt: skip


def fast_budget(evaluation_cost: float) -> int:
    """Forward-equivalents the fast checks may spend after an evaluation of that cost:
    ``FAST_FRACTION`` of it, or ``FAST_MIN_BUDGET`` if that is more."""
    return max(int(FAST_FRACTION * evaluation_cost), FAST_MIN_BUDGET)


def check_sample_size(level: str, available: int, budget: int | None = None) -> int:
    """Sample points for the checks: ``FULL_SAMPLE`` at the full level; at the fast level as many
    as half of ``budget`` pays for (the other half is left to the black-box check), within
    [``FAST_MIN_SAMPLE``, ``FULL_SAMPLE``]; never more than ``available``."""
    _check_level(level)
    if level == "fast" and budget is not None:
        affordable = (budget // 2 - CALL_COST * FAST_CALLS) // FAST_COST_PER_POINT
        return max(0, min(available, FULL_SAMPLE, max(FAST_MIN_SAMPLE, affordable)))
    return max(0, min(available, FULL_SAMPLE))


def check_all(
    context: CheckContext,
    names: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> CheckReport:
    """Run the checks ``names`` (default: every registered one), each timed and counted.

    The checks registered with ``last=True`` run after the others, with what they left of
    ``context.budget``. ``progress`` gets a ``Progress`` (phase: the check's name) before each.
    """
    _check_level(context.level)
    device = model_device(context.model)
    context = replace(
        context, inputs=unit_float(context.inputs).to(device), labels=context.labels.to(device)
    )
    names = list(CHECKS.names() if names is None else names)
    names.sort(key=lambda name: bool(CHECKS.meta(name).get("last")))
    outcomes = []
    for done, name in enumerate(names):
        if progress is not None:
            progress(Progress(name, done, len(names), resumed=False))
        spent = sum(outcome.cost for outcome in outcomes)
        left = None if context.budget is None else max(context.budget - spent, 0)
        warning, skipped, not_applicable = None, None, None
        started = time.perf_counter()
        with _seeded(context, name), count_forwards(context.model) as count:
            try:
                warning = CHECKS.get(name)(replace(context, budget=left))
            except CheckSkipped as reason:
                skipped = str(reason)
            except CheckNotApplicable as reason:
                not_applicable = str(reason)
        seconds = time.perf_counter() - started
        outcomes.append(CheckOutcome(name, warning, seconds, count.cost, skipped, not_applicable))
    if progress is not None:
        progress(Progress("checks", len(names), len(names), resumed=False))
    budget = context.budget if context.level == "fast" else None
    return CheckReport(context.level, len(context.labels), budget, tuple(outcomes))


def run_checks(context: CheckContext, names: Sequence[str] | None = None) -> list[str]:
    """The warnings of the checks ``names`` (default: every registered one)."""
    return check_all(context, names).warnings


def _check_level(level: str) -> None:
    if level not in CHECK_LEVELS[1:]:
        raise ValueError(f"check level must be one of {', '.join(CHECK_LEVELS[1:])}, got {level!r}")


@contextmanager
def _seeded(context: CheckContext, name: str) -> Iterator[None]:
    device = model_device(context.model)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(zlib.crc32(f"{context.seed}/check/{name}".encode()))
        yield

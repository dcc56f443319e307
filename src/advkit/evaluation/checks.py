"""Sanity checks that catch evaluations overstating robustness, each on a small sample.

A check takes a :class:`CheckContext` and returns ``None`` when all is well, else a warning that
says what was seen, what it usually means and what to do. Checks reading the evaluation's
accuracies (or the eps sweep) cost nothing; the others run a few cheap attacks on the sample.

Gradient masking, randomness and catastrophic overfitting make weak attacks look strong: see
Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018
(arXiv:1802.00420) and Carlini et al., "On Evaluating Adversarial Robustness" (arXiv:1902.06705).

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

import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks import attack_mode, fgsm, pgd, square
from advkit.evaluation.cost import CALL_COST, count_forwards
from advkit.evaluation.evaluate import Progress, ProgressFn, model_device, predict, to_unit_float
from advkit.evaluation.suites import SQUARE_NORMS
from advkit.registry import Registry

#: A fraction of points with a zero input gradient above this is flagged.
ZERO_GRADIENT_FRACTION = 0.1
#: FGSM robust accuracy this much above PGD-20's is the catastrophic-overfitting signature.
FGSM_PGD_GAP = 0.3
#: FGSM from a random start beating FGSM from the clean point by this much is flagged.
RANDOM_START_GAP = 0.1
#: Square breaking at least this fraction of the points the gradient attacks left is flagged.
BLACK_BOX_FRACTION = 0.05
#: Robust accuracy above this at a radius that should break everything is flagged.
LARGE_EPS_ACCURACY = 0.2
#: Radius "large enough to break everything": L-inf 0.5 (any image can become uniform grey).
LARGE_LINF_EPS = 0.5
#: Queries of the Square attack run by the black-box check (the most the fast level runs).
CHECK_QUERIES = 300

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


CheckFn = Callable[[CheckContext], str | None]
#: Metadata ``last=True``: the check sizes itself to what the others left of the budget.
CHECKS: Registry[CheckFn] = Registry("sanity check")


class CheckSkipped(Exception):
    """Raised by a check that cannot run meaningfully within its budget; the reason is reported."""


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: its warning (None: quiet), wall time, cost in forward-equivalents, and
    why it was skipped (None: it ran)."""

    name: str
    warning: str | None
    seconds: float
    cost: int
    skipped: str | None = None


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
                {"name": o.name, "fired": o.warning is not None, "seconds": round(o.seconds, 3),
                 "cost": o.cost, "skipped": o.skipped}
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
        context, inputs=to_unit_float(context.inputs).to(device), labels=context.labels.to(device)
    )
    names = list(CHECKS.names() if names is None else names)
    names.sort(key=lambda name: bool(CHECKS.meta(name).get("last")))
    outcomes = []
    for done, name in enumerate(names):
        if progress is not None:
            progress(Progress(name, done, len(names), resumed=False))
        spent = sum(outcome.cost for outcome in outcomes)
        left = None if context.budget is None else max(context.budget - spent, 0)
        warning, skipped = None, None
        started = time.perf_counter()
        with _seeded(context, name), count_forwards(context.model) as count:
            try:
                warning = CHECKS.get(name)(replace(context, budget=left))
            except CheckSkipped as reason:
                skipped = str(reason)
        seconds = time.perf_counter() - started
        outcomes.append(CheckOutcome(name, warning, seconds, count.cost, skipped))
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


@CHECKS.register("probabilities")
def outputs_are_probabilities(context: CheckContext) -> str | None:
    """Outputs non-negative with rows summing to 1: a softmax where logits belong."""
    outputs = _outputs(context)
    sums = outputs.sum(dim=1)
    if bool((outputs >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
        return (
            "the model outputs look like probabilities (non-negative, each row sums to 1), not "
            "logits: attacks on a softmax output get vanishing gradients and overstate "
            "robustness. Remove the final softmax so the model returns logits, then re-evaluate."
        )
    return None


@CHECKS.register("deterministic")
def nondeterministic(context: CheckContext) -> str | None:
    """Two forward passes in eval mode that differ: randomness that weakens gradient attacks."""
    first, second = _outputs(context), _outputs(context)
    difference = float((first - second).abs().max())
    if difference > 1e-4 * (1 + float(first.abs().max())):
        return (
            f"the model is not deterministic in eval mode (two passes on the same inputs differ "
            f"by up to {difference:.3g}): randomness (dropout left on, random transforms, noise "
            "layers) makes gradient attacks look weaker than they are. Make eval mode "
            "deterministic, or evaluate with expectation over transformation (averaging "
            "gradients over the randomness)."
        )
    return None


@CHECKS.register("zero_gradient")
def zero_gradient(context: CheckContext) -> str | None:
    """Many points where the loss has an exactly zero (or non-finite) input gradient."""
    inputs = context.inputs.detach().clone().requires_grad_(True)
    with attack_mode(context.model, train=False):
        loss = F.cross_entropy(context.model(inputs).float(), context.labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inputs)
    flat = grad.flatten(1)
    bad = (flat.abs().amax(dim=1) == 0) | ~torch.isfinite(flat).all(dim=1)
    fraction = float(bad.float().mean())
    if fraction > ZERO_GRADIENT_FRACTION:
        return (
            f"{fraction:.0%} of the sample points have a zero (or non-finite) input gradient: "
            "gradient attacks cannot move from them, so their robust accuracy means little. "
            "Usual causes: non-differentiable preprocessing (rounding, quantization, JPEG), a "
            "saturated softmax, or huge logits. Check with a black-box attack "
            "(--suite autoattack runs Square) and remove the masking."
        )
    return None


@CHECKS.register("more_steps")
def more_steps_weaker(context: CheckContext) -> str | None:
    """PGD-100 leaving noticeably more points robust than PGD-20."""
    acc = context.accuracies
    if "pgd20" not in acc or "pgd100" not in acc:
        return None
    rise = acc["pgd100"] - acc["pgd20"]
    if rise > _margin(acc["pgd20"], context.n_examples):
        return (
            f"robust accuracy rises with more attack steps (PGD-20 {acc['pgd20']:.1%}, PGD-100 "
            f"{acc['pgd100']:.1%}): a stronger attack should never do worse. The loss surface is "
            "likely masked or noisy; try other losses (CW, DLR), restarts and a black-box attack."
        )
    return None


@CHECKS.register("sweep_rises")
def sweep_rises(context: CheckContext) -> str | None:
    """Robust accuracy that rises with eps in the sweep."""
    points = sorted(context.sweep)
    for (eps_a, acc_a), (eps_b, acc_b) in pairwise(points):
        if acc_b - acc_a > _margin(acc_a, context.n_examples):
            return (
                f"robust accuracy rises with the radius (eps {eps_a:.4g}: {acc_a:.1%}, eps "
                f"{eps_b:.4g}: {acc_b:.1%}): a larger budget contains every smaller one, so the "
                "attack is failing at the larger radius. Suspect gradient masking; check the step "
                "size and use a stronger or black-box attack."
            )
    return None


@CHECKS.register("catastrophic_overfitting")
def catastrophic_overfitting(context: CheckContext) -> str | None:
    """FGSM far weaker than PGD, or FGSM from a random start stronger than from the clean point."""
    acc = context.accuracies
    if "fgsm" in acc and "pgd20" in acc and acc["fgsm"] - acc["pgd20"] > FGSM_PGD_GAP:
        return (
            f"FGSM robust accuracy ({acc['fgsm']:.1%}) is far above PGD-20's ({acc['pgd20']:.1%}):"
            " the signature of catastrophic overfitting (the loss is linear-looking only at the "
            "clean point). Trust PGD, not FGSM; if the model was trained with FGSM, use a random "
            "start with a smaller step, GradAlign, or PGD training."
        )
    model, inputs, labels = context.model, context.inputs, context.labels
    at_zero = _robust(
        model, fgsm(model, inputs, labels, eps=context.eps, norm=context.norm), labels
    )
    randomized = fgsm(model, inputs, labels, eps=context.eps, norm=context.norm, random_start=True)
    at_random = _robust(model, randomized, labels)
    if at_zero - at_random > max(RANDOM_START_GAP, _margin(at_zero, len(labels))):
        return (
            f"FGSM from a random start breaks more points than FGSM from the clean point (robust "
            f"{at_random:.1%} vs {at_zero:.1%}): the gradient at the clean point misleads, the "
            "signature of catastrophic overfitting or gradient masking. Trust multi-step attacks "
            "with random starts, and retrain with a method that keeps the loss locally linear."
        )
    return None


@CHECKS.register("black_box", last=True)
def black_box_wins(context: CheckContext) -> str | None:
    """The black-box Square attack breaking points that the gradient attacks missed: PGD-20 with
    CE and with CW loss (full level), the evaluation's attacks (fast level)."""
    acc = context.accuracies
    if context.cascade and "square" in acc:
        names = list(acc)
        before = acc[names[names.index("square") - 1]]
        broken = before - acc["square"]
        if broken * context.n_examples >= 2 and broken > BLACK_BOX_FRACTION * before:
            return _black_box_message(broken / before)
        return None
    if context.norm not in SQUARE_NORMS:
        return None
    model, inputs, labels = context.model, context.inputs, context.labels
    with count_forwards(model) as spent:
        if context.level == "fast" and context.robust is not None:
            survivors = context.robust.to(inputs.device).bool()
        else:
            survivors = predict(model, inputs).eq(labels)
            losses = ("ce", "cw") if context.level == "full" else ("ce",)
            for loss in losses:
                survivors &= predict(model, _pgd20(context, inputs, labels, loss=loss)).eq(labels)
    if int(survivors.sum()) < 2:
        return None
    x, y = inputs[survivors], labels[survivors]
    queries = CHECK_QUERIES
    if context.level == "fast" and context.budget is not None:
        x, y, queries = _fit_square(x, y, context.budget - spent.cost)
    adversarial = square(model, x, y, eps=context.eps, norm=context.norm, queries=queries)
    broken = int((~predict(model, adversarial).eq(y)).sum())
    if broken >= 2 and broken > BLACK_BOX_FRACTION * len(y):
        return _black_box_message(broken / len(y))
    return None


@CHECKS.register("large_eps")
def robust_at_large_eps(context: CheckContext) -> str | None:
    """Points still robust at a radius that allows turning any image into uniform grey."""
    dims = context.inputs[0].numel()
    eps = LARGE_LINF_EPS if context.norm == "linf" else LARGE_LINF_EPS * math.sqrt(dims)
    model, inputs, labels = context.model, context.inputs, context.labels
    steps = FAST_LARGE_EPS_STEPS if context.level == "fast" else 20
    adversarial = pgd(model, inputs, labels, eps=eps, norm=context.norm, steps=steps)
    accuracy = _robust(model, adversarial, labels)
    if accuracy > LARGE_EPS_ACCURACY:
        return (
            f"{accuracy:.1%} of the sample stays correctly classified under PGD-{steps} at "
            f"{context.norm} eps={eps:.3g}, a radius that can turn any image into uniform grey, "
            "where robust accuracy should be about 0: the attack does not work on this model "
            "(masked or zero gradients, wrong input range, a constant model). Fix this before "
            "trusting any robust accuracy."
        )
    return None


def _fit_square(inputs: Tensor, labels: Tensor, budget: int) -> tuple[Tensor, Tensor, int]:
    """The points and Square queries that fit ``budget`` forward-equivalents: each query is one
    call on at most every point, and one more call reads the result. Fewer points rather than
    fewer than ``FAST_MIN_QUERIES`` queries; ``CheckSkipped`` if not even 2 points fit."""
    count = len(labels)
    queries = min(CHECK_QUERIES, budget // (count + CALL_COST) - 1)
    if queries < FAST_MIN_QUERIES:
        count = budget // (FAST_MIN_QUERIES + 1) - CALL_COST
        queries = FAST_MIN_QUERIES
    if count < 2:
        raise CheckSkipped(
            f"the budget left ({max(budget, 0)} forward-equivalents) cannot pay for Square on 2 "
            "points; run --checks full"
        )
    return inputs[:count], labels[:count], queries


def _black_box_message(fraction: float) -> str:
    return (
        f"the black-box Square attack broke {fraction:.1%} of the points that the gradient "
        "attacks left robust: gradients are probably masked (obfuscated), and gradient-based "
        "numbers overstate robustness. Report the worst case including Square (--suite "
        "autoattack) and look for non-differentiable or saturating parts of the model."
    )


def _outputs(context: CheckContext) -> Tensor:
    with torch.no_grad(), attack_mode(context.model, train=False):
        return context.model(context.inputs).float()


def _pgd20(context: CheckContext, inputs: Tensor, labels: Tensor, *, loss: str = "ce") -> Tensor:
    return pgd(
        context.model, inputs, labels, eps=context.eps, norm=context.norm, steps=20, loss=loss
    )


def _robust(model: nn.Module, adversarial: Tensor, labels: Tensor) -> float:
    return float(predict(model, adversarial).eq(labels).float().mean())


def _margin(accuracy: float, n: int) -> float:
    """A rise smaller than this is sampling noise: 2 standard errors, at least 1 point."""
    return max(0.01, 2 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1)))


@contextmanager
def _seeded(context: CheckContext, name: str) -> Iterator[None]:
    device = model_device(context.model)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(zlib.crc32(f"{context.seed}/check/{name}".encode()))
        yield

"""Sanity checks that catch evaluations overstating robustness, each on a small sample.

A check takes a :class:`CheckContext` and returns ``None`` when all is well, else a warning that
says what was seen, what it usually means and what to do. Checks reading the evaluation's
accuracies (or the eps sweep) cost nothing; the others run a few cheap attacks on the sample.

Gradient masking, randomness and catastrophic overfitting make weak attacks look strong: see
Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018
(arXiv:1802.00420) and Carlini et al., "On Evaluating Adversarial Robustness" (arXiv:1902.06705).

The checks register in ``CHECKS``; ``advkit.evaluation.check_runner`` runs them at a level and
within a budget.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks import attack_mode, fgsm, pgd, square
from advkit.attacks.gradients import NO_INPUT_GRAPH, input_gradient_or_none
from advkit.evaluation.check_runner import (
    CHECK_LEVELS,
    CHECKS,
    DEFAULT_CHECK_LEVEL,
    FAST_CALLS,
    FAST_COST_PER_POINT,
    FAST_FRACTION,
    FAST_LARGE_EPS_STEPS,
    FAST_MIN_BUDGET,
    FAST_MIN_QUERIES,
    FAST_MIN_SAMPLE,
    FULL_SAMPLE,
    CheckContext,
    CheckFn,
    CheckNotApplicable,
    CheckOutcome,
    CheckReport,
    CheckSkipped,
    check_all,
    check_sample_size,
    fast_budget,
    run_checks,
)
from advkit.evaluation.cost import CALL_COST, count_forwards
from advkit.evaluation.evaluate import predict
from advkit.evaluation.suites import SQUARE_NORMS
from advkit.models.output_checks import PROBABILITY_ADVICE, looks_like_probabilities

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


@CHECKS.register("probabilities")
def outputs_are_probabilities(context: CheckContext) -> str | None:
    """Outputs non-negative with rows summing to 1: a softmax where logits belong."""
    if looks_like_probabilities(_outputs(context)):
        return (
            f"{PROBABILITY_ADVICE}: attacks on a softmax output get vanishing gradients and "
            "overstate robustness. Remove the final softmax so the model returns logits, then "
            "re-evaluate."
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
    """No autograd path from the output to the input at all, or many points where the loss has
    an exactly zero (or non-finite) input gradient."""
    inputs = context.inputs.detach().clone().requires_grad_(True)
    with attack_mode(context.model, train=False):
        loss = F.cross_entropy(context.model(inputs).float(), context.labels, reduction="sum")
        grad = input_gradient_or_none(loss, inputs)
    if grad is None:
        return (
            f"gradient masked: {NO_INPUT_GRAPH}, so every gradient attack sees a zero gradient "
            "and its robust accuracy means nothing. Run the forward with gradients enabled and "
            "without detaching the input; meanwhile trust only black-box attacks (--suite "
            "autoattack runs Square)."
        )
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
        raise CheckNotApplicable(
            "the evaluation has no PGD-20 and PGD-100 columns to compare; --suite paper has both"
        )
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
    if len(points) < 2:
        raise CheckNotApplicable("no eps sweep of two or more radii to compare; --sweep adds one")
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
        if before * context.n_examples < 2:
            raise CheckNotApplicable(_NOTHING_LEFT)
        broken = before - acc["square"]
        if broken * context.n_examples >= 2 and broken > BLACK_BOX_FRACTION * before:
            return _black_box_message(broken / before)
        return None
    if context.norm not in SQUARE_NORMS:
        raise CheckNotApplicable(
            f"Square attacks only {' and '.join(SQUARE_NORMS)}, not {context.norm}"
        )
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
        raise CheckNotApplicable(_NOTHING_LEFT)
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


_NOTHING_LEFT = "fewer than 2 points withstood the gradient attacks: nothing left for Square"


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


__all__ = [
    "CHECKS", "CHECK_LEVELS", "DEFAULT_CHECK_LEVEL", "FAST_CALLS", "FAST_COST_PER_POINT",
    "FAST_FRACTION", "FAST_MIN_BUDGET", "FAST_MIN_SAMPLE", "FULL_SAMPLE", "CheckContext",
    "CheckFn", "CheckNotApplicable", "CheckOutcome", "CheckReport", "CheckSkipped", "check_all",
    "check_sample_size", "fast_budget", "run_checks",
]  # fmt: skip

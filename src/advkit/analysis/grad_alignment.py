"""``grad_alignment``: GradAlign's cosine between input gradients at x and at x + eta.

Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial Training", NeurIPS 2020
(arXiv:2007.02617): cos(grad_x l(x), grad_x l(x + eta)), eta uniform in the eps-ball of the
run's threat model, over the test points. Near 1 the loss is locally linear and a one-step attack
finds what a multi-step one finds; a model after catastrophic overfitting has low alignment.
Zero gradients count as cosine 1 (the authors' measurement convention, :mod:`advkit.alignment`);
their share is reported, and the mean over the others (the regularizer's convention) beside it.
"""

from __future__ import annotations

from typing import Any

import torch

from advkit.alignment import measure_alignment
from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult, AnalysisSkipped
from advkit.analysis.figures import figure_and_axes
from advkit.analysis.measure import BATCH_SIZE, fraction
from advkit.attacks.gradients import NoInputGradientError
from advkit.humanize import format_eps
from advkit.noise import sample_noise

#: The histogram's bins: fixed edges on [-1, 1], so runs compare bin for bin.
BINS = 100
#: ``purpose`` of eta's noise (keyed to each test point's index and the context's seed).
ETA_PURPOSE = 201


def _histogram(cos: torch.Tensor) -> dict[str, Any]:
    counts = torch.histc(cos.clamp(-1, 1).float().cpu(), bins=BINS, min=-1.0, max=1.0)
    return {"min": -1.0, "max": 1.0, "bins": BINS, "counts": [int(c) for c in counts.tolist()]}


def _draw(axes: Any, histogram: dict[str, Any], label: str | None = None) -> None:
    """A step histogram of the cosines, the x range from the lowest filled bin to 1."""
    counts = histogram["counts"]
    width = (histogram["max"] - histogram["min"]) / histogram["bins"]
    edges = [histogram["min"] + i * width for i in range(len(counts) + 1)]
    axes.stairs(counts, edges, fill=label is None, alpha=0.6 if label is None else 1.0,
                label=label)  # fmt: skip
    axes.set_xlabel("cos(grad at x, grad at x + eta)")
    axes.set_ylabel("test points")


def _lowest(histogram: dict[str, Any]) -> float:
    width = (histogram["max"] - histogram["min"]) / histogram["bins"]
    first = next((i for i, c in enumerate(histogram["counts"]) if c), 0)
    return histogram["min"] + first * width


def compare(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """The runs' cosine histograms on one axis, with each mean in the legend."""
    shown = {label: r for label, r in results.items() if r.summary.get("histogram")}
    if not shown:
        return {}
    fig, (axes,) = figure_and_axes(7, 4)
    for label, result in shown.items():
        _draw(axes, result.summary["histogram"], f"{label} (mean {result.summary['mean']:.3f})")
    low = min(_lowest(r.summary["histogram"]) for r in shown.values())
    axes.set_xlim(max(-1.0, low - 0.02), 1.0)
    axes.legend()
    axes.set_title("Gradient alignment (GradAlign)")
    return {"histogram": fig}


@ANALYSES.register(
    "grad_alignment",
    description="GradAlign's cosine between the input gradients at x and at x + eta (eta uniform "
    "in the eps-ball): near 1 the loss is locally linear; catastrophic overfitting lowers it",
    compare=compare,
    headline=("mean", "zero_gradient_fraction"),
)
def grad_alignment(ctx: AnalysisContext) -> AnalysisResult:
    n = len(ctx.inputs)
    if ctx.eps <= 0 or n == 0:
        why = "the threat model's eps is 0" if ctx.eps <= 0 else "there are no test points"
        return AnalysisResult({"mean": None, "skipped": why}, markdown=f"Not measured: {why}.")
    noise = sample_noise(ctx.seed, 0, torch.arange(n), ETA_PURPOSE)
    try:
        alignment = measure_alignment(
            ctx.model, ctx.inputs, ctx.labels, eps=ctx.eps, norm=ctx.norm, noise=noise,
            batch_size=BATCH_SIZE,
        )  # fmt: skip
    except NoInputGradientError as error:
        raise AnalysisSkipped(str(error)) from error
    cos = alignment.cos.double().cpu()
    zero = alignment.zero.cpu()
    nonzero = cos[~zero]
    summary = {
        "mean": fraction(cos.mean().item()),
        "std": fraction(cos.std(unbiased=False).item()),
        "median": fraction(cos.median().item()),
        "zero_gradient_fraction": fraction(zero.double().mean().item()),
        "mean_nonzero": fraction(nonzero.mean().item()) if len(nonzero) else None,
        "examples": n,
        "eps": ctx.eps,
        "norm": ctx.norm,
        "histogram": _histogram(cos),
    }
    fig, (axes,) = figure_and_axes(6, 4)
    _draw(axes, summary["histogram"])
    axes.axvline(
        summary["mean"], color="black", linestyle="--", label=f"mean {summary['mean']:.3f}"
    )
    axes.set_xlim(max(-1.0, _lowest(summary["histogram"]) - 0.02), 1.0)
    axes.legend()
    axes.set_title(f"Gradient alignment, {ctx.norm} eps {format_eps(ctx.eps)}")
    markdown = (
        f"Mean cosine between the input gradients at x and at x + eta (eta uniform in the "
        f"{ctx.norm} ball of radius {format_eps(ctx.eps)}) over {n} test points: "
        f"**{summary['mean']:.3f}** (median {summary['median']:.3f}, std {summary['std']:.3f}). "
        f"{summary['zero_gradient_fraction']:.1%} of the points had a zero gradient and count as "
        "aligned (GradAlign's convention). Near 1 the loss is locally linear around the test "
        "points, so single-step attacks and training are reliable; a low value is the signature "
        "of catastrophic overfitting (Andriushchenko & Flammarion, 2020)."
    )
    return AnalysisResult(summary, {"histogram": fig}, markdown)

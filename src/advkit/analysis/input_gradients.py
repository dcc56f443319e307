"""``input_gradients``: what the loss's input gradient looks like, beside the image.

Adversarially trained models have input gradients that look like the object (edges, shape), while
naturally trained ones have gradients that look like noise: Tsipras et al., "Robustness May Be at
Odds with Accuracy" (ICLR 2019, arXiv:1805.12152), Fig. 2; Etmann et al., "On the Connection
Between Adversarial Robustness and Saliency Map Interpretability" (ICML 2019, arXiv:1905.04172).

The gradient is that of the cross-entropy of the true label at the test point. Drawn as in
Tsipras et al.: per image, clipped to +-3 standard deviations and rescaled to [0, 1] (grey is 0).
The number that stands for "looks like the object" is ``image_correlation``: per test point, the
Pearson correlation between the gradient's magnitude |grad| (summed over channels) and the image
(mean over channels), averaged over the test points. Beside it, ``alignment`` is Etmann et al.'s
measure |<x, grad>| / (||x|| ||grad||) (a cosine), also averaged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult
from advkit.analysis.figures import class_name, new_figure, show_image
from advkit.attacks import LOSSES, attack_mode
from advkit.config_values import ConfigError

NAME = "input_gradients"
#: --set input_gradients.KEY=VALUE options and their defaults.
OPTIONS: dict[str, Any] = {"shown": 8}  # test points drawn


def input_gradients(
    model: torch.nn.Module, inputs: Tensor, labels: Tensor, batch_size: int
) -> Tensor:
    """grad_x CE(model(x), y) per test point, (N, C, H, W), in batches of ``batch_size``."""
    loss_fn = LOSSES.get("ce")
    grads = []
    with attack_mode(model, train=False):
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size].detach().clone().requires_grad_(True)
            loss = loss_fn(model(batch), labels[start : start + batch_size]).sum()
            grads.append(torch.autograd.grad(loss, batch)[0])
    return torch.cat(grads)


def image_correlation(inputs: Tensor, grads: Tensor) -> Tensor:
    """Per test point, Pearson's correlation between |grad| summed over channels and the image
    averaged over channels (0 for a constant image or gradient); (N,)."""
    magnitude = grads.abs().sum(1).flatten(1).double()
    image = inputs.mean(1).flatten(1).double()
    magnitude = magnitude - magnitude.mean(1, keepdim=True)
    image = image - image.mean(1, keepdim=True)
    scale = (magnitude.norm(dim=1) * image.norm(dim=1)).clamp_min(1e-30)
    return (magnitude * image).sum(1) / scale


def alignment(inputs: Tensor, grads: Tensor) -> Tensor:
    """Per test point, |<x, grad>| / (||x|| ||grad||) (Etmann et al.); (N,)."""
    x, g = inputs.flatten(1).double(), grads.flatten(1).double()
    return (x * g).sum(1).abs() / (x.norm(dim=1) * g.norm(dim=1)).clamp_min(1e-30)


def gradient_image(grad: Tensor) -> Tensor:
    """A gradient (C, H, W) as an image in [0, 1]: clipped to +-3 std, grey at 0."""
    scale = (3 * grad.float().std()).clamp_min(1e-30)
    return (0.5 + 0.5 * (grad / scale)).clamp(0.0, 1.0)


def analyze_input_gradients(ctx: AnalysisContext) -> AnalysisResult:
    """The gradients of every test point of the context, their numbers and the first ones drawn."""
    shown = ctx.option("shown", OPTIONS["shown"])
    if shown < 0:
        raise ConfigError(f"{NAME}.shown must be >= 0, got {shown}")
    shown = min(shown, len(ctx.inputs))
    grads = input_gradients(ctx.model, ctx.inputs, ctx.labels, ctx.batch_size)
    correlation = image_correlation(ctx.inputs, grads)
    aligned = alignment(ctx.inputs, grads)
    summary = {
        "examples": len(ctx.inputs),
        "image_correlation": round(float(correlation.mean()), 4),
        "image_correlation_std": round(float(correlation.std(correction=0)), 4),
        "alignment": round(float(aligned.mean()), 4),
        "grad_l1": _round(float(grads.flatten(1).abs().sum(1).mean())),
    }
    images, shown_grads = ctx.inputs[:shown].cpu(), grads[:shown].cpu()
    labels = [class_name(label, ctx.class_names) for label in ctx.labels[:shown]]
    figures = {}
    if shown:
        figures["grid"] = gradient_figure({"": shown_grads}, images, labels)
    markdown = (
        f"Input gradients of the cross-entropy at {len(ctx.inputs)} test points: correlation "
        f"between |grad| and the image {summary['image_correlation']:.3f} "
        f"(std {summary['image_correlation_std']:.3f} over the points), alignment "
        f"|<x, grad>| / (||x|| ||grad||) {summary['alignment']:.3f}. Robust models' gradients "
        "look like the object (higher correlation), natural models' like noise. Gradients drawn "
        "clipped to +-3 std per image, grey at 0."
    )
    data = {"images": images, "grads": shown_grads, "labels": labels}
    return AnalysisResult(summary, figures, markdown, data)


def gradient_figure(grads: dict[str, Tensor], images: Tensor, labels: list[str]) -> Any:
    """Top row the images (with their labels), then one row of gradients per run
    (``{label: (n, C, H, W)}``; one unlabelled run alone)."""
    count = len(images)
    rows = 1 + len(grads)
    figure = new_figure((1.3 * count + 0.6, 1.45 * rows + 0.2))
    for i in range(count):
        axes = figure.add_subplot(rows, count, i + 1)
        show_image(axes, images[i])
        axes.set_title(labels[i], fontsize=7)
        if i == 0:
            axes.set_ylabel("image", fontsize=8)
    for row, (label, values) in enumerate(grads.items(), start=1):
        for i in range(count):
            axes = figure.add_subplot(rows, count, row * count + i + 1)
            show_image(axes, gradient_image(values[i]))
            if i == 0:
                axes.set_ylabel(label or "gradient", fontsize=8)
    return figure


def compare_gradients(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """One row of gradients per run under the common images (the first run's test points: every
    run is analysed on the same seeded sample when the data and seed are the same)."""
    drawn = {label: r for label, r in results.items() if r.data.get("grads") is not None}
    if not drawn:
        return {}
    first = next(iter(drawn.values())).data
    count = min(len(result.data["grads"]) for result in drawn.values())
    if count == 0:
        return {}
    grads = {label: result.data["grads"][:count] for label, result in drawn.items()}
    return {"grid": gradient_figure(grads, first["images"][:count], first["labels"][:count])}


def _round(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


ANALYSES.register(
    NAME,
    description="input gradients beside the images, and their correlation with the image "
    "(object-like for robust models, noise-like for natural ones)",
    options=OPTIONS,
    compare=compare_gradients,
    headline=("image_correlation", "alignment"),
)(analyze_input_gradients)

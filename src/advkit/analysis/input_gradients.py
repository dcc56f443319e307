"""``input_gradients``: what the loss's input gradient looks like, beside the image.

Adversarially trained models have input gradients that look like the object (edges, shape), while
naturally trained ones have gradients that look like noise: Tsipras et al., "Robustness May Be at
Odds with Accuracy" (ICLR 2019, arXiv:1805.12152), Fig. 2; Etmann et al., "On the Connection
Between Adversarial Robustness and Saliency Map Interpretability" (ICML 2019, arXiv:1905.04172).

The gradient is that of the cross-entropy of the true label at the test point. Drawn as in
Tsipras et al.: per image, clipped to +-3 standard deviations and rescaled to [0, 1] (grey is 0).
The number that stands for "looks like the object" is ``alignment``, Etmann et al.'s measure
|<x, grad>| / (||x|| ||grad||) (a cosine), averaged over the test points. Beside it,
``image_correlation`` is the Pearson correlation between the gradient's magnitude |grad| (summed
over channels) and the image (mean over channels): it only says where the gradient is large, and
on Fashion-MNIST it does not separate the models (a natural cnn-small trained 10 epochs: 0.07 to
0.17 over two seeds, PGD-AT 3 epochs: 0.07 to 0.13), while alignment does (0.05-0.07 against
0.18-0.22).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult, AnalysisSkipped
from advkit.analysis.figures import class_name, new_figure, show_image
from advkit.attacks import LOSSES, attack_mode
from advkit.attacks.gradients import NO_INPUT_GRAPH, input_gradient_or_none
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
            grad = input_gradient_or_none(loss, batch)
            if grad is None:
                raise AnalysisSkipped(f"no input gradient to show: {NO_INPUT_GRAPH}")
            grads.append(grad)
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
        figures["grid"] = gradient_figure([("image", images), ("gradient", shown_grads)], labels)
    markdown = (
        f"Input gradients of the cross-entropy at {len(ctx.inputs)} test points: alignment "
        f"|<x, grad>| / (||x|| ||grad||) {summary['alignment']:.3f}, correlation between "
        f"|grad| and the image {summary['image_correlation']:.3f} "
        f"(std {summary['image_correlation_std']:.3f} over the points). Robust models' "
        "gradients look like the object (higher alignment), natural models' like noise. "
        "Gradients drawn clipped to +-3 std per image, grey at 0."
    )
    data = {"images": images, "grads": shown_grads, "labels": labels}
    return AnalysisResult(summary, figures, markdown, data)


def gradient_figure(rows: list[tuple[str, Tensor]], labels: list[str]) -> Any:
    """One row per ``(name, tensors)``: images drawn as they are, gradients (a name other than
    "image") clipped to +-3 std; the top row captioned with the test points' labels."""
    count = len(labels)
    figure = new_figure((1.3 * count + 0.6, 1.45 * len(rows) + 0.2))
    for row, (name, values) in enumerate(rows):
        for i in range(count):
            axes = figure.add_subplot(len(rows), count, row * count + i + 1)
            is_image = name.endswith("image")
            show_image(axes, values[i] if is_image else gradient_image(values[i]))
            if row == 0:
                axes.set_title(labels[i], fontsize=7)
            if i == 0:
                axes.set_ylabel(name, fontsize=8)
    return figure


def compare_gradients(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """One row of gradients per run under the images; each run's own images above its
    gradients when the runs were analysed on different test points."""
    drawn = {label: r.data for label, r in results.items() if r.data.get("grads") is not None}
    count = min((len(data["grads"]) for data in drawn.values()), default=0)
    if count == 0:
        return {}
    first = next(iter(drawn.values()))
    same = all(torch.equal(d["images"][:count], first["images"][:count]) for d in drawn.values())
    if same:
        rows = [("image", first["images"]), *((k, d["grads"]) for k, d in drawn.items())]
    else:
        rows = [row for k, d in drawn.items() for row in ((f"{k} image", d["images"]),
                                                         (k, d["grads"]))]  # fmt: skip
    return {"grid": gradient_figure(rows, first["labels"][:count] if same else [""] * count)}


def _round(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


ANALYSES.register(
    NAME,
    description="input gradients beside the images, and their alignment with the image "
    "(object-like for robust models, noise-like for natural ones)",
    options=OPTIONS,
    compare=compare_gradients,
    headline=("alignment", "image_correlation"),
)(analyze_input_gradients)

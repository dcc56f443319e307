"""``large_eps``: targeted PGD far outside the training budget, toward every class.

Robust models turn a test point into a recognizable member of the target class when the radius
is large ("generative behaviour": Tsipras et al., "Robustness May Be at Odds with Accuracy",
ICLR 2019, arXiv:1805.12152; Santurkar et al., NeurIPS 2019, arXiv:1906.09453; the large-eps
figures of Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019); natural models reach
the target with noise that shows nothing of it.

For the first ``count`` test points and every class t != label, PGD (``advkit.attacks.pgd``,
targeted cross-entropy, no random start, step 2.5 * radius / steps) minimizes the loss of t
within an L-inf ball and an L2 ball of large radius. The default L-inf radius is ``factor``
times the run's L-inf eps; the L2 one is the L-inf radius times sqrt(dim) / 4, the ratio of the
standard pairs of budgets (MNIST 0.3 <-> 2.0, CIFAR-10 8/255 <-> 0.5). A run trained for L2
derives the L-inf radius by the same ratio. ``linf=`` / ``l2=`` set a radius directly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult
from advkit.analysis.figures import class_name, image_grid
from advkit.attacks import attack_mode, pgd
from advkit.config_values import ConfigError
from advkit.humanize import format_eps
from advkit.progress_display import current_task

NAME = "large_eps"
#: --set large_eps.KEY=VALUE options and their defaults (radii 0: derived from the run's eps).
OPTIONS: dict[str, Any] = {
    "factor": 4.0,  # large radius = factor * the run's eps
    "linf": 0.0,  # an explicit L-inf radius (pixel units), 0: derived
    "l2": 0.0,  # an explicit L2 radius, 0: derived
    "count": 20,  # test points attacked toward every class (the summary's sample)
    "shown": 4,  # of those, drawn
    "steps": 20,  # PGD steps
}
#: L2 radius / L-inf radius, per sqrt(input dimension).
L2_PER_LINF = 0.25
_NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def large_radii(eps: float, norm: str, dim: int, factor: float) -> dict[str, float]:
    """{"linf": ..., "l2": ...}: ``factor * eps`` in the run's norm, the other norm's radius by
    the ratio sqrt(dim) / 4 (L2 = L-inf * sqrt(dim) / 4), capped at the [0, 1] box's diameter."""
    ratio = L2_PER_LINF * math.sqrt(dim)
    if norm == "linf":
        radii = {"linf": factor * eps, "l2": factor * eps * ratio}
    else:
        radii = {"linf": factor * eps / ratio, "l2": factor * eps}
    return {"linf": min(radii["linf"], 1.0), "l2": min(radii["l2"], math.sqrt(dim))}


def targeted_grid(
    ctx: AnalysisContext, inputs: Tensor, labels: Tensor, *, norm: str, radius: float, steps: int
) -> tuple[Tensor, Tensor]:
    """Targeted PGD of every test point toward every class: adversarial images (n, K, C, H, W)
    and the model's softmax on them (n, K, K); the row of class t targets t (t = label: the
    attack toward the true class, which only makes it more confident)."""
    count, classes = len(inputs), ctx.num_classes
    images = inputs.repeat_interleave(classes, 0)
    targets = torch.arange(classes, device=inputs.device).repeat(count)
    adversarial, probs = [], []
    for start in range(0, len(images), ctx.batch_size):
        part = slice(start, start + ctx.batch_size)
        adv = pgd(ctx.model, images[part], targets[part], eps=radius, norm=norm, steps=steps,
                  random_start=False, targeted=True)  # fmt: skip
        with torch.no_grad(), attack_mode(ctx.model, train=False):
            probs.append(ctx.model(adv).float().softmax(1))
        adversarial.append(adv)
        current_task().advance()
    shape = (count, classes, *inputs.shape[1:])
    return torch.cat(adversarial).view(shape), torch.cat(probs).view(count, classes, classes)


def _options(ctx: AnalysisContext) -> tuple[dict[str, float], int, int, int]:
    factor = ctx.option("factor", OPTIONS["factor"])
    count, shown, steps = (ctx.option(key, OPTIONS[key]) for key in ("count", "shown", "steps"))
    if not factor > 0 or count < 1 or shown < 0 or steps < 1:
        raise ConfigError(
            f"{NAME} needs factor > 0, count >= 1, shown >= 0 and steps >= 1; got factor "
            f"{factor}, count {count}, shown {shown}, steps {steps}"
        )
    radii = large_radii(ctx.eps, ctx.norm, ctx.inputs[0].numel(), factor)
    for norm in radii:
        given = ctx.option(norm, OPTIONS[norm])
        if given < 0:
            raise ConfigError(f"{NAME}.{norm} must be >= 0 (0: derived from eps), got {given}")
        if given > 0:
            radii[norm] = given
    count = min(count, len(ctx.inputs))
    return radii, count, min(shown, count), steps


def large_eps(ctx: AnalysisContext) -> AnalysisResult:
    """Targeted PGD at both large radii; success rates, target confidences and the grids."""
    radii, count, shown, steps = _options(ctx)
    inputs, labels = ctx.inputs[:count], ctx.labels[:count]
    others = torch.ones(count, ctx.num_classes, dtype=torch.bool, device=inputs.device)
    others[torch.arange(count), labels] = False  # (example, target) pairs with target != label
    summary: dict[str, Any] = {"examples": count, "steps": steps}
    data: dict[str, Any] = {"inputs": inputs[:shown].cpu(), "labels": labels[:shown].cpu(),
                            "class_names": ctx.class_names}  # fmt: skip
    figures = {}
    current_task().expect(len(radii) * math.ceil(count * ctx.num_classes / ctx.batch_size))
    for norm, radius in radii.items():
        adversarial, probs = targeted_grid(ctx, inputs, labels, norm=norm, radius=radius,
                                           steps=steps)  # fmt: skip
        target_prob = probs.diagonal(dim1=1, dim2=2)  # (n, K): confidence in the target
        success = probs.argmax(2) == torch.arange(ctx.num_classes, device=probs.device)
        summary[norm] = {
            "radius": _round(radius),
            "success_rate": round(float(success[others].float().mean()), 4),
            "target_confidence": round(float(target_prob[others].mean()), 4),
        }
        data[norm] = {
            "radius": radius, "adversarial": adversarial[:shown].cpu(),
            "target_prob": target_prob[:shown].cpu(), "success": success[:shown].cpu(),
        }  # fmt: skip
        if shown:
            figures[norm] = grid_figure(data, norm)
    return AnalysisResult(summary, figures, _markdown(summary, ctx.eps, ctx.norm), data)


def _markdown(summary: dict[str, Any], eps: float, norm: str) -> str:
    rows = [
        "| norm | radius | targeted success | mean target confidence |",
        "|---|---:|---:|---:|",
    ]
    for key in ("linf", "l2"):
        entry = summary[key]
        rows.append(
            f"| {_NORM_NAMES[key]} | {format_eps(entry['radius'])} | "
            f"{100 * entry['success_rate']:.1f}% | {entry['target_confidence']:.3f} |"
        )
    return "\n".join([
        f"Targeted PGD-{summary['steps']} of {summary['examples']} test points toward every other "
        f"class, far outside the training budget ({_NORM_NAMES.get(norm, norm)} eps "
        f"{format_eps(eps)}); the L2 radius is the L-inf one times sqrt(dim) / 4. On a robust "
        "model the images take on the target class's features; on a natural one they stay "
        "noise-like.",
        "",
        *rows,
    ])  # fmt: skip


def grid_figure(data: dict[str, Any], norm: str, rows: dict[str, Any] | None = None) -> Any:
    """Rows: test points (or runs, ``rows={label: data}`` for the first test point); columns:
    the original, then the image targeted at each class, captioned with its confidence and
    framed green where the model predicts the target (grey: the point's own class)."""
    rows = rows or {f"point {i}": _row(data, norm, i) for i in range(len(data["inputs"]))}
    names = data["class_names"]
    cells, captions, borders = [], [], []
    for row in rows.values():
        label = int(row["label"])
        classes = range(len(row["adversarial"]))
        cells.append([row["input"], *row["adversarial"]])
        captions.append(
            [
                class_name(label, names),
                *(
                    f"-> {class_name(t, names)}\np={float(row['target_prob'][t]):.2f}"
                    for t in classes
                ),
            ]
        )
        borders.append([None, *(
            "grey" if t == label else "tab:green" if row["success"][t] else "tab:red"
            for t in classes)])  # fmt: skip
    title = f"targeted PGD, {_NORM_NAMES[norm]} radius {format_eps(data[norm]['radius'])}"
    return image_grid(cells, captions=captions, row_labels=list(rows), borders=borders,
                      title=title)  # fmt: skip


def _row(data: dict[str, Any], norm: str, i: int) -> dict[str, Any]:
    entry = data[norm]
    return {
        "input": data["inputs"][i], "label": data["labels"][i],
        "adversarial": entry["adversarial"][i], "target_prob": entry["target_prob"][i],
        "success": entry["success"][i],
    }  # fmt: skip


def compare_large_eps(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """The first test point targeted at every class, one row per run, for each norm."""
    drawn = {label: r.data for label, r in results.items() if len(r.data.get("inputs", ())) > 0}
    if not drawn:
        return {}
    first = next(iter(drawn.values()))
    return {
        norm: grid_figure(first, norm, {label: _row(d, norm, 0) for label, d in drawn.items()})
        for norm in ("linf", "l2")
    }


def _round(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


ANALYSES.register(
    NAME,
    description="targeted PGD toward every class at a large radius (4x eps, L-inf and L2): do "
    "the images take on the target class's features?",
    options=OPTIONS,
    compare=compare_large_eps,
    headline=(
        "linf.success_rate",
        "linf.target_confidence",
        "l2.success_rate",
        "l2.target_confidence",
    ),
)(large_eps)

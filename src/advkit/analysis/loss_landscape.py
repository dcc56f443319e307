"""``loss_landscape``: the loss around test points, on planes through each point.

Two planes per test point x, as in Shafahi et al., "Adversarial Training for Free!" (NeurIPS 2019,
arXiv:1904.12843), after Tramer et al. (ICLR 2018, arXiv:1705.07204):

- *adversarial-random*: L(x + a d_adv + b d_rand), d_adv = sign(grad_x L) (L2: grad_x L / its
  norm), d_rand a Rademacher direction (L2: divided by sqrt(dim));
- *random-random*: two independent Rademacher directions.

Each direction has norm 1 in the threat model's norm, so the coordinates a, b are pixel units:
a = eps moves by eps in the ball's norm. Every point is clipped to [0, 1] before the model sees
it (the loss of an image, not of an out-of-range array). The summary makes "flatter" a number:
the mean rise of the loss at radius eps along each direction, L(x + eps d) - L(x), and the
curvature (L(x + eps d) - 2 L(x) + L(x - eps d)) / eps^2 (loss per squared pixel unit); for a
linear model the adversarial rise is eps * ||grad_x L||_1 to first order (L-inf).

The lines are evaluated on every test point of the context, the planes on the first ``average``
of them (their mean is the "average" surface); the first ``shown`` are also drawn one by one.
All points of a line or plane go through the model in batches of ``ctx.batch_size`` images.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult, AnalysisSkipped
from advkit.analysis.figures import new_figure
from advkit.attacks import LOSSES, attack_mode
from advkit.attacks.gradients import NO_INPUT_GRAPH, input_gradient_or_none
from advkit.config_values import ConfigError
from advkit.humanize import format_eps
from advkit.progress_display import current_task

NAME = "loss_landscape"
#: --set loss_landscape.KEY=VALUE options and their defaults.
OPTIONS: dict[str, Any] = {
    "grid": 21,  # points per side of a plane and per line (odd: the test point is on it)
    "extent": 2.0,  # the planes and lines reach +-extent * eps
    "average": 16,  # test points whose planes are computed (and averaged)
    "shown": 3,  # of those, drawn one by one
}
#: The two planes: (name, first direction, second direction), and their captions.
PLANES = (("adversarial_random", "adversarial", "random"), ("random_random", "random", "random2"))
CAPTIONS = {
    "adversarial_random": "adversarial x random",
    "random_random": "random x random",
}
_NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def adversarial_direction(model: nn.Module, inputs: Tensor, labels: Tensor, norm: str) -> Tensor:
    """sign(grad_x CE) for L-inf, grad_x CE / ||grad_x CE||_2 for L2 (0 where the gradient is 0),
    per test point; (N, C, H, W)."""
    inputs = inputs.detach().clone().requires_grad_(True)
    with attack_mode(model, train=False):
        loss = LOSSES.get("ce")(model(inputs), labels).sum()
    grad = input_gradient_or_none(loss, inputs)
    if grad is None:
        raise AnalysisSkipped(f"no adversarial direction: {NO_INPUT_GRAPH}")
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / norms.view(-1, *([1] * (grad.dim() - 1)))


def rademacher(like: Tensor, norm: str, generator: torch.Generator) -> Tensor:
    """A random +-1 direction per test point (divided by sqrt(dim) for L2: norm 1), drawn on
    the CPU from ``generator`` so that the same seed gives the same direction on any device."""
    signs = torch.randint(0, 2, like.shape, generator=generator).mul_(2).sub_(1)
    direction = signs.to(device=like.device, dtype=like.dtype)
    if norm == "l2":
        direction /= math.sqrt(like[0].numel())
    return direction


def plane_losses(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    first: Tensor,
    second: Tensor,
    coords: Tensor,
    batch_size: int,
) -> Tensor:
    """CE loss at clip(x_i + a_p first_i + b_p second_i, 0, 1) for every test point i and every
    point (a_p, b_p) of ``coords`` (P, 2): an (N, P) tensor. The N * P images go through the
    model ``batch_size`` at a time, whatever N and P are."""
    count, points = len(inputs), len(coords)
    coords = coords.to(device=inputs.device, dtype=inputs.dtype)
    shape = (-1, *([1] * (inputs.dim() - 1)))
    loss_fn = LOSSES.get("ce")
    total = count * points
    losses = torch.empty(total, device=inputs.device)
    with torch.no_grad(), attack_mode(model, train=False):
        for start in range(0, total, batch_size):
            flat = torch.arange(start, min(start + batch_size, total), device=inputs.device)
            example, point = flat // points, flat % points
            images = inputs[example] + coords[point, 0].view(shape) * first[example]
            images.addcmul_(coords[point, 1].view(shape), second[example]).clamp_(0.0, 1.0)
            losses[start : start + len(flat)] = loss_fn(model(images), labels[example])
            current_task().advance()
    return losses.view(count, points)


def _settings(ctx: AnalysisContext) -> tuple[int, float, int, int]:
    grid = ctx.option("grid", OPTIONS["grid"])
    extent = ctx.option("extent", OPTIONS["extent"])
    average = ctx.option("average", OPTIONS["average"])
    shown = ctx.option("shown", OPTIONS["shown"])
    if grid < 3 or grid % 2 == 0:
        raise ConfigError(
            f"{NAME}.grid must be an odd number >= 3 (the test point lies on the grid), got {grid}"
        )
    if not extent > 0:
        raise ConfigError(f"{NAME}.extent must be > 0 (in units of eps), got {extent}")
    if average < 1 or shown < 0:
        raise ConfigError(f"{NAME}.average must be >= 1 and {NAME}.shown >= 0")
    return grid, extent, min(average, len(ctx.inputs)), min(shown, average, len(ctx.inputs))


def loss_landscape(ctx: AnalysisContext) -> AnalysisResult:
    """The lines and planes of the module docstring, their summary, figures and section."""
    grid, extent, average, shown = _settings(ctx)
    eps, norm = ctx.eps, ctx.norm
    directions = {
        "adversarial": adversarial_direction(ctx.model, ctx.inputs, ctx.labels, norm),
        "random": rademacher(ctx.inputs, norm, ctx.generator(1)),
        "random2": rademacher(ctx.inputs, norm, ctx.generator(2)),
    }
    radii = torch.linspace(-extent * eps, extent * eps, grid, dtype=torch.float64)
    steps = torch.cat([radii, torch.tensor([-eps, 0.0, eps], dtype=torch.float64)])
    zeros = torch.zeros_like(steps)
    line_coords = torch.cat([torch.stack([steps, zeros], 1), torch.stack([zeros, steps], 1)])
    batches = math.ceil(len(ctx.inputs) * len(line_coords) / ctx.batch_size)
    current_task().expect(batches + len(PLANES) * math.ceil(average * grid**2 / ctx.batch_size))
    lines = plane_losses(
        ctx.model, ctx.inputs, ctx.labels, directions["adversarial"], directions["random"],
        line_coords, ctx.batch_size,
    ).double()  # fmt: skip
    summary: dict[str, Any] = {"norm": norm, "eps": eps, "examples": len(ctx.inputs)}
    profile: dict[str, Any] = {"radii": _rounded(radii)}
    rise, curvature = {}, {}
    width = len(steps)
    for i, name in enumerate(("adversarial", "random")):
        line = lines[:, i * width : (i + 1) * width]
        minus, center, plus = line[:, grid], line[:, grid + 1], line[:, grid + 2]
        rise[name] = float((plus - center).mean())
        curvature[name] = float(((plus - 2 * center + minus) / eps**2).mean())
        profile[name] = _rounded(line[:, :grid].mean(0))
    summary["loss"] = _round(float(lines[:, grid + 1].mean()))
    summary["rise_at_eps"] = {key: _round(value) for key, value in rise.items()}
    summary["curvature"] = {key: _round(value) for key, value in curvature.items()}
    summary["profile"] = profile

    a, b = torch.meshgrid(radii, radii, indexing="ij")  # a: first direction (rows), b: second
    plane_coords = torch.stack([a.flatten(), b.flatten()], 1)
    head = slice(0, average)
    planes = {}
    for plane, first, second in PLANES:
        values = plane_losses(
            ctx.model, ctx.inputs[head], ctx.labels[head], directions[first][head],
            directions[second][head], plane_coords, ctx.batch_size,
        )  # fmt: skip
        planes[plane] = values.view(average, grid, grid).double().cpu()
    summary["surface"] = {
        "examples": average,
        "radii": _rounded(radii),
        **{plane: [_rounded(row) for row in planes[plane].mean(0)] for plane, _, _ in PLANES},
        "rise_in_plane": {
            plane: _round(float((values.flatten(1).amax(1) - values[:, grid // 2, grid // 2])
                                .mean()))
            for plane, values in planes.items()
        },
    }  # fmt: skip
    data = {"radii": radii, "planes": planes, "profile": profile, "eps": eps, "norm": norm}
    figures = {
        "profile": profile_figure({"": summary}),
        "surface": plane_figure(radii / eps, planes, shown, kind="surface"),
        "contour": plane_figure(radii / eps, planes, shown, kind="contour"),
    }
    return AnalysisResult(summary, figures, _markdown(summary, average), data)


def _markdown(summary: dict[str, Any], average: int) -> str:
    norm, eps = _NORM_NAMES.get(summary["norm"], summary["norm"]), format_eps(summary["eps"])
    rise, curvature = summary["rise_at_eps"], summary["curvature"]
    rows = [
        "| direction | loss rise at eps | curvature (per pixel unit^2) |",
        "|---|---:|---:|",
        *(f"| {name} | {rise[name]:.4g} | {curvature[name]:.4g} |" for name in rise),
    ]
    gradient = "sign of" if summary["norm"] == "linf" else "normalized"
    return "\n".join([
        f"Cross-entropy around {summary['examples']} test points (mean loss "
        f"{summary['loss']:.4g}) along the adversarial direction ({gradient} the input gradient) "
        f"and a random Rademacher one, unit {norm} norm, at radius {norm} eps = {eps}; "
        "every point clipped to [0, 1]. A flatter, more robust model has the smaller rise along "
        "the adversarial direction.",
        "",
        *rows,
        "",
        f"Planes: the mean over the first {average} test points (\"average\"), then single "
        "points; axes in units of eps.",
    ])  # fmt: skip


def profile_figure(summaries: dict[str, dict[str, Any]]) -> Any:
    """Mean loss against the radius (in units of eps) along the adversarial (solid) and random
    (dashed) directions, one colour per run (``{label: summary}``; one unlabelled run alone)."""
    figure = new_figure((5.5, 3.8))
    axes = figure.add_subplot()
    for i, (label, summary) in enumerate(summaries.items()):
        profile = summary["profile"]
        eps = summary["eps"]
        radii = [r / eps for r in profile["radii"]]
        color = f"C{i}"
        prefix = f"{label}: " if label else ""
        axes.plot(radii, profile["adversarial"], color=color, label=f"{prefix}adversarial")
        axes.plot(radii, profile["random"], color=color, linestyle="--", label=f"{prefix}random")
    for edge in (-1, 1):
        axes.axvline(edge, color="grey", linewidth=0.8, linestyle=":")
    first = next(iter(summaries.values()))
    axes.set_xlabel(f"radius along the direction (units of {_NORM_NAMES.get(first['norm'])} "
                    f"eps = {format_eps(first['eps'])})")  # fmt: skip
    axes.set_ylabel("mean cross-entropy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def plane_figure(coords: Tensor, planes: dict[str, Tensor], shown: int, *, kind: str) -> Any:
    """Rows: the two planes; columns: the average over the test points, then ``shown`` single
    points. ``kind`` "surface" (3-D) or "contour"."""
    columns = [("average", {p: v.mean(0) for p, v in planes.items()})]
    columns += [(f"test point {i}", {p: v[i] for p, v in planes.items()}) for i in range(shown)]
    figure = new_figure((3.3 * len(columns), 6.4))
    for row, (plane, _, _) in enumerate(PLANES):
        for column, (title, values) in enumerate(columns):
            index = row * len(columns) + column + 1
            _draw_plane(figure, index, (2, len(columns)), coords, values[plane], kind,
                        f"{title}\n{CAPTIONS[plane]}")  # fmt: skip
    return figure


def shared_plane_figure(
    runs: dict[str, tuple[Tensor, dict[str, Tensor]]], *, kind: str = "surface"
) -> Any:
    """Rows: the two planes; columns: runs (``{label: (coords, {plane: (n, G, G)})}``), each
    run's average surface, on one z scale so that flatter looks flatter."""
    figure = new_figure((3.3 * len(runs), 6.4))
    limits = {
        plane: (min(float(v[plane].mean(0).min()) for _, v in runs.values()),
                max(float(v[plane].mean(0).max()) for _, v in runs.values()))
        for plane, _, _ in PLANES
    }  # fmt: skip
    for row, (plane, _, _) in enumerate(PLANES):
        for column, (label, (coords, planes)) in enumerate(runs.items()):
            index = row * len(runs) + column + 1
            _draw_plane(figure, index, (2, len(runs)), coords, planes[plane].mean(0), kind,
                        f"{label}\n{CAPTIONS[plane]}", limits[plane])  # fmt: skip
    return figure


def _draw_plane(
    figure: Any,
    index: int,
    layout: tuple[int, int],
    coords: Tensor,
    values: Tensor,
    kind: str,
    title: str,
    limits: tuple[float, float] | None = None,
) -> None:
    a, b = torch.meshgrid(coords, coords, indexing="ij")
    a, b, z = a.numpy(), b.numpy(), values.numpy()
    if kind == "surface":
        axes = figure.add_subplot(*layout, index, projection="3d")
        axes.plot_surface(b, a, z, cmap="viridis", linewidth=0, antialiased=True,
                          vmin=limits[0] if limits else None,
                          vmax=limits[1] if limits else None)  # fmt: skip
        if limits:
            axes.set_zlim(*limits)
        axes.set_zlabel("loss", fontsize=7)
        axes.tick_params(labelsize=6)
    else:
        axes = figure.add_subplot(*layout, index)
        levels = 15 if limits is None else _levels(limits)
        filled = axes.contourf(b, a, z, levels=levels, cmap="viridis")
        figure.colorbar(filled, ax=axes, shrink=0.8).ax.tick_params(labelsize=6)
        axes.plot([0], [0], marker="+", color="white")
        axes.tick_params(labelsize=7)
    first, second = title.rsplit("\n", 1)[1].split(" x ")
    axes.set_xlabel(f"{second} (x eps)", fontsize=7)
    axes.set_ylabel(f"{first} (x eps)", fontsize=7)
    axes.set_title(title, fontsize=8)


def _levels(limits: tuple[float, float]) -> Any:
    import numpy as np

    low, high = limits
    return np.linspace(low, high if high > low else low + 1e-6, 16)


def compare_landscapes(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """Runs side by side: the loss profiles on one axes, and the average planes on one scale."""
    summaries = {label: result.summary for label, result in results.items()}
    runs = {
        label: (result.data["radii"] / result.data["eps"], result.data["planes"])
        for label, result in results.items()
        if "planes" in result.data
    }
    figures = {"profile": profile_figure(summaries)}
    if runs:
        figures["surface"] = shared_plane_figure(runs, kind="surface")
        figures["contour"] = shared_plane_figure(runs, kind="contour")
    return figures


ANALYSES.register(
    NAME,
    description="loss on planes through test points (adversarial x random and random x random "
    "directions): loss rise at eps and curvature along each direction",
    options=OPTIONS,
    compare=compare_landscapes,
    headline=("rise_at_eps", "curvature"),
)(loss_landscape)


def _round(value: float, digits: int = 5) -> float:
    """``value`` to ``digits`` significant digits (what a mean over test points means)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _rounded(values: Tensor) -> list[float]:
    return [_round(float(v)) for v in values]

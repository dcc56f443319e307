"""``per_class``: clean and robust accuracy per class, and where the attack sends each class.

Adversarial training does not cost every class alike: robust accuracy is far more uneven across
classes than clean accuracy (Xu et al., "To be Robust or to be Fair", ICML 2021,
arXiv:2010.06121), and the confusion matrix under attack shows which classes an attack turns
into which. PGD at the run's threat model (``--set steps=N``, default 10), seeded, on every test
point of the context.
"""

from __future__ import annotations

from typing import Any

import torch

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult
from advkit.analysis.figures import figure_and_axes, grouped_bars
from advkit.analysis.measure import attack_name, fraction, logits_of, pgd_inputs

DEFAULT_STEPS = 10
#: ``purpose`` of the attack's random starts.
ATTACK_PURPOSE = 401


def _names(ctx: AnalysisContext) -> list[str]:
    names = ctx.class_names or []
    if len(names) == ctx.num_classes:
        return [str(name) for name in names]
    return [str(c) for c in range(ctx.num_classes)]


def compare(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """Robust accuracy per class, one bar per run."""
    shown = {label: r for label, r in results.items() if r.summary.get("per_class")}
    if not shown:
        return {}
    first = next(iter(shown.values())).summary["per_class"]
    names = [entry["name"] for entry in first]
    fig, (axes,) = figure_and_axes(max(7.0, 0.5 * len(names) * len(shown)), 4.2)
    series = {}
    for label, result in shown.items():
        robust = {e["class"]: e["robust"] for e in result.summary["per_class"]}
        series[f"{label} ({result.summary['robust']:.1%})"] = [
            robust.get(c) or 0.0 for c in range(len(names))
        ]
    grouped_bars(axes, series)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("robust accuracy")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    axes.set_title("Robust accuracy per class")
    return {"accuracy": fig}


@ANALYSES.register(
    "per_class",
    description="clean and robust (PGD) accuracy per class, and the confusion matrix under attack",
    compare=compare,
    options={"steps": DEFAULT_STEPS},
)
def per_class(ctx: AnalysisContext) -> AnalysisResult:
    steps = ctx.option("steps", DEFAULT_STEPS)
    names = _names(ctx)
    k = ctx.num_classes
    labels = ctx.labels
    clean_pred = logits_of(ctx.model, ctx.inputs).argmax(1)
    adv = pgd_inputs(
        ctx.model, ctx.inputs, labels, eps=ctx.eps, norm=ctx.norm, steps=steps,
        seed=ctx.seed * 1_000_003 + ATTACK_PURPOSE,
    )  # fmt: skip
    robust_pred = logits_of(ctx.model, adv).argmax(1)
    confusion = torch.zeros(k * k, dtype=torch.long, device=labels.device)
    confusion.index_add_(0, labels * k + robust_pred, torch.ones_like(labels))
    confusion = confusion.view(k, k).cpu()
    counts = torch.bincount(labels.cpu(), minlength=k)
    clean_hits = torch.bincount(labels[clean_pred == labels].cpu(), minlength=k)
    robust_hits = confusion.diagonal()
    entries = [
        {"class": c, "name": names[c], "n": int(counts[c]),
         "clean": fraction(clean_hits[c] / counts[c]) if counts[c] else None,
         "robust": fraction(robust_hits[c] / counts[c]) if counts[c] else None}
        for c in range(k)
    ]  # fmt: skip
    n = max(len(labels), 1)
    summary = {
        "per_class": entries,
        "clean": fraction(clean_hits.sum().item() / n),
        "robust": fraction(robust_hits.sum().item() / n),
        "attack": attack_name(ctx.eps, ctx.norm, steps),
        "examples": len(labels),
        "confusion_under_attack": confusion.tolist(),
    }
    return AnalysisResult(summary, {"classes": _figure(summary, names)}, _markdown(summary))


def _figure(summary: dict[str, Any], names: list[str]) -> Any:
    """Bars of clean and robust accuracy per class (left), the row-normalized confusion matrix
    under attack (right: true class down, predicted class across)."""
    entries = summary["per_class"]
    fig, (bars, heat) = figure_and_axes(13, 5, ncols=2)
    x = range(len(entries))
    bars.bar([i - 0.2 for i in x], [e["clean"] or 0.0 for e in entries], width=0.4,
             label=f"clean ({summary['clean']:.1%})")  # fmt: skip
    bars.bar([i + 0.2 for i in x], [e["robust"] or 0.0 for e in entries], width=0.4,
             label=f"robust ({summary['robust']:.1%})")  # fmt: skip
    bars.set_xticks(list(x), names, rotation=45, ha="right")
    bars.set_ylim(0, 1)
    bars.set_ylabel("accuracy")
    bars.grid(axis="y", alpha=0.3)
    bars.legend()
    bars.set_title("Accuracy per class")
    matrix = torch.tensor(summary["confusion_under_attack"], dtype=torch.float64)
    rates = matrix / matrix.sum(1, keepdim=True).clamp_min(1)
    image = heat.imshow(rates.numpy(), cmap="viridis", vmin=0, vmax=1)
    heat.set_xticks(list(x), names, rotation=45, ha="right")
    heat.set_yticks(list(x), names)
    heat.set_xlabel("predicted under attack")
    heat.set_ylabel("true class")
    heat.set_title(f"Confusion under {summary['attack'].split(' (')[0]} (row fractions)")
    fig.colorbar(image, ax=heat)
    return fig


def _markdown(summary: dict[str, Any]) -> str:
    entries = [e for e in summary["per_class"] if e["n"]]
    rows = [f"| {e['class']} | {e['name']} | {e['n']} | {e['clean']:.1%} | {e['robust']:.1%} |"
            for e in entries]  # fmt: skip
    text = [
        f"Accuracy per class on {summary['examples']} test points, clean and under "
        f"{summary['attack']}.",
        "",
        "| class | name | n | clean | robust |",
        "| ---: | --- | ---: | ---: | ---: |",
        *rows,
    ]
    if entries:
        worst = min(entries, key=lambda e: e["robust"])
        best = max(entries, key=lambda e: e["robust"])
        matrix = summary["confusion_under_attack"]
        row = matrix[worst["class"]]
        target = max((c for c in range(len(row)) if c != worst["class"]), key=row.__getitem__,
                     default=None)  # fmt: skip
        text += [
            "",
            f"Least robust: {worst['name']} ({worst['robust']:.1%}); most robust: "
            f"{best['name']} ({best['robust']:.1%})."
            + (f" The attack turns {worst['name']} most often into "
               f"{summary['per_class'][target]['name']}." if target is not None and row[target]
               else ""),
        ]  # fmt: skip
    return "\n".join(text)

"""``layer_criticality``: how much the model's decisions depend on each layer's trained weights.

Each layer (a module with parameters of its own: convolution, linear, normalization; named by its
module path) has its parameters and buffers replaced, the rest of the model kept trained:

- re-randomization (Gavrikov, Agnihotri, Keuper & Keuper, "How Do Training Methods Influence the
  Utilization of Vision Models?", 2024): the layer of a freshly initialized copy of the
  architecture (``ctx.rebuild``, seeded by the context's seed);
- re-initialization (Zhang, Bengio & Singer, "Are All Layers Created Equal?", 2019): the layer's
  own initial weights, where the run kept them (``checkpoints/init.safetensors``).

Criticality is 100 * (1 - mean over the test points of the cosine between the original and the
reset model's softmax outputs): 0 when the reset changes nothing, up to 100. Beside it, the drop
in clean accuracy and in robust accuracy under PGD-``steps`` at the run's eps (the same random
starts for every model, so the drop is the weights' doing). After each layer the trained tensors
are copied back from a deep copy (clones): the reference code's ``state_dict().copy()`` copies
the dict, not the tensors, so on a CPU its "backup" was overwritten with the random weights.

Options (``--set NAME=VALUE``): ``steps`` (PGD steps, default 5; 0 for clean accuracy only) and
``examples`` (test points, default 500): the cost is 1 + 2 x layers attacks on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advkit import runs
from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult
from advkit.analysis.figures import figure_and_axes, grouped_bars, layer_ticks
from advkit.analysis.measure import (
    attack_name,
    fraction,
    logits_of,
    pgd_inputs,
)
from advkit.progress_display import current_task

#: PGD steps of the robust accuracy (``--set steps=N``; 0: clean accuracy only).
DEFAULT_STEPS = 5
#: Test points used (``--set examples=N``): the cost is 1 + 2 x layers attacks on them.
DEFAULT_EXAMPLES = 500
#: ``purpose`` of the fresh copy's initialization and of the attacks' random starts.
REBUILD_PURPOSE, ATTACK_PURPOSE = 301, 302
#: The variants in report order: (key prefix in each layer's entry, name in the report).
VARIANTS = (("", "re-randomize"), ("reinit_", "re-initialize"))


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules with parameters of their own, in model (registration) order, by path."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]


def own_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The module's own parameters and buffers (not its children's), by local name."""
    items = chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False))
    return {name: tensor for name, tensor in items if tensor is not None}


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """A deep copy of the module's own tensors (clones: loading into the module later leaves it
    untouched)."""
    return {name: tensor.detach().clone() for name, tensor in own_tensors(module).items()}


def load_into(module: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy ``tensors`` (by local name) into the module's own tensors, in place."""
    with torch.no_grad():
        for name, tensor in own_tensors(module).items():
            tensor.copy_(tensors[name])


@dataclass
class Outcome:
    """What a model does on the test points: softmax (N, K) float64, clean and robust hits."""

    probs: Tensor
    clean: Tensor
    robust: Tensor | None

    @property
    def clean_accuracy(self) -> float:
        return self.clean.double().mean().item()

    @property
    def robust_accuracy(self) -> float | None:
        return None if self.robust is None else self.robust.double().mean().item()


def outcome(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, eps: float, norm: str, steps: int,
    seed: int,
) -> Outcome:  # fmt: skip
    """The model's softmax outputs and hits, clean and (``steps`` > 0, eps > 0) under PGD."""
    logits = logits_of(model, inputs)
    robust = None
    if steps > 0 and eps > 0:
        adv = pgd_inputs(model, inputs, labels, eps=eps, norm=norm, steps=steps, seed=seed)
        robust = logits_of(model, adv).argmax(1) == labels
    return Outcome(logits.double().softmax(1), logits.argmax(1) == labels, robust)


def mean_cosine(a: Tensor, b: Tensor) -> float:
    """Mean over rows of cos(a_i, b_i), as dot / sqrt(|a|^2 |b|^2): exactly 1 for equal rows."""
    dot = (a * b).sum(1)
    return (dot / (a.square().sum(1) * b.square().sum(1)).sqrt()).clamp(-1, 1).mean().item()


def layer_scores(
    model: nn.Module, inputs: Tensor, labels: Tensor, source: dict[str, Tensor], *,
    eps: float, norm: str, steps: int, seed: int, baseline: Outcome | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per layer (by path), the scores of the model with that layer's tensors taken from
    ``source`` (a state dict of the same architecture): criticality, accuracy_drop,
    robust_accuracy_drop; or ``skipped`` with the reason when ``source`` lacks the layer. The
    model is restored after each layer (from :func:`snapshot`)."""
    if baseline is None:
        baseline = outcome(model, inputs, labels, eps=eps, norm=norm, steps=steps, seed=seed)
    scores: dict[str, dict[str, Any]] = {}
    for name, module in layers(model):
        prefix = f"{name}." if name else ""
        local = own_tensors(module)
        missing = [k for k, t in local.items() if getattr(source.get(prefix + k), "shape", None)
                   != t.shape]  # fmt: skip
        if missing:
            scores[name] = {"skipped": f"no {prefix}{missing[0]} of shape "
                            f"{tuple(local[missing[0]].shape)} in the source weights"}  # fmt: skip
            current_task().advance()
            continue
        saved = snapshot(module)
        try:
            load_into(module, {k: source[prefix + k] for k in local})
            reset = outcome(model, inputs, labels, eps=eps, norm=norm, steps=steps, seed=seed)
        finally:
            load_into(module, saved)
        current_task().advance()
        robust_drop = None
        if reset.robust_accuracy is not None and baseline.robust_accuracy is not None:
            robust_drop = fraction(baseline.robust_accuracy - reset.robust_accuracy)
        scores[name] = {
            "criticality": round(100 * (1 - mean_cosine(baseline.probs, reset.probs)), 3),
            "accuracy_drop": fraction(baseline.clean_accuracy - reset.clean_accuracy),
            "robust_accuracy_drop": robust_drop,
        }
    return scores


def _fresh_weights(ctx: AnalysisContext) -> tuple[dict[str, Tensor] | None, str | None]:
    """A freshly initialized copy's state dict (seeded), or None and why there is none."""
    if ctx.rebuild is None:
        return None, "the model cannot be rebuilt untrained (no factory: e.g. an exported program)"
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.seed * 1_000_003 + REBUILD_PURPOSE)
        fresh = ctx.rebuild()
    return {k: v.detach().to(ctx.device) for k, v in fresh.state_dict().items()}, None


def _initial_weights(ctx: AnalysisContext) -> tuple[dict[str, Tensor] | None, str | None]:
    """The run's initial weights, or None and why there are none (a damaged file is named with
    what to do, and the other variant still runs)."""
    from advkit.errors import CorruptFileError
    from advkit.training.checkpoint import load_weights

    if ctx.run_dir is None:
        return None, "a bare model has no run folder, hence no initial weights"
    path = Path(ctx.run_dir) / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS
    if not path.is_file():
        return (
            None,
            f"the run kept no initial weights ({path.name}: trained before advkit kept them)",
        )
    try:
        return load_weights(path, ctx.device), None
    except CorruptFileError as error:
        return None, str(error)


def _bars(entries: list[dict[str, Any]]) -> Any:
    """Criticality, clean and robust accuracy drop per layer, both variants side by side."""
    names = [e["name"] for e in entries]
    fig, axes_row = figure_and_axes(max(13.0, 0.45 * len(names) * 3), 4.8, ncols=3)
    panels = [("criticality", "criticality (0-100)"), ("accuracy_drop", "clean accuracy drop"),
              ("robust_accuracy_drop", "robust accuracy drop")]  # fmt: skip
    x = list(range(len(names)))
    for axes, (key, label) in zip(axes_row, panels, strict=True):
        for offset, (prefix, variant) in zip((-0.2, 0.2), VARIANTS, strict=True):
            values = [e.get(prefix + key) for e in entries]
            if any(v is not None for v in values):
                axes.bar([i + offset for i in x], [v or 0.0 for v in values], width=0.4,
                         label=variant)  # fmt: skip
        layer_ticks(axes, names)
        axes.set_ylabel(label)
        axes.grid(axis="y", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    fig.suptitle("Layer criticality: each layer reset, the rest kept trained")
    return fig


def _markdown(summary: dict[str, Any]) -> str:
    entries = summary["layers"]
    has_reinit = any(e.get("reinit_criticality") is not None for e in entries)
    head = "| layer | type | criticality | clean drop | robust drop |"
    rule = "| --- | --- | ---: | ---: | ---: |"
    if has_reinit:
        head += " re-init criticality | re-init clean drop | re-init robust drop |"
        rule += " ---: | ---: | ---: |"

    def cell(value: float | None, percent: bool) -> str:
        if value is None:
            return "n/a"
        return f"{100 * value:+.1f} pts" if percent else f"{value:.1f}"

    rows = []
    for e in entries:
        cells = [f"`{e['name'] or '(root)'}`", e["type"]]
        for prefix in ("", "reinit_") if has_reinit else ("",):
            cells += [cell(e.get(prefix + "criticality"), False),
                      cell(e.get(prefix + "accuracy_drop"), True),
                      cell(e.get(prefix + "robust_accuracy_drop"), True)]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    text = [
        f"Each layer's weights reset while the rest stay trained, on {summary['examples']} test "
        f"points (clean accuracy {summary['clean_accuracy']:.1%}; robust accuracy under "
        f"{summary['attack']}: "
        + ("n/a" if summary["robust_accuracy"] is None else f"{summary['robust_accuracy']:.1%}")
        + "). Criticality is 100 * (1 - mean cosine of the softmax outputs before and after): "
        "0 means the model ignores the layer's trained weights. Adversarial training tends to "
        "make the deeper layers more critical (Gavrikov et al., 2024).",
        "",
        head,
        rule,
        *rows,
    ]
    scored = [e for e in entries if e.get("criticality") is not None]
    if scored:
        top = max(scored, key=lambda e: e["criticality"])
        text += ["", f"Most critical: `{top['name']}` ({top['criticality']:.1f})."]
    for variant, why in summary["skipped"].items():
        text += ["", f"Not measured, {variant}: {why}."]
    return "\n".join(text)


def compare(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """Re-randomization criticality per layer, one bar per run (layers in the first run's
    order, then any the others add)."""
    names: list[str] = []
    for result in results.values():
        names += [e["name"] for e in result.summary.get("layers", []) if e["name"] not in names]
    if not names:
        return {}
    fig, (axes,) = figure_and_axes(max(7.0, 0.6 * len(names) * len(results)), 4.2)
    series = {}
    for label, result in results.items():
        values = {e["name"]: e.get("criticality") for e in result.summary.get("layers", [])}
        series[label] = [values.get(n) or 0.0 for n in names]
    grouped_bars(axes, series)
    layer_ticks(axes, names)
    axes.set_ylabel("criticality (re-randomized, 0-100)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    axes.set_title("Layer criticality")
    return {"bars": fig}


@ANALYSES.register(
    "layer_criticality",
    description="per layer, how much the outputs change when its weights are re-randomized "
    "(Gavrikov et al.) or reset to their initial values (Zhang et al.): 100 * (1 - cosine of "
    "the softmax outputs), and the accuracy drop",
    compare=compare,
    options={"steps": DEFAULT_STEPS, "examples": DEFAULT_EXAMPLES},
)
def layer_criticality(ctx: AnalysisContext) -> AnalysisResult:
    steps = ctx.option("steps", DEFAULT_STEPS)
    count = ctx.option("examples", DEFAULT_EXAMPLES)
    inputs, labels = ctx.inputs[:count], ctx.labels[:count]
    seed = ctx.seed * 1_000_003 + ATTACK_PURPOSE
    args = {"eps": ctx.eps, "norm": ctx.norm, "steps": steps, "seed": seed}
    sources = {"": _fresh_weights(ctx), "reinit_": _initial_weights(ctx)}
    measured = sum(source is not None for source, _ in sources.values())
    current_task().expect(1 + measured * len(layers(ctx.model)))  # models measured
    baseline = outcome(ctx.model, inputs, labels, **args)
    current_task().advance()
    skipped = {name: sources[prefix][1] for prefix, name in VARIANTS if sources[prefix][0] is None}
    entries = [
        {"name": name, "type": type(module).__name__,
         "parameters": sum(p.numel() for p in module.parameters(recurse=False))}
        for name, module in layers(ctx.model)
    ]  # fmt: skip
    for prefix, _ in VARIANTS:
        source, _why = sources[prefix]
        scores = {} if source is None else layer_scores(
            ctx.model, inputs, labels, source, baseline=baseline, **args
        )  # fmt: skip
        for entry in entries:
            score = scores.get(entry["name"], {})
            for key in ("criticality", "accuracy_drop", "robust_accuracy_drop"):
                entry[prefix + key] = score.get(key)
            if "skipped" in score:
                entry[prefix + "skipped"] = score["skipped"]
    summary = {
        "variant": "re-randomize",
        "layers": entries,
        "clean_accuracy": fraction(baseline.clean_accuracy),
        "robust_accuracy": fraction(baseline.robust_accuracy),
        "attack": attack_name(ctx.eps, ctx.norm, steps),
        "examples": len(inputs),
        "skipped": skipped,
    }
    return AnalysisResult(summary, {"bars": _bars(entries)}, _markdown(summary))

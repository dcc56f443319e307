"""``overfitting``: train vs validation robustness over the epochs, from the run's metrics.

Robust overfitting (Rice, Wong & Kolter, "Overfitting in adversarially robust deep learning",
ICML 2020, arXiv:2002.11569): under PGD training the robust accuracy on training points keeps
rising while on held-out points it peaks and falls, so the last epoch is rarely the most robust.
This reads metrics.jsonl: the fixed training sample's clean and PGD accuracy and loss
(``train_sample_*``, recorded by ``--track-train-sample``, on by default), the validation
split's (``val_*``) and, when the run tracked it, a test sample's (``test_sample_*``). The robust
generalization gap is train-sample PGD accuracy minus validation PGD accuracy; ``best_epoch`` is
the epoch where validation PGD accuracy peaked (the first such epoch).

A drop of validation PGD accuracy after the peak is reported as robust overfitting only when it
exceeds sampling noise: the peak's and the last epoch's Wilson score intervals
(:mod:`advkit.evaluation.intervals`, at ``CONFIDENCE``) over the validation examples do not
overlap. That is conservative (non-overlap implies a difference at a stricter level than the
intervals' own), which suits a peak picked as the best of several epochs. Without the number of
validation examples (the run's config.yaml) no verdict is given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult
from advkit.analysis.figures import epoch_axis, figure_and_axes
from advkit.analysis.measure import fraction
from advkit.config import TrainConfig, read_config_file
from advkit.errors import UserError
from advkit.evaluation.intervals import wilson_interval
from advkit.runs import CONFIG_FILE

#: Confidence of the intervals whose non-overlap makes a drop after the peak robust overfitting.
CONFIDENCE = 0.95
#: The criterion, as the summary and the report state it.
CRITERION = (
    f"the peak's and the last epoch's {CONFIDENCE:.0%} Wilson intervals over the validation "
    "examples do not overlap"
)

#: The splits read from each record: (name in the summary, metrics prefix, legend).
SPLITS = (("train", "train_sample_", "train sample"), ("val", "val_", "validation"),
          ("test", "test_sample_", "test sample"))  # fmt: skip
#: The measurements of each split: (name in the summary, metrics suffix).
MEASURES = (("clean", "clean"), ("pgd", "pgd"), ("clean_loss", "clean_loss"),
            ("pgd_loss", "pgd_loss"))  # fmt: skip


def epochs_table(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per epoch: epoch, <split>_<measure> for what the record holds, and the gaps
    (``gap``: train-sample minus validation PGD accuracy; ``loss_gap``: validation minus
    train-sample PGD loss)."""
    rows = []
    for record in history:
        if "epoch" not in record:
            continue
        row: dict[str, Any] = {"epoch": int(record["epoch"])}
        for split, prefix, _ in SPLITS:
            for name, suffix in MEASURES:
                value = record.get(prefix + suffix)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    row[f"{split}_{name}"] = value
        if "train_pgd" in row and "val_pgd" in row:
            row["gap"] = row["train_pgd"] - row["val_pgd"]
        if "train_pgd_loss" in row and "val_pgd_loss" in row:
            row["loss_gap"] = row["val_pgd_loss"] - row["train_pgd_loss"]
        rows.append(row)
    return rows


def summarize(history: list[dict[str, Any]], val_examples: int | None = None) -> dict[str, Any]:
    """The overfitting summary of a run's history (see the module docstring); ``val_examples``:
    how many validation examples each epoch's accuracies are over (None: unknown)."""
    rows = epochs_table(history)
    robust = [(row["epoch"], row["val_pgd"]) for row in rows if "val_pgd" in row]
    summary: dict[str, Any] = {"best_epoch": None, "epochs": len(rows)}
    if robust:
        best_epoch, best = max(robust, key=lambda item: item[1])  # max keeps the first peak
        last = robust[-1][1]
        summary |= {
            "best_epoch": best_epoch,
            "best_val_pgd": fraction(best),
            "final_val_pgd": fraction(last),
            "val_pgd_drop": fraction(best - last),
            **_verdict(best, last, val_examples),
        }
    gaps = [row for row in rows if "gap" in row]
    if gaps:
        at_best = next((row["gap"] for row in gaps if row["epoch"] == summary["best_epoch"]), None)
        summary |= {"final_gap": fraction(gaps[-1]["gap"]), "gap_at_best": fraction(at_best)}
    summary["measured"] = [
        split for split, _, _ in SPLITS if any(f"{split}_pgd" in r for r in rows)
    ]
    summary["per_epoch"] = [
        {key: (value if key == "epoch" else fraction(value)) for key, value in row.items()}
        for row in rows
    ]
    return summary


def _verdict(best: float, last: float, n: int | None) -> dict[str, Any]:
    """``robust_overfitting``: True when the drop from ``best`` to ``last`` exceeds the intervals
    (``CRITERION``), False when it does not, None when ``n`` is unknown; and the intervals."""
    verdict: dict[str, Any] = {"robust_overfitting": None, "criterion": CRITERION,
                               "val_examples": n}  # fmt: skip
    if not n or n < 1:
        return verdict
    best_low, best_high = wilson_interval(min(n, round(best * n)), n, CONFIDENCE)
    last_low, last_high = wilson_interval(min(n, round(last * n)), n, CONFIDENCE)
    return verdict | {
        "robust_overfitting": last_high < best_low,
        "best_val_pgd_interval": [
            math.floor(best_low * 1e4) / 1e4,
            math.ceil(best_high * 1e4) / 1e4,
        ],
        "final_val_pgd_interval": [
            math.floor(last_low * 1e4) / 1e4,
            math.ceil(last_high * 1e4) / 1e4,
        ],
    }


def validation_examples(run_dir: Path | None) -> int | None:
    """How many validation examples a run measured each epoch: ``min(val_examples, val_size)``
    of its config.yaml (TrainConfig's defaults for what it leaves out); None if unknown."""
    path = None if run_dir is None else Path(run_dir) / CONFIG_FILE
    if path is None or not path.is_file():
        return None
    try:
        config = read_config_file(path)
    except UserError:
        return None
    defaults = TrainConfig()
    sizes = [config.get("val_examples", defaults.val_examples),
             config.get("val_size", defaults.val_size)]  # fmt: skip
    if not all(isinstance(size, int) and not isinstance(size, bool) for size in sizes):
        return None
    return min(sizes)


def compare(results: dict[str, AnalysisResult]) -> dict[str, Any]:
    """Validation PGD accuracy (left) and the robust generalization gap (right) per run."""
    shown = {label: r for label, r in results.items() if r.summary.get("per_epoch")}
    if not shown:
        return {}
    fig, (acc, gap) = figure_and_axes(11, 4, ncols=2)
    for label, result in shown.items():
        rows = result.summary["per_epoch"]
        line = acc.plot(*_series(rows, "val_pgd"), marker="o", label=label)[0]
        if result.summary.get("best_epoch") is not None:
            acc.axvline(result.summary["best_epoch"], color=line.get_color(), alpha=0.3)
        gap.plot(*_series(rows, "gap"), marker="o", color=line.get_color(), label=label)
    acc.set_ylabel("validation PGD accuracy")
    gap.set_ylabel("train-sample minus validation PGD accuracy")
    gap.axhline(0, color="black", linewidth=0.8)
    for axes in (acc, gap):
        epoch_axis(axes)
        axes.grid(alpha=0.3)
        axes.legend()
    fig.suptitle("Robust overfitting")
    return {"curves": fig}


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


@ANALYSES.register(
    "overfitting",
    description="train-sample vs validation (and test-sample) clean and robust accuracy and "
    "loss per epoch, the robust generalization gap, and the epoch of peak validation robustness",
    compare=compare,
    needs_history=True,
    headline=("best_epoch", "final_gap"),
)
def overfitting(ctx: AnalysisContext) -> AnalysisResult:
    summary = summarize(ctx.history, validation_examples(ctx.run_dir))
    rows = summary["per_epoch"]
    figures = {"curves": _curves(rows, summary)} if rows else {}
    return AnalysisResult(summary, figures, _markdown(summary))


def _curves(rows: list[dict[str, Any]], summary: dict[str, Any]) -> Any:
    """Accuracy (clean dashed, PGD solid, one colour per split), loss, and the gap per epoch."""
    fig, (acc, loss, gap) = figure_and_axes(15, 4, ncols=3)
    colours = {"train": "tab:green", "val": "tab:blue", "test": "tab:gray"}
    for split, _, legend in SPLITS:
        for name, style, axes in (("clean", "--", acc), ("pgd", "-", acc),
                                  ("clean_loss", "--", loss), ("pgd_loss", "-", loss)):  # fmt: skip
            epochs, values = _series(rows, f"{split}_{name}")
            if values:
                what = name.replace("_loss", "").replace("pgd", "PGD")
                axes.plot(epochs, values, marker="o", linestyle=style, color=colours[split],
                          label=f"{legend} {what}")  # fmt: skip
    epochs, values = _series(rows, "gap")
    if values:
        gap.plot(epochs, values, marker="o", color="tab:red", label="train sample - val (PGD)")
        gap.axhline(0, color="black", linewidth=0.8)
    if summary.get("best_epoch") is not None:
        for axes in (acc, loss, gap):
            axes.axvline(summary["best_epoch"], color="black", alpha=0.3, linestyle=":")
    acc.set_ylim(0, 1)
    acc.set_ylabel("accuracy")
    loss.set_ylabel("cross-entropy")
    gap.set_ylabel("robust generalization gap (accuracy)")
    for axes in (acc, loss, gap):
        epoch_axis(axes)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    best = summary.get("best_epoch")
    fig.suptitle("Train vs validation robustness" + (f" (peak at epoch {best})" if best else ""))
    return fig


def _drop_text(summary: dict[str, Any]) -> str:
    """What the drop after the peak means: robust overfitting, noise, or unknown."""
    drop = 100 * summary["val_pgd_drop"]
    if drop <= 0:
        return "no drop after the peak"
    verdict, n = summary.get("robust_overfitting"), summary.get("val_examples")
    if verdict is None:
        return (
            f"{drop:.1f} points lost after the peak; whether that is more than sampling noise is "
            "unknown: the run's config.yaml does not say over how many validation examples"
        )
    best, last = summary["best_val_pgd_interval"], summary["final_val_pgd_interval"]
    intervals = (
        f"{CONFIDENCE:.0%} Wilson intervals over {n} validation examples: "
        f"[{best[0]:.1%}, {best[1]:.1%}] at the peak, [{last[0]:.1%}, {last[1]:.1%}] at the end"
    )
    if verdict:
        return f"robust overfitting: {drop:.1f} points lost after the peak, beyond the {intervals}"
    return (
        f"{drop:.1f} points lower after the peak, within sampling noise, not robust overfitting: "
        f"the {intervals} overlap"
    )


def _markdown(summary: dict[str, Any]) -> str:
    if summary["best_epoch"] is None:
        return (
            "The run's metrics hold no validation PGD accuracy (`val_pgd`): train with "
            "--val-examples > 0 to see robust overfitting."
        )
    text = [
        f"Validation PGD accuracy peaked at epoch **{summary['best_epoch']}** of "
        f"{summary['epochs']} ({summary['best_val_pgd']:.1%}) and ended at "
        f"{summary['final_val_pgd']:.1%} ({_drop_text(summary)})."
    ]
    if "final_gap" in summary:
        at_best = summary["gap_at_best"]
        peak = "" if at_best is None else f", {100 * at_best:+.1f} at the peak"
        text.append(
            f"The robust generalization gap (PGD accuracy on the fixed training sample minus on "
            f"validation) is {100 * summary['final_gap']:+.1f} points at the end{peak}."
        )
    else:
        text.append(
            "The run recorded no fixed training sample (`train_sample_pgd`; trained before "
            "advkit recorded it, or with --no-track-train-sample): no gap to show."
        )
    if "test" not in summary["measured"]:
        text.append("No test-sample curve (opt-in: --track-test-sample).")
    return " ".join(text)

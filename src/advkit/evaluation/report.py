"""An evaluation's results as JSON, as a terminal table and as a Markdown report.

The JSON has ``"clean"``, one key per attack run and ``"worst_case"`` (robust accuracies in
[0, 1]), plus ``"suite"``, ``"eps"``, ``"norm"``, ``"n_examples"``, ``"seconds"`` (the attacks'
compute time), ``"warnings"``, ``"attacks"`` (the attack keys in order), ``"cascade"``, ``"seed"``,
after an eps sweep ``"sweep"``, ``"per_class"`` (clean and worst-case accuracy with intervals
per class: :mod:`advkit.evaluation.per_class`), and when the sanity checks were run or skipped
``"checks"`` (``CheckReport.to_dict()``: level, sample, budget, seconds, cost and status of each
check). ``advkit eval`` adds ``"batch_size"``, ``"model"`` (the weights' fingerprint),
``"model_arguments"`` (the architecture's arguments, defaults included: the report names the
model with them), ``"attack_cost"`` (forward-equivalents of the attacks this command ran; a
resumed evaluation counts only its last session) and ``"timing"`` (seconds: loading, attacks,
sweep, checks, figures, total; the attacks and the total count every session of a resumed
evaluation, as ``"seconds"`` does; ``"attacks_earlier_sessions"``: what the interrupted ones
spent).
Beside every accuracy: ``"intervals"`` (``{column: [low, high]}``, Wilson score intervals at
``"confidence"``, also on each sweep point), ``"attack_params"`` (every attack's hyperparameters)
and, on request, ``"per_sample"`` (``{column: [0/1 per example]}``). Accuracies are rounded to
6 decimals (exact for up to 10^5 examples), seconds to milliseconds.
The table and the Markdown read only that dict, so they can be rebuilt from the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advkit.evaluation.check_report import checks_line, checks_markdown, not_applicable_line
from advkit.evaluation.checks import CheckReport
from advkit.evaluation.evaluate import EvalResult
from advkit.evaluation.intervals import (
    DEFAULT_CONFIDENCE,
    METHOD,
    accuracy_intervals,
)
from advkit.evaluation.per_class import per_class_markdown, per_class_rows
from advkit.evaluation.provenance import PROVENANCE_KEYS, model_arguments, model_text
from advkit.evaluation.suites import Suite, attack_params
from advkit.files import write_text
from advkit.humanize import format_bytes, format_duration, format_eps

NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def report_dict(
    result: EvalResult,
    warnings: Sequence[str] = (),
    sweep: Sequence[tuple[float, float]] | None = None,
    *,
    checks: CheckReport | None = None,
    extra: Mapping[str, Any] | None = None,
    suite: Suite | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    per_sample: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary of ``result`` with the checks' ``warnings`` (or their whole
    ``checks`` report), an optional sweep, the ``suite``'s attack hyperparameters, confidence
    intervals, clean and worst-case accuracy per class (named by ``class_names``) when the
    result has its labels, per-sample outcomes if asked, and ``extra`` keys."""
    accuracies = {name: round(acc, 6) for name, acc in result.accuracies().items()}
    n = result.n_examples
    if checks is not None:
        warnings = [*warnings, *checks.warnings]
    data: dict[str, Any] = {
        "suite": result.suite, "eps": result.eps, "norm": result.norm,
        "n_examples": n, "attacks": list(result.robust), **accuracies,
        "confidence": confidence, "interval_method": METHOD,
        "intervals": accuracy_intervals(accuracies, n, confidence),
        "seconds": round(result.seconds, 3), "seed": result.seed, "cascade": result.cascade,
        "warnings": list(warnings),
    }  # fmt: skip
    if suite is not None:
        data["attack_params"] = attack_params(suite)
    if checks is not None:
        data["checks"] = checks.to_dict()
    if sweep:
        data["sweep"] = [
            {"eps": eps, "robust_accuracy": round(acc, 6),
             "interval": accuracy_intervals({"_": acc}, n, confidence)["_"]}
            for eps, acc in sweep
        ]  # fmt: skip
    if result.labels is not None:
        data["per_class"] = per_class_rows(
            result.labels, {"clean": result.clean, "worst_case": result.worst_case},
            class_names, confidence,
        )  # fmt: skip
    if per_sample:
        columns = {"clean": result.clean, **result.robust, "worst_case": result.worst_case}
        data["per_sample"] = {name: values.int().tolist() for name, values in columns.items()}
    data.update(extra or {})
    return data


def interval_text(data: Mapping[str, Any], column: str) -> str:
    """``[81.2%, 85.9%]``: the column's interval as the report prints it ('' if unrecorded)."""
    bounds = (data.get("intervals") or {}).get(column)
    return f"[{bounds[0]:.1%}, {bounds[1]:.1%}]" if bounds else ""


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def headline(data: Mapping[str, Any]) -> str:
    """``suite paper, L-inf eps=0.03137 (8/255), 1000 examples, attacks 532.1 s, checks 20.3 s
    (fast)`` (only the attacks' seconds for a report without its checks' record)."""
    norm = NORM_NAMES.get(data["norm"], data["norm"])
    eps = format_eps(data["eps"])
    text = f"suite {data['suite']}, {norm} eps={eps}, {data['n_examples']} examples"
    checks = data.get("checks")
    if checks is None:
        return f"{text}, {format_duration(data['seconds'])}"
    attacks = f"attacks {format_duration(data['seconds'])}"
    if checks["level"] == "none":
        return f"{text}, {attacks}, no sanity checks (--checks none)"
    return f"{text}, {attacks}, checks {format_duration(checks['seconds'])} ({checks['level']})"


def timing_line(data: Mapping[str, Any]) -> str | None:
    """``total 13.0 s: loading 0.7 s, attacks 8.7 s, eps sweep 0.5 s, checks 2.7 s, figures
    0.4 s`` (loading: the model and the data). After a resumed evaluation the attacks and the
    total count every session (``attacks 8.7 s (5.1 s in earlier sessions)``), as the header
    does."""
    timing = data.get("timing")
    if not timing:
        return None
    labels = {"loading": "loading", "attacks": "attacks", "sweep": "eps sweep",
              "checks": "checks", "figures": "figures"}  # fmt: skip
    parts = [
        f"{label} {format_duration(timing[key])}" for key, label in labels.items() if key in timing
    ]
    earlier = timing.get("attacks_earlier_sessions")
    if earlier and "attacks" in timing:
        index = [key for key in labels if key in timing].index("attacks")
        parts[index] += f" ({format_duration(earlier)} in earlier sessions)"
    return f"total {format_duration(timing['total'])}: " + ", ".join(parts)


def format_table(data: Mapping[str, Any]) -> str:
    """A plain-text table of the robust accuracies, with the warnings below it."""
    rows = [("clean", data["clean"]), *[(name, data[name]) for name in data["attacks"]]]
    rows.append(("worst_case", data["worst_case"]))
    width = max(len(name) for name, _ in rows) + 2
    level = f"{data['confidence']:.0%} interval" if data.get("intervals") else ""
    lines = [headline(data), f"{'attack':<{width}}robust accuracy  {level}".rstrip()]
    lines += [
        f"{name:<{width}}{acc:>15.2%}  {interval_text(data, name)}".rstrip() for name, acc in rows
    ]
    if data.get("cascade"):
        lines.append("(cascade: each row counts the attacks above it too)")
    for eps_point in data.get("sweep", []):
        lines.append(
            f"sweep eps={format_eps(eps_point['eps'])}: {eps_point['robust_accuracy']:.2%}"
        )
    lines += [
        line for line in (checks_line(data), not_applicable_line(data), timing_line(data)) if line
    ]
    lines += [f"warning: {warning}" for warning in data.get("warnings", [])]
    return "\n".join(lines)


def markdown_report(
    data: Mapping[str, Any],
    *,
    title: str,
    descriptions: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    images: Mapping[str, str] | None = None,
) -> str:
    """The report as Markdown: the table, the model's training facts, warnings, sweep, images.

    ``images`` maps a caption to a path relative to the report (e.g. the sweep and example PNGs).
    """
    descriptions = descriptions or {}
    lines = [f"# Robustness evaluation: {title}", "", headline(data) + f", seed {data['seed']}", ""]
    if metadata:
        lines += [_training_line(metadata), ""]
    level = f"{data.get('confidence', DEFAULT_CONFIDENCE):.0%} interval"
    lines += [f"| attack | description | robust accuracy | {level} |", "|---|---|---:|---:|"]
    lines.append(f"| clean | no attack | {data['clean']:.2%} | {interval_text(data, 'clean')} |")
    for name in data["attacks"]:
        lines.append(
            f"| {name} | {descriptions.get(name, '')} | {data[name]:.2%} | "
            f"{interval_text(data, name)} |"
        )
    worst = "per sample, robust to every attack above"
    lines += [
        f"| **worst case** | {worst} | **{data['worst_case']:.2%}** | "
        f"{interval_text(data, 'worst_case')} |",
        "",
    ]
    lines.append(
        "A sample counts as robust to an attack only if it is classified correctly both clean "
        "and under the attack, so no column exceeds clean accuracy."
    )
    if data.get("intervals"):
        lines.append(
            f"Intervals: {data.get('interval_method', METHOD).capitalize()} score intervals for a "
            f"binomial proportion at {data['confidence']:.0%} confidence over the "
            f"{data['n_examples']} examples (the test examples' sampling error only, not the "
            "attacks' randomness)."
        )
    if data.get("cascade"):
        lines.append(
            "The attacks ran as a cascade (each only on the samples every earlier one failed to "
            "break), so each row is the robust accuracy after that attack and all above it."
        )
    lines += ["", "## Sanity checks", ""]
    lines += checks_markdown(data)
    if data.get("timing") and data.get("checks"):
        lines += ["", str(timing_line(data)).capitalize() + "."]
    if data.get("sweep"):
        lines += ["", "## Robust accuracy against eps (PGD-20)", "", "| eps | robust accuracy |"]
        lines.append("|---:|---:|")
        for point in data["sweep"]:
            bounds = point.get("interval")
            shown = f" [{bounds[0]:.1%}, {bounds[1]:.1%}]" if bounds else ""
            lines.append(f"| {format_eps(point['eps'])} | {point['robust_accuracy']:.2%}{shown} |")
    lines += per_class_markdown(data)
    if data.get("attack_params"):
        lines += ["", "## Attack settings", "", "| attack | parameters |", "|---|---|"]
        for name, params in data["attack_params"].items():
            shown = ", ".join(f"{key}={value}" for key, value in params.items())
            lines.append(f"| {name} | {shown} |")
    recorded = [key for key in PROVENANCE_KEYS if data.get(key) is not None]
    if recorded:
        lines += ["", "## What was measured", ""]
        shown = {**data, "architecture": model_text(data.get("architecture"),
                                                    data.get("model_arguments"))}  # fmt: skip
        lines += [f"- {key.replace('_', ' ')}: `{shown[key]}`" for key in recorded]
        if data.get("indices") is not None:
            lines.append(f"- examples: {_indices_text(data['indices'])} of the test set")
    for caption, relative in (images or {}).items():
        lines += ["", f"## {caption}", "", f"![{caption}]({relative})"]
    return "\n".join(lines) + "\n"


def _indices_text(indices: Sequence[int]) -> str:
    """``0..999`` for a contiguous range, else ``1000 indices`` (the JSON lists them)."""
    if indices and list(indices) == list(range(indices[0], indices[0] + len(indices))):
        return f"indices {indices[0]}..{indices[-1]}"
    return f"{len(indices)} indices (listed in the JSON)"


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(path, text)
    return path


def _training_line(metadata: Mapping[str, Any]) -> str:
    origin = metadata.get("model_origin")
    if isinstance(origin, Mapping):
        return _origin_line(origin)
    method = metadata.get("method") or {}
    threat = metadata.get("threat") or {}
    facts = [
        (
            "model",
            model_text(
                metadata.get("architecture"),
                model_arguments(metadata.get("architecture"), metadata.get("model_kwargs")),
            ),
        ),
        ("dataset", metadata.get("dataset")),
        ("training method", method.get("name") if isinstance(method, Mapping) else method),
        ("training threat", _threat_text(threat) if threat else None),
        ("epochs", metadata.get("epochs")),
        ("training time", _seconds_text(metadata.get("train_seconds"))),
        ("workers", _workers_text(metadata)),
    ]
    return ", ".join(f"{name} {value}" for name, value in facts if value not in (None, ""))


def _origin_line(origin: Mapping[str, Any]) -> str:
    """Where a model advkit did not train came from: its reference and weights file (with the
    file's SHA-256), or the Python class given to ``advkit.evaluate``."""
    if origin.get("python"):
        text = f"Model {origin['python']}, given to advkit.evaluate in Python (not an advkit run)"
    else:
        reference = origin.get("reference")
        arguments = model_arguments(reference, origin.get("model_kwargs"))
        text = (
            f"Model {model_text(reference, arguments)} with the weights of "
            f"{origin.get('weights')} (SHA-256 {origin.get('weights_sha256')}), not an advkit run"
        )  # fmt: skip
        norm = origin.get("normalization")
        text += (
            f"; normalization put inside it: mean {_values(norm['mean'])}, std "
            f"{_values(norm['std'])}"
            if isinstance(norm, Mapping)
            else "; the model normalizes its [0, 1] inputs itself"
        )
    return f"{text}; data: {origin.get('dataset')}."


def _values(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def _workers_text(metadata: Mapping[str, Any]) -> str | None:
    """``2 (int8 gradients, 41.5 kB per iteration on the wire; communication 3.1 s of 60 s)``."""
    workers = metadata.get("workers") or 1
    comm = metadata.get("communication") or {}
    if workers <= 1 or not comm.get("comm_iterations"):
        return str(workers) if workers > 1 else None
    return (
        f"{workers} ({comm['compression']} gradients, "
        f"{format_bytes(comm['comm_wire_bytes_per_iter'])} per iteration on the wire; "
        f"communication {format_duration(comm['comm_seconds'])} of "
        f"{format_duration(comm['epoch_seconds'])})"
    )


def _threat_text(threat: Mapping[str, Any]) -> str:
    norm = NORM_NAMES.get(threat.get("norm", ""), threat.get("norm", "?"))
    eps = threat.get("eps")
    return f"{norm} eps={format_eps(float(eps))}" if eps is not None else norm


def _seconds_text(seconds: Any) -> str | None:
    if seconds is None:
        return None
    return format_duration(float(seconds))


def _write_text(path: Path, text: str) -> None:
    """Write atomically; a refused write is a WriteError naming ``path`` (:mod:`advkit.files`)."""
    write_text(path, text)

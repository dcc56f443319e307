"""The conditions under which an evaluation's accuracies were measured, which must match for
two runs' accuracies to be compared: dataset, test examples, suite, threat, attack settings
(the radius aside) and the intervals' confidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from advkit.comparison.select import Evaluation, RunInfo
from advkit.evaluation.intervals import DEFAULT_CONFIDENCE
from advkit.evaluation.report import NORM_NAMES
from advkit.humanize import format_eps

#: Conditions that must match for accuracies to be compared, and what a difference means.
CONDITIONS = {
    "dataset": "evaluated on different datasets",
    "suite": "different attack suites, so each worst case is over different attacks",
    "eps": "evaluated at different threats (norm or radius)",
    "examples": "evaluated on different test examples, so a difference may be the examples "
    "rather than the models",
    "attack_settings": "the same suite ran with different attack settings",
    "confidence": "intervals at different confidence levels",
}


def threat_text(norm: str, eps: float) -> str:
    """``0.1`` for L-inf (the usual), else ``L2 0.5``."""
    shown = format_eps(eps)
    return shown if norm == "linf" else f"{NORM_NAMES.get(norm, norm)} {shown}"


def condition_value(evaluation: Evaluation, run: RunInfo, condition: str) -> tuple[Any, str]:
    """(what is compared, what is shown) of one measuring condition of a run's evaluation."""
    data = evaluation.data
    if condition == "dataset":
        origin = data.get("model_origin")
        recorded = origin.get("dataset") if isinstance(origin, Mapping) else None
        name = data.get("dataset") or recorded or run.dataset
        return name, name or "unknown"
    if condition == "suite":
        return data["suite"], str(data["suite"])
    if condition == "eps":
        norm, eps = str(data["norm"]), float(data["eps"])
        return (norm, round(eps, 9)), threat_text(norm, eps)
    if condition == "examples":
        n = int(data["n_examples"])
        indices = data.get("indices")
        key = tuple(indices) if isinstance(indices, list) else tuple(range(n))
        first_n = key == tuple(range(n))
        return key, str(n) if first_n else f"{n} (test indices listed in the JSON)"
    if condition == "attack_settings":
        params = data.get("attack_params")
        if not isinstance(params, Mapping):
            return None, "not recorded"
        return repr(relative_settings(params, float(data["eps"]))), "see attack_params in the JSON"
    if condition == "confidence":
        level = float(data.get("confidence", DEFAULT_CONFIDENCE))
        return level, f"{level:.0%}"
    raise KeyError(condition)


def differing(evaluated: Sequence[tuple[Evaluation, RunInfo]]) -> list[str]:
    """The conditions the evaluations differ in (an unrecorded value differs from none); attack
    settings only within one suite (other suites: other attacks, said once)."""
    mixed = []
    for condition in CONDITIONS:
        values = {condition_value(e, run, condition)[0] for e, run in evaluated}
        if len(values - {None}) > 1:
            mixed.append(condition)
    if "suite" in mixed and "attack_settings" in mixed:
        mixed.remove("attack_settings")
    return mixed


def relative_settings(params: Mapping[str, Any], eps: float) -> dict[str, Any]:
    """Attack settings without the threat's radius: step sizes as multiples of eps."""
    relative = {}
    for name, settings in params.items():
        if not isinstance(settings, Mapping):
            relative[name] = settings
            continue
        kept = {k: v for k, v in settings.items() if k not in ("eps", "norm", "step_size")}
        step = settings.get("step_size")
        if isinstance(step, int | float) and eps > 0:
            kept["step_size"] = round(step / eps, 6)
        relative[name] = kept
    return relative


def attacks_set_otherwise(evaluations: Sequence[Evaluation]) -> list[str]:
    """The attacks whose settings (radius aside) differ between the evaluations."""
    settings = [
        relative_settings(e.data["attack_params"], e.eps)
        for e in evaluations
        if isinstance(e.data.get("attack_params"), Mapping)
    ]
    names = dict.fromkeys(name for each in settings for name in each)
    return [name for name in names if len({repr(each.get(name)) for each in settings}) > 1]

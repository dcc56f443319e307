"""The sanity checks' part of an evaluation report: a line for the terminal, a section for the
Markdown, read from the JSON's ``"checks"`` (``CheckReport.to_dict()``).

Each check is reported as fired, quiet (it tested and saw nothing), skipped (no budget) or not
applicable (nothing to test on this evaluation, e.g. no PGD-100 column): a check that did not
apply is never shown as passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advkit.evaluation.cost import CALL_COST
from advkit.humanize import format_duration


def checks_line(data: Mapping[str, Any]) -> str | None:
    """``checks fast on 19 points: black_box 0.52 s, large_eps 0.21 s, ..., x skipped``: the
    checks that ran, slowest first, then those skipped (:func:`not_applicable_line` names the
    ones that did not apply)."""
    checks = data.get("checks")
    if not checks or checks["level"] == "none":
        return None
    runs = [run for run in checks["runs"] if _status(run) != "not applicable"]
    runs.sort(key=lambda run: (_status(run) != "ran", -run["seconds"]))
    parts = [
        run["name"] + " " + (format_duration(run["seconds"]) if _status(run) == "ran"
                             else _status(run))
        for run in runs
    ]  # fmt: skip
    return f"checks {checks['level']} on {checks['sample']} points: " + ", ".join(parts)


def not_applicable_line(data: Mapping[str, Any]) -> str | None:
    """``not applicable: more_steps (why); sweep_rises (why)``: what no check tested."""
    runs = [run for run in (data.get("checks") or {}).get("runs", []) if run.get("not_applicable")]
    if not runs:
        return None
    return "not applicable: " + "; ".join(
        f"{run['name']} ({run['not_applicable']})" for run in runs
    )


def _status(run: Mapping[str, Any]) -> str:
    """ "ran", "skipped" or "not applicable" (whether it fired is in ``run["fired"]``)."""
    if run.get("skipped"):
        return "skipped"
    return "not applicable" if run.get("not_applicable") else "ran"


def checks_markdown(data: Mapping[str, Any]) -> list[str]:
    """The warnings, then (when recorded) the level and a table of each check's time and cost."""
    checks = data.get("checks")
    if checks is not None and checks["level"] == "none":
        return ["Not run (--checks none): nothing here guards against gradient masking."]
    lines = [f"- **warning:** {w}" for w in data["warnings"]] or ["No sanity check fired."]
    if checks is None:
        return lines
    inapplicable = [run["name"] for run in checks["runs"] if run.get("not_applicable")]
    if inapplicable and not data["warnings"]:
        lines = [
            f"No sanity check fired; {', '.join(inapplicable)} did not apply to this evaluation "
            "(nothing to test: see the table), so they vouch for nothing."
        ]
    budget = checks.get("budget")
    bound = f", within a budget of {budget} forward-equivalents" if budget is not None else ""
    lines += [
        "",
        f"Level {checks['level']}, on {checks['sample']} evaluated points{bound}; "
        f"{format_duration(checks['seconds'])}, {checks['cost']} forward-equivalents in all "
        "(an image through the model counts 1, with its backward pass 2, each call "
        f"{CALL_COST} more).",
        "",
        "| check | result | seconds | forward-equivalents |",
        "|---|---|---:|---:|",
    ]
    for run in checks["runs"]:
        if run.get("skipped"):
            result = f"skipped: {run['skipped']}"
        elif run.get("not_applicable"):
            result = f"not applicable: {run['not_applicable']}"
        else:
            result = "**fired**" if run["fired"] else "quiet (tested, nothing seen)"
        lines.append(f"| {run['name']} | {result} | {run['seconds']:.2f} | {run['cost']} |")
    return lines

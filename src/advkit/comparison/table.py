"""Several runs' evaluations as one table: a row per run, a column per accuracy, each with its
interval, and the conditions under which the accuracies were measured.

Accuracies are comparable only when measured alike: on the same dataset and test examples, by
the same attacks (suite and settings) at the same threat, with intervals at the same confidence.
Runs that differ in any of these are refused unless ``allow_mixed``; then the differing
conditions become columns, a note says what the difference means, and no value is marked best.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advkit.comparison.conditions import (
    CONDITIONS,
    attacks_set_otherwise,
    condition_value,
    differing,
    threat_text,
)
from advkit.comparison.select import (
    CompareError,
    Evaluation,
    RunInfo,
    architecture_text,
    of_weights,
)
from advkit.evaluation.intervals import DEFAULT_CONFIDENCE, accuracy_intervals
from advkit.humanize import numbered_repeats

#: Columns that describe a run (the run's facts, then measuring conditions), with their headers.
LABELS = {
    "run": "run", "method": "method", "train_eps": "train eps", "model": "model",
    "dataset": "dataset", "suite": "suite", "eps": "eval eps", "examples": "examples",
    "confidence": "confidence",
}  # fmt: skip
#: Shown by default (the conditions only where they differ, the notes name the shared ones).
DEFAULT_LABELS = ("run", "method", "train_eps", "model")
CLEAN, WORST = "clean", "worst_case"


@dataclass(frozen=True)
class Cell:
    """One accuracy with its interval, fractions in [0, 1]."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Row:
    """One run: its facts, the evaluation shown (None: missing) and its accuracy cells."""

    run: RunInfo
    label: str
    evaluation: Evaluation | None
    cells: Mapping[str, Cell] = field(default_factory=dict)
    #: Why a run without an evaluation has none (what to run).
    missing: str = ""

    def label_value(self, column: str) -> str:
        """The text of a descriptive column ('' where unknown)."""
        data = self.evaluation.data if self.evaluation else {}
        if column == "run":
            return self.label
        if column == "method":
            origin = data.get("model_origin")
            return self.run.method or ("not trained by advkit" if origin else "")
        if column == "train_eps":
            return threat_text(*self.run.train_threat) if self.run.train_threat else ""
        if column == "model":
            return self.run.architecture or architecture_text(data.get("architecture")) or ""
        if self.evaluation is None:
            return ""
        return str(condition_value(self.evaluation, self.run, column)[1])

    @property
    def warnings(self) -> list[str]:
        return list(self.evaluation.data.get("warnings") or []) if self.evaluation else []


@dataclass(frozen=True)
class Comparison:
    """The table: rows in order, accuracy columns, the descriptive columns shown, notes."""

    rows: list[Row]
    accuracy_columns: list[str]
    label_columns: list[str]
    #: Conditions the rows differ in (empty: all measured alike).
    mixed: list[str]
    notes: list[str]
    #: Whether the user chose the columns (CSV then holds only those).
    chosen: bool = False

    def best(self, column: str) -> float | None:
        """The highest value of an accuracy column, or None when no value is marked best (mixed
        conditions, or fewer than two values)."""
        values = [row.cells[column].value for row in self.rows if column in row.cells]
        return max(values) if not self.mixed and len(values) > 1 else None

    def to_markdown(self) -> str:
        """A GitHub Markdown table, then the notes."""
        from advkit.comparison.render import to_markdown

        return to_markdown(self)

    def to_csv(self) -> str:
        """One line per run: every descriptive column, then each accuracy with ``_low`` and
        ``_high`` columns, as fractions in [0, 1]."""
        from advkit.comparison.render import to_csv

        return to_csv(self)

    def to_latex(self) -> str:
        """A booktabs ``tabular``, the notes as comments above it."""
        from advkit.comparison.render import to_latex

        return to_latex(self)

    def write(self, path: str | Path, fmt: str | None = None, *, force: bool = False) -> Path:
        """Write the table to ``path`` atomically, in ``fmt`` (default: from the suffix .md, .csv
        or .tex); an existing file is kept unless ``force``."""
        from advkit.comparison.render import write_table

        return write_table(self, Path(path), fmt, force=force)


def build(
    runs: Sequence[tuple[RunInfo, Evaluation | str]],
    *,
    allow_mixed: bool = False,
    sort: str | None = None,
    columns: Sequence[str] | None = None,
    examples_hint: str = "",
) -> Comparison:
    """The comparison of ``runs``, each with the evaluation chosen for it or, where it has none,
    the reason (what to run); ``examples_hint`` tells a refusal for other example counts what
    would fit (``; every run has one on 500 examples: --n-examples 500``)."""
    labels = _labels([run for run, _ in runs])
    rows = [
        Row(run, label, chosen, _cells(chosen.data))
        if isinstance(chosen, Evaluation)
        else Row(run, label, None, missing=chosen)
        for (run, chosen), label in zip(runs, labels, strict=True)
    ]
    evaluated = [row for row in rows if row.evaluation is not None]
    if not evaluated:
        raise CompareError(
            "none of the runs has an evaluation to compare: " + "; ".join(r.missing for r in rows)
        )
    accuracy_columns = _accuracy_columns(evaluated)
    mixed = differing(_evaluated(evaluated))
    if mixed and not allow_mixed:
        raise CompareError(_mixed_message(evaluated, mixed, examples_hint))
    if sort:
        rows = _sorted(rows, sort, accuracy_columns)
    label_columns = [*DEFAULT_LABELS, *(c for c in mixed if c != "attack_settings")]
    if columns:
        label_columns, accuracy_columns = _chosen(columns, accuracy_columns)
    comparison = Comparison(rows, accuracy_columns, label_columns, mixed, [], bool(columns))
    comparison.notes.extend(_notes(comparison, evaluated))
    return comparison


def _cells(data: Mapping[str, Any]) -> dict[str, Cell]:
    """Each accuracy with its recorded interval (computed as ``advkit eval`` does for a file
    written before intervals were recorded)."""
    names = [CLEAN, *data["attacks"], WORST]
    accuracies = {name: float(data[name]) for name in names if data.get(name) is not None}
    intervals = data.get("intervals") or accuracy_intervals(
        accuracies, int(data["n_examples"]), float(data.get("confidence", DEFAULT_CONFIDENCE))
    )
    return {
        name: Cell(value, *map(float, intervals.get(name) or (value, value)))
        for name, value in accuracies.items()
    }


def _accuracy_columns(rows: Sequence[Row]) -> list[str]:
    """clean, every attack in the order first met, worst case."""
    attacks: list[str] = []
    for row in rows:
        assert row.evaluation is not None
        attacks += [a for a in row.evaluation.data["attacks"] if a not in attacks]
    return [CLEAN, *attacks, WORST]


def _labels(runs: Sequence[RunInfo]) -> list[str]:
    """Each run's name, with its parent folder's where other runs have that name, then ``-2``,
    ``-3`` (the same run given twice, e.g. as its folder and its JSON)."""
    sources: dict[str, set[Path]] = {}
    for run in runs:
        sources.setdefault(run.name, set()).add(run.named.resolve())
    labels = [
        f"{run.named.resolve().parent.name}/{run.name}" if len(sources[run.name]) > 1 else run.name
        for run in runs
    ]
    return numbered_repeats(labels)


def _chosen(columns: Sequence[str], accuracy: list[str]) -> tuple[list[str], list[str]]:
    known = [*LABELS, *accuracy]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise CompareError(f"unknown column {', '.join(unknown)}: choose from {', '.join(known)}")
    return [c for c in columns if c in LABELS], [c for c in columns if c in accuracy]


def _sorted(rows: list[Row], column: str, accuracy: list[str]) -> list[Row]:
    """Highest accuracy first, descriptive columns alphabetically; rows without it last."""
    if column in accuracy:
        return sorted(
            rows, key=lambda r: -r.cells[column].value if column in r.cells else float("inf")
        )
    if column in LABELS:
        return sorted(rows, key=lambda r: (r.label_value(column) == "", r.label_value(column)))
    raise CompareError(
        f"cannot sort by {column}: choose a column of the table ({', '.join([*LABELS, *accuracy])})"
    )


def _mixed_message(rows: Sequence[Row], mixed: Sequence[str], examples_hint: str) -> str:
    parts = []
    for condition in mixed:
        if condition == "attack_settings":
            attacks = attacks_set_otherwise([e for e, _ in _evaluated(rows)])
            parts.append(f"attack settings (of {', '.join(attacks)})")
            continue
        shown = ", ".join(
            f"{row.label} {condition_value(e, row.run, condition)[1]}"
            for row, (e, _) in zip(rows, _evaluated(rows), strict=True)
        )
        hint = examples_hint if condition == "examples" else ""
        parts.append(f"{LABELS[condition]} ({shown}{hint})")
    return (
        f"the evaluations were not measured alike: they differ in {'; '.join(parts)}. Evaluate "
        "the runs alike (`advkit eval RUN` with the same --suite, --eps, --norm, --n-examples), "
        "choose matching evaluations with --suite/--eps/--norm/--n-examples, or pass "
        "--allow-mixed to show them side by side with the differences marked"
    )


def _evaluated(rows: Sequence[Row]) -> list[tuple[Evaluation, RunInfo]]:
    """(evaluation, run) of the rows that have an evaluation."""
    return [(row.evaluation, row.run) for row in rows if row.evaluation is not None]


def _notes(comparison: Comparison, evaluated: Sequence[Row]) -> list[str]:
    """What the reader must know: the shared conditions, what differs, marks, warnings."""
    first = evaluated[0]
    assert first.evaluation is not None
    data = first.evaluation.data
    notes = []
    shared = []
    dataset = condition_value(first.evaluation, first.run, "dataset")[0]
    if "dataset" not in comparison.mixed and dataset:
        shared.append(str(dataset))
    if "examples" not in comparison.mixed:
        n = first.evaluation.n_examples
        first_n = condition_value(first.evaluation, first.run, "examples")[0] == tuple(range(n))
        shared.append(f"the first {n} test examples" if first_n else f"the same {n} test examples")
    if "suite" not in comparison.mixed:
        shared.append(f"suite {first.evaluation.suite}")
    if "eps" not in comparison.mixed:
        shared.append(first.evaluation.threat_text())
    if shared:
        notes.append("Measured alike: " + ", ".join(shared) + ".")
    level = float(data.get("confidence", DEFAULT_CONFIDENCE))
    notes.append(
        "Accuracies in %, each with its Wilson score interval"
        + (f" at {level:.0%} confidence" if "confidence" not in comparison.mixed else "")
        + " (the test examples' sampling error, not the attacks' randomness); worst case: per "
        "example, robust to every attack of the suite."
    )
    for condition in comparison.mixed:
        notes.append(f"Not comparable: {CONDITIONS[condition]}.")
    if comparison.mixed:
        notes.append("No value is marked best: the evaluations were not measured alike.")
    else:
        notes.append(
            "Bold: the highest value in each column; a row whose interval overlaps it may not be "
            "worse."
        )
    cascades = {e.suite for e, _ in _evaluated(evaluated) if e.data.get("cascade")}
    if cascades:
        notes.append(
            f"{', '.join(sorted(cascades))} ran as a cascade: each attack column counts the "
            "attacks before it too."
        )
    for row in evaluated:
        assert row.evaluation is not None
        if row.warnings:
            notes.append(
                f"{row.label}: {len(row.warnings)} sanity check(s) fired, so its robust accuracy "
                f"may be overestimated (see {row.evaluation.path.with_suffix('.md')}): "
                + "; ".join(row.warnings)
            )
        checks = row.evaluation.data.get("checks")
        if isinstance(checks, Mapping) and checks.get("level") == "none":
            notes.append(f"{row.label}: no sanity checks ran (--checks none).")
        if row.run.weights is not None and not of_weights(row.evaluation, row.run.weights):
            notes.append(
                f"{row.label}: {row.evaluation.path.name} evaluated other weights than the run's "
                "model.safetensors now."
            )
    for row in comparison.rows:
        if row.evaluation is None:
            notes.append(f"{row.label}: missing: {row.missing}.")
    read = ", ".join(str(row.evaluation.path) for row in evaluated if row.evaluation)
    notes.append(f"Read: {read}.")
    return notes

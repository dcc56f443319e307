"""Several runs' evaluations side by side: ``advkit compare RUN...`` and :func:`compare`.

>>> table = compare(["runs/pgd", "runs/trades"], suite="paper")  # doctest: +SKIP
>>> print(table.to_markdown())                                   # doctest: +SKIP
>>> table.write("compare.tex")                                   # doctest: +SKIP

The table only reads what ``advkit eval`` wrote; it never runs an attack.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from advkit.comparison.select import (
    CompareError,
    Evaluation,
    MissingEvaluationError,
    RunInfo,
    Selection,
    choose,
    missing_reason,
    read_run,
)
from advkit.comparison.table import Comparison, build
from advkit.config_values import parse_eps

__all__ = ["CompareError", "Comparison", "Evaluation", "RunInfo", "Selection", "compare"]


def compare(
    runs: Sequence[str | os.PathLike[str]],
    *,
    suite: str | None = None,
    eps: float | str | None = None,
    norm: str | None = None,
    n_examples: int | None = None,
    allow_mixed: bool = False,
    skip_missing: bool = False,
    sort: str | None = None,
    columns: Sequence[str] | None = None,
) -> Comparison:
    """One table of the runs' evaluations: a row per run in the order given (or by ``sort``, a
    column's name), a column per accuracy with its interval.

    Each run is a run folder, a folder ``advkit eval --out`` wrote, or an evaluation JSON; of its
    evaluations, ``suite``, ``eps`` (a number or ``"8/255"``), ``norm`` and ``n_examples`` choose
    one (several left to choose from: an error lists them). A run without one is an error, or a
    row marked missing with ``skip_missing``. Evaluations measured differently (dataset,
    examples, suite, threat, attack settings, confidence) are refused unless ``allow_mixed``,
    which shows the differences as columns and marks no value best. ``columns`` names the
    columns shown (descriptive ones such as run, method, train_eps, model, dataset, suite, eps,
    examples; accuracy ones such as clean, pgd20, worst_case).
    """
    if isinstance(runs, str | os.PathLike):
        runs = [runs]
    if not runs:
        raise CompareError("give at least one run folder (or evaluation JSON) to compare")
    if n_examples is not None and (isinstance(n_examples, bool) or n_examples < 1):
        raise CompareError(f"n_examples must be a count of at least 1, got {n_examples!r}")
    selection = Selection(
        suite=suite, eps=None if eps is None else parse_eps(eps), norm=norm, n_examples=n_examples
    )
    chosen: list[tuple[RunInfo, Evaluation | str]] = []
    counts: list[set[int]] = []  # per evaluated run: the example counts of its chosen kind
    for run in runs:
        given = os.fspath(run)
        info, evaluations = read_run(given)
        try:
            evaluation = choose(info, evaluations, selection, given)
        except MissingEvaluationError:
            if not skip_missing:
                raise
            chosen.append((info, missing_reason(info, given, selection)))
            continue
        chosen.append((info, evaluation))
        counts.append({e.n_examples for e in evaluations if _same_kind(e, evaluation)})
    common = max(set.intersection(*counts), default=None) if counts and not n_examples else None
    hint = f"; every run has one on {common} examples: --n-examples {common}" if common else ""
    return build(chosen, allow_mixed=allow_mixed, sort=sort, columns=columns, examples_hint=hint)


def _same_kind(a: Evaluation, b: Evaluation) -> bool:
    """Of one suite at one threat (only the example count may differ)."""
    return (a.suite, a.norm, a.eps) == (b.suite, b.norm, b.eps)

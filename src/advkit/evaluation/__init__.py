"""Robustness evaluation: attack suites, resumable per-sample evaluation, sanity checks, reports.

>>> result = evaluate(model, inputs, labels, "paper", eps=8 / 255)      # doctest: +SKIP
>>> warnings = run_checks(CheckContext(model, inputs[:64], labels[:64], eps=8 / 255,
...                                    accuracies=result.accuracies()))  # doctest: +SKIP
"""

from advkit.evaluation.checks import CHECKS, CheckContext, run_checks
from advkit.evaluation.evaluate import EvalResult, Progress, evaluate
from advkit.evaluation.examples import Examples, attack_examples
from advkit.evaluation.report import format_table, markdown_report, report_dict, write_json
from advkit.evaluation.suites import SUITES, AttackEntry, Suite, build_suite
from advkit.evaluation.sweep import eps_sweep

__all__ = [
    "CHECKS",
    "SUITES",
    "AttackEntry",
    "CheckContext",
    "EvalResult",
    "Examples",
    "Progress",
    "Suite",
    "attack_examples",
    "build_suite",
    "eps_sweep",
    "evaluate",
    "format_table",
    "markdown_report",
    "report_dict",
    "run_checks",
    "write_json",
]

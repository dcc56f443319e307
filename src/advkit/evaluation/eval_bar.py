"""The bars of an evaluation (``advkit eval``, ``advkit.evaluate``), fed by its progress reports.

While attacks run the bar names the attack (``autoattack apgd_t (2/3)``) and says how many
examples it has done of its total, how many are still robust, and the estimated time left for
the attack and for the whole evaluation; in other phases (clean pass, sweep, checks) the phase.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from advkit import progress_display
from advkit.evaluation.evaluate import Progress, ProgressFn
from advkit.humanize import format_duration

#: The bar: percent of the work units, time so far, then what runs and the ETAs.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"


class EvalBar:
    """A bar (see :mod:`advkit.progress_display`) showing ``evaluate``'s progress reports."""

    def __init__(self, desc: str, quiet: bool, unit: str = "chunk") -> None:
        self.desc = desc
        self.bar = None if quiet else progress_display.bar(
            desc, unit=unit, bar_format=BAR_FORMAT
        )  # fmt: skip

    def __call__(self, progress: Progress) -> None:
        if self.bar is None:
            return
        if progress.done < self.bar.n and not progress.live:
            self.bar.reset()  # a new evaluation (the sweep's) starts
        if progress.total is not None and self.bar.total != progress.total:
            self.bar.total = progress.total
        desc = describe(self.desc, progress)
        changed = desc != self.bar.desc
        self.bar.set_description_str(desc, refresh=False)
        self.bar.set_postfix_str(detail(progress), refresh=False)
        self.bar.update(progress.done - self.bar.n)
        if changed and progress_display.interactive():
            self.bar.refresh()  # another attack starts: say so now, whatever the rate

    def __enter__(self) -> EvalBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def describe(desc: str, progress: Progress) -> str:
    """The bar's description: ``desc`` and the attack running (with its place in the suite)."""
    if progress.attack is None:
        return desc
    return f"{desc} {progress.attack} ({progress.attack_index}/{progress.attacks})"


def detail(progress: Progress) -> str:
    """What the bar says beside it, e.g. ``512/850 examples, robust 388, ETA attack 1 min 10 s,
    all 8 min 30 s`` (or the phase outside attacks)."""
    if progress.attack is None:
        return progress.phase
    parts = [f"{progress.examples_done}/{progress.examples_total} examples"]
    if progress.robust is not None and progress.examples_done:
        parts.append(f"robust {progress.robust}")
    parts.append(f"ETA attack {_eta(progress.eta_attack)}, all {_eta(progress.eta_total)}")
    return ", ".join(parts)


def _eta(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(seconds)


def bar_factory(quiet: bool) -> Callable[[str, str], AbstractContextManager[ProgressFn | None]]:
    """``bar(description, unit)`` for :func:`advkit.evaluation.session.run_evaluation`."""

    def bar(description: str, unit: str) -> EvalBar:
        return EvalBar(description, quiet, unit=unit)

    return bar

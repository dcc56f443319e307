"""What a user watches during long work: progress bars and advkit's log lines, in a terminal, a
notebook, or a log file, from the CLI or from Python; silent when asked (``--quiet``,
``quiet=True``).

- :func:`bar`: a tqdm bar (``tqdm.auto``: a widget in a notebook). Off a terminal (CI logs,
  files) it writes whole lines instead, and only for a phase that lasts: the first after
  ``LOG_INTERVAL`` seconds, then at most one per ``LOG_INTERVAL``, and a last one when the phase
  ends; a short phase writes nothing.
- :func:`task` / :func:`current_task`: the bar of the phase running now, which a loop deep in
  the library (an analysis, a validation pass) advances without having it passed down; a no-op
  object when nobody shows one.
- :func:`log_to_stderr`: advkit's INFO lines (a training run's epoch lines) on stderr for the
  duration of a Python call, unless logging is configured already (the CLI, the user's own
  ``logging.basicConfig``), so that no line is printed twice.

A bar is advanced by the caller once per batch or chunk: no device synchronization of its own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tqdm import std as tqdm_std
from tqdm.auto import notebook_tqdm
from tqdm.auto import tqdm as auto_tqdm

#: Seconds between two lines of a bar written to a log file (not a terminal).
LOG_INTERVAL = 30.0
#: True inside a Jupyter kernel with widgets, where tqdm.auto draws a widget.
IN_NOTEBOOK = notebook_tqdm is not tqdm_std.tqdm


class LineBar(tqdm_std.tqdm):
    """tqdm for a log file: each refresh a whole line (no carriage returns), none for a phase
    shorter than ``delay``, and the final state on close if anything was written before."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its line: nothing to clear in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description_str(desc, refresh=False)

    def close(self) -> None:
        shown = not self.disable and getattr(self, "last_print_t", 0.0) >= self.start_t + self.delay
        if shown and self.last_print_n != self.n:
            self.display()
        super().close()


def interactive() -> bool:
    """Whether bars redraw in place: stderr is a terminal, or a Jupyter kernel's (which draws
    widgets, or redraws a text bar without them)."""
    return IN_NOTEBOOK or "ipykernel" in sys.modules or _isatty(sys.stderr)


def bar(
    desc: str = "", total: float | None = None, *, unit: str = "it", quiet: bool = False,
    initial: float = 0, **kwargs: Any,
) -> tqdm_std.tqdm:  # fmt: skip
    """A progress bar on stderr (disabled, drawing nothing, if ``quiet``): tqdm.auto in a
    terminal or a notebook, a :class:`LineBar` elsewhere. Leaves no trace in a terminal when
    closed; ``kwargs`` go to tqdm."""
    options: dict[str, Any] = {
        "desc": desc, "total": total, "unit": unit, "initial": initial, "disable": quiet,
        "file": sys.stderr, "miniters": 0,  # redrawn by time alone: updates may be fractions
    }  # fmt: skip
    if interactive():
        options |= {"leave": False, "dynamic_ncols": True}
        return auto_tqdm(**options | kwargs)
    # maxinterval: tqdm's monitor thread forces a redraw no more often than that either
    options |= {"leave": False, "mininterval": LOG_INTERVAL, "delay": LOG_INTERVAL,
                "maxinterval": max(LOG_INTERVAL, 10.0)}  # fmt: skip
    return LineBar(**options | kwargs)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


# --- the phase running now ---------------------------------------------------------------------


class Task:
    """The bar of one phase, advanced by whatever code does its work. ``expect`` sets (or grows)
    the total in the unit the work is counted in; ``advance`` counts work done."""

    def __init__(self, progress: tqdm_std.tqdm | None = None) -> None:
        self.bar = progress

    def expect(self, total: float, *, more: bool = False) -> None:
        """The phase's total work (``more``: add to the total announced so far)."""
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + total if more else total

    def advance(self, amount: float = 1) -> None:
        if self.bar is not None:
            self.bar.update(amount)


_NO_TASK = Task()
_current: ContextVar[Task] = ContextVar("advkit_progress_task", default=_NO_TASK)


def current_task() -> Task:
    """The task of the phase running now (a no-op task when none is shown)."""
    return _current.get()


@contextmanager
def task(desc: str, *, total: float | None = None, unit: str = "step", quiet: bool = False,
         **kwargs: Any) -> Iterator[Task]:  # fmt: skip
    """Show a bar for the block and make it :func:`current_task` inside it."""
    progress = bar(desc, total, unit=unit, quiet=quiet, **kwargs)
    current = Task(None if quiet else progress)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)
        progress.close()


# --- log lines ---------------------------------------------------------------------------------

#: The logger every advkit module logs under (``advkit.train``, ...).
LOGGER = "advkit"


def logging_configured(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` reaches a handler (its own or an ancestor's), i.e. whether
    somebody configured logging for it; Python's last-resort handler does not count."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


@contextmanager
def log_to_stderr(quiet: bool = False) -> Iterator[None]:
    """advkit's INFO lines on stderr (message only) while the block runs, for a Python caller
    who configured no logging; nothing changes if logging is configured or ``quiet``."""
    logger = logging.getLogger(LOGGER)
    if quiet or logging_configured(logger):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

"""Bars and log lines: in a terminal, in a log file (whole lines, none for short phases), quiet."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from advkit import progress_display
from advkit.progress_display import LineBar, bar, current_task, log_to_stderr, task


class Stderr:
    """What was written to stderr (captured by pytest: not a terminal, not a notebook)."""

    def __init__(self, capsys) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def log_file(capsys, monkeypatch):
    monkeypatch.setattr(progress_display, "IN_NOTEBOOK", False)
    return Stderr(capsys)


def test_a_log_file_gets_whole_lines_and_the_end_of_a_long_phase(log_file, monkeypatch):
    monkeypatch.setattr(progress_display, "LOG_INTERVAL", 0.0)  # every update "lasts"
    progress = bar("phase", 3, unit="step")
    assert isinstance(progress, LineBar)
    for _ in range(3):
        progress.update(1)
    progress.close()
    text = log_file.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines and all(line.startswith("phase:") for line in lines)
    assert "3/3" in lines[-1]


def test_a_short_phase_writes_nothing_to_a_log_file(log_file):
    progress = bar("phase", 3)
    progress.update(3)
    progress.close()
    assert log_file.getvalue() == ""


def test_a_terminal_gets_a_redrawn_bar_and_quiet_gets_nothing(log_file, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = bar("phase", 3)
    progress.update(3)
    progress.close()
    assert "phase" in log_file.getvalue() and not isinstance(progress, LineBar)
    quiet = bar("phase", 3, quiet=True)
    quiet.update(3)
    quiet.close()
    assert log_file.getvalue() == ""


def test_the_current_task_is_advanced_from_deep_inside(log_file):
    def deep_loop() -> None:
        current_task().expect(4)
        for _ in range(4):
            current_task().advance()

    deep_loop()  # no task shown: nothing happens
    with task("work") as shown:
        deep_loop()
        assert (shown.bar.n, shown.bar.total) == (4, 4)
    assert current_task().bar is None
    with task("work", quiet=True) as hidden:
        deep_loop()
        assert hidden.bar is None


@contextmanager
def bare_logging() -> Iterator[logging.Logger]:
    """Logging as a script has it: no handler anywhere (pytest's own set aside, which it adds
    for the test's call: hence a context inside the test, not a fixture)."""
    root, advkit_logger = logging.getLogger(), logging.getLogger("advkit")
    saved = root.handlers[:], advkit_logger.handlers[:], advkit_logger.level, root.level
    root.handlers.clear()
    advkit_logger.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield advkit_logger
    finally:
        root.handlers[:], advkit_logger.handlers[:] = saved[0], saved[1]
        advkit_logger.setLevel(saved[2])
        root.setLevel(saved[3])


def test_log_lines_reach_stderr_once_for_an_unconfigured_caller(log_file):
    with bare_logging() as advkit_logger:
        with log_to_stderr():
            logging.getLogger("advkit.train").info("epoch 1/1")
        logging.getLogger("advkit.train").info("after the call")
        assert not advkit_logger.handlers
    assert log_file.getvalue() == "epoch 1/1\n"


def test_configured_logging_and_quiet_add_no_handler(log_file):
    with bare_logging() as advkit_logger, log_to_stderr(quiet=True):
        logging.getLogger("advkit.train").info("quiet")
        assert not advkit_logger.handlers
    with bare_logging() as advkit_logger:
        logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))  # the user's own
        logging.getLogger().setLevel(logging.INFO)
        with log_to_stderr():
            assert not advkit_logger.handlers
            logging.getLogger("advkit.train").info("once")
    assert log_file.getvalue() == "once\n"

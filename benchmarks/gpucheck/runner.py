"""Running one check: ``advkit ARGS`` as a subprocess (``python -m advkit``, what users run) or
in this process (``advkit.cli.main``: no interpreter start and torch import per check, for the
CPU smoke run), its output kept in a log file, its outcome and seconds recorded."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

#: Lines of a failed check's output shown in the table's notes and the JSON.
TAIL_LINES = 15

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
#: advkit's exit status after Ctrl-C.
INTERRUPTED = 130
#: Seconds a stopped command has to end before it is killed (advkit's launcher gives its
#: workers 60 s to checkpoint).
STOP_SECONDS = 90


@dataclass
class Check:
    """One ``advkit`` invocation and what must hold after it."""

    name: str
    argv: list[str]
    skip: str | None = None  # the reason it is not run here
    needs: str | None = None  # a check whose run folder this one reads
    verify: Callable[[], str | None] | None = None  # after exit 0: what is wrong, or None
    prepare: Callable[[], object] | None = None  # before the command (its data), timed with it
    note: str = ""
    timeout: float | None = None  # seconds (subprocess runner only)


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    detail: str  # the skip reason, the failure's output tail, or the check's note
    command: str

    def as_json(self) -> dict[str, object]:
        return {**self.__dict__, "seconds": round(self.seconds, 2)}


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "advkit", *argv])


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Runner:
    """Runs checks in order, skipping those whose prerequisite did not pass."""

    def __init__(self, logs: Path, *, in_process: bool, default_timeout: float) -> None:
        self.logs = logs
        self.in_process = in_process
        self.default_timeout = default_timeout
        self.status: dict[str, str] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def run(self, check: Check) -> Result:
        command = command_line(check.argv)
        skip = check.skip
        if skip is None and check.needs and self.status.get(check.needs) != PASS:
            skip = f"needs {check.needs}, which did not pass"
        if skip is not None:
            result = Result(check.name, SKIPPED, 0.0, skip, command)
        else:
            result = self._execute(check, command)
        self.status[check.name] = result.status
        return result

    def _execute(self, check: Check, command: str) -> Result:
        log = self.logs / f"{check.name}.log"
        start = time.perf_counter()
        if check.prepare is not None:
            check.prepare()
        if self.in_process:
            code, error = run_in_process(check.argv, log), None
        else:
            code, error = run_subprocess(check.argv, log, check.timeout or self.default_timeout)
        seconds = time.perf_counter() - start
        if error is None and code != 0:
            error = f"exit status {code}"
        if error is None and check.verify is not None:
            error = check.verify()
        if error is None:
            return Result(check.name, PASS, seconds, check.note, command)
        output = log.read_text(errors="replace") if log.is_file() else ""
        detail = f"{error}\n{tail(output)}".strip()
        return Result(check.name, FAIL, seconds, detail, command)


def advkit_env() -> dict[str, str]:
    """This process's environment, with the advkit it imported first on PYTHONPATH, so that a
    subprocess runs the same code the checks were built from."""
    import advkit

    source = str(Path(advkit.__file__).resolve().parents[1])
    paths = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def run_subprocess(argv: list[str], log: Path, timeout: float) -> tuple[int, str | None]:
    """``python -m advkit ARGV``, stdout and stderr into ``log``; killed (with the workers it
    started: its own process group) after ``timeout`` seconds."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "advkit", *argv], stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=advkit_env(), start_new_session=True,
        )  # fmt: skip
        try:
            return process.wait(timeout=timeout), None
        except subprocess.TimeoutExpired:
            return _stop(process), f"timed out after {timeout:.0f} s"
        except BaseException:  # Ctrl-C reaches this process alone (the command has its session)
            _stop(process)
            raise


def _stop(process: subprocess.Popen) -> int:
    """SIGTERM, as advkit's launcher wants it (it stops its workers, which run in sessions of
    their own, and a killed launcher would leave them holding the GPUs), then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def run_in_process(argv: list[str], log: Path) -> int:
    """``advkit.cli.main(argv)`` with everything it writes (Python, C and child processes) in
    ``log``; an exception is a failure with its traceback in the log."""
    from advkit.cli import main

    with log.open("w") as sink, _output_to(sink), _as_a_process():
        try:
            code = int(main(argv) or 0)
        except SystemExit as stop:  # argparse's usage errors
            return stop.code if isinstance(stop.code, int) else 1
        except Exception:
            traceback.print_exc()
            return 1
    if code == INTERRUPTED:  # advkit's own Ctrl-C exit: stop the checks too
        raise KeyboardInterrupt
    return code


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is now (advkit's ``basicConfig`` would
    bind its handler to the first check's log)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        del value


@contextlib.contextmanager
def _as_a_process() -> Iterator[None]:
    """What a command changes of its process put back after it: the environment (the
    launcher's OMP_NUM_THREADS), the root logger (advkit's INFO lines, to ``sys.stderr``)."""
    environ, root = dict(os.environ), logging.getLogger()
    level, handler = root.level, _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)


@contextlib.contextmanager
def _output_to(sink: TextIO) -> Iterator[None]:
    """File descriptors 1 and 2 and ``sys.stdout``/``sys.stderr`` into ``sink``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    sys.stdout = sys.stderr = sink
    try:
        yield
    finally:
        sink.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])

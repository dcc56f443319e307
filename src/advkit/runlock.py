"""One writer per run folder: an OS lock on ``RUN_DIR/.lock``, naming its holder.

Training, resuming and the demo write a run folder; two of them at once leave one run's config
beside the other's model. Evaluations and analyses only read a run: they hold just the outputs
they write (:func:`hold_outputs`), so two of them writing other files run side by side, and
:func:`holder` names a run's trainer to a reader that finds no model yet.

:func:`hold_run` takes an exclusive ``fcntl.flock`` on the folder's lock file for as long as its
``with`` block runs, and writes the holder's pid, host, purpose and start time into it so that a
refused writer is told who holds the folder. The OS releases the lock when its process dies:
the lock file a killed run leaves behind is taken over by the next writer without any clean-up
(a clean exit removes it).

The lock is re-entrant within one thread (``advkit demo`` holds the folder, then trains and
evaluates, each holding it again) and refuses other threads of the same process like any other
writer. A folder that cannot be written (read-only) is not locked: nothing can write into it.

    with hold_run(run_dir, "advkit train"):
        ...  # write config.yaml, checkpoints, model
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from advkit.distributed.world import current_rank
from advkit.runs import RunError

LOCK_FILE = ".lock"


class RunLocked(RunError):
    """The run folder is being written by another process (or thread)."""


@dataclass
class _Held:
    fd: int
    thread: int
    depth: int
    created: bool  # the folder did not exist before: removed again if left empty


_held: dict[Path, _Held] = {}
_held_by = os.getpid()  # a forked child holds none of its parent's holds: see _holds()
_registry = threading.Lock()


def _holds() -> dict[Path, _Held]:
    """This process's holds (the registry a forked child inherits is its parent's: forgotten)."""
    global _held_by
    if _held_by != os.getpid():
        _held.clear()
        _held_by = os.getpid()
    return _held


@contextmanager
def hold_run(
    run_dir: str | Path, purpose: str, *, hint: str = "", lock_name: str = LOCK_FILE,
    what: str | None = None,
) -> Iterator[None]:  # fmt: skip
    """Hold ``run_dir`` (created if missing) as its only writer while the block runs.

    ``purpose`` names the writer for whoever is refused (e.g. ``"advkit train"``); ``hint`` is
    appended to the refusal after "wait for it to end" (e.g. ``" or choose another --out"``).
    Raises :class:`RunLocked` at once, without waiting, when another process holds the folder.
    The lock file is removed on release, and the folder too if this hold created it and nothing
    was written into it (a run that failed to start leaves nothing behind). ``lock_name`` and
    ``what`` (the refusal's subject) serve :func:`hold_outputs`, which locks less than a folder.

    Among distributed workers, rank 0 holds the folder for all of them (the others never write).
    """
    if current_rank() != 0:
        yield
        return
    run_dir = Path(run_dir)
    subject = what or f"{run_dir} is"
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create the run folder {run_dir}: {error.strerror}") from None
    path = (run_dir / lock_name).resolve()
    me = threading.get_ident()
    with _registry:
        held = _holds().get(path)
        if held is not None and held.thread == me:
            held.depth += 1
        elif held is not None:
            raise RunLocked(
                f"{subject} being written by another thread of this process; wait for it "
                f"to end{hint}"
            )
        else:
            fd = _acquire(path, subject, hint)
            if fd is None:  # a read-only folder, which nothing can write: nothing to lock
                held = None
            else:
                _write_holder(fd, purpose)
                held = _held[path] = _Held(fd, me, 1, created)
    try:
        yield
    finally:
        if held is not None:
            with _registry:
                held.depth -= 1
                if held.depth == 0:
                    del _held[path]
                    _release(held, path)


def _acquire(path: Path, subject: str, hint: str) -> int | None:
    """An fd of ``path`` holding its exclusive flock; None if the folder is read-only to us."""
    for _ in range(100):
        try:
            fd = _open(path)
        except FileNotFoundError:  # a releasing holder removed the empty folder it had created
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _describe(path)
            os.close(fd)
            raise RunLocked(f"{subject} being written by {who}; wait for it to end{hint}") from None
        except BaseException:
            os.close(fd)
            raise
        # A releasing holder unlinks the file: a lock on the unlinked one protects nothing.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RunLocked(f"could not take the lock file {path}; try again")


@contextmanager
def hold_outputs(
    folder: str | Path, stem: str, purpose: str, *, hint: str = " or choose another --out"
) -> Iterator[None]:
    """Hold the outputs ``folder/stem*`` (e.g. ``eval-quick``: its JSON, report, figures and
    state) as their only writer: two writers of the same outputs are refused, naming the holder,
    while writers of other outputs, and readers of the folder, go on side by side. The lock is
    ``folder/.stem.lock``; the folder is created if missing (and removed if left empty)."""
    with hold_run(
        folder, purpose, hint=hint, lock_name=f".{stem}.lock",
        what=f"{Path(folder) / stem}* (outputs) are",
    ):  # fmt: skip
        yield


def holder(folder: str | Path, lock_name: str = LOCK_FILE) -> str | None:
    """Who holds ``folder``'s lock now, from another process ("pid 1234 (advkit train, since
    10:02), running `advkit train ...`"); None when nobody does. Takes nothing: a probe."""
    path = Path(folder) / lock_name
    with _registry:
        if path.resolve() in _holds():  # this very process: it knows what it does
            return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path, command=True)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        try:  # the lock file of another user: flock needs no write access
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None
    except OSError as error:
        if error.errno == errno.EROFS:
            return None
        raise


def _write_holder(fd: int, purpose: str) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "purpose": purpose,
        "argv": sys.argv,
        "started": time.time(),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:  # a read-only fd (another user's lock file): the lock still holds
        pass


def _release(held: _Held, path: Path) -> None:
    """Remove the lock file (and an empty folder this hold created) while still holding it."""
    try:
        try:
            path.unlink()
            if held.created:
                with contextlib.suppress(OSError):  # not empty: something was written
                    path.parent.rmdir()
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(held.fd, 0)
        fcntl.flock(held.fd, fcntl.LOCK_UN)
    finally:
        os.close(held.fd)


def _describe(path: Path, *, command: bool = False) -> str:
    """'pid 1234 (advkit train, since 10:02)' from the lock file; 'another process' if unknown.
    ``command``: with the holder's command line after it."""
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
    details = [str(info.get("purpose") or "unknown command")]
    started = info.get("started")
    if isinstance(started, int | float):
        moment = time.localtime(started)
        same_day = time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d")
        details.append("since " + time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", moment))
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    argv = info.get("argv")
    line = ""
    if command and isinstance(argv, list) and argv:
        program = Path(str(argv[0])).name
        program = "advkit" if program in ("__main__.py", "advkit") else str(argv[0])
        text = " ".join([program, *(str(part) for part in argv[1:])])
        line = f", running `{text[:120]}{'...' if len(text) > 120 else ''}`"
    return f"pid {pid}{where} ({', '.join(details)}){line}"


__all__ = ["LOCK_FILE", "RunLocked", "hold_outputs", "hold_run", "holder"]

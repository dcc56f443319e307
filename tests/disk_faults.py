"""File systems that refuse writes, for tests of what advkit says and keeps when they do.

The tests run as root in CI, where ``chmod`` denies nothing and no file system can be mounted, so
the refusals are made where the kernel's would surface:

- :func:`file_size_limit`: ``RLIMIT_FSIZE``, a real kernel refusal (``EFBIG``) of every write
  past a size, whoever writes (torch's and safetensors' native code too);
- :func:`refuse_writes`: ``open`` of advkit's temporary files for matching targets gives a file
  whose writes fail with an ``errno`` (``ENOSPC``: a full disk), or fails to open (``EROFS``,
  ``EACCES``), as the operating system does.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Within the block, writing any file past ``limit`` bytes fails with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


class _Refusing:
    """A file whose writes fail as on a full disk once ``room`` bytes are written (the writes
    before go through, as a real disk's do: a file written in place is left truncated)."""

    def __init__(self, handle: Any, code: int, room: int) -> None:
        self._handle, self._code, self._room = handle, code, room

    def write(self, data: Any) -> int:
        self._room -= len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        if self._room < 0:
            raise OSError(self._code, os.strerror(self._code))
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def refuse_writes(
    monkeypatch: pytest.MonkeyPatch,
    target: Callable[[str], bool],
    code: int = errno.ENOSPC,
    *,
    after: int = 0,
    room: int = 0,
) -> list[str]:
    """Refuse writes of the files whose name ``target`` accepts (advkit's temporary file for
    them, ``.<name>.*.tmp``, or the file itself), from the ``after``-th such file on; returns
    the names refused. ENOSPC/EDQUOT fail the write after ``room`` bytes, others the open."""
    real_open = builtins.open
    seen: list[str] = []
    refused: list[str] = []

    def fault_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        name = Path(str(file)).name if isinstance(file, str | os.PathLike) else ""
        if name.startswith(".") and name.endswith(".tmp"):
            name = name[1:].rsplit(".", 2)[0]
        if not any(flag in mode for flag in "wax") or not name or not target(name):
            return real_open(file, mode, *args, **kwargs)
        seen.append(name)
        if len(seen) <= after:
            return real_open(file, mode, *args, **kwargs)
        refused.append(name)
        if code not in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(code, os.strerror(code), str(file))
        return _Refusing(real_open(file, mode, *args, **kwargs), code, room)

    monkeypatch.setattr(builtins, "open", fault_open)
    monkeypatch.setattr(io, "open", fault_open)  # pathlib's write_text opens through io.open
    return refused

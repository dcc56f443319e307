"""Writing files so that a failure loses nothing and says in one line what to do.

Every file advkit writes goes through :func:`atomic_write`: the bytes go to a temporary file in
the same folder, which is fsynced and then renamed over the target, so a kill or a full disk at
any moment leaves either the old file or the new one, never half of one (the temporary file is
removed on failure).

What the operating system refuses (no space, a quota, no permission, a read-only file system)
becomes a :class:`advkit.errors.WriteError` naming the file and, for space, how much is free
there and about how much was needed. Libraries that write files by path hide the OS error behind
their own (torch.save raises "unexpected pos ...", safetensors a ``SafetensorError``), so writers
here hand them an open Python file instead (:func:`atomic_write_stream`): its ``write`` raises
the ``OSError`` with its errno, which :func:`atomic_write` finds in the library's exception
chain. A library failure with no OSError behind it counts as a full disk only when the file
system has (almost) no room left; anything else stays what it is, a bug.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from advkit.errors import UserError, WriteError, describe
from advkit.humanize import format_bytes

#: Below this many free bytes a library's failure to write a file is taken for a full disk.
NEARLY_FULL = 1 << 20

_SPACE = {
    errno.ENOSPC: "no space is left on its file system",
    errno.EDQUOT: "the disk quota is exceeded",
}
_DENIED = {errno.EACCES, errno.EPERM}


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None], *,
                 size: int | None = None) -> None:  # fmt: skip
    """Call ``write(tmp_path)``, fsync the file, then rename it to ``path`` and fsync the folder.

    ``size`` (bytes, when known) goes into the message of a write that ran out of space."""
    path = Path(path)
    with writing(path, size):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                write(tmp)
            except (OSError, UserError, MemoryError):
                raise
            except Exception as error:  # a library's own type for a failed write
                cause = _os_error_in(error)
                if cause is None and free_bytes(path) < NEARLY_FULL:
                    cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if cause is None:
                    raise
                raise cause from error
            tmp.chmod(0o644)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_stream(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *,
                        size: int | None = None) -> None:  # fmt: skip
    """:func:`atomic_write` with ``write`` given the temporary file open for binary writing."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            write(handle)

    atomic_write(path, to_file, size=size)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """``data`` written to ``path`` atomically; returns the path."""
    atomic_write_stream(path, lambda handle: handle.write(data), size=len(data))
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` (UTF-8) written to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def writing(path: str | os.PathLike[str], size: int | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` inside the block into a
    :class:`WriteError` that names ``path`` (``size``: the bytes being written, if known)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        raise write_error(path, error, size) from error


def write_error(
    path: str | os.PathLike[str], error: OSError, size: int | None = None
) -> WriteError:
    """A one-line :class:`WriteError` for ``error``, raised while writing ``path``."""
    path = Path(path)
    code = error.errno
    if code in _SPACE:
        free = f"{format_bytes(free_bytes(path))} free there"
        needed = f", about {format_bytes(size)} needed" if size else ""
        problem, fix = f"{_SPACE[code]} ({free}{needed})", "free some space or write elsewhere"
    elif code in _DENIED:
        problem = "permission denied"
        fix = "choose a folder you can write to, or change its permissions"
    elif code == errno.EROFS:
        problem, fix = "its file system is read-only", "choose a folder on a writable file system"
    else:
        problem = error.strerror or describe(error)
        fix = "check the folder and the disk"
    return WriteError(f"cannot write {path}: {problem}: {fix}", path=path, errno=code)


def _os_error_in(error: BaseException) -> OSError | None:
    """The OSError a library's exception was raised from or while handling (torch's zip writer
    raises "unexpected pos" while the file's OSError unwinds), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes free to this user on the file system that holds ``path`` (or its nearest folder)."""
    path = Path(path)
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return 0

"""Errors a user can cause and fix, and the one place that turns a library's read failure into one.

Every exception a user can fix derives from :class:`UserError`; its message is one line saying
what is wrong and what to do. The CLI prints such errors as one line (``-v`` adds the traceback)
and shows a traceback for anything else, which is a bug. The subclasses also keep the built-in
base that callers catch today (``ValueError``, ``FileNotFoundError``).

Writes go through :mod:`advkit.files`, which turns what the operating system refuses (no space,
no permission, a read-only file system) into a :class:`WriteError` naming the file.

Readers of files wrap only the parse call in :func:`reading`, which translates whatever the
library raises (safetensors' ``SafetensorError``, pickle and zip errors, ``EOFError``, JSON and
YAML errors, undecodable bytes) into a :class:`CorruptFileError` naming the file and the remedy.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Longest library detail quoted in a one-line message.
_DETAIL_CHARS = 160


class UserError(Exception):
    """A failure the user caused and can fix; the message says what is wrong and what to do."""


class CorruptFileError(UserError, ValueError):
    """A file exists but cannot be read: truncated, corrupt, or not the kind of file expected."""


class UnsafeFileError(CorruptFileError, pickle.UnpicklingError):
    """A file that holds pickled code or objects; loading refuses to execute it."""


class WeightsMismatchError(UserError, ValueError):
    """Saved weights that do not fit the architecture they are loaded into."""


class BudgetError(UserError, ValueError):
    """A perturbation budget (eps, step size) that no threat model means."""


class InputError(UserError, ValueError):
    """Inputs or labels given to an attack or an evaluation that cannot be right."""


class DeviceError(UserError, ValueError):
    """A device that does not exist on this machine, or cannot do what was asked of it."""


class WriteError(UserError, OSError):
    """A file that could not be written for a reason in the user's environment: no space left,
    a quota, no permission, a read-only file system (``errno`` says which; ``path`` which file).

    Made by :func:`advkit.files.write_error`; the message names the file, the free space where it
    matters and what to do. :meth:`then` adds what to do once that is fixed (resume a run...).
    """

    def __init__(self, message: str, *, path: str | Path, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0])

    def then(self, step: str) -> WriteError:
        """The same failure, its message followed by ``step`` (what to do after the fix)."""
        error = WriteError(f"{self}; then {step}", path=self.path, errno=self.errno)
        error.__cause__ = self.__cause__
        return error


def one_line(text: object, limit: int = _DETAIL_CHARS) -> str:
    """``text`` with its whitespace runs collapsed to single spaces, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def describe(error: BaseException) -> str:
    """A short, one-line account of a library's exception (its type when it has no message)."""
    mark = getattr(error, "problem_mark", None)  # YAML: say where, not the quoted source lines
    if mark is not None and getattr(error, "problem", None):
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    if _weights_only_refusal(error):  # torch's long advice; its one informative line is last
        lines = [line for line in str(error).splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Check the documentation")]
        return one_line(lines[-1])
    text = one_line(error, limit=10_000)
    if len(text) > _DETAIL_CHARS and ". " in text:  # a library's advice after its first sentence
        text = text.split(". ")[0]
    return one_line(text) or type(error).__name__


def _weights_only_refusal(error: BaseException) -> bool:
    return isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)


@contextmanager
def reading(
    path: str | Path,
    remedy: str,
    *,
    problem: str = "is truncated or corrupt",
    error_type: type[UserError] = CorruptFileError,
) -> Iterator[None]:
    """Translate any failure to parse ``path`` inside the block into one user error.

    Wrap only the library call that parses the file: within it, every exception means the file
    is not what it should be. OS errors (missing file, permission, disk) and user errors pass
    through unchanged. The message reads "``path`` ``problem`` (the library's detail):
    ``remedy``", e.g. remedy "delete it to start the evaluation over".
    """
    try:
        yield
    except (UserError, OSError, MemoryError):
        raise
    except Exception as error:
        detail = describe(error)
        if _weights_only_refusal(error) and "GLOBAL" in str(error):
            raise UnsafeFileError(
                f"{path} holds pickled objects, which advkit never loads because they can run "
                f"code ({detail}): {remedy}"
            ) from error
        raise error_type(f"{path} {problem} ({detail}): {remedy}") from error

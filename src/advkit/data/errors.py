"""The one exception type for bad data a user can fix (wrong path, corrupt or mismatched files)."""

from __future__ import annotations

from advkit.errors import UserError


class DataError(UserError, ValueError):
    """Data could not be found or read; the message says which file and what to change."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The data folder or some of its files are missing (also a FileNotFoundError)."""

"""Saved progress of an evaluation, so an interrupted one resumes where it stopped.

The state holds per-sample result tensors and, for each phase ("clean", an attack name or
"cascade"), the indices of the chunks already done. It is written atomically (temporary file,
then ``os.replace``) after every chunk and read back with ``torch.load(weights_only=True)``. A
state saved for another evaluation (another key: suite, eps, norm, samples, seed, batch size,
weights) is ignored and overwritten. A save the system refuses (a full disk...) stops the saving
with a warning, not the evaluation: its results still come.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from advkit.errors import WriteError
from advkit.training.checkpoint import load_state, save_state

log = logging.getLogger("advkit.evaluation")

_VERSION = 1


class EvalState:
    """Per-sample results and finished chunks, saved to ``path`` (or kept in memory if None)."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self.values: dict[str, Tensor] = {}
        self.done: dict[str, set[int]] = {}
        self.seconds = 0.0
        #: the file of earlier progress left behind when saving failed (removed at the end)
        self.stale: Path | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, key: dict[str, Any]) -> EvalState:
        """The state saved at ``path`` for this ``key``, or a fresh one."""
        state = cls(Path(path) if path is not None else None, key)
        if state.path is None or not state.path.exists():
            return state
        saved = load_state(state.path)  # a corrupt file: a CorruptFileError saying what to do
        if not isinstance(saved, dict) or saved.get("version") != _VERSION:
            return state
        if saved.get("key") != key:
            return state
        state.values = dict(saved["values"])
        state.done = {phase: set(chunks) for phase, chunks in saved["done"].items()}
        state.seconds = float(saved["seconds"])
        return state

    def is_done(self, phase: str, chunk: int) -> bool:
        return chunk in self.done.get(phase, set())

    def mark_done(self, phase: str, chunk: int, seconds: float) -> None:
        """Record ``chunk`` of ``phase`` as finished after ``seconds`` in total, then save."""
        self.done.setdefault(phase, set()).add(chunk)
        self.seconds = seconds
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        payload = {
            "version": _VERSION,
            "key": self.key,
            "values": self.values,
            "done": {phase: sorted(chunks) for phase, chunks in self.done.items()},
            "seconds": self.seconds,
        }
        try:
            save_state(payload, self.path)
        except WriteError as error:  # the results still come; only resuming them is lost
            log.warning("%s; the evaluation goes on without saving its progress", error)
            self.stale, self.path = self.path, None

    def remove(self) -> None:
        """Delete the saved file (the evaluation finished; its results live in the report)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self.stale is not None:  # saving failed: the file holds older progress
            self.stale.unlink(missing_ok=True)

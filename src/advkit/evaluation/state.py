"""Saved progress of an evaluation, so an interrupted one resumes where it stopped.

The state holds per-sample result tensors and, for each phase ("clean", an attack name or
"cascade"), the indices of the chunks already done. It is written atomically (temporary file,
then ``os.replace``) after every chunk and read back with ``torch.load(weights_only=True)``. A
state saved for another evaluation (another key: suite, eps, norm, samples, seed, batch size,
weights) is ignored and overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advkit.training.checkpoint import load_state

_VERSION = 1


class EvalState:
    """Per-sample results and finished chunks, saved to ``path`` (or kept in memory if None)."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self.values: dict[str, Tensor] = {}
        self.done: dict[str, set[int]] = {}
        self.seconds = 0.0

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            torch.save(payload, temp)
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        """Delete the saved file (the evaluation finished; its results live in the report)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

"""Batches of a source's items read through a ``DataLoader``: worker processes that each decode
whole batches of the indices they are handed, kept alive across epochs."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from advkit.data.errors import DataError
from advkit.data.items import ItemFailure, Items


def _as_is(batch: Any) -> Any:
    return batch


class _Plan(Sampler[list[int]]):
    """The batch sampler of a :class:`BatchReader`: the batches it is told to read, in order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux (DataLoader's own default there): workers start in milliseconds and inherit
    the source (a folder's listing of a million files) instead of unpickling it, even in a
    process that was itself spawned (whose default would then be spawn, seconds a worker).
    Elsewhere the platform's default (macOS: spawn; fork is unsafe there)."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)


class BatchReader:
    """Reads batches of a source's items through a ``DataLoader``: with ``workers`` > 0, that
    many worker processes each decode whole batches (persistent: started on the first read,
    kept until :meth:`close`); with 0, the calling process decodes.

    Workers are seeded from ``seed`` (the loader's own generator; the global RNG is untouched),
    so a Dataset drawing random numbers draws the same ones in every run.
    """

    def __init__(
        self, items: Items, *, workers: int = 0, pin_memory: bool = False, seed: int = 0
    ) -> None:
        if workers < 0:
            raise DataError(f"data workers must be 0 or more, got {workers}")
        self.items = items
        self.workers = workers
        self._plan = _Plan()
        self._loader = DataLoader(
            items, batch_sampler=self._plan, num_workers=workers, collate_fn=_as_is,
            pin_memory=pin_memory, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed),
            multiprocessing_context=_worker_context() if workers else None,
        )  # fmt: skip
        self._reading: Iterator[tuple[Tensor, Tensor]] | None = None

    def read(self, batches: Sequence[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        """``(images, labels)`` of each batch of source indices, in order (images uint8 or
        float32 (n, C, H, W) on the CPU, pinned when asked)."""
        self._reading = self._read([b.tolist() for b in batches])
        return self._reading

    def _read(self, batches: list[list[int]]) -> Iterator[tuple[Tensor, Tensor]]:
        self._plan.batches = batches
        for out in self._loader:
            if isinstance(out, ItemFailure):
                raise DataError(out.message)
            yield out

    def close(self) -> None:
        """Stop the worker processes (a later read starts them again)."""
        if self._reading is not None:
            self._reading.close()  # releases its hold on the loader's iterator
            self._reading = None
        iterator = getattr(self._loader, "_iterator", None)
        if iterator is not None:
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._loader._iterator = None

"""What one worker's gradient synchronization sends and how long it takes: ``Communication``.

Definitions (per worker, per iteration, W workers):

- payload (``comm_bytes``): bytes of the tensors this worker hands to collectives: an fp32
  all-reduce of n floats is 4n; int8's all_gather its codes (each parameter padded to whole
  blocks) plus 4 bytes per block scale; the two-sided scheme its all_to_all input plus its
  all_gather input.
- wire (``comm_wire_bytes``), the ring model: an all-reduce puts 2(W-1)/W of its payload on the
  wire, an all_gather (W-1) times this worker's part, an all_to_all (W-1)/W of its input. At
  W = 2: fp16 half of fp32's wire bytes, int8 and int8-2sided about a quarter (plus the scales,
  4 / block_size, 1.6% at 256, and the padding: under one block per parameter).
- time (``comm_seconds``): per iteration, the span from the first hook call to the completion
  of the last bucket's future (``perf_counter``); buckets overlap each other and the backward,
  so per-bucket times are never summed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch.distributed as dist
from torch import Tensor
from torch.futures import Future

from advkit.errors import UserError

Send = tuple[str, int]


class Hook(Protocol):
    """A compression: per bucket, the future DDP waits on and the (collective, bytes) it sent."""

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


#: collective -> share of its payload a ring implementation puts on the wire, at W workers
WIRE_SHARE: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda size: 2 * (size - 1) / size,
    "all_gather": lambda size: float(size - 1),
    "all_to_all": lambda size: (size - 1) / size,
}


class CompressionError(UserError, ValueError):
    """A gradient-compression setting a user must change."""


class Communication:
    """What one worker's gradient synchronization sends and how long it takes, per iteration.

    Built by ``attach_communication``; with no hook (one process) it measures nothing.
    """

    def __init__(self, compression: str = "none", hook: Hook | None = None, world_size: int = 1):
        self.compression = compression
        self._hook = hook
        self._share = {name: share(world_size) for name, share in WIRE_SHARE.items()}
        self._lock = threading.Lock()
        #: iterations completed since attached (restored by load_state_dict)
        self.iterations = 0
        self._last = (0.0, 0.0)
        self._window = _zero_window()
        self._reset_iteration()

    # ------------------------------------------------------------------ reading
    def take(self) -> dict[str, float]:
        """Totals since the last take, then reset: ``comm_iterations``, ``comm_bytes`` (payload
        handed to collectives), ``comm_wire_bytes`` (ring-model estimate), ``comm_seconds``."""
        with self._lock:
            window, self._window = self._window, _zero_window()
        return window

    @property
    def bytes_per_iter(self) -> float:
        """Payload of the last completed iteration (0 before any)."""
        return self._last[0]

    @property
    def wire_bytes_per_iter(self) -> float:
        """Ring-model wire bytes of the last completed iteration (0 before any)."""
        return self._last[1]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """This rank's state for an exact resume, as plain data (``weights_only`` loads it)."""
        with self._lock:
            return {
                "compression": self.compression, "iterations": self.iterations,
                "last": list(self._last), "window": dict(self._window),
                "hook": self._hook.state_dict() if self._hook is not None else {},
            }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["compression"] != self.compression:
            raise CompressionError(
                f"the checkpoint was written with --grad-compression {state['compression']}: "
                f"resume with it, not {self.compression}"
            )
        with self._lock:
            self.iterations = int(state["iterations"])
            self._last = (float(state["last"][0]), float(state["last"][1]))
            self._window = dict(state["window"])
            if self._hook is not None:
                self._hook.load_state_dict(state["hook"])

    # ------------------------------------------------------------------ hook
    def _reset_iteration(self) -> None:
        self._open = False
        self._start = 0.0
        self._pending = 0
        self._last_launched = False
        self._payload = 0.0
        self._wire = 0.0

    def _run(self, bucket: dist.GradBucket) -> Future[Tensor]:
        with self._lock:
            if not self._open:
                self._open, self._start = True, time.perf_counter()
            self._pending += 1
        fut, sends = self._hook(bucket)
        with self._lock:
            for collective, size in sends:
                self._payload += size
                self._wire += self._share[collective] * size
            self._last_launched |= bucket.is_last()
        return fut.then(self._done)

    def _done(self, fut: Future[Tensor]) -> Tensor:
        try:
            return fut.value()
        finally:
            end = time.perf_counter()
            with self._lock:
                self._pending -= 1
                if self._last_launched and self._pending == 0:
                    self._close(end)

    def _close(self, end: float) -> None:
        self.iterations += 1
        self._last = (self._payload, self._wire)
        window = self._window
        window["comm_iterations"] += 1
        window["comm_bytes"] += self._payload
        window["comm_wire_bytes"] += self._wire
        window["comm_seconds"] += end - self._start
        self._reset_iteration()


def _zero_window() -> dict[str, float]:
    return {"comm_iterations": 0, "comm_bytes": 0.0, "comm_wire_bytes": 0.0, "comm_seconds": 0.0}


def run_hook(state, bucket):  # no annotations: DDP compares them with its own objects
    """The function DDP calls per bucket (``register_comm_hook(communication, run_hook)``)."""
    return state._run(bucket)

"""Mixed precision of the training steps: autocast to bfloat16 or float16 (``--amp``,
``--amp-dtype``), and for float16 the loss scaling that keeps small gradients from vanishing.

bfloat16 has float32's exponent range, so autocast alone suffices. float16 has five exponent
bits: gradient values below 2**-24 flush to zero (Micikevicius et al., "Mixed Precision
Training", ICLR 2018, arXiv:1710.03740). So under fp16 the weight update goes through
``torch.amp.GradScaler`` (the loss scaled before the backward, the gradients unscaled before
clipping and the optimizer; an update whose gradients overflowed is skipped and the scale halved,
and it doubles after 2000 clean updates), and the attacks' input gradients are taken of the loss
scaled by the same scale per sample (:func:`advkit.attacks.gradients.loss_scaled`). Attack and
training losses are computed in float32 (``logits.float()``) either way. The scaler's state is
part of the checkpoint, so a resumed fp16 run continues bit for bit.

Validation, the guard's checks and evaluation run outside these steps, in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from advkit.attacks.gradients import loss_scaled
from advkit.errors import DeviceError

#: ``--amp-dtype`` names and the dtypes they autocast to.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_name(config: Any) -> str | None:
    """The dtype name the training steps autocast to (``bf16`` when unset), None without amp."""
    return (config.amp_dtype or "bf16") if config.amp else None


def check_autocast(device: torch.device, name: str) -> None:
    """DeviceError, one line, when torch cannot autocast ``device`` to ``name`` (``bf16`` on a
    GPU older than Ampere, ``fp16`` on a CPU build without it, a device type without autocast):
    torch would raise deep in the first step, or warn and silently train in float32."""
    reason = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.autocast(device.type, AMP_DTYPES[name])
        except (RuntimeError, ValueError, AssertionError) as error:
            reason = str(error)
        said = [str(w.message) for w in caught]
        disabled = [text for text in said if "disabling autocast" in text.lower()]
        if reason is None and disabled:  # torch warns, then trains in float32
            reason = disabled[0]
    if reason is not None:
        other = "fp16" if name == "bf16" else "bf16"
        detail = " ".join(reason.split())[:160]
        raise DeviceError(
            f"--amp-dtype {name}: torch {torch.__version__} cannot autocast {device} to "
            f"{AMP_DTYPES[name]} ({detail}); use --amp-dtype {other}, or drop --amp"
        )


class Precision:
    """The autocast and loss scaling of one run's training steps (float32 without ``amp``).

    ``step(n)`` is the context of one method step on ``n`` inputs; ``backward``, ``unscale``
    and ``update`` are the weight update's three calls around clipping; ``state_dict`` goes into
    the checkpoint. Without fp16 the scaler is disabled and each call is the plain one
    (``loss.backward()``, ``optimizer.step()``), bit for bit.
    """

    def __init__(self, config: Any, device: torch.device) -> None:
        self.device = device
        self.name = amp_name(config)
        if self.name is not None:
            check_autocast(device, self.name)
        self.dtype = AMP_DTYPES[self.name] if self.name is not None else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.name == "fp16")

    @property
    def scaling(self) -> bool:
        """Whether losses are scaled (fp16)."""
        return self.scaler.is_enabled()

    @contextmanager
    def step(self, batch_size: int) -> Iterator[None]:
        """One method step on ``batch_size`` inputs: autocast, and under fp16 the attacks' input
        gradients scaled by the GradScaler's scale / ``batch_size``. The weight update's mean loss
        gives each sample's loss that factor too: an attack's (summed) backward then carries the
        magnitudes the GradScaler keeps from overflowing in the weight update's own."""
        if self.dtype is None:
            yield
            return
        per_sample = None
        if self.scaling:  # a 0-dim tensor on the device: the scale is never read on the host
            share = torch.full((), 1.0 / max(batch_size, 1), device=self.device)
            per_sample = self.scaler.scale(share)
        with torch.autocast(self.device.type, self.dtype), loss_scaled(per_sample):
            yield

    def backward(self, loss: Tensor) -> None:
        """The backward of the weight update's loss (scaled under fp16)."""
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: Optimizer) -> None:
        """Divide the gradients by the scale (before clipping them); a no-op without fp16."""
        self.scaler.unscale_(optimizer)

    def update(self, optimizer: Optimizer) -> None:
        """``optimizer.step()``, skipped under fp16 when a gradient overflowed; then the scale's
        update."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def record(self) -> dict[str, Any]:
        """What model.json says of the precision: the autocast dtype (float32 without amp), and
        under fp16 the loss scale at the end."""
        record: dict[str, Any] = {"autocast": self.name or "float32"}
        if self.scaling:
            record["loss_scale"] = self.scaler.get_scale()
        return record

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler's state (scale, growth tracker); empty without fp16."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaling and state:
            self.scaler.load_state_dict(state)

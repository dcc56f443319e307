"""Free adversarial training (Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019,
arXiv:1904.12843).

Each minibatch is replayed ``replays`` (m) times. Every replay does ONE forward and ONE backward:
the backward of the weight update also gives the gradient with respect to the perturbation,
which then takes a step of ``step_size`` (default eps, as in the paper). The perturbation is
never reset: it carries over to the next minibatch, so the attack strength accumulates "for free".
Train for epochs / m passes to match the cost of natural training. Pixel units, inputs in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.methods.base import METHODS, Method, StepContext, StepOutput
from advkit.threat import get_threat


class PersistentDelta:
    """A perturbation kept across minibatches, shaped like a full batch.

    A short last batch reads and writes the first rows only (as the reference implementation
    does); any other change of shape, device or dtype starts again from zero.
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def read(self, inputs: Tensor) -> Tensor:
        """The stored perturbation for this batch (a copy), zeros on first use."""
        buffer = self.buffer
        if buffer is None or buffer.shape[1:] != inputs.shape[1:] or len(buffer) < len(inputs):
            buffer = torch.zeros_like(inputs)
        self.buffer = buffer.to(device=inputs.device, dtype=inputs.dtype)
        return self.buffer[: len(inputs)].clone()

    def write(self, delta: Tensor) -> None:
        assert self.buffer is not None, "read() comes first"
        if len(delta) == len(self.buffer):
            self.buffer = delta.detach()
        else:
            self.buffer[: len(delta)] = delta.detach()

    def state_dict(self) -> dict[str, Any]:
        # A copy: the caller may keep it while training goes on.
        return {} if self.buffer is None else {"delta": self.buffer.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        delta = state.get("delta")
        self.buffer = None if delta is None else delta.detach().clone()


@METHODS.register(
    "free",
    description="Free-AT: each minibatch replayed --replays times, each backward updating both "
    "the weights and the attack (Shafahi et al. 2019)",
)
class FreeTraining(Method):
    """Free-AT with ``replays`` (m) weight updates per minibatch, each from one forward-backward."""

    def __init__(self, *, replays: int = 4, step_size: float | None = None, **base: Any) -> None:
        super().__init__(**base)
        if replays < 1:
            raise ValueError(f"free training needs replays (m) >= 1, got {replays}")
        if step_size is not None and step_size <= 0:
            raise ValueError(
                f"step_size must be > 0 (pixel units), or None for eps; got {step_size}"
            )
        self.replays = replays
        self.step_size = step_size
        self._delta = PersistentDelta()

    @property
    def updates_per_batch(self) -> int:  # type: ignore[override]
        return self.replays

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "replays": config.replays,
            "step_size": config.step_size,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        threat = get_threat(self.norm)
        step_size = (ctx.eps if self.step_size is None else self.step_size) * self.step_scale
        # The carried-over delta was feasible for the previous images and eps (warm-up changes it).
        delta = threat.project(self._delta.read(inputs), inputs, ctx.eps)
        for _ in range(self.replays):
            delta.requires_grad_(True)
            logits = ctx.model(inputs + delta)
            loss = self.criterion(logits, labels)
            ctx.optimize(loss)  # the one backward: into the weights and into delta
            if delta.grad is None:
                raise RuntimeError(
                    "ctx.optimize(loss) must call loss.backward(): Free-AT reads the "
                    "perturbation's gradient from that backward"
                )
            # An fp16 loss-scaled backward can overflow (the update is then skipped): a NaN
            # sign, or inf / inf in the L2 step, would poison delta for good. The scale itself
            # changes neither the sign nor the direction.
            grad = torch.where(delta.grad.isfinite(), delta.grad, 0.0)
            with torch.no_grad():
                # A new tensor each replay: the old one's .grad is dropped, never accumulated.
                delta = threat.project(threat.ascent(delta, grad, step_size), inputs, ctx.eps)
        self._delta.write(delta)
        return StepOutput(loss=loss.detach(), logits=logits.detach())

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | self._delta.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._delta.load_state_dict(state)

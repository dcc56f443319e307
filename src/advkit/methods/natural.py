"""Natural (standard) training: the baseline every method's cost is measured against."""

from __future__ import annotations

from torch import Tensor

from advkit.methods.base import METHODS, Method, StepContext, StepOutput


@METHODS.register(
    "natural", description="natural training on clean inputs, no attack: the baseline"
)
class Natural(Method):
    """Empirical risk minimization on clean inputs."""

    adversarial = False

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        logits = ctx.model(inputs)
        loss = self.criterion(logits, labels)
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach())

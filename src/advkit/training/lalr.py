"""The layer-wise adaptive learning rate (LALR) of distributed adversarial training.

Zhang, Lu, Zhang, Chen, Chen, Fan, Martie, Horesh, Hong & Liu, "Distributed Adversarial Training
to Robustify Deep Neural Networks at Scale", UAI 2022 (arXiv:2206.06257). Each parameter tensor
(a "layer") i moves by

    theta_i <- theta_i - lr * tau(||theta_i||) * u_i / ||u_i||,   tau(z) = min(max(z, c_l), c_u)

where u is a base direction: ``"adam"`` (DAT's default: Adam moments without bias correction,
eps 1e-6, weight decay added to u, as in LAMB, You et al., ICLR 2020) or ``"sgd"`` (heavy-ball
momentum plus weight decay, as in LARS, You et al. 2017). A zero norm (of the clipped weight or of
u) gives the ratio tau / ||u|| the value 1, so a layer starting at zero still moves. Parameter
groups with ``adapt=False`` (biases and norm layers under ``--lalr-exclude-1d``, timm's
convention) take the plain base step ``lr * u``.

The update stays on the device: norms and ratios are tensors, never Python numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

BASES = ("adam", "sgd")
#: DAT's code clips the weight norm to [0, 10].
DEFAULT_CLIP = (0.0, 10.0)


class LALR(Optimizer):
    """DAT's layer-wise adaptive optimizer over an Adam (LAMB-like) or momentum (LARS-like) base.

    Args:
        params: parameters or parameter groups; a group may set ``adapt=False`` to skip the
            layer-wise ratio.
        lr: the step as a fraction of each layer's (clipped) weight norm.
        base: ``"adam"`` or ``"sgd"``.
        betas, eps: the Adam base's moment decays and denominator term.
        momentum: the SGD base's momentum (0: plain gradient).
        weight_decay: added to u as ``weight_decay * theta`` (decoupled from the moments).
        clip: (c_l, c_u), the bounds of the weight norm in the ratio; 0 <= c_l <= c_u.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        base: str = "adam",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        clip: tuple[float, float] = DEFAULT_CLIP,
    ) -> None:
        if base not in BASES:
            raise ValueError(f"LALR base must be one of {', '.join(BASES)}; got {base!r}")
        if not lr > 0:
            raise ValueError(f"LALR lr must be > 0, got {lr}")
        low, high = clip
        if not 0 <= low <= high:
            raise ValueError(f"LALR clip bounds must satisfy 0 <= c_l <= c_u, got {low}, {high}")
        defaults = dict(
            lr=lr, base=base, betas=tuple(betas), eps=eps, momentum=momentum,
            weight_decay=weight_decay, clip=(float(low), float(high)), adapt=True,
        )  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                direction = self._direction(param, group)
                if group["weight_decay"]:
                    direction = direction.add(param, alpha=group["weight_decay"])
                if group["adapt"]:
                    direction = direction * self._ratio(param, direction, group["clip"])
                param.add_(direction, alpha=-group["lr"])
        return loss

    def _direction(self, param: Tensor, group: dict[str, Any]) -> Tensor:
        """u before weight decay: Adam's m / (sqrt(v) + eps) unbiased-uncorrected, or momentum."""
        grad = param.grad
        state = self.state[param]
        if group["base"] == "adam":
            if not state:
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            beta1, beta2 = group["betas"]
            state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            return state["exp_avg"] / state["exp_avg_sq"].sqrt().add_(group["eps"])
        if not group["momentum"]:
            return grad
        if not state:
            state["momentum_buffer"] = grad.clone()
        else:
            state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
        return state["momentum_buffer"]

    @staticmethod
    def _ratio(param: Tensor, direction: Tensor, clip: tuple[float, float]) -> Tensor:
        """tau(||theta||) / ||u||, or 1 where either norm is zero (a 0-d tensor)."""
        weight_norm = torch.linalg.vector_norm(param).clamp(*clip)
        direction_norm = torch.linalg.vector_norm(direction)
        usable = (weight_norm > 0) & (direction_norm > 0)
        return torch.where(usable, weight_norm / direction_norm.clamp_min(1e-38), 1.0)

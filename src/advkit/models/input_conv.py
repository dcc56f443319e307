"""``InputConv2d``: a model's first convolution, with a faster input gradient on the CPU.

Adversarial training and attacks need the gradient with respect to the input image, which natural
training never computes. On the CPU, torch's oneDNN kernel for that gradient is slow when the
convolution has a single input channel (grey-scale images): on this project's machine it cost 5x
the convolution's forward pass, a third of a whole natural training step of ``cnn-small``, and
torch's native kernel about a third of what oneDNN's costs (``benchmarks/first_conv_cost.py``,
BENCHMARKS.md). ``InputConv2d`` computes that one gradient with the native kernel and leaves
everything else (forward, weight gradient, other devices, autocast, several input channels) to
``nn.Conv2d``. It has the same parameters and state dict as ``nn.Conv2d``, its gradients are
differentiable again (double backpropagation, as GradAlign needs), and it works under
torch.compile.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: The native CPU kernel is a private torch op: without it, InputConv2d is plain nn.Conv2d.
_NATIVE_KERNEL = hasattr(torch.ops.aten, "_slow_conv2d_backward")


class _NativeInputGradient(torch.autograd.Function):
    """Identity on a convolution's output; its backward adds the convolution's input gradient,
    computed with the native CPU kernel.

    The output comes from ``F.conv2d`` on the detached input, so the weight and bias gradients
    stay with torch's own convolution node, which computes them only when they are wanted (an
    attack asks for the input gradient alone). ``weight`` is passed in so that a graph built in
    this backward (double backpropagation) reaches it.
    """

    @staticmethod
    def forward(
        ctx: Any, output: Tensor, inputs: Tensor, weight: Tensor, stride: Any, padding: Any
    ) -> Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.stride, ctx.padding = list(stride), list(padding)
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        inputs, weight = ctx.saved_tensors
        grad_input = torch.ops.aten._slow_conv2d_backward(
            grad_out, inputs, weight, list(weight.shape[2:]), ctx.stride, ctx.padding,
            [True, False, False],
        )[0]  # fmt: skip
        return grad_out, grad_input, None, None, None


class InputConv2d(nn.Conv2d):
    """``nn.Conv2d`` for a model's input layer; see the module docstring for why it exists."""

    def _native_input_grad(self, inputs: Tensor) -> bool:
        return (
            _NATIVE_KERNEL
            and inputs.requires_grad
            and torch.is_grad_enabled()
            and inputs.device.type == "cpu"
            and self.in_channels == 1
            and self.groups == 1
            and self.padding_mode == "zeros"
            and tuple(self.dilation) == (1, 1)
            and isinstance(self.padding, tuple)
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, inputs: Tensor) -> Tensor:
        if not self._native_input_grad(inputs):
            return super().forward(inputs)
        output = super().forward(inputs.detach())
        return _NativeInputGradient.apply(output, inputs, self.weight, self.stride, self.padding)

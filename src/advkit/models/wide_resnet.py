"""WideResNet-depth-k.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146); the pre-activation
layout used by TRADES, MART, AWP and most CIFAR robustness work.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from advkit.models.base import MODELS, init_resnet_weights
from advkit.models.input_conv import InputConv2d
from advkit.models.preact_resnet import PreActBlock


class WideResNet(nn.Module):
    """conv3x3(16), three groups of n = (depth - 4) / 6 pre-activation blocks of widths 16k, 32k,
    64k (strides 1, 2, 2), BN-ReLU, adaptive average pool, linear.

    (N, C, H, W) -> (N, num_classes), any H, W (designed for 32x32).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(
                f"wrn depth must be 6n + 4 with n >= 1 (e.g. 16, 22, 28, 34, 40), got {depth!r}"
            )
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"wrn widen_factor must be an integer >= 1, got {widen_factor!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"wrn dropout must be in [0, 1), got {dropout!r}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = InputConv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        in_planes = 16
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = []
            for i in range(n):
                blocks.append(PreActBlock(in_planes, width, stride if i == 0 else 1, dropout))
                in_planes = width
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_resnet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.pool(F.relu(self.bn(out)))
        return self.fc(out.flatten(1))


@MODELS.register(
    "wrn",
    input_size=None,
    description="WideResNet, options depth=28 (6n+4), widen_factor=10, dropout=0.0 (32x32 design)",
)
def wide_resnet(
    num_classes: int,
    in_channels: int,
    depth: int = 28,
    widen_factor: int = 10,
    dropout: float = 0.0,
) -> WideResNet:
    """WideResNet-depth-widen_factor (arXiv:1605.07146): (N, C, H, W) -> logits."""
    return WideResNet(num_classes, in_channels, depth, widen_factor, dropout)


@MODELS.register("wrn-28-10", input_size=None, description="WideResNet-28-10 (32x32 design)")
def wrn_28_10(num_classes: int, in_channels: int, dropout: float = 0.0) -> WideResNet:
    """WideResNet-28-10, the TRADES / MART CIFAR model."""
    return wide_resnet(num_classes, in_channels, depth=28, widen_factor=10, dropout=dropout)


@MODELS.register("wrn-34-10", input_size=None, description="WideResNet-34-10 (32x32 design)")
def wrn_34_10(num_classes: int, in_channels: int, dropout: float = 0.0) -> WideResNet:
    """WideResNet-34-10, the Madry / TRADES / AWP CIFAR model."""
    return wide_resnet(num_classes, in_channels, depth=34, widen_factor=10, dropout=dropout)

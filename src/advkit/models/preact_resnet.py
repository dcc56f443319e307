"""PreAct ResNet-18 with a CIFAR-style stem.

He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016 (arXiv:1603.05027);
the variant used by fast adversarial training (Wong et al., ICLR 2020) with a final BN-ReLU.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from advkit.models.base import MODELS, init_resnet_weights
from advkit.models.input_conv import InputConv2d


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3 plus identity or a 1x1 projection of the
    pre-activation (also the WideResNet block). (N, in_planes, H, W) -> (N, planes, H/s, W/s).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet, 3x3 stem without max-pool, adaptive average pooling.

    (N, C, H, W) -> (N, num_classes), any H, W >= 8 (designed for 32x32; 28x28 works).
    """

    def __init__(
        self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        self.conv1 = InputConv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            stage = []
            for j in range(blocks):
                stage.append(PreActBlock(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)
        init_resnet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(F.relu(self.bn(out)))
        return self.linear(out.flatten(1))


@MODELS.register(
    "preact-resnet18",
    input_size=None,
    description="PreAct ResNet-18, CIFAR stem (designed for 32x32, any size via adaptive pool)",
)
def preact_resnet18(num_classes: int, in_channels: int) -> PreActResNet:
    """PreAct ResNet-18 (He et al., ECCV 2016, arXiv:1603.05027): (N, C, H, W) -> logits."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)

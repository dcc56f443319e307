"""ResNet-50 for ImageNet-size inputs.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385);
the stride sits in the bottleneck's 3x3 conv (ResNet v1.5, as in torchvision and robustness work).
"""

from __future__ import annotations

from torch import Tensor, nn

from advkit.models.base import MODELS, init_resnet_weights
from advkit.models.input_conv import InputConv2d


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(4x)-BN, plus shortcut, ReLU.

    (N, in_planes, H, W) -> (N, 4 * planes, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet: 7x7/2 conv, 3x3/2 max-pool, four stages, adaptive avg pool, linear.

    (N, C, H, W) -> (N, num_classes); designed for 224x224, any H, W >= 32 works.
    """

    def __init__(
        self, layers: tuple[int, int, int, int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        self.conv1 = InputConv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage = []
            for j in range(blocks):
                stage.append(Bottleneck(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_resnet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.avgpool(out).flatten(1))


@MODELS.register(
    "resnet50",
    input_size=None,
    description="ResNet-50 (v1.5), ImageNet stem (designed for 224x224, any size >= 32)",
)
def resnet50(num_classes: int, in_channels: int) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016, arXiv:1512.03385): (N, C, H, W) -> logits."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)

"""A small MobileNetV2-style net: inverted residual blocks, depthwise convs, ReLU6."""

from __future__ import annotations

import torch
from torch import nn

from edgemask.models.registry import DEFAULT_MEAN, DEFAULT_STD, EdgeMaskNet, register_model


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise → 1×1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1))
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, 1, act=False)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV2Small(EdgeMaskNet):
    """Stem (stride 2) → inverted residual stages → 1×1 conv → global average pool → FC."""

    # (expand, out channels, repeats, first stride) per stage, before the width multiplier.
    STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 2), (4, 96, 1, 1))

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        width: float,
        last_channels: int,
        dropout: float,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        super().__init__(num_classes, input_size, 3, mean, std)

        def w(c: int) -> int:
            return max(8, int(round(c * width / 8)) * 8)

        layers: list[nn.Module] = [_conv_bn(3, w(16), 3, 2)]
        cin = w(16)
        for expand, c, n, s in self.STAGES:
            for i in range(n):
                layers.append(InvertedResidual(cin, w(c), s if i == 0 else 1, expand))
                cin = w(c)
        layers.append(_conv_bn(cin, last_channels, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(last_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,S,S) -> (N,K)
        return self.classifier(self.pool(self.features(self.normalize(x))))


@register_model(
    "mobilenet_v2_small",
    family="cnn",
    description="MobileNetV2-style: inverted residuals with depthwise convs, width multiplier",
)
def mobilenet_v2_small(
    num_classes: int = 3,
    input_size: int = 64,
    width: float = 0.5,
    last_channels: int = 256,
    dropout: float = 0.2,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> MobileNetV2Small:
    return MobileNetV2Small(num_classes, input_size, width, last_channels, dropout, tuple(mean), tuple(std))

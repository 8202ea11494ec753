"""The seed's non-CNN baselines: a linear model and a multi-layer perceptron.

The stability study compares families: for the linear model DeepFool's answer
is exact (the orthogonal projection onto the decision boundary).
"""

from __future__ import annotations

import torch
from torch import nn

from edgemask.models.registry import DEFAULT_MEAN, DEFAULT_STD, EdgeMaskNet, register_model


class LinearClassifier(EdgeMaskNet):
    """logits = W · normalize(x).flatten() + b."""

    def __init__(self, num_classes: int, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__(num_classes, input_size, 3, mean, std)
        self.fc = nn.Linear(3 * input_size * input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,S,S) -> (N,K)
        return self.fc(torch.flatten(self.normalize(x), 1))


class MLP(EdgeMaskNet):
    """Flatten → (Linear → ReLU → Dropout) × len(hidden) → Linear."""

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        hidden: tuple[int, ...],
        dropout: float,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        super().__init__(num_classes, input_size, 3, mean, std)
        layers: list[nn.Module] = [nn.Flatten()]
        cin = 3 * input_size * input_size
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            cin = h
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,S,S) -> (N,K)
        return self.net(self.normalize(x))


@register_model("linear", family="linear", description="Linear model on raw pixels (the seed's y = wᵀx + β baseline)")
def linear(
    num_classes: int = 3,
    input_size: int = 64,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> LinearClassifier:
    return LinearClassifier(num_classes, input_size, tuple(mean), tuple(std))


@register_model("mlp", family="mlp", description="Multi-layer perceptron on raw pixels")
def mlp(
    num_classes: int = 3,
    input_size: int = 64,
    hidden: tuple[int, ...] = (256, 64),
    dropout: float = 0.2,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> MLP:
    return MLP(num_classes, input_size, tuple(hidden), dropout, tuple(mean), tuple(std))

"""The seed's architecture: stacked conv → max-pool blocks, then fully connected layers."""

from __future__ import annotations

import torch
from torch import nn

from edgemask.models.registry import DEFAULT_MEAN, DEFAULT_STD, EdgeMaskNet, register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    # conv-BN-ReLU twice would be stronger, but one conv per block keeps the
    # net close to the slide's picture and fast enough to train on 2 cores.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SeedCNN(EdgeMaskNet):
    """conv blocks (each halves H and W) → flatten → FC → ReLU → dropout → FC."""

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        widths: tuple[int, ...],
        hidden: int,
        dropout: float,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        super().__init__(num_classes, input_size, 3, mean, std)
        chans = (3, *widths)
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        side = input_size // (2 ** len(widths))
        if side < 1:
            raise ValueError(f"input_size {input_size} too small for {len(widths)} pooling blocks")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,S,S) in [0,1] -> (N,K) logits
        return self.classifier(self.features(self.normalize(x)))


@register_model(
    "seed_cnn",
    family="cnn",
    description="The seed deck's CNN: 4 conv→BN→ReLU→max-pool blocks, then 2 fully connected layers",
)
def seed_cnn(
    num_classes: int = 3,
    input_size: int = 64,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    hidden: int = 128,
    dropout: float = 0.2,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> SeedCNN:
    return SeedCNN(num_classes, input_size, tuple(widths), hidden, dropout, tuple(mean), tuple(std))

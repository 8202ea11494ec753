"""Tiny models and data for the attack tests (built here, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv -> BN -> ReLU -> pool, twice, then a linear head; (N,3,16,16) -> (N,K)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5).mean(dim=(2, 3)))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine params."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model


def coloured_blobs(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey noisy background + a soft blob whose dominant channel is the class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    grey = torch.rand(n, 1, 1, 1, generator=g) * 0.5 + 0.25
    img = grey + 0.05 * torch.randn(n, 3, size, size, generator=g)
    colour = torch.rand(n, 3, generator=g) * 0.3
    colour[torch.arange(n), y] = torch.rand(n, generator=g) * 0.25 + 0.75
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * (size - 8) + 4
    radius = torch.rand(n, generator=g) * 2 + 2.5
    d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    alpha = torch.exp(-d2 / (2 * radius[:, None, None] ** 2))[:, None]  # (N,1,H,W)
    img = (1 - alpha) * img + alpha * colour[:, :, None, None]
    return img.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A TinyCNN trained for ~1-2 s on coloured blobs; returns (model, x_test, y_test).

    40 Adam steps reach 100% held-out accuracy on this easy task; the test
    asserts > 90% so a broken trainer shows up as such, not as a weak attack.
    """
    torch.manual_seed(0)
    model = TinyCNN(3)
    x, y = coloured_blobs(512, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        idx = torch.randint(0, x.shape[0], (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x_test, y_test = coloured_blobs(64, seed=2)
    return model, x_test, y_test


@pytest.fixture
def make_cnn():
    """Factory: ``make_cnn(num_classes, seed)`` -> TinyCNN with random BN stats, eval mode."""

    def make(num_classes: int = 3, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return randomize_bn(TinyCNN(num_classes), seed).eval()

    return make

"""Root fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

# Determinism and speed on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def png_bomb():
    """``png_bomb(width, height) -> bytes``: see :func:`hostile_files.png_bomb_bytes`."""
    from hostile_files import png_bomb_bytes

    return png_bomb_bytes

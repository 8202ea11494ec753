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

    random.seed(0)
    np.random.seed(0)
    try:  # the device-runtime job (Python 3.8, no train extra) has no torch
        import torch
    except ModuleNotFoundError:
        pass
    else:
        torch.manual_seed(0)
    yield

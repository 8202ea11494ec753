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
def fake_trt(monkeypatch):
    """Installs a ``FakeTensorRT`` of the given version as the ``tensorrt`` module; returns it."""
    import sys

    from fake_tensorrt import FakeTensorRT

    def install(version="10.3.0.26", **kw):
        fake = FakeTensorRT(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install

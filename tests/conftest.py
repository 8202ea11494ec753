"""Root fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

# Determinism and speed on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def backends_bundle(tmp_path_factory):
    """The tiny trained bundle of tests/backends (fp32, fp16, int8), built once per session.

    Read-only: copy it before changing anything. Without torch (.ci/run's
    Python 3.8 job) it is the copy the main interpreter exported, see
    tests/bundle_cache.py.
    """
    from bundle_cache import builders, test_bundle

    return test_bundle("backends", builders()["backends"], tmp_path_factory)


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


@pytest.fixture
def png_bomb():
    """``png_bomb(width, height) -> bytes``: see :func:`hostile_files.png_bomb_bytes`."""
    from hostile_files import png_bomb_bytes

    return png_bomb_bytes

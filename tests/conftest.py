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


# --------------------------------------------------------------------------- the learned face detector


@pytest.fixture(scope="session")
def tiny_detector_run(tmp_path_factory):
    """A narrow facedet (128x96) trained for a few seconds on generated scenes (tests/detector_assets.py)."""
    from detector_assets import train_tiny_detector

    return train_tiny_detector(tmp_path_factory.mktemp("tiny_detector") / "det")


@pytest.fixture(scope="session")
def detector_bundle(tmp_path_factory, tiny_detector_run):
    """A tiny classifier and ``tiny_detector_run`` exported into one bundle at fp32, fp16 and int8 (read-only use)."""
    from detector_assets import make_detector_bundle

    return make_detector_bundle(tmp_path_factory.mktemp("detector_bundle"), tiny_detector_run)

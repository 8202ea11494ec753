"""Fixtures for compare/bench tests: the tiny bundle of tests/backends, and an ImageFolder of its images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# tests/ has no __init__.py, so the backend conftest is loaded by path under its own name.
_spec = importlib.util.spec_from_file_location("_edgemask_tiny_bundle",
                                               Path(__file__).parents[1] / "backends" / "conftest.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)

tiny_images = _tiny.tiny_images
CLASS_NAMES = _tiny.CLASS_NAMES


@pytest.fixture(scope="session")
def tiny_bundle(backends_bundle) -> Path:
    """A read-only tiny bundle (copy it before changing anything): the one tests/backends use."""
    return backends_bundle


@pytest.fixture(scope="session")
def images():
    """``images(n, seed=0)`` -> (uint8 NHWC 32×32 RGB, labels)."""
    return tiny_images


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """An ImageFolder (one folder per class) of 24 PNG crops the tiny model classifies well."""
    import cv2

    root = tmp_path_factory.mktemp("tiny_data") / "data"
    x, y = tiny_images(24, seed=21)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / CLASS_NAMES[label]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:03d}.png"), img[:, :, ::-1])  # RGB -> BGR for OpenCV
    return root

"""Fixtures for compare/bench tests: an ImageFolder of the tiny bundle's images (tiny_bundle and images: root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from assets import CLASS_NAMES, tiny_images


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

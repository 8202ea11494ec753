"""Tiny on-disk datasets (real PNG/JPEG files and VOC XML) for the data tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest

# BGR colours (OpenCV order) used to tell crops apart after loading (as RGB).
RED_BGR = (0, 0, 255)
GREEN_BGR = (0, 255, 0)
BLUE_BGR = (255, 0, 0)


def write_image(path: Path, img_bgr: np.ndarray) -> Path:
    """Write a real image file (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, img_bgr)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def solid(color_bgr: tuple[int, int, int], h: int = 20, w: int = 20) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = color_bgr
    return img


def noise(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def voc_xml(
    filename: str, objects: Iterable[tuple[str, tuple[float, float, float, float]]], w: int = 100, h: int = 80
) -> str:
    """A Kaggle face-mask style annotation."""
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<occluded>0</occluded><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return (
        f"<annotation><folder>images</folder><filename>{filename}</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    )


def scene(w: int = 100, h: int = 80) -> np.ndarray:
    """A gray scene with a red square at (10..30, 10..30) and a green one at (60..80, 40..60)."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[10:30, 10:30] = RED_BGR
    img[40:60, 60:80] = GREEN_BGR
    return img


@pytest.fixture
def imagefolder(tmp_path: Path) -> Path:
    """with_mask/ (3 red, one nested), without_mask/ (3 green): 6 distinct PNGs."""
    root = tmp_path / "ifolder"
    for i in range(3):
        img = solid(RED_BGR)
        img[0, 0] = (i, i, i)  # distinct bytes → distinct groups
        write_image(root / "with_mask" / ("nested" if i == 2 else "") / f"m{i}.png", img)
        img = solid(GREEN_BGR, 30, 24)  # non-square: resized straight to S×S
        img[0, 0] = (i, i, i)
        write_image(root / "without_mask" / f"n{i}.png", img)
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """Kaggle-style VOC: two scenes, each with a red 'with_mask' and a green 'without_mask' box."""
    root = tmp_path / "voc"
    for k in range(2):
        img = scene()
        img[0, 0] = (k, k, k)
        write_image(root / "images" / f"maksssksksss{k}.png", img)
        xml = voc_xml(f"maksssksksss{k}.png", [("with_mask", (10, 10, 30, 30)), ("without_mask", (60, 40, 80, 60))])
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"maksssksksss{k}.xml").write_text(xml)
    return root


@pytest.fixture
def synth_layout(tmp_path: Path) -> Path:
    """A hand-made synth layout: dataset.json + crops/<class>/ + scenes/ (VOC)."""
    import json

    root = tmp_path / "synth"
    colors = {"mask": RED_BGR, "no_mask": GREEN_BGR, "mask_incorrect": BLUE_BGR}
    counts = {}
    idx = 0
    for cls, col in colors.items():
        counts[cls] = 4
        for _ in range(4):
            img = solid(col, 16, 16)
            img[0, 0] = (idx % 256, idx // 256, 7)
            write_image(root / "crops" / cls / f"{idx:06d}.png", img)
            idx += 1
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "format": "edgemask-synth",
                "version": 1,
                "seed": 0,
                "n": idx,
                "size": 16,
                "classes": list(colors),
                "counts": counts,
            }
        )
    )
    (root / "crops.jsonl").write_text("")
    write_image(root / "scenes" / "images" / "scene_0000.png", scene())
    (root / "scenes" / "annotations").mkdir(parents=True)
    (root / "scenes" / "annotations" / "scene_0000.xml").write_text(
        voc_xml("scene_0000.png", [("with_mask", (10, 10, 30, 30)), ("mask_weared_incorrect", (60, 40, 80, 60))])
    )
    return root


@pytest.fixture
def files():
    """The helpers above, as a fixture (test modules cannot import a conftest reliably)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        write_image=write_image,
        solid=solid,
        noise=noise,
        voc_xml=voc_xml,
        scene=scene,
        RED_BGR=RED_BGR,
        GREEN_BGR=GREEN_BGR,
        BLUE_BGR=BLUE_BGR,
    )

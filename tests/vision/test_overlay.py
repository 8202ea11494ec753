"""Overlay drawing, the MP4 recorder, display detection and classifier crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgemask.errors import ConfigError
from edgemask.vision.crops import face_crops
from edgemask.vision.overlay import (
    CLASS_COLORS,
    VideoRecorder,
    draw_overlay,
    has_display,
)


def test_draw_overlay_draws_on_a_copy():
    img = np.zeros((120, 160, 3), np.uint8)
    out = draw_overlay(
        img, [{"box": (20, 30, 80, 100), "track": 3, "class": "no_mask", "confidence": 0.93, "alert": True}], fps=29.7
    )
    assert img.max() == 0 and out.shape == img.shape
    assert tuple(out[60, 20]) == CLASS_COLORS["no_mask"]  # the box edge in the class colour


def test_recorder_writes_a_playable_file_only_on_close(tmp_path):
    path = tmp_path / "out" / "rec.mp4"
    rec = VideoRecorder(path, 25, (160, 120))
    for i in range(10):
        rec.write(np.full((120, 160, 3), i * 20, np.uint8))
    rec.write(np.zeros((240, 320, 3), np.uint8))  # another size is resized, not an error
    assert not path.exists()  # still a .partial file
    assert rec.close() == path and path.exists()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 11 and not list(path.parent.glob("*.partial*"))


def test_recorder_refuses_an_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write --record"):
        VideoRecorder(blocker / "rec.mp4", 25, (160, 120))


def test_no_display_without_display_variable(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert has_display() is False


def test_face_crops_match_the_training_crops():
    from edgemask.data.crops import resize_square_rgb, square_crop

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    img[:, :, 2] = 255  # red in BGR: crops must come out red in channel 0 (RGB)
    boxes = [(100, 60, 160, 140), (0, 0, 30, 40), (300, 200, 320, 240)]  # inside, top-left edge, bottom-right edge
    crops = face_crops(img, boxes, 32, 0.15)
    assert crops.shape == (3, 32, 32, 3) and crops.dtype == np.uint8 and (crops[..., 0] == 255).all()
    for c, b in zip(crops, boxes):
        assert np.array_equal(c, resize_square_rgb(square_crop(img, b, 0.15), 32))
    assert face_crops(img, [], 32).shape == (0, 32, 32, 3)

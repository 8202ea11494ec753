"""close_up: a photo zoomed on one face, as a camera sees someone standing close to it."""

from __future__ import annotations

import numpy as np
import pytest

from edgemask.data.detection import DetImage, close_up


def _photo():
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[100:140, 180:220] = 255  # face 0: a white 40 px square
    boxes = np.float32([[180, 100, 220, 140], [230, 100, 250, 120], [0, 0, 20, 20]])
    return DetImage("p.jpg", rgb, boxes, ["without_mask", "with_mask", "with_mask"])


@pytest.mark.parametrize("fill", [0.3, 0.7])
def test_the_zoomed_face_spans_fill_of_the_width_and_comes_first(fill):
    v = close_up(_photo(), 0, fill)
    assert v.rgb.shape == (480, 640, 3) and v.labels[0] == "without_mask"
    x0, y0, x1, y1 = v.boxes[0]
    side = 640 * fill
    assert x1 - x0 == pytest.approx(side, abs=0.01) and (x0 + x1) / 2 == pytest.approx(320, abs=0.01)
    top = 0.45 * 480 - side / 2  # centred at 45 % of the height; clipped at the top when taller than that
    assert y0 == pytest.approx(max(0.0, top), abs=0.01) and y1 == pytest.approx(0.45 * 480 + side / 2, abs=0.01)
    m = int(side / 40) + 2  # a source pixel is side/40 px wide: stay clear of the interpolated rim
    inner = v.rgb[int(y0) + m : int(y1) - m, int(x0) + m : int(x1) - m]
    assert inner.size and inner.min() == 255  # the pixels moved with the box


def test_faces_out_of_view_are_dropped_and_the_rest_clipped():
    v = close_up(_photo(), 0, 0.7)  # 40 px -> 448 px: the neighbour at x 230..250 is half out, the corner gone
    assert len(v.boxes) == 1
    v = close_up(_photo(), 0, 0.3)  # 40 px -> 192 px: the neighbour fits, the corner face is out of view
    assert v.labels == ["without_mask", "with_mask"]
    assert (v.boxes >= 0).all() and (v.boxes[:, [0, 2]] <= 640).all() and (v.boxes[:, [1, 3]] <= 480).all()

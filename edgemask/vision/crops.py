"""Face crops for the classifier, cut exactly like the training crops.

The VOC importer (:func:`edgemask.data.voc.square_crop`) made the training
crops: the face box grown by ``margin`` of its longer side per side, made
square, shifted (not clamped) to stay inside the image, resized by
:func:`edgemask.data.imagefolder.resize_square_rgb` (INTER_AREA when
shrinking, INTER_LINEAR when enlarging) and turned to RGB. Cutting live crops any other way would show the model
faces framed differently from anything it was trained on, so this module
calls the very same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def face_crops(bgr: np.ndarray, boxes: Iterable[Sequence[float]], size: int, margin: float = 0.15) -> np.ndarray:
    """Square RGB crops of ``boxes`` from a BGR frame.

    Args:
        bgr: (H, W, 3) uint8 frame.
        boxes: (x0, y0, x1, y1) face boxes in frame pixels (clamped here).
        size: output side (the bundle's ``input_size``).
        margin: context per side as a fraction of the box's longer side.

    Returns:
        uint8 (N, size, size, 3) RGB, ready for ``Runner.infer``.
    """
    from edgemask.data.imagefolder import resize_square_rgb
    from edgemask.data.voc import square_crop

    h, w = bgr.shape[:2]
    out = []
    for b in boxes:
        x0, y0 = min(max(float(b[0]), 0.0), w - 1.0), min(max(float(b[1]), 0.0), h - 1.0)
        x1, y1 = min(max(float(b[2]), x0 + 1.0), float(w)), min(max(float(b[3]), y0 + 1.0), float(h))
        crop = square_crop(bgr, (x0, y0, x1, y1), margin)
        out.append(resize_square_rgb(crop, size))
    if not out:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(out)


__all__ = ["face_crops"]

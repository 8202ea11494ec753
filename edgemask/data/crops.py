"""Face crops: the one place where a face box becomes the classifier's input.

Training (VOC boxes, faces cut out of whole ImageFolder photos), the real-face
check and the camera service all crop here, so the model is served faces
framed exactly like the ones it learned from:

1. the box, grown by ``margin`` of its longer side on each side, made square
   around the box centre (:func:`square_crop`);
2. the square *shifted* (not clamped) to lie inside the image, so it keeps
   real pixels and the face's aspect ratio; only a square larger than the
   image is edge-padded;
3. resized to S×S (INTER_AREA when shrinking, INTER_LINEAR when enlarging)
   and turned from BGR to RGB (:func:`resize_square_rgb`).

The margin is a setting that travels with the model: its default is
:data:`edgemask.config.CROP_MARGIN`, training records the one it used, and
the bundle manifest carries it as ``preprocessing.crop_margin``.

Runs on the device runtime (Python 3.8, no torch): numpy here, OpenCV on use.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import numpy as np

from edgemask.config import CROP_MARGIN

Box = Tuple[float, float, float, float]  # (x0, y0, x1, y1) in image pixels


def square_crop(img: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Cut a square around ``box`` grown by ``margin`` (fraction of box size) per side.

    The square is centred on the box and then *shifted* to lie inside the
    image, which keeps real pixels and the face's aspect ratio (clamping it
    instead would make it non-square, and resizing would squash the face).
    Only a square larger than the image itself is padded (edge-replicated).

    Args:
        img: (H, W, C) image.
        box: (x0, y0, x1, y1) already clamped to the image.
        margin: extra context per side as a fraction of the box's longer side.

    Returns:
        (side, side, C) crop, a view or a padded copy of ``img``.
    """
    import cv2

    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    side = max(1, round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)))
    sx0 = round((x0 + x1) / 2 - side / 2)
    sy0 = round((y0 + y1) / 2 - side / 2)
    if side <= w:
        sx0 = min(max(sx0, 0), w - side)
    if side <= h:
        sy0 = min(max(sy0, 0), h - side)
    ix0, iy0, ix1, iy1 = max(sx0, 0), max(sy0, 0), min(sx0 + side, w), min(sy0 + side, h)
    crop = img[iy0:iy1, ix0:ix1]
    top, bottom, left, right = iy0 - sy0, sy0 + side - iy1, ix0 - sx0, sx0 + side - ix1
    if top or bottom or left or right:
        crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return crop


def resize_square_rgb(img_bgr: np.ndarray, size: int) -> np.ndarray:
    """Resize a BGR image straight to ``size``×``size`` and convert it to RGB.

    Face crops are roughly square already, so we resize directly instead of
    padding (padding would shrink the face and add borders the camera never
    produces). INTER_AREA when shrinking (no aliasing); INTER_LINEAR when
    enlarging (INTER_AREA degenerates to blocky nearest-neighbour there).
    """
    import cv2

    h, w = img_bgr.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
        img_bgr = cv2.resize(img_bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(img_bgr[:, :, ::-1])


def face_crops(bgr: np.ndarray, boxes: Iterable[Sequence[float]], size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """Square RGB crops of ``boxes`` from a BGR frame.

    Args:
        bgr: (H, W, 3) uint8 frame.
        boxes: (x0, y0, x1, y1) face boxes in frame pixels (clamped here).
        size: output side (the bundle's ``input_size``).
        margin: context per side as a fraction of the box's longer side
            (the bundle's ``preprocessing.crop_margin``).

    Returns:
        uint8 (N, size, size, 3) RGB, ready for ``Runner.infer``.
    """
    h, w = bgr.shape[:2]
    out = []
    for b in boxes:
        x0, y0 = min(max(float(b[0]), 0.0), w - 1.0), min(max(float(b[1]), 0.0), h - 1.0)
        x1, y1 = min(max(float(b[2]), x0 + 1.0), float(w)), min(max(float(b[3]), y0 + 1.0), float(h))
        out.append(resize_square_rgb(square_crop(bgr, (x0, y0, x1, y1), margin), size))
    if not out:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(out)


__all__ = ["CROP_MARGIN", "face_crops", "resize_square_rgb", "square_crop"]

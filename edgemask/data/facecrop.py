"""ImageFolder photos that are not face crops: find the face, keep the largest one.

Public "with_mask / without_mask" folders often mix face crops with whole
photos (a person in a street, a selfie with shoulders). Squashing a whole
photo to 64×64 trains on scenery. So each image is looked at:

* **face crop** (kept whole): roughly square (aspect within
  :data:`SQUARE_ASPECT`) and either no face is found or the largest face
  fills at least :data:`CROP_FACE_SHARE` of the shorter side; a masked face
  crop often defeats the detector, so a square image without a face stays;
* **scene** (cropped): a face smaller than that was found: the largest face is
  cut square with the run's crop margin (:func:`edgemask.data.crops.face_crops`,
  the service's own function), so training sees what ``edgemask run`` will
  feed the model;
* **skipped**: not square and no face found; listed with the reason.

``crop_faces=None`` ("auto") turns this on when most images are not square
face crops (judged on aspect, then on a detector pass over a sample of the
square ones); True / False force it.

The face finder is passed in (``find_faces``), so ``data`` never imports
``vision``: the CLI and ``train()`` hand in
:func:`edgemask.vision.detectors.face_finder`, the learned detector when the
project provides one, else the Haar fusion at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: width / height range of a "square" image
SQUARE_ASPECT = (0.8, 1.25)
#: a face this large (of the image's shorter side) means the image already is a face crop
CROP_FACE_SHARE = 0.5
#: images sampled in auto mode to tell square scenes from square crops
AUTO_SAMPLE = 40
#: images are shrunk to at most this longer side before detection
DETECT_MAX_SIDE = 640

# (BGR image) -> list of (x0, y0, x1, y1) boxes in that image's pixels
FindFaces = Callable[[np.ndarray], Sequence[Sequence[float]]]


@dataclass
class CropReport:
    """What :func:`crop_decisions` did, for the summary and metrics.json."""

    mode: str = "off"  # "off" | "on" | "auto-on" | "auto-off"
    detector: str = ""  # the face finder's ``name`` ("custom" when it has none)
    cropped: int = 0
    kept_whole: int = 0
    skipped: int = 0
    no_face: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "detector": self.detector,
            "cropped": self.cropped,
            "kept_whole": self.kept_whole,
            "skipped": self.skipped,
            "no_face": list(self.no_face),
        }


def is_square(h: int, w: int) -> bool:
    return SQUARE_ASPECT[0] <= w / max(1, h) <= SQUARE_ASPECT[1]


def largest_face(bgr: np.ndarray, find: FindFaces) -> tuple[float, float, float, float] | None:
    """The largest face box in ``bgr`` (its pixels), detecting on a copy shrunk to ≤ 640 px."""
    import cv2

    h, w = bgr.shape[:2]
    k = min(1.0, DETECT_MAX_SIDE / max(h, w))
    img = cv2.resize(bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA) if k < 1 else bgr
    boxes = [tuple(v / k for v in b) for b in find(img)]
    if not boxes:
        return None
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))  # type: ignore[return-value]


def decide(bgr: np.ndarray, find: FindFaces) -> tuple[str, tuple[float, float, float, float] | None]:
    """("whole" | "crop" | "skip", face box) for one image."""
    h, w = bgr.shape[:2]
    box = largest_face(bgr, find)
    square = is_square(h, w)
    if box is None:
        return ("whole", None) if square else ("skip", None)
    side = max(box[2] - box[0], box[3] - box[1])
    if square and side >= CROP_FACE_SHARE * min(h, w):
        return "whole", box
    return "crop", box


def auto_wants_crops(
    shapes: Sequence[tuple[int, int]], sample: Callable[[int], np.ndarray | None], find: FindFaces
) -> bool:
    """True when most images are not square face crops.

    Args:
        shapes: (h, w) of every image.
        sample: loads image i (BGR) for the content check of square images.
    """
    n = len(shapes)
    if n == 0:
        return False
    square = [i for i, (h, w) in enumerate(shapes) if is_square(h, w)]
    if len(square) < n / 2:
        return True  # most are not even square
    step = max(1, len(square) // AUTO_SAMPLE)
    picked = square[::step][:AUTO_SAMPLE]
    scenes = 0
    for i in picked:
        img = sample(i)
        if img is not None and decide(img, find)[0] == "crop":
            scenes += 1
    # non-square images + the sampled share of square scenes
    est_not_crops = (n - len(square)) + len(square) * scenes / max(1, len(picked))
    return est_not_crops > n / 2


def report_line(d: dict[str, Any] | None) -> str | None:
    """One line for the CLI: what face cropping did (None when it was not on)."""
    if not d or d.get("mode") == "off":
        return None
    if d["mode"] == "auto-off":
        return "face crops: most images are square face crops; all used whole (--crop-faces forces cropping)"
    how = "auto: most images are not face crops" if d["mode"] == "auto-on" else "--crop-faces"
    line = (
        f"face crops ({how}; detector {d['detector']}): {d['cropped']} cropped to their largest face, "
        f"{d['kept_whole']} kept whole, {d['skipped']} skipped (no face found)"
    )
    return line


__all__ = ["report_line", "CropReport", "auto_wants_crops", "decide", "largest_face"]

"""Real face photos that ship with scikit-image, for checking a trained model offline.

A model trained on the synthetic generator must also call a *real* bare face
``no_mask``. scikit-image carries two sources of real faces, so this check
needs no download:

* ``skimage.data.lfw_subset()``: 100 real 25×25 grayscale faces. The generator
  draws only the first :data:`~edgemask.data.synth.LFW_TRAIN_FACES`; the rest
  (:func:`heldout_lfw_crops`) never appear in any generated set.
* ``skimage.data.astronaut()``: a 512×512 colour portrait. Its face box is
  what OpenCV's frontal-face Haar cascade finds; :func:`astronaut_variants`
  also paints a plain mask over it twice: covering nose and mouth (``mask``)
  and below the nose (``mask_incorrect``). The masks are flat polygons, so the
  two masked variants test the geometry cue, not realism.

:func:`real_face_check` classifies all of them, with the astronaut crop cut
from many jittered boxes (detectors frame a face more or less tightly), and
returns the share of each variant given its expected class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgemask.config import CROP_MARGIN

# (x0, y0, x1, y1) of the astronaut's face in skimage.data.astronaut(): what
# cv2.CascadeClassifier(haarcascade_frontalface_default).detectMultiScale(gray, 1.1, 5)
# returns for it (x=177, y=66, w=h=95).
ASTRONAUT_FACE_BOX = (177.0, 66.0, 272.0, 161.0)

# Mask polygons in fractions of the face box (x right, y down). The astronaut's
# nose tip sits at ~0.58 of the box height and her mouth at ~0.80.
_MASK_OVER_NOSE = ((0.05, 0.55), (0.95, 0.55), (0.90, 0.99), (0.50, 1.12), (0.10, 0.99))
_MASK_BELOW_NOSE = ((0.05, 0.76), (0.95, 0.76), (0.90, 1.09), (0.50, 1.20), (0.10, 1.09))
_MASK_BGR = (232, 200, 150)  # surgical-mask blue


def heldout_lfw_crops(size: int) -> np.ndarray:
    """The LFW faces the generator never draws, as model-ready crops.

    Args:
        size: output side in pixels.

    Returns:
        uint8 (N, size, size, 3) RGB (grey replicated to three channels).
    """
    import cv2
    from skimage import data as skdata

    from edgemask.data.synth import LFW_TRAIN_FACES

    faces = skdata.lfw_subset()[LFW_TRAIN_FACES:100]  # (N, 25, 25) float in [0, 1]
    out = [cv2.resize(np.asarray(f, np.float32), (size, size), interpolation=cv2.INTER_CUBIC) for f in faces]
    g = np.clip(np.rint(np.stack(out) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=3)


def _paint_mask(bgr: np.ndarray, box: tuple[float, float, float, float], poly) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = box
    pts = np.array([(x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)) for fx, fy in poly], np.int32)
    out = bgr.copy()
    cv2.fillPoly(out, [pts], _MASK_BGR, lineType=cv2.LINE_AA)
    return out


def astronaut_variants() -> dict[str, np.ndarray]:
    """The astronaut portrait as BGR frames: bare, masked, mask below the nose.

    Returns:
        ``{"no_mask": frame, "mask": frame, "mask_incorrect": frame}``, each
        uint8 (512, 512, 3) BGR; the face is at :data:`ASTRONAUT_FACE_BOX`.
    """
    import cv2
    from skimage import data as skdata

    bare = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    return {
        "no_mask": bare,
        "mask": _paint_mask(bare, ASTRONAUT_FACE_BOX, _MASK_OVER_NOSE),
        "mask_incorrect": _paint_mask(bare, ASTRONAUT_FACE_BOX, _MASK_BELOW_NOSE),
    }


def jittered_boxes(
    box: tuple[float, float, float, float],
    n: int,
    seed: int = 0,
    scale: tuple[float, float] = (0.8, 1.3),
    shift: float = 0.1,
) -> np.ndarray:
    """``n`` square boxes around ``box``: side × U(scale), centre moved by ±``shift`` of the side.

    Returns:
        float (n, 4) boxes (x0, y0, x1, y1).
    """
    rng = np.random.default_rng(seed)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1])
    s = side * rng.uniform(scale[0], scale[1], n)
    d = rng.uniform(-shift, shift, (n, 2)) * side
    return np.stack([cx + d[:, 0] - s / 2, cy + d[:, 1] - s / 2, cx + d[:, 0] + s / 2, cy + d[:, 1] + s / 2], 1)


def real_face_check(
    classify: Callable[[np.ndarray], np.ndarray],
    class_names: list[str],
    size: int,
    n_jitter: int = 100,
    margin: float = CROP_MARGIN,
    seed: int = 0,
) -> dict[str, dict[str, float | int]]:
    """Classify the real faces and say how often each got its expected class.

    Args:
        classify: uint8 (N, size, size, 3) RGB crops → (N,) predicted class indices.
        class_names: the model's classes; a variant whose class the model
            lacks (e.g. ``mask_incorrect`` for a two-class model) is skipped.
        size: the model's input side.
        n_jitter: astronaut crops per variant, cut from jittered boxes.
        margin: crop margin per side: the model's (``RunInfo.crop_margin``, a
            bundle's ``preprocessing.crop_margin``), so the check sees faces
            framed as in training and in ``edgemask run``.
        seed: seed of the box jitter.

    Returns:
        ``{check: {"expected": class, "n": count, "rate": share predicted as expected,
        "counts": {class: count}}}`` for ``lfw_heldout`` and ``astronaut_<class>``.
    """
    from edgemask.data.crops import face_crops

    sets: dict[str, tuple[str, np.ndarray]] = {"lfw_heldout": ("no_mask", heldout_lfw_crops(size))}
    boxes = jittered_boxes(ASTRONAUT_FACE_BOX, n_jitter, seed=seed)
    for label, frame in astronaut_variants().items():
        sets[f"astronaut_{label}"] = (label, face_crops(frame, boxes, size, margin))
    out: dict[str, dict] = {}
    for name, (label, crops) in sets.items():
        if label not in class_names:
            continue
        pred = np.asarray(classify(crops)).astype(int)
        counts = np.bincount(pred, minlength=len(class_names))
        out[name] = {
            "expected": label,
            "n": int(len(pred)),
            "rate": float(np.mean(pred == class_names.index(label))),
            "counts": {c: int(k) for c, k in zip(class_names, counts)},
        }
    return out


__all__ = ["ASTRONAUT_FACE_BOX", "astronaut_variants", "heldout_lfw_crops", "jittered_boxes", "real_face_check"]

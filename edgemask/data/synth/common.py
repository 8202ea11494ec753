"""Constants, palettes and small colour/number helpers shared by every part of the generator."""

from __future__ import annotations

import colorsys
import functools
from typing import Any

import numpy as np

FORMAT = "edgemask-synth"
FORMAT_VERSION = 1
GENERATOR = "edgemask.data.synth v1"

_KIND_CROP = 0
_KIND_SCENE = 1

# Fraction of crops (and of scene faces) built on a real LFW face.
_P_LFW_CROP = 0.4
_P_LFW_SCENE = 0.35
#: LFW faces 0..LFW_TRAIN_FACES-1 are drawn; the rest are held out for evaluation.
LFW_TRAIN_FACES = 80
_P_NOSE_OUT = 0.55  # share of mask_incorrect that is "nose out" (rest: on the chin)

_PNG_LEVEL = 1
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as round(x * 16)
_SUB = float(1 << _SHIFT)

# Where an unrotated head of unit scale sits in a crop (fractions of the side):
# face centre x 0.5, y 0.47, half-width 0.33. Gives eyes ~0.40, nose ~0.59,
# mouth ~0.71, chin ~0.87 -- close to detector-style crops and to LFW framing.
_CROP_CX, _CROP_CY, _CROP_U = 0.5, 0.47, 0.33

# LFW subset faces (25x25), measured on the mean face and per face (see
# _lfw_faces): eyes at ~33.5% of the height (std 3%), nostrils ~58% (std 4%),
# mouth ~72% (std 5%); face centre line at ~44% of the width, eyes 16% either
# side, cheeks at ~10% and ~80%. This fixes one frame for all of them; each
# face's own nose and mouth rows then set where its mask goes.
_LFW_EYE_Y, _LFW_MOUTH_Y, _LFW_CX = 0.335, 0.72, 0.44
_LFW_UNIT = (_LFW_MOUTH_Y - _LFW_EYE_Y) / 0.92  # LFW fraction per canonical unit


_SKIN_ANCHORS = np.array(
    [
        (255, 228, 208),
        (246, 210, 184),
        (236, 192, 160),
        (222, 172, 132),
        (200, 144, 104),
        (174, 116, 78),
        (146, 90, 58),
        (116, 70, 45),
        (88, 54, 36),
        (64, 41, 29),
    ],
    dtype=np.float64,
)
_HAIR_COLORS = [  # (rgb, weight)
    ((24, 20, 18), 0.30),
    ((52, 36, 26), 0.20),
    ((96, 66, 42), 0.13),
    ((128, 62, 34), 0.06),
    ((196, 164, 108), 0.08),
    ((226, 204, 150), 0.04),
    ((138, 136, 132), 0.08),
    ((220, 218, 212), 0.05),
    (None, 0.06),  # dyed: random hue
]
_IRIS_COLORS = [(58, 36, 22), (92, 58, 32), (120, 96, 50), (70, 110, 70), (70, 110, 160), (110, 120, 128)]
# Mask colours, shared by `mask` and `mask_incorrect` (never a class cue).
_MASK_COLORS = [
    ((150, 200, 232), 0.22),
    ((236, 238, 240), 0.14),
    ((34, 34, 38), 0.14),
    ((128, 132, 140), 0.06),
    ((36, 48, 96), 0.06),
    ((240, 172, 192), 0.05),
    ((168, 222, 196), 0.05),
    ((186, 40, 46), 0.04),
    ((214, 196, 170), 0.04),
    (None, 0.20),  # random colour
]
_MASK_STYLES = (("surgical", 0.35), ("cloth", 0.28), ("patterned", 0.20), ("n95", 0.17))
_HAIR_STYLES = (("none", 0.10), ("short", 0.33), ("fringe", 0.10), ("long", 0.25), ("curly", 0.13), ("bun", 0.09))


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _choice(rng: np.random.Generator, items: list | tuple) -> Any:
    """Pick one of ``(value, weight)`` pairs (plain Python: rng.choice(p=...) costs ~50 us)."""
    r = rng.random() * sum(w for _, w in items)
    for value, w in items:
        r -= w
        if r < 0:
            return value
    return items[-1][0]


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64) * 255.0


def _rand_color(rng: np.random.Generator, s=(0.05, 0.65), v=(0.2, 0.95)) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(*s), rng.uniform(*v))


def _col(c: np.ndarray | tuple, k: float = 1.0) -> tuple[float, float, float]:
    """A cv2 colour tuple, scaled by ``k`` and clipped to 0..255."""
    r, g, b = c
    return (min(255.0, max(0.0, float(r) * k)), min(255.0, max(0.0, float(g) * k)), min(255.0, max(0.0, float(b) * k)))


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) * (1 - t) + np.asarray(b, dtype=np.float64) * t


def _rgb(v: np.ndarray) -> np.ndarray:
    """(h, w) float32 -> (h, w, 3), the value in every channel.

    Trap: numpy broadcasting against a trailing axis of 3 (``v[..., None] * c``)
    runs ~10x slower than same-shape arithmetic, so planes are expanded once
    with cv2 and per-channel constants go through cv2.multiply/cv2.add.
    """
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(v, dtype=np.float32), cv2.COLOR_GRAY2RGB)


def _scalar(c) -> tuple[float, float, float, float]:
    """A per-channel constant as a cv2 Scalar."""
    return (float(c[0]), float(c[1]), float(c[2]), 0.0)


def _colorize(v: np.ndarray, c0, c1) -> np.ndarray:
    """c0 + (c1 - c0) * v per channel: (h, w) float32 -> (h, w, 3) float32."""
    import cv2

    return cv2.merge([v * np.float32(b - a) + np.float32(a) for a, b in zip(c0, c1)])


@functools.lru_cache(maxsize=None)  # functools.cache is 3.9+
def _lin(a: float, b: float, n: int) -> np.ndarray:
    """A cached, read-only ``np.linspace(a, b, n)`` (the same few are needed for every face)."""
    out = np.linspace(a, b, n)
    out.flags.writeable = False
    return out


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)

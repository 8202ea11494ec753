"""Synthetic face-mask data: labelled face crops and VOC-annotated scenes.

Everything is drawn offline from a seed, so a dataset can be rebuilt
byte-for-byte anywhere (same OpenCV build) and tests need no downloads.

How a face is made
------------------
A head is described in a *canonical frame*: origin at the face centre, x to
the right, y down, unit = the face's half-width at the cheekbones. Eyes sit
near y = -0.2, the nose tip near 0.36, the mouth near 0.72, the chin near 1.2.
One affine map (:class:`_Frame`: scale, rotation, translation) takes canonical
points to pixels, and every shape (face, hair, eyes, nose, mouth, mask, glasses)
is built from canonical points and drawn with antialiased OpenCV primitives.
Because the mask polygon and the landmarks come out of the same map, the
attributes returned with each crop say exactly where the mask was drawn and
where the nose and mouth are, which the tests use to check the labels.

Heads are painted onto an empty layer with its own coverage (alpha) channel,
then composited over a procedural background texture; for scenes the same layer
is pasted into a larger frame. Everything is drawn at 2-3x the output size and
shrunk with ``INTER_AREA`` (cheap supersampling), then lighting, blur, sensor
noise and JPEG artefacts are applied.

About 40% of the crops use real faces from ``skimage.data.lfw_subset()``
(25x25 grayscale), upscaled and tinted to a skin tone, with the same drawn
masks; ``no_mask`` ones stay plain, so a real bare face means ``no_mask``.
Only the first :data:`LFW_TRAIN_FACES` of the 100 are ever drawn: the rest are
kept out of every generated set so that :mod:`edgemask.data.realfaces` can
test a trained model on real faces it has never seen.

The class cue is physical only: is there a mask, is the nose out, is the mouth
out. Skin tone, mask colour and style, hair, glasses, background and lighting
are drawn from the same distributions for every class (mask colour/style for
the two masked classes alike).

Determinism: item ``i`` of kind ``k`` uses ``np.random.default_rng([seed, k, i])``
and nothing else, so items do not depend on one another (order-free, easy to
parallelise later).
"""

from __future__ import annotations

import colorsys
import contextlib
import functools
import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.data.labels import CLASS_NAMES, VOC_LABEL_OF_CLASS
from edgemask.errors import DataError
from edgemask.utils.io import atomic_dir

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
_LFW_CACHE: tuple[np.ndarray, np.ndarray] | None = None

_SKIN_ANCHORS = np.array(
    [
        (255, 228, 208), (246, 210, 184), (236, 192, 160), (222, 172, 132), (200, 144, 104),
        (174, 116, 78), (146, 90, 58), (116, 70, 45), (88, 54, 36), (64, 41, 29),
    ],
    dtype=np.float64,
)
_HAIR_COLORS = [  # (rgb, weight)
    ((24, 20, 18), 0.30), ((52, 36, 26), 0.20), ((96, 66, 42), 0.13), ((128, 62, 34), 0.06),
    ((196, 164, 108), 0.08), ((226, 204, 150), 0.04), ((138, 136, 132), 0.08), ((220, 218, 212), 0.05),
    (None, 0.06),  # dyed: random hue
]
_IRIS_COLORS = [(58, 36, 22), (92, 58, 32), (120, 96, 50), (70, 110, 70), (70, 110, 160), (110, 120, 128)]
# Mask colours, shared by `mask` and `mask_incorrect` (never a class cue).
_MASK_COLORS = [
    ((150, 200, 232), 0.22), ((236, 238, 240), 0.14), ((34, 34, 38), 0.14), ((128, 132, 140), 0.06),
    ((36, 48, 96), 0.06), ((240, 172, 192), 0.05), ((168, 222, 196), 0.05), ((186, 40, 46), 0.04),
    ((214, 196, 170), 0.04), (None, 0.20),  # random colour
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


def _lfw_faces() -> tuple[np.ndarray, np.ndarray]:
    """The 100 real faces of ``skimage.data.lfw_subset()`` and their landmark rows.

    Returns:
        (faces (100, 25, 25) float32 in [0, 1], rows (100, 3) float: eye, nostril
        and mouth height as fractions of the image height). The rows are found
        per face as the darkest row of the central columns inside a band around
        the mean position (checked by eye on all 100 faces), so a mask can be
        put above or below each face's own nose and mouth.
    """
    global _LFW_CACHE
    if _LFW_CACHE is None:
        import cv2
        from skimage import data as skdata  # heavy; only when a real face is needed

        faces = np.ascontiguousarray(skdata.lfw_subset()[:100], dtype=np.float32)
        rows = np.zeros((len(faces), 3))
        for i, f in enumerate(faces):
            big = cv2.resize(f, (100, 100), interpolation=cv2.INTER_CUBIC)  # row r <-> fraction (r + 0.5) / 100
            centre = big[:, 35:55].mean(1)
            eye = np.argmin(big[25:45, 15:75].mean(1)) + 25
            nostril = np.argmin(centre[48:64]) + 48
            mouth = np.argmin(centre[62:88]) + 62
            # clamp to plausible rows, so a dark beard or collar cannot drag a landmark away
            eye = min(max(eye, 28), 40)
            nostril = min(max(nostril, 50), 63)
            mouth = min(max(mouth, nostril + 9, 64), 79)
            rows[i] = (np.array([eye, nostril, mouth]) + 0.5) / 100.0
        _LFW_CACHE = (faces, rows)
    return _LFW_CACHE


def _lfw_face(rows: np.ndarray) -> _Face:
    """Face geometry of one LFW face, in the canonical frame shared by all of them."""
    eye, nostril, mouth = ((np.asarray(rows) - _LFW_EYE_Y) / _LFW_UNIT) + _LFW_FACE.eye_y
    return _Face(top_h=_LFW_FACE.top_h, bottom_h=_LFW_FACE.bottom_h, face_w=_LFW_FACE.face_w, e_top=_LFW_FACE.e_top,
                 e_jaw=_LFW_FACE.e_jaw, taper=_LFW_FACE.taper, eye_y=float(eye), eye_dx=_LFW_FACE.eye_dx,
                 nose_y=float(nostril) - 0.065, mouth_y=float(mouth))


# ----------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------
@dataclass
class _Frame:
    """Canonical face coordinates -> pixels: p = (cx, cy) + u * R(rot) @ q."""

    cx: float
    cy: float
    u: float  # pixels per canonical unit
    rot_deg: float

    def __post_init__(self) -> None:
        t = math.radians(self.rot_deg)
        self._c, self._s = math.cos(t), math.sin(t)
        self._m = np.array([[self._c, self._s], [-self._s, self._c]]) * self.u  # q @ _m == (u * R @ q.T).T

    def pts(self, q) -> np.ndarray:
        """(N, 2) canonical points -> (N, 2) pixels."""
        return np.asarray(q, dtype=np.float64).reshape(-1, 2) @ self._m + (self.cx, self.cy)

    def pt(self, x: float, y: float) -> tuple[float, float]:
        """One point, without numpy's per-call overhead (ellipse centres are most calls)."""
        u = self.u
        return (self.cx + u * (self._c * x - self._s * y), self.cy + u * (self._s * x + self._c * y))

    def matrix(self) -> np.ndarray:
        """2x3 affine matrix of the map (for cv2.warpAffine)."""
        return np.array([[self._c * self.u, -self._s * self.u, self.cx], [self._s * self.u, self._c * self.u, self.cy]])


class _Painter:
    """RGB layer (premultiplied: drawn on black) plus coverage, in one frame.

    ``opaque=True`` shapes also go into the alpha channel; details inside an
    opaque shape (eyes, pleats) need not, which halves the drawing calls.
    """

    def __init__(self, h: int, w: int, frame: _Frame):
        self.rgb = np.zeros((h, w, 3), np.uint8)
        self.alpha = np.zeros((h, w), np.uint8)
        self.f = frame

    def _ip(self, q) -> np.ndarray:
        """Canonical points -> int32 pixel coordinates in 1/16 px (cv2's ``shift``)."""
        if type(q) is list and len(q) <= 8:
            # short literal point lists: plain Python beats numpy's per-call overhead 3x
            f = self.f
            a, b, c, d = f._c * f.u * _SUB, f._s * f.u * _SUB, f.cx * _SUB, f.cy * _SUB
            return np.array([(round(c + a * x - b * y), round(d + b * x + a * y)) for x, y in q], np.int32)
        return np.round(self.f.pts(q) * _SUB).astype(np.int32)

    def _px(self, k: float) -> int:
        return max(1, round(k * self.f.u))

    def poly(self, q, color, opaque: bool = False) -> None:
        import cv2

        p = [self._ip(q)]
        cv2.fillPoly(self.rgb, p, color, cv2.LINE_AA, _SHIFT)
        if opaque:
            cv2.fillPoly(self.alpha, p, 255, cv2.LINE_AA, _SHIFT)

    def line(self, q, color, width: float, closed: bool = False, opaque: bool = False) -> None:
        self._lines([self._ip(q)], color, width, closed, opaque)

    def lines(self, qs: np.ndarray, color, width: float, closed: bool = False, opaque: bool = False) -> None:
        """Many polylines of one colour and width in one cv2 call; ``qs`` is (K, M, 2)."""
        qs = np.asarray(qs, dtype=np.float64)
        k, m = qs.shape[:2]
        p = list(np.round(self.f.pts(qs.reshape(-1, 2)) * _SUB).astype(np.int32).reshape(k, m, 2))
        self._lines(p, color, width, closed, opaque)

    def polys(self, qs: np.ndarray, color) -> None:
        """Many filled polygons of one colour in one cv2 call; ``qs`` is (K, M, 2)."""
        import cv2

        qs = np.asarray(qs, dtype=np.float64)
        k, m = qs.shape[:2]
        p = list(np.round(self.f.pts(qs.reshape(-1, 2)) * _SUB).astype(np.int32).reshape(k, m, 2))
        cv2.fillPoly(self.rgb, p, color, cv2.LINE_AA, _SHIFT)

    def _lines(self, p: list, color, width: float, closed: bool, opaque: bool) -> None:
        import cv2

        t = self._px(width)
        cv2.polylines(self.rgb, p, closed, color, t, cv2.LINE_AA, _SHIFT)
        if opaque:
            cv2.polylines(self.alpha, p, closed, 255, t, cv2.LINE_AA, _SHIFT)

    def ellipse(self, c, ax: float, ay: float, color, angle: float = 0.0, start: float = 0.0, end: float = 360.0,
                width: float | None = None, opaque: bool = False) -> None:
        import cv2

        x, y = self.f.pt(c[0], c[1])
        cc = (round(x * _SUB), round(y * _SUB))
        axes = (max(1, round(ax * self.f.u * _SUB)), max(1, round(ay * self.f.u * _SUB)))
        t = -1 if width is None else self._px(width)
        a = angle + self.f.rot_deg
        cv2.ellipse(self.rgb, cc, axes, a, start, end, color, t, cv2.LINE_AA, _SHIFT)
        if opaque:
            cv2.ellipse(self.alpha, cc, axes, a, start, end, 255, t, cv2.LINE_AA, _SHIFT)


@dataclass
class _Face:
    """Face shape in canonical units (see module docstring)."""

    top_h: float = 1.3  # forehead top above the centre
    bottom_h: float = 1.2  # chin below the centre
    face_w: float = 1.0  # half-width at the cheekbones
    e_top: float = 2.2  # superellipse exponents: 2 = ellipse, larger = squarer
    e_jaw: float = 2.2
    taper: float = 0.15  # how much the jaw narrows towards the chin
    eye_y: float = -0.2
    eye_dx: float = 0.38
    nose_y: float = 0.36
    mouth_y: float = 0.72
    feat_dx: float = 0.0  # small sideways shift of the features (a hint of yaw)
    _outlines: dict = field(default_factory=dict, repr=False, compare=False)

    def hw(self, y: float) -> float:
        """Half-width of the face outline at height y (0 above/below the face)."""
        if y < 0:
            t = min(-y / self.top_h, 1.0)
            return self.face_w * (1.0 - t ** self.e_top) ** (1.0 / self.e_top)
        t = min(y / self.bottom_h, 1.0)
        return self.face_w * (1.0 - t ** self.e_jaw) ** (1.0 / self.e_jaw) * (1.0 - self.taper * t * t)

    def hw_many(self, ys: np.ndarray) -> np.ndarray:
        """:meth:`hw` for an array of heights."""
        ys = np.asarray(ys, dtype=np.float64)
        up = np.clip(-ys / self.top_h, 0.0, 1.0)
        dn = np.clip(ys / self.bottom_h, 0.0, 1.0)
        top = (1.0 - up ** self.e_top) ** (1.0 / self.e_top)
        bot = (1.0 - dn ** self.e_jaw) ** (1.0 / self.e_jaw) * (1.0 - self.taper * dn * dn)
        return self.face_w * np.where(ys < 0, top, bot)

    def outline(self, n: int = 20) -> np.ndarray:
        """Closed outline, (4n, 2), clockwise from the forehead top (cached: faces are not changed once drawn)."""
        if n not in self._outlines:
            th = np.sin(_lin(-math.pi / 2, math.pi / 2, 2 * n))  # denser near top and chin
            ys = np.where(th < 0, th * self.top_h, th * self.bottom_h)
            xs = self.hw_many(ys)
            right = np.stack([xs, ys], 1)
            left = np.stack([-xs[::-1], ys[::-1]], 1)
            self._outlines[n] = np.concatenate([right, left])
        return self._outlines[n]

    @property
    def nose(self) -> tuple[float, float]:
        return (1.6 * self.feat_dx, self.nose_y)

    @property
    def mouth(self) -> tuple[float, float]:
        return (self.feat_dx, self.mouth_y)

    def landmarks(self) -> dict[str, tuple[float, float]]:
        return {
            "eye_l": (-self.eye_dx + self.feat_dx, self.eye_y),
            "eye_r": (self.eye_dx + self.feat_dx, self.eye_y),
            "nose_tip": self.nose,
            "mouth": self.mouth,
            "chin": (0.0, self.bottom_h),
        }


def _sample_face(rng: np.random.Generator) -> _Face:
    f = _Face(
        top_h=rng.uniform(1.2, 1.42),
        bottom_h=rng.uniform(1.12, 1.3),
        face_w=rng.uniform(0.88, 1.04),
        e_top=rng.uniform(2.0, 2.6),
        e_jaw=rng.uniform(1.8, 2.9),
        taper=rng.uniform(0.0, 0.3),
        eye_y=rng.uniform(-0.25, -0.16),
        nose_y=rng.uniform(0.33, 0.40),
        mouth_y=rng.uniform(0.68, 0.77),
        feat_dx=rng.uniform(-0.07, 0.07),
    )
    f.eye_dx = rng.uniform(0.34, 0.42) * f.face_w
    return f


# No sampled face reaches outside this one (scene placement uses it).
_LARGEST_FACE = _Face(top_h=1.42, bottom_h=1.3, face_w=1.04, e_top=2.6, e_jaw=2.9, taper=0.0)
# The LFW faces are all roughly the same shape; this fits their mean face.
_LFW_FACE = _Face(top_h=1.3, bottom_h=1.2, face_w=0.86, e_top=2.2, e_jaw=2.2, taper=0.12,
                  eye_y=-0.2, eye_dx=0.39, nose_y=0.37, mouth_y=0.72)


# ----------------------------------------------------------------------------
# backgrounds and lighting
# ----------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float32 noise, smooth at ``cells`` cells across the longer side."""
    import cv2

    ch = max(2, round(cells * h / max(h, w))) + 1
    cw = max(2, round(cells * w / max(h, w))) + 1
    small = rng.random((ch, cw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Sum of smooth noise at several scales (amplitude ~ cells**-beta), normalised to [0, 1].

    The octaves are summed at a quarter of the size and upscaled once: the
    finest octave has 32 cells, so nothing is lost, and each tiny cubic resize
    costs a fraction of a full-size one.
    """
    import cv2

    sh, sw = max(8, h // 4), max(8, w // 4)
    acc = np.zeros((sh, sw), np.float32)
    for cells in (2, 4, 8, 16, 32):
        if cells > max(sh, sw):
            break
        acc += _smooth_noise(rng, sh, sw, cells) * float(cells ** -beta)
    lo, hi, _, _ = cv2.minMaxLoc(acc)
    acc = (acc - lo) * (1.0 / max(hi - lo, 1e-6))
    return cv2.resize(acc, (w, h), interpolation=cv2.INTER_CUBIC)


def _texture(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """A natural-looking procedural background, (h, w, 3) float32 RGB 0..255."""
    import cv2

    kind = _choice(rng, (("noise", 0.3), ("stripes", 0.15), ("gradient", 0.15), ("tiles", 0.12), ("blobs", 0.28)))
    c0, c1 = _rand_color(rng), _rand_color(rng)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * (w / h)
    if kind == "noise":
        v = _fractal(rng, h, w, rng.uniform(0.3, 1.5))
        if rng.random() < 0.4:  # mottled: sharpen the mid-tones
            v = np.clip((v - 0.5) * 2.5 + 0.5, 0, 1)
    elif kind == "stripes":
        th = rng.uniform(0, math.pi)
        freq = rng.uniform(3, max(4.0, min(18.0, h / 6)))  # stay well under Nyquist
        d = xx * math.cos(th) + yy * math.sin(th)
        v = 0.5 + 0.5 * np.sin(2 * math.pi * freq * d + rng.uniform(0, 6.3))
        v = np.clip((v - 0.5) * rng.uniform(1, 4) + 0.5, 0, 1)
        v = 0.8 * v + 0.2 * _fractal(rng, h, w, 1.0)
    elif kind == "gradient":
        th = rng.uniform(0, 2 * math.pi)
        v = xx * math.cos(th) + yy * math.sin(th)
        v = (v - v.min()) / max(float(v.max() - v.min()), 1e-6)
        v = 0.85 * v + 0.15 * _fractal(rng, h, w, 1.2)
    elif kind == "tiles":
        n = int(rng.integers(2, 8))
        cells = rng.uniform(0.6, 1.0, size=(n, max(1, round(n * w / h)))).astype(np.float32)
        v = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)
        step_y, step_x = h / cells.shape[0], w / cells.shape[1]
        grout = max(1, round(min(step_x, step_y) * rng.uniform(0.02, 0.08)))
        for k in range(1, cells.shape[0]):
            cv2.line(v, (0, int(k * step_y)), (w, int(k * step_y)), 0.0, grout)
        for k in range(1, cells.shape[1]):
            cv2.line(v, (int(k * step_x), 0), (int(k * step_x), h), 0.0, grout)
        v = 0.85 * v + 0.15 * _fractal(rng, h, w, 1.0)
    else:  # "blobs": an out-of-focus room -- soft shapes of several colours
        small_h, small_w = max(8, h // 4), max(8, w // 4)
        img = np.empty((small_h, small_w, 3), np.float32)
        img[:] = c0
        for _ in range(int(rng.integers(4, 14))):
            col = _col(_rand_color(rng))
            cx, cy = int(rng.integers(0, small_w)), int(rng.integers(0, small_h))
            if rng.random() < 0.5:
                r = int(rng.integers(2, max(3, small_w // 5)))
                cv2.circle(img, (cx, cy), r, col, -1, cv2.LINE_AA)
            else:
                dx, dy = int(rng.integers(2, max(3, small_w // 4))), int(rng.integers(2, max(3, small_h // 3)))
                cv2.rectangle(img, (cx - dx, cy - dy), (cx + dx, cy + dy), col, -1)
        # out of focus: blur in proportion to the image, so crops and scenes look alike
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 2.0) * small_w / 32)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
        grain = (_smooth_noise(rng, h, w, 48) - 0.5) * rng.uniform(0, 20)
        img += _rgb(grain)
        return np.clip(img, 0, 255), kind
    return _colorize(v, c0, c1), kind


def _light(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> tuple[np.ndarray, dict]:
    """Brightness, contrast, colour cast and a directional gradient on float32 RGB.

    Returns:
        (lit image, settings). ``img`` itself may be changed too.
    """
    import cv2

    h, w = img.shape[:2]
    bright = rng.uniform(1 - 0.35 * strength, 1 + 0.25 * strength)
    contrast = rng.uniform(1 - 0.3 * strength, 1 + 0.15 * strength)
    cast = 1.0 + rng.normal(0.0, 0.06 * strength, 3)
    grad = rng.uniform(0.0, 0.6 * strength)
    th = rng.uniform(0, 2 * math.pi)
    mean = np.array(cv2.mean(img)[:3], np.float32)  # cv2.mean: ~20x faster than ndarray.mean(axis=0) here
    # contrast about the mean, then gain(y, x, c) = bright * cast[c] * (1 + grad * ramp(y, x))
    img *= contrast
    img = cv2.add(img, _scalar(mean * (1.0 - contrast)))
    gy = np.linspace(-0.5 * grad, 0.5 * grad, h, dtype=np.float32)[:, None] * math.sin(th)
    gx = np.linspace(-0.5 * grad, 0.5 * grad, w, dtype=np.float32)[None, :] * math.cos(th)
    img *= _rgb(1.0 + gx + gy)
    img = cv2.multiply(img, _scalar(cast * bright))
    settings = {"brightness": _r(bright), "contrast": _r(contrast), "gradient": _r(grad), "cast": [_r(c) for c in cast]}
    return img, settings


def _degrade(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0, blur_scale: float = 1.0
             ) -> tuple[np.ndarray, dict]:
    """Blur, sensor noise and JPEG round trip: float32 RGB in, uint8 RGB out.

    ``blur_scale`` multiplies the blur sigma (0.3..1.3 px): crops pass size/64
    so a 32 px crop is not smeared twice as much, relative to the face, as a 64 px one.
    """
    import cv2

    blur = float(rng.uniform(0.3, 1.3) * blur_scale) if rng.random() < 0.4 * strength else 0.0
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    noise = float(rng.uniform(0.0, 7.0 * strength))
    if noise > 0.5:
        # uniform noise of the same standard deviation: 3x cheaper than Gaussian
        # and indistinguishable after JPEG / at these levels
        img = img + (rng.random(img.shape, dtype=np.float32) - 0.5) * np.float32(noise * math.sqrt(12.0))
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    q = int(rng.integers(30, 96)) if rng.random() < 0.5 * strength else 0
    if q:
        _, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out, {"blur_sigma": _r(blur), "noise_sigma": _r(noise), "jpeg_quality": q or None}


# ----------------------------------------------------------------------------
# head parts
# ----------------------------------------------------------------------------
def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, len(_SKIN_ANCHORS) - 1)
    i = min(int(t), len(_SKIN_ANCHORS) - 2)
    c = _mix(_SKIN_ANCHORS[i], _SKIN_ANCHORS[i + 1], t - i)
    return np.clip(c + rng.normal(0, 5, 3) + np.array([1, 0, -1]) * rng.normal(0, 5), 0, 255)


def _hair_color(rng: np.random.Generator) -> np.ndarray:
    c = _choice(rng, _HAIR_COLORS)
    if c is None:
        return _rand_color(rng, s=(0.4, 0.8), v=(0.3, 0.8))
    return np.clip(np.asarray(c, np.float64) * rng.uniform(0.85, 1.15), 0, 255)


def _hair_cap(face: _Face, hairline: float, puff: float) -> np.ndarray:
    """Hair covering the top of the head: outer arc over the crown, then the hairline."""
    n = 14
    th = _lin(math.pi, 2 * math.pi, n)  # left temple -> over the top -> right temple
    ys = np.sin(th) * (face.top_h + puff)
    side_y = -0.3
    xs = np.cos(th) * (face.face_w + puff * 0.8)
    outer = np.stack([xs, np.minimum(ys, side_y)], 1)
    # hairline from the right temple back to the left, dipping to `hairline` in the middle
    hx = _lin(1, -1, 9)
    hy = side_y + (hairline - side_y) * (1 - hx ** 2) ** 0.6
    inner = np.stack([hx * face.hw(side_y) * 0.98, hy], 1)
    return np.concatenate([outer, inner])


def _draw_hair_back(p: _Painter, face: _Face, rng: np.random.Generator, style: str, col) -> None:
    if style == "long":
        w = face.face_w * rng.uniform(1.15, 1.35)
        end = rng.uniform(1.2, 2.2)
        th = _lin(math.pi, 2 * math.pi, 12)
        top = np.stack([np.cos(th) * w, np.sin(th) * (face.top_h + 0.15)], 1)
        bottom = np.array([[w * 1.02, end], [w * 0.5, end + 0.1], [-w * 0.5, end + 0.1], [-w * 1.02, end]])
        p.poly(np.concatenate([top, bottom]), _col(col, 0.8), opaque=True)
    elif style == "curly":
        # a ring of curls a little outside the crown
        for a in _lin(math.pi * 0.9, math.pi * 2.1, 11):
            r = rng.uniform(0.22, 0.32)
            c = (math.cos(a) * (face.face_w + 0.1), math.sin(a) * (face.top_h * 0.92) - 0.05)
            p.ellipse(c, r, r, _col(col, rng.uniform(0.85, 1.05)), opaque=True)
    elif style == "bun":
        p.ellipse((0.0, -face.top_h - 0.15), 0.38, 0.3, _col(col, 0.9), opaque=True)


def _draw_hair_front(p: _Painter, face: _Face, rng: np.random.Generator, style: str, col) -> None:
    if style == "none":
        return
    if style == "fringe":
        hairline = face.eye_y - rng.uniform(0.25, 0.35)
    else:
        hairline = -face.top_h * rng.uniform(0.55, 0.78)
    puff = rng.uniform(0.04, 0.2) if style != "curly" else 0.12
    p.poly(_hair_cap(face, hairline, puff), _col(col), opaque=True)
    # a few strands for texture
    sc = _col(col, 0.75 if sum(col) > 180 else 1.6)
    x = rng.uniform(-0.6, 0.6, 4)
    strands = np.stack([np.stack([x, np.full(4, -face.top_h * 0.95)], 1),
                        np.stack([x + rng.uniform(-0.25, 0.25, 4), np.full(4, hairline + 0.05)], 1)], 1)
    p.lines(strands, sc, 0.025)


def _draw_eyes(p: _Painter, face: _Face, rng: np.random.Generator, skin, hair) -> None:
    ew, eh = rng.uniform(0.12, 0.17), rng.uniform(0.05, 0.075)
    iris = _col(_IRIS_COLORS[int(rng.integers(len(_IRIS_COLORS)))])
    lid = _col(skin, 0.35)
    closed = rng.random() < 0.05
    brow_up = rng.uniform(0.14, 0.22)
    brow_t = rng.uniform(0.035, 0.07)
    brow_c = _col(hair, 0.8) if np.mean(hair) < 150 else _col(skin, 0.6)
    gaze = rng.uniform(-0.3, 0.3) * ew
    for side in (-1, 1):
        cx, cy = face.feat_dx + side * face.eye_dx, face.eye_y
        p.ellipse((cx, cy + 0.03), ew * 1.1, eh * 1.3, _col(skin, 0.88))  # socket shadow
        if closed:
            p.ellipse((cx, cy), ew, eh * 0.6, lid, start=0, end=180, width=0.03)
        else:
            p.ellipse((cx, cy), ew, eh, (232, 230, 226))
            r = eh * 0.95
            p.ellipse((cx + gaze, cy), r, r, iris)
            p.ellipse((cx + gaze, cy), r * 0.45, r * 0.45, (12, 10, 10))
            p.ellipse((cx, cy), ew, eh, lid, start=180, end=360, width=0.035)
        by = cy - brow_up
        bx = np.array([-1.1, -0.4, 0.4, 1.15]) * ew
        bys = by - np.array([0.0, 0.04, 0.045, 0.01]) * rng.uniform(0.5, 1.5)
        p.line(np.stack([cx + side * bx, bys], 1), brow_c, brow_t)


def _draw_nose(p: _Painter, face: _Face, rng: np.random.Generator, skin) -> None:
    # Drawn bold on purpose: "is the nose visible?" is the cue for mask_incorrect,
    # so at 64 px the nostrils and the nose's shadow must survive blur and JPEG.
    nx, ny = face.nose
    nw = rng.uniform(0.16, 0.23)  # half-width of the nose wings
    side = 1 if rng.random() < 0.5 else -1  # the side away from the light
    top = face.eye_y + 0.08
    p.poly([(nx + side * 0.03, top), (nx + side * 0.09, top + 0.05), (nx + side * nw * 1.05, ny - 0.02),
            (nx + side * nw * 0.7, ny + 0.07), (nx, ny + 0.04)], _col(skin, 0.86))
    for s in (-1, 1):
        c = (nx + s * nw * 0.72, ny + 0.02)
        p.ellipse(c, nw * 0.38, 0.075, _col(skin, 0.9))
        a0, a1 = (90, 290) if s < 0 else (-110, 90)  # the outer crease of each wing
        p.ellipse(c, nw * 0.38, 0.075, _col(skin, 0.62), start=a0, end=a1, width=0.03)
    p.ellipse((nx, ny), nw * 0.55, 0.085, _col(skin, 1.06))  # the tip catches the light
    for s in (-1, 1):
        p.ellipse((nx + s * nw * 0.42, ny + 0.065), 0.06, 0.032, _col(skin, 0.3), angle=s * 15)
    p.ellipse((nx, ny + 0.1), nw * 0.45, 0.03, _col(skin, 0.78), start=0, end=180, width=0.025)


def _draw_mouth(p: _Painter, face: _Face, rng: np.random.Generator, skin) -> str:
    mx, my = face.mouth
    mw = rng.uniform(0.24, 0.34)
    lip = _mix(skin, (160, 50, 60), rng.uniform(0.25, 0.55)) * rng.uniform(0.7, 0.9)
    kind = _choice(rng, (("neutral", 0.55), ("smile", 0.3), ("open", 0.15)))
    curve = {"neutral": rng.uniform(-0.01, 0.02), "smile": rng.uniform(0.04, 0.08), "open": 0.02}[kind]
    xs = _lin(-1, 1, 9)
    mid = np.stack([mx + xs * mw, my + curve * (1 - xs ** 2) - curve], 1)  # corners up when smiling
    upper_t = rng.uniform(0.05, 0.08)
    lower_t = rng.uniform(0.06, 0.1)
    if kind == "open":
        gap = rng.uniform(0.04, 0.07)
        p.ellipse((mx, my + gap * 0.4), mw * 0.85, gap, (50, 20, 24))
        p.ellipse((mx, my - 0.005), mw * 0.6, gap * 0.35, (236, 232, 222), start=180, end=360)
        lower_mid = mid + [0, gap]
    else:
        lower_mid = mid
    upper = np.concatenate([mid, np.stack([mid[:, 0], mid[:, 1] - upper_t * (1 - xs ** 2) ** 0.5], 1)[::-1]])
    lower = np.concatenate([lower_mid, np.stack([lower_mid[:, 0], lower_mid[:, 1] + lower_t * (1 - xs ** 2) ** 0.5], 1)[::-1]])
    p.poly(upper, _col(lip, 0.92))
    p.poly(lower, _col(lip, 1.05))
    p.line(mid, _col(lip, 0.35), 0.03)
    return kind


def _draw_beard(p: _Painter, face: _Face, rng: np.random.Generator, col, skin, kind: str) -> None:
    """Facial hair along the jaw and chin; cheeks and mouth stay bare so it never reads as a mask."""
    mx, my = face.mouth
    c = _col(_mix(skin, col, rng.uniform(0.6, 0.9)))
    if kind == "beard":
        ys = np.linspace(-0.05, face.bottom_h, 10)
        outer = np.stack([[face.hw(y) * 1.02 for y in ys], ys], 1)
        outer = np.concatenate([outer, [[0.0, face.bottom_h + 0.07]]])
        inner = np.array([[face.hw(-0.05) * 0.8, -0.05], [0.62, 0.42], [0.4, my + 0.02],
                          [0.22, my + 0.14], [0.0, my + 0.17]])
        right = np.concatenate([outer, inner[::-1]])  # down the jaw, back up around the mouth
        p.poly(np.concatenate([right, right[::-1] * [-1, 1]]), c, opaque=True)
    elif kind == "goatee":
        xs = _lin(-1, 1, 9)
        top = np.stack([mx + xs * 0.22, my + 0.14 + 0.02 * (1 - xs ** 2)], 1)
        bot = np.stack([mx + xs[::-1] * 0.26, face.bottom_h + 0.04 - 0.12 * xs ** 2], 1)
        p.poly(np.concatenate([top, bot]), c, opaque=True)
    if kind == "moustache":  # drawn after the mouth (a full beard calls this too)
        xs = _lin(-1, 1, 7)
        up = np.stack([mx + xs * 0.3, my - 0.1 - 0.04 * (1 - xs ** 2)], 1)
        dn = np.stack([mx + xs * 0.3, my - 0.045 + 0.03 * np.abs(xs)], 1)[::-1]
        p.poly(np.concatenate([up, dn]), _col(col, 0.85))


def _draw_glasses(p: _Painter, face: _Face, rng: np.random.Generator) -> str:
    kind = "sunglasses" if rng.random() < 0.25 else "clear"
    frame = _col(_rand_color(rng, s=(0.0, 0.5), v=(0.05, 0.6)))
    rw, rh = rng.uniform(0.17, 0.22), rng.uniform(0.11, 0.15)
    t = rng.uniform(0.025, 0.045)
    for side in (-1, 1):
        c = (face.feat_dx + side * face.eye_dx, face.eye_y + 0.01)
        if kind == "sunglasses":
            p.ellipse(c, rw, rh, _col(_rand_color(rng, v=(0.05, 0.25))))
        p.ellipse(c, rw, rh, frame, width=t)
        p.line([(c[0] + side * rw, c[1] - 0.02), (side * face.face_w * 1.0, face.eye_y - 0.02)], frame, t * 0.8)
    mid = face.feat_dx
    p.line([(mid - face.eye_dx + rw, face.eye_y - 0.02), (mid, face.eye_y - 0.05), (mid + face.eye_dx - rw, face.eye_y - 0.02)],
           frame, t)
    return kind


def _draw_hat(p: _Painter, face: _Face, rng: np.random.Generator) -> None:
    col = _rand_color(rng, v=(0.15, 0.9))
    brim_y = -face.top_h * rng.uniform(0.55, 0.7)
    th = _lin(math.pi, 2 * math.pi, 12)
    crown = np.stack([np.cos(th) * face.face_w * 1.08, brim_y + np.sin(th) * (face.top_h * 0.75)], 1)
    p.poly(crown, _col(col), opaque=True)
    p.ellipse((0.0, brim_y + 0.02), face.face_w * 1.15, 0.1, _col(col, 0.8), opaque=True)


# ----------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------
@dataclass
class _MaskSpec:
    style: str
    color: np.ndarray
    color2: np.ndarray
    pattern: str | None
    kind: str  # "correct" | "nose_out" | "chin"


def _sample_mask(rng: np.random.Generator, kind: str) -> _MaskSpec:
    style = _choice(rng, _MASK_STYLES)
    c = _choice(rng, _MASK_COLORS)
    color = _rand_color(rng, s=(0.1, 0.9), v=(0.15, 0.95)) if c is None else np.clip(np.asarray(c, np.float64) + rng.normal(0, 8, 3), 0, 255)
    color2 = _rand_color(rng, s=(0.0, 0.9), v=(0.1, 1.0))
    pattern = _choice(rng, (("stripes", 1), ("dots", 1), ("checks", 1))) if style == "patterned" else None
    return _MaskSpec(style, color, color2, pattern, kind)


# Vertex indices in the mask polygon: 11 top-edge points (left to right), 5
# down the right side, 11 along the bottom arc, 5 up the left side.
_MASK_TOP_RIGHT = 10
_MASK_SIDE_BOTTOM_RIGHT = 15


def _mask_polygon(face: _Face, spec: _MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Canonical mask outline and its key measurements.

    The top edge's *highest* point is ``y_top``. The label rules live here:
    correct -> from just under the eyes (well above the nose tip) to under the
    chin; nose_out -> top edge between the nostrils and the upper lip;
    chin -> top edge below the lower lip, the mask hanging under the chin.
    """
    nose_y, mouth_y = face.nose_y, face.mouth_y
    if spec.kind == "correct":
        y_top = rng.uniform(face.eye_y + 0.13, face.eye_y + 0.27)
        y_top = min(y_top, nose_y - 0.2)  # whatever the eyes do, the whole nose is covered
        y_side = face.bottom_h * rng.uniform(0.62, 0.82)
        y_bot = face.bottom_h + rng.uniform(0.0, 0.12)
        w_min = 0.0
    elif spec.kind == "nose_out":
        # nostrils end at nose_y + ~0.1; the upper lip starts at mouth_y - <=0.08
        y_top = rng.uniform(nose_y + 0.13, max(nose_y + 0.14, mouth_y - 0.12))
        y_side = face.bottom_h * rng.uniform(0.8, 0.95)
        y_bot = face.bottom_h + rng.uniform(0.12, 0.3)
        w_min = 0.0
    else:  # chin: the lower lip ends by mouth_y + 0.17 (open mouth)
        y_top = rng.uniform(mouth_y + 0.21, mouth_y + 0.29)
        y_top = min(y_top, face.bottom_h - 0.08)
        y_side = y_top + rng.uniform(0.18, 0.3)
        y_bot = face.bottom_h + rng.uniform(0.3, 0.5)
        w_min = rng.uniform(0.5, 0.65) * face.face_w
    side_k = rng.uniform(1.0, 1.06)

    def xside(y: float) -> float:
        return max(face.hw(y) * side_k, w_min)

    if spec.style == "n95":
        drop = rng.uniform(0.12, 0.22)
        expo = 1.2
    else:
        drop = rng.uniform(0.0, 0.1)
        expo = 2.0
    xt = xside(y_top + drop)
    tx = _lin(-1, 1, 11)
    top = np.stack([tx * xt, y_top + drop * np.abs(tx) ** expo], 1)
    ys = np.linspace(y_top + drop, y_side, 6)[1:]
    right = np.stack([[xside(y) for y in ys], ys], 1)
    xb = right[-1, 0]
    th = _lin(0, math.pi, 13)[1:-1]
    bulge = 1.0 if spec.style != "n95" else 1.15
    bottom = np.stack([np.cos(th) * xb * (1 + (bulge - 1) * np.sin(th)), y_side + (y_bot - y_side) * np.sin(th)], 1)
    left = right[::-1] * [-1, 1]
    poly = np.concatenate([top, right, bottom, left])
    info = {"y_top": y_top, "y_bot": y_bot, "y_side": y_side, "drop": drop, "x_top": xt, "x_bot": xb, "xside": xside}
    return poly, info


def _draw_mask(p: _Painter, face: _Face, spec: _MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Draw the mask (with loops/straps); returns its canonical polygon."""
    poly, m = _mask_polygon(face, spec, rng)
    col = spec.color
    loop_col = _col(col, 0.9) if spec.style != "surgical" or rng.random() < 0.5 else (235.0, 235.0, 235.0)
    loop_t = rng.uniform(0.02, 0.035)
    ear_x = face.face_w * 1.0
    ear_y = rng.uniform(-0.05, 0.12)
    tr = poly[_MASK_TOP_RIGHT]
    br = poly[_MASK_SIDE_BOTTOM_RIGHT]
    # loops/straps first so the mask edge covers their ends
    if spec.style == "n95":
        strap = (240.0, 240.0, 240.0) if rng.random() < 0.33 else _col(col, 0.85)
        segs = np.array([[(s * tr[0] * 0.95, tr[1] + 0.08), (s * ear_x * 1.04, ear_y - 0.15)] for s in (-1, 1)]
                        + [[(s * br[0] * 0.95, br[1] - 0.05), (s * ear_x * 1.04, ear_y + 0.35)] for s in (-1, 1)])
        p.lines(segs, strap, loop_t * 1.2, opaque=True)
    else:
        loops = np.array([[(s * tr[0] * 0.97, tr[1] + 0.02), (s * ear_x * 1.02, ear_y - 0.1),
                           (s * ear_x * 1.04, ear_y + 0.15), (s * br[0] * 0.97, br[1] - 0.02)] for s in (-1, 1)])
        p.lines(loops, loop_col, loop_t, opaque=True)

    yt, yb, ys, drop = m["y_top"], m["y_bot"], m["y_side"], m["drop"]
    xt, xb, xside = m["x_top"], m["x_bot"], m["xside"]
    if spec.style == "patterned":
        _draw_patterned(p, poly, spec, rng, m)
    else:
        # Solid body; every detail below is kept inside the outline by construction.
        p.poly(poly, _col(col), opaque=True)
        if spec.style == "surgical":
            pleat, fold = _col(col, 0.8), _col(col, 1.08)
            for k in (0.3, 0.5, 0.7):
                y = yt + drop + (ys - yt - drop) * k
                x = xside(y) * 0.93
                p.line([(-x, y), (0.0, y + 0.03), (x, y)], pleat, 0.03)
                p.line([(-x, y + 0.04), (x, y + 0.04)], fold, 0.02)
            p.line([(-xt * 0.35, yt + 0.035), (xt * 0.35, yt + 0.035)], _col(col, 0.75), 0.03)  # nose wire
        elif spec.style == "cloth":
            if rng.random() < 0.6:
                p.line([(0.0, yt + 0.02), (0.0, yb - 0.02)], _col(col, 0.75), 0.025)  # centre seam
        else:  # n95: moulded cup seam and, sometimes, a valve
            p.ellipse((0.0, (yt + yb) / 2 + 0.05), xb * 0.75, (yb - yt) * 0.42, _col(col, 0.9), width=0.025)
            if rng.random() < 0.5:
                vs = -1 if rng.random() < 0.5 else 1
                vc = _col(spec.color2) if rng.random() < 0.5 else _col(col, 0.7)
                vy = (yt + ys) / 2 + 0.12
                p.ellipse((vs * xb * 0.45, vy), 0.15, 0.15, vc)
                p.ellipse((vs * xb * 0.45, vy), 0.15, 0.15, _col(col, 0.6), width=0.02)
    # edge binding
    p.line(poly, _col(col, 0.78), 0.022, closed=True)
    return poly


def _draw_patterned(p: _Painter, poly: np.ndarray, spec: _MaskSpec, rng: np.random.Generator, m: dict) -> None:
    """A patterned mask: the pattern is drawn in the polygon's bounding box, then pasted through the polygon."""
    import cv2

    pix = p.f.pts(poly)
    H, W = p.alpha.shape
    x0, y0 = np.floor(pix.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pix.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), W), min(int(y1), H)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    cov = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(cov, [np.round((pix - [x0, y0]) * _SUB).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    sub = _Painter(1, 1, _Frame(p.f.cx - x0, p.f.cy - y0, p.f.u, p.f.rot_deg))
    sub.rgb = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    sub.rgb[:] = np.clip(spec.color + 0.5, 0, 255).astype(np.uint8)
    yt, yb = m["y_top"], m["y_bot"]
    c2 = _col(spec.color2)
    span = max(m["x_top"], m["x_bot"]) * 1.2
    # each pattern is one cv2 call (a hundred separate dots would cost a millisecond)
    if spec.pattern == "stripes":
        step = rng.uniform(0.08, 0.16)
        ks = np.arange(-span - 1.5, span + 1.5, step * 2)
        if rng.random() < 0.5:  # horizontal
            segs = np.stack([np.stack([np.full_like(ks, -span), yt + ks + span], 1),
                             np.stack([np.full_like(ks, span), yt + ks + span], 1)], 1)
        else:  # slanted
            segs = np.stack([np.stack([ks, np.full_like(ks, yt - 0.3)], 1),
                             np.stack([ks + 0.3, np.full_like(ks, yb + 0.3)], 1)], 1)
        sub.lines(segs, c2, step)
    elif spec.pattern == "dots":
        step = rng.uniform(0.12, 0.2)
        gy, gx = np.meshgrid(np.arange(yt - 0.1, yb + 0.2, step), np.arange(-span, span, step), indexing="ij")
        gx = gx + (np.arange(gy.shape[0]) % 2)[:, None] * step / 2
        centres = np.stack([gx.ravel(), gy.ravel()], 1)
        # a zero-length round-capped line is a dot of diameter `width`
        sub.lines(np.stack([centres, centres], 1), c2, step * rng.uniform(0.4, 0.7))
    else:  # checks
        step = rng.uniform(0.1, 0.2)
        gy, gx = np.meshgrid(np.arange(yt - 0.2, yb + 0.2, step), np.arange(-span, span, 2 * step), indexing="ij")
        gx = gx + (np.arange(gy.shape[0]) % 2)[:, None] * step
        xs, ys = gx.ravel(), gy.ravel()
        sq = np.stack([np.stack([xs, ys], 1), np.stack([xs + step, ys], 1),
                       np.stack([xs + step, ys + step], 1), np.stack([xs, ys + step], 1)], 1)
        sub.polys(sq, c2)
    a = _rgb(cov.astype(np.float32) * (1.0 / 255.0))
    region = p.rgb[y0:y1, x0:x1].astype(np.float32)
    p.rgb[y0:y1, x0:x1] = (region * (1 - a) + sub.rgb.astype(np.float32) * a + 0.5).astype(np.uint8)
    np.maximum(p.alpha[y0:y1, x0:x1], cov, out=p.alpha[y0:y1, x0:x1])


# ----------------------------------------------------------------------------
# a whole head
# ----------------------------------------------------------------------------
def _incorrect_kind(rng: np.random.Generator, label: str) -> str | None:
    if label != "mask_incorrect":
        return None
    return "nose_out" if rng.random() < _P_NOSE_OUT else "chin"


_LFW_PATCH = 64  # LFW faces are resampled once to this size (Lanczos) and cached
_LFW_PATCH_CACHE: dict[int, np.ndarray] = {}
_LFW_ALPHA: np.ndarray | None = None


def _lfw_patch(idx: int) -> np.ndarray:
    """LFW face ``idx`` at 64x64 (float32 grey), cached."""
    import cv2

    if idx not in _LFW_PATCH_CACHE:
        g = _lfw_faces()[0][idx]
        # Lanczos keeps the 25 px photo as crisp as it can be.
        big = cv2.resize(g, (_LFW_PATCH, _LFW_PATCH), interpolation=cv2.INTER_LANCZOS4)
        _LFW_PATCH_CACHE[idx] = np.clip(big, 0.0, 1.0)
    return _LFW_PATCH_CACHE[idx]


def _lfw_alpha() -> np.ndarray:
    """Coverage of an LFW photo in its own 64x64 frame: a soft oval over the face, fading at the photo's edges."""
    global _LFW_ALPHA
    if _LFW_ALPHA is None:
        f = (np.arange(_LFW_PATCH, dtype=np.float64) + 0.5) / _LFW_PATCH
        x = ((f - _LFW_CX) / _LFW_UNIT)[None, :]  # canonical units
        y = (_LFW_FACE.eye_y + (f - _LFW_EYE_Y) / _LFW_UNIT)[:, None]
        d = np.sqrt((x / 1.02) ** 2 + ((y - 0.1) / 1.32) ** 2)
        oval = np.clip((1.0 - d) / 0.12, 0.0, 1.0)
        edge = np.minimum(np.minimum(f, 1 - f)[None, :], np.minimum(f, 1 - f)[:, None])
        _LFW_ALPHA = (oval * np.clip(edge / 0.06, 0.0, 1.0)).astype(np.float32)
    return _LFW_ALPHA


def _paint_lfw(p: _Painter, rng: np.random.Generator, skin: np.ndarray, idx: int) -> None:
    """Composite LFW face ``idx``, tinted to ``skin``, into the painter.

    The photo is tinted and given its alpha in its own small frame, then one
    warpAffine of the premultiplied RGBA patch puts it in place.
    """
    import cv2

    g = _lfw_patch(idx)
    # Tint: grey level relative to the central face -> skin colour, keeping the
    # photo's shading; highlights go towards white instead of clipping.
    gain = g * (1.0 / max(float(g[23:49, 15:41].mean()), 0.05))
    gain = gain ** np.float32(rng.uniform(0.85, 1.1))
    a = _lfw_alpha()
    shade, shine = np.minimum(gain, 1.0) * a, np.clip(gain - 1.0, 0.0, 1.0) * (0.5 * a)
    # premultiplied by alpha, so the warp's zero border blends correctly
    rgba = cv2.merge([shade * np.float32(c) + shine * np.float32(255.0 - c) for c in skin] + [a])
    # patch pixel (j, i) -> canonical x = m * ((j + .5)/n - cx) / unit, y = eye_y + ((i + .5)/n - eye) / unit;
    # m = -1 mirrors the face about its own centre line (doubles the variety).
    n, unit = _LFW_PATCH, _LFW_UNIT
    m = -1.0 if rng.random() < 0.5 else 1.0
    A = np.array([
        [m / (n * unit), 0.0, m * (0.5 / n - _LFW_CX) / unit],
        [0.0, 1.0 / (n * unit), _LFW_FACE.eye_y + (0.5 / n - _LFW_EYE_Y) / unit],
        [0.0, 0.0, 1.0],
    ])
    M = p.f.matrix() @ A
    H, W = p.alpha.shape
    warped = cv2.warpAffine(rgba, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    wa = warped[..., 3]
    rgb = p.rgb.astype(np.float32) * _rgb(1.0 - wa) + warped[..., :3]
    p.rgb[:] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    np.maximum(p.alpha, np.clip(wa * 255 + 0.5, 0, 255).astype(np.uint8), out=p.alpha)


def _paint_head(p: _Painter, rng: np.random.Generator, label: str, lfw: bool, body: bool) -> tuple[_Face, dict]:
    """Draw one head (and neck, optionally shoulders) into ``p``; returns its face and attributes."""
    if label not in CLASS_NAMES:
        raise DataError(f"unknown class {label!r}; expected one of {', '.join(CLASS_NAMES)}")
    skin = _skin_tone(rng)
    hair = _hair_color(rng)
    incorrect = _incorrect_kind(rng, label)
    mask_spec = None
    if label != "no_mask":
        mask_spec = _sample_mask(rng, incorrect or "correct")
    attrs: dict[str, Any] = {}
    lfw_idx = None
    if lfw:
        faces, rows = _lfw_faces()
        lfw_idx = int(rng.integers(LFW_TRAIN_FACES))
        face = _lfw_face(rows[lfw_idx])
    else:
        face = _sample_face(rng)
    hair_style = _choice(rng, _HAIR_STYLES)
    if lfw and hair_style in ("none", "fringe"):
        hair_style = "short"  # LFW photos end at the forehead; hair hides the cut
    hat = (not lfw) and rng.random() < 0.07

    # back to front: clothes, back hair, neck, ears, face
    if body and rng.random() < 0.85:
        cloth = _rand_color(rng, s=(0.0, 0.8), v=(0.1, 0.9))
        p.ellipse((0.0, face.bottom_h + 1.55), rng.uniform(1.7, 2.2), 1.0, _col(cloth), opaque=True)
        p.ellipse((0.0, face.bottom_h + 0.62), 0.42, 0.16, _col(cloth, 0.7), opaque=True)  # collar
    _draw_hair_back(p, face, rng, hair_style, hair)
    neck_w = rng.uniform(0.42, 0.55)
    p.poly([(-neck_w, 0.5), (neck_w, 0.5), (neck_w * 1.1, face.bottom_h + 0.75), (-neck_w * 1.1, face.bottom_h + 0.75)],
           _col(skin, 0.8), opaque=True)
    if lfw:
        _paint_lfw(p, rng, skin, lfw_idx)
        mouth_kind = beard = glasses = None
    else:
        ear_y = rng.uniform(-0.08, 0.08)
        for s in (-1, 1):
            p.ellipse((s * face.face_w * 0.97, ear_y), 0.14, 0.25, _col(skin, 0.9), opaque=True)
            p.ellipse((s * face.face_w * 0.99, ear_y), 0.07, 0.16, _col(skin, 0.72), width=0.03)
        p.poly(face.outline(), _col(skin), opaque=True)
        # cheeks: a touch of warmth, same for every class
        blush = _col(_mix(skin, (210, 90, 90), rng.uniform(0.0, 0.12)))
        for s in (-1, 1):
            p.ellipse((s * 0.55, 0.3), 0.22, 0.14, blush)
        beard = _choice(rng, ((None, 0.8), ("beard", 0.08), ("goatee", 0.05), ("moustache", 0.07)))
        # facial hair keeps a natural colour even when the head hair is dyed
        beard_col = hair if max(hair) - min(hair) < 110 else np.array([52.0, 36.0, 26.0])
        if beard in ("beard", "goatee"):
            _draw_beard(p, face, rng, beard_col, skin, beard)
        _draw_eyes(p, face, rng, skin, hair)
        _draw_nose(p, face, rng, skin)
        mouth_kind = _draw_mouth(p, face, rng, skin)
        if beard in ("beard", "moustache"):
            _draw_beard(p, face, rng, beard_col, skin, "moustache")
        glasses = _draw_glasses(p, face, rng) if rng.random() < 0.2 else None
    if hat:
        _draw_hat(p, face, rng)
    else:
        _draw_hair_front(p, face, rng, hair_style, hair)
    poly = None
    if mask_spec is not None:
        poly = _draw_mask(p, face, mask_spec, rng)

    attrs.update(
        label=label,
        source="lfw" if lfw else "drawn",
        lfw_index=lfw_idx,
        mask_style=mask_spec.style if mask_spec else None,
        mask_pattern=mask_spec.pattern if mask_spec else None,
        mask_color=[round(v) for v in mask_spec.color] if mask_spec else None,
        incorrect_kind=incorrect,
        glasses=glasses is not None if not lfw else False,
        glasses_kind=glasses,
        skin_tone=[round(v) for v in skin],
        hair_style="hat" if hat else hair_style,
        hair_color=[round(v) for v in hair],
        facial_hair=beard,
        mouth=mouth_kind,
    )
    attrs["_poly"] = poly  # canonical; converted to pixels by the caller
    return face, attrs


def _down(pts: np.ndarray, ss: int) -> np.ndarray:
    """Supersampled pixel coordinates -> output pixel coordinates (pixel centres at integers).

    Output pixel j averages input pixels j*ss .. j*ss+ss-1 (INTER_AREA), whose
    centre is j*ss + (ss-1)/2.
    """
    return (np.asarray(pts, dtype=np.float64) + 0.5) / ss - 0.5


def _to_px(frame: _Frame, q, ss: int) -> list:
    return np.round(_down(frame.pts(q), ss), 2).tolist()


def _box(pts: np.ndarray) -> list[float]:
    return [_r(pts[:, 0].min(), 2), _r(pts[:, 1].min(), 2), _r(pts[:, 0].max(), 2), _r(pts[:, 1].max(), 2)]


def _supersampling(size: int) -> int:
    return 3 if size < 48 else 2


def _render_clean(rng: np.random.Generator, label: str, size: int) -> tuple[np.ndarray, dict]:
    """Face crop before lighting and degradation.

    The head is drawn at ss x the output size, shrunk (its colour is
    premultiplied, so area-averaging it with its alpha is exact), and then
    composited over a background made directly at the output size -- the
    background is smooth, so supersampling it would only cost time.

    Returns:
        (float32 RGB (size, size, 3) in 0..255, attributes).
    """
    import cv2

    ss = _supersampling(size)
    R = size * ss
    lfw = bool(rng.random() < _P_LFW_CROP)
    # Face size within the crop: detectors frame faces more or less tightly
    # (Haar, YuNet and hand-drawn VOC boxes differ by ~30%), so small faces go
    # down to 0.75. Above ~1.15 a mask worn on the chin leaves the crop and the
    # sample would look like no_mask.
    scale = rng.uniform(0.75, 1.15)
    rot = rng.uniform(-20, 20)
    dx, dy = rng.uniform(-0.05, 0.05, 2)
    frame = _Frame((_CROP_CX + dx) * R, (_CROP_CY + dy) * R, _CROP_U * scale * R, rot)
    bg, bg_kind = _texture(rng, size, size)
    p = _Painter(R, R, frame)
    face, attrs = _paint_head(p, rng, label, lfw, body=True)
    layer = cv2.resize(p.rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(p.alpha, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) * (1.0 / 255.0)
    canvas = bg * _rgb(1.0 - a) + layer  # (size, size, 3) float32
    poly = attrs.pop("_poly")
    attrs.update(
        rotation_deg=_r(rot, 2),
        scale=_r(scale),
        shift=[_r(dx), _r(dy)],
        background=bg_kind,
        landmarks=dict(zip(face.landmarks(), _to_px(frame, list(face.landmarks().values()), ss))),
        face_box=_box(_down(frame.pts(face.outline()), ss)),
        mask_polygon=_to_px(frame, poly, ss) if poly is not None else None,
    )
    return canvas, attrs


def render_face(rng: np.random.Generator, label: str, size: int = 64) -> tuple[np.ndarray, dict]:
    """Draw one labelled face crop.

    Args:
        rng: the only source of randomness (same state -> same crop).
        label: one of ``CLASS_NAMES``.
        size: output side in pixels (>= 16).

    Returns:
        (image, attributes): RGB uint8 (size, size, 3), and a JSON-serialisable
        dict with ``label``, ``source`` ('drawn' | 'lfw'), ``mask_style``,
        ``mask_color``, ``incorrect_kind`` ('nose_out' | 'chin' | None),
        ``glasses``, ``rotation_deg``, ``scale``, the lighting/degradation
        settings, and geometry in output pixels: ``landmarks`` (eye_l, eye_r,
        nose_tip, mouth, chin), ``face_box`` and ``mask_polygon`` (None
        without a mask).

    Raises:
        DataError: unknown label or size < 16.
    """
    if size < 16:
        raise DataError(f"crop size must be at least 16 pixels, got {size}; pass a larger size (64 is the default)")
    canvas, attrs = _render_clean(rng, label, size)
    canvas, attrs["lighting"] = _light(canvas, rng)
    img, deg = _degrade(canvas, rng, blur_scale=size / 64)
    attrs.update(deg)
    return img, attrs


# ----------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------
def _scene_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg, _ = _texture(rng, h, w)
    if rng.random() < 0.5:  # a wall above, a floor/desk below
        y = int(h * rng.uniform(0.5, 0.85))
        low, _ = _texture(rng, h - y, w)
        bg[y:] = low
    return bg


def render_scene(rng: np.random.Generator, width: int = 640, height: int = 480, max_faces: int = 4
                 ) -> tuple[np.ndarray, list[dict]]:
    """Draw a frame with 0..max_faces labelled faces on a textured background.

    Faces are 48..200 px tall (log-uniform, capped by the frame), do not
    overlap, may have shoulders under them, and about a third are real LFW
    faces. Bodies are drawn before every head, so no face is ever hidden.

    Returns:
        (image, objects): RGB uint8 (height, width, 3) and one
        ``{"label": class name, "box": (xmin, ymin, xmax, ymax)}`` per face,
        integer pixel coordinates with 0 <= xmin < xmax <= width - 1 (same for y).
    """
    import cv2

    if width < 64 or height < 64:
        raise DataError(f"scene size must be at least 64x64 pixels, got {width}x{height}")
    bg = _scene_background(rng, height, width)
    n = int(rng.integers(0, max_faces + 1))
    ss = 2
    s_max = min(200.0, 0.8 * min(width, height))
    taken: list[tuple[float, float, float, float]] = []  # face boxes grown by a margin
    placed = []
    for _ in range(n):
        label = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
        lfw = bool(rng.random() < _P_LFW_SCENE)
        s = math.exp(rng.uniform(math.log(48), math.log(max(48.0, s_max))))
        rot = rng.uniform(-15, 15)
        head_rng = np.random.default_rng(rng.integers(0, 2**63))  # the head's own stream
        u = s / 2.5  # px per canonical unit: a face is about 2.5 units tall
        for _try in range(30):
            cx = rng.uniform(0.0, width)
            cy = rng.uniform(0.0, height)
            # placement uses the largest possible outline; the true box is measured after drawing
            out = _Frame(cx, cy, u, rot).pts(_LARGEST_FACE.outline(8))
            x0, y0 = out.min(0)
            x1, y1 = out.max(0)
            if x0 < 2 or y0 < 2 or x1 > width - 3 or y1 > height - 3:
                continue
            m = 0.3 * s  # room for hair and ear loops, which must not cover a neighbour
            g = (x0 - m, y0 - m, x1 + m, y1 + 0.15 * s)
            if any(g[0] < t[2] and t[0] < g[2] and g[1] < t[3] and t[1] < g[3] for t in taken):
                continue
            taken.append(g)
            placed.append((label, lfw, cx, cy, u, rot, head_rng))
            break
    # bodies first, heads after: a body never covers another face
    for label, lfw, cx, cy, u, rot, head_rng in placed:
        if rng.random() < 0.8:
            cloth = _col(_rand_color(rng, s=(0.0, 0.8), v=(0.1, 0.9)))
            base = _Frame(cx, cy, u, rot).pts([(0.0, 1.85)])[0]  # where the neck ends
            fr = _Frame(float(base[0]), float(base[1]), u, rot * 0.3)  # torsos lean less than heads
            w = rng.uniform(1.6, 2.2)
            shoulders = np.array([(w * math.cos(t), 0.7 - 0.75 * math.sin(t)) for t in np.linspace(0, math.pi, 17)])
            torso = np.concatenate([[(w, 14.0)], shoulders, [(-w, 14.0)]])  # runs off the frame
            cv2.fillPoly(bg, [np.round(fr.pts(torso) * _SUB).astype(np.int32)], cloth, cv2.LINE_AA, _SHIFT)
    objects = []
    for label, lfw, cx, cy, u, rot, head_rng in placed:
        half = math.ceil(2.8 * u)  # layer half-size in output px (hair, loops, neck)
        L = 2 * half * ss
        fr = _Frame(half * ss + (cx - int(cx)) * ss, half * ss + (cy - int(cy)) * ss, u * ss, rot)
        p = _Painter(L, L, fr)
        face, _ = _paint_head(p, head_rng, label, lfw, body=False)
        # per-face light: people stand in different light
        gain = head_rng.uniform(0.7, 1.15) * (1 + head_rng.normal(0, 0.05, 3))
        rgb = cv2.multiply(p.rgb.astype(np.float32), _scalar(gain))
        rgb_s = cv2.resize(rgb, (2 * half, 2 * half), interpolation=cv2.INTER_AREA)
        a_s = cv2.resize(p.alpha.astype(np.float32) / 255.0, (2 * half, 2 * half), interpolation=cv2.INTER_AREA)
        ox, oy = int(cx) - half, int(cy) - half
        # paste, clipped to the frame
        sx0, sy0 = max(0, -ox), max(0, -oy)
        sx1, sy1 = min(2 * half, width - ox), min(2 * half, height - oy)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        reg = bg[oy + sy0:oy + sy1, ox + sx0:ox + sx1]
        reg[:] = reg * _rgb(1.0 - a_s[sy0:sy1, sx0:sx1]) + rgb_s[sy0:sy1, sx0:sx1]
        out = _down(fr.pts(face.outline()), ss) + [ox, oy]
        box = (
            max(0, math.floor(out[:, 0].min())),
            max(0, math.floor(out[:, 1].min())),
            min(width - 1, math.ceil(out[:, 0].max())),
            min(height - 1, math.ceil(out[:, 1].max())),
        )
        objects.append({"label": label, "box": box})
    bg, _ = _light(bg, rng, strength=0.6)
    img, _ = _degrade(bg, rng, strength=0.5)
    return img, objects


# ----------------------------------------------------------------------------
# dataset writer
# ----------------------------------------------------------------------------
def _png(img_rgb: np.ndarray) -> bytes:
    import cv2

    # Fixed filter + level: stable bytes, and ~2x faster than libpng's adaptive
    # filter choice for about the same size on these small noisy crops.
    params = [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img_rgb[..., ::-1]), params)
    if not ok:  # pragma: no cover - cv2 only fails on bad shapes
        raise RuntimeError("cv2.imencode('.png') failed")
    return buf.tobytes()


class _Writer:
    """Encodes and writes PNGs on one background thread.

    cv2.imencode and file writes release the GIL, so on a machine with a
    second core they overlap with drawing the next item (creating thousands
    of small files costs ~0.5-1 ms each in the kernel here). Output bytes do
    not depend on it: every file's content is fixed before it is queued.
    Errors surface in the caller at the next ``png``/``flush``.
    """

    _MAX_PENDING = 64  # bounds memory: at most this many images wait in the queue

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer")
        self._pending: deque = deque()

    def png(self, path: Path, img: np.ndarray) -> None:
        self._pending.append(self._pool.submit(_write_png, path, img))
        while len(self._pending) > self._MAX_PENDING:
            self._pending.popleft().result()

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        for f in self._pending:  # on error: drop what is queued, stop quickly
            f.cancel()
        self._pool.shutdown(wait=True)


def _write_png(path: Path, img: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(_png(img))


def voc_xml(filename: str, width: int, height: int, objects: list[dict], folder: str = "images") -> str:
    """PASCAL VOC XML for one image, laid out like the Kaggle face-mask set."""
    lines = [
        "<annotation>",
        f"    <folder>{folder}</folder>",
        f"    <filename>{filename}</filename>",
        "    <size>",
        f"        <width>{width}</width>",
        f"        <height>{height}</height>",
        "        <depth>3</depth>",
        "    </size>",
        "    <segmented>0</segmented>",
    ]
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        lines += [
            "    <object>",
            f"        <name>{VOC_LABEL_OF_CLASS[o['label']]}</name>",
            "        <pose>Unspecified</pose>",
            "        <truncated>0</truncated>",
            "        <occluded>0</occluded>",
            "        <difficult>0</difficult>",
            "        <bndbox>",
            f"            <xmin>{int(x0)}</xmin>",
            f"            <ymin>{int(y0)}</ymin>",
            f"            <xmax>{int(x1)}</xmax>",
            f"            <ymax>{int(y1)}</ymax>",
            "        </bndbox>",
            "    </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def crop_label(index: int) -> str:
    """Class of crop ``index``: round-robin, so every prefix is balanced (extra ones go to the first classes)."""
    return CLASS_NAMES[index % len(CLASS_NAMES)]


def write_synth_dataset(out: str | Path, n: int = 6000, size: int = 64, seed: int = 0, n_scenes: int = 40,
                        overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a synthetic dataset of face crops and annotated scenes.

    Layout::

        OUT/dataset.json                     format, version, seed, n, size, n_scenes, classes, counts, generator
        OUT/crops/<class>/<index:06d>.png    n crops, ImageFolder layout, classes balanced
        OUT/crops.jsonl                      {"file": ..., **attributes} per crop, in index order
        OUT/scenes/images/scene_<k:04d>.png  640x480 frames
        OUT/scenes/annotations/scene_<k:04d>.xml   PASCAL VOC, Kaggle face-mask labels

    The same (n, size, seed, n_scenes) gives byte-identical files. The folder
    appears all at once (written to a temporary sibling, then renamed).

    Args:
        out: output folder; must not exist unless ``overwrite``.
        n: number of crops (>= 3).
        size: crop side in pixels (>= 16).
        seed: base seed; item i uses ``default_rng([seed, kind, i])``.
        n_scenes: number of scenes (>= 0).
        overwrite: replace an existing ``out``.
        progress: called as ``progress(done, total)`` after each item.

    Returns:
        The content of ``dataset.json``.

    Raises:
        DataError: ``out`` exists without ``overwrite``, or a bad n/size/seed/n_scenes.
    """
    out = Path(out)
    if not isinstance(n, (int, np.integer)) or n < 3:
        raise DataError(f"number of crops must be an integer >= 3 (one per class), got {n!r}; pass e.g. --n 6000")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise DataError(f"crop size must be an integer >= 16 pixels, got {size!r}; pass e.g. --size 64")
    if not isinstance(n_scenes, (int, np.integer)) or n_scenes < 0:
        raise DataError(f"number of scenes must be an integer >= 0, got {n_scenes!r}; pass e.g. --n-scenes 40")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if out.exists() and not overwrite:
        raise DataError(f"output folder {out} exists; pass --overwrite or choose another --out")
    if out.exists() and not out.is_dir():
        raise DataError(f"output path {out} is a file, not a folder; choose another --out")
    n, size, seed, n_scenes = int(n), int(size), int(seed), int(n_scenes)

    total = n + n_scenes
    counts = {c: 0 for c in CLASS_NAMES}
    writer = _Writer()
    # the writer stops before atomic_dir cleans up after an error, so no file lands in a deleted folder
    with atomic_dir(out, overwrite=overwrite) as tmp, contextlib.closing(writer):
        # Plain writes inside the temporary folder: atomic_dir makes the whole folder appear at once.
        for c in CLASS_NAMES:
            (tmp / "crops" / c).mkdir(parents=True)
        lines = []
        for i in range(n):
            label = crop_label(i)
            img, attrs = render_face(np.random.default_rng([seed, _KIND_CROP, i]), label, size)
            rel = f"crops/{label}/{i:06d}.png"
            writer.png(tmp / rel, img)
            lines.append(json.dumps({"file": rel, **attrs}))
            counts[label] += 1
            if progress is not None:
                progress(i + 1, total)
        (tmp / "crops.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

        (tmp / "scenes" / "images").mkdir(parents=True)
        (tmp / "scenes" / "annotations").mkdir(parents=True)
        for k in range(n_scenes):
            img, objects = render_scene(np.random.default_rng([seed, _KIND_SCENE, k]))
            name = f"scene_{k:04d}"
            writer.png(tmp / "scenes" / "images" / f"{name}.png", img)
            xml = voc_xml(f"{name}.png", img.shape[1], img.shape[0], objects)
            (tmp / "scenes" / "annotations" / f"{name}.xml").write_text(xml, encoding="utf-8")
            if progress is not None:
                progress(n + k + 1, total)
        writer.flush()  # every image is on disk before dataset.json marks the set complete

        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "seed": seed,
            "n": n,
            "size": size,
            "n_scenes": n_scenes,
            "classes": list(CLASS_NAMES),
            "counts": counts,
            "generator": GENERATOR,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta

"""The canonical face frame: the affine map to pixels, the painter that draws in it, and face shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgemask.data.synth.common import _SHIFT, _SUB, _lin


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

    def ellipse(
        self,
        c,
        ax: float,
        ay: float,
        color,
        angle: float = 0.0,
        start: float = 0.0,
        end: float = 360.0,
        width: float | None = None,
        opaque: bool = False,
    ) -> None:
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
            return self.face_w * (1.0 - t**self.e_top) ** (1.0 / self.e_top)
        t = min(y / self.bottom_h, 1.0)
        return self.face_w * (1.0 - t**self.e_jaw) ** (1.0 / self.e_jaw) * (1.0 - self.taper * t * t)

    def hw_many(self, ys: np.ndarray) -> np.ndarray:
        """:meth:`hw` for an array of heights."""
        ys = np.asarray(ys, dtype=np.float64)
        up = np.clip(-ys / self.top_h, 0.0, 1.0)
        dn = np.clip(ys / self.bottom_h, 0.0, 1.0)
        top = (1.0 - up**self.e_top) ** (1.0 / self.e_top)
        bot = (1.0 - dn**self.e_jaw) ** (1.0 / self.e_jaw) * (1.0 - self.taper * dn * dn)
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
_LFW_FACE = _Face(
    top_h=1.3,
    bottom_h=1.2,
    face_w=0.86,
    e_top=2.2,
    e_jaw=2.2,
    taper=0.12,
    eye_y=-0.2,
    eye_dx=0.39,
    nose_y=0.37,
    mouth_y=0.72,
)

"""Face masks: their style, where they sit (covering, nose out, on the chin) and how they are drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemask.data.synth.common import _MASK_COLORS, _MASK_STYLES, _SHIFT, _SUB, _choice, _col, _lin, _rand_color, _rgb
from edgemask.data.synth.geometry import _Face, _Frame, _Painter


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
    color = (
        _rand_color(rng, s=(0.1, 0.9), v=(0.15, 0.95))
        if c is None
        else np.clip(np.asarray(c, np.float64) + rng.normal(0, 8, 3), 0, 255)
    )
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
        segs = np.array(
            [[(s * tr[0] * 0.95, tr[1] + 0.08), (s * ear_x * 1.04, ear_y - 0.15)] for s in (-1, 1)]
            + [[(s * br[0] * 0.95, br[1] - 0.05), (s * ear_x * 1.04, ear_y + 0.35)] for s in (-1, 1)]
        )
        p.lines(segs, strap, loop_t * 1.2, opaque=True)
    else:
        loops = np.array(
            [
                [
                    (s * tr[0] * 0.97, tr[1] + 0.02),
                    (s * ear_x * 1.02, ear_y - 0.1),
                    (s * ear_x * 1.04, ear_y + 0.15),
                    (s * br[0] * 0.97, br[1] - 0.02),
                ]
                for s in (-1, 1)
            ]
        )
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
            segs = np.stack(
                [
                    np.stack([np.full_like(ks, -span), yt + ks + span], 1),
                    np.stack([np.full_like(ks, span), yt + ks + span], 1),
                ],
                1,
            )
        else:  # slanted
            segs = np.stack(
                [np.stack([ks, np.full_like(ks, yt - 0.3)], 1), np.stack([ks + 0.3, np.full_like(ks, yb + 0.3)], 1)], 1
            )
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
        sq = np.stack(
            [
                np.stack([xs, ys], 1),
                np.stack([xs + step, ys], 1),
                np.stack([xs + step, ys + step], 1),
                np.stack([xs, ys + step], 1),
            ],
            1,
        )
        sub.polys(sq, c2)
    a = _rgb(cov.astype(np.float32) * (1.0 / 255.0))
    region = p.rgb[y0:y1, x0:x1].astype(np.float32)
    p.rgb[y0:y1, x0:x1] = (region * (1 - a) + sub.rgb.astype(np.float32) * a + 0.5).astype(np.uint8)
    np.maximum(p.alpha[y0:y1, x0:x1], cov, out=p.alpha[y0:y1, x0:x1])

"""Head parts drawn in the canonical frame: skin, hair, eyes, nose, mouth, beard, glasses, hats."""

from __future__ import annotations

import math

import numpy as np

from edgemask.data.synth.common import _HAIR_COLORS, _IRIS_COLORS, _SKIN_ANCHORS, _choice, _col, _lin, _mix, _rand_color
from edgemask.data.synth.geometry import _Face, _Painter


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
    hy = side_y + (hairline - side_y) * (1 - hx**2) ** 0.6
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
    strands = np.stack(
        [
            np.stack([x, np.full(4, -face.top_h * 0.95)], 1),
            np.stack([x + rng.uniform(-0.25, 0.25, 4), np.full(4, hairline + 0.05)], 1),
        ],
        1,
    )
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
    p.poly(
        [
            (nx + side * 0.03, top),
            (nx + side * 0.09, top + 0.05),
            (nx + side * nw * 1.05, ny - 0.02),
            (nx + side * nw * 0.7, ny + 0.07),
            (nx, ny + 0.04),
        ],
        _col(skin, 0.86),
    )
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
    mid = np.stack([mx + xs * mw, my + curve * (1 - xs**2) - curve], 1)  # corners up when smiling
    upper_t = rng.uniform(0.05, 0.08)
    lower_t = rng.uniform(0.06, 0.1)
    if kind == "open":
        gap = rng.uniform(0.04, 0.07)
        p.ellipse((mx, my + gap * 0.4), mw * 0.85, gap, (50, 20, 24))
        p.ellipse((mx, my - 0.005), mw * 0.6, gap * 0.35, (236, 232, 222), start=180, end=360)
        lower_mid = mid + [0, gap]
    else:
        lower_mid = mid
    upper = np.concatenate([mid, np.stack([mid[:, 0], mid[:, 1] - upper_t * (1 - xs**2) ** 0.5], 1)[::-1]])
    lower = np.concatenate(
        [lower_mid, np.stack([lower_mid[:, 0], lower_mid[:, 1] + lower_t * (1 - xs**2) ** 0.5], 1)[::-1]]
    )
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
        inner = np.array(
            [[face.hw(-0.05) * 0.8, -0.05], [0.62, 0.42], [0.4, my + 0.02], [0.22, my + 0.14], [0.0, my + 0.17]]
        )
        right = np.concatenate([outer, inner[::-1]])  # down the jaw, back up around the mouth
        p.poly(np.concatenate([right, right[::-1] * [-1, 1]]), c, opaque=True)
    elif kind == "goatee":
        xs = _lin(-1, 1, 9)
        top = np.stack([mx + xs * 0.22, my + 0.14 + 0.02 * (1 - xs**2)], 1)
        bot = np.stack([mx + xs[::-1] * 0.26, face.bottom_h + 0.04 - 0.12 * xs**2], 1)
        p.poly(np.concatenate([top, bot]), c, opaque=True)
    if kind == "moustache":  # drawn after the mouth (a full beard calls this too)
        xs = _lin(-1, 1, 7)
        up = np.stack([mx + xs * 0.3, my - 0.1 - 0.04 * (1 - xs**2)], 1)
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
    p.line(
        [
            (mid - face.eye_dx + rw, face.eye_y - 0.02),
            (mid, face.eye_y - 0.05),
            (mid + face.eye_dx - rw, face.eye_y - 0.02),
        ],
        frame,
        t,
    )
    return kind


def _draw_hat(p: _Painter, face: _Face, rng: np.random.Generator) -> None:
    col = _rand_color(rng, v=(0.15, 0.9))
    brim_y = -face.top_h * rng.uniform(0.55, 0.7)
    th = _lin(math.pi, 2 * math.pi, 12)
    crown = np.stack([np.cos(th) * face.face_w * 1.08, brim_y + np.sin(th) * (face.top_h * 0.75)], 1)
    p.poly(crown, _col(col), opaque=True)
    p.ellipse((0.0, brim_y + 0.02), face.face_w * 1.15, 0.1, _col(col, 0.8), opaque=True)

"""Scenes: several heads pasted into a larger frame, with their VOC boxes."""

from __future__ import annotations

import math

import numpy as np

from edgemask.data.labels import CLASS_NAMES
from edgemask.data.synth.common import _P_LFW_SCENE, _SHIFT, _SUB, _col, _rand_color, _rgb, _scalar
from edgemask.data.synth.geometry import _LARGEST_FACE, _Frame, _Painter
from edgemask.data.synth.head import _down, _paint_head
from edgemask.data.synth.texture import _degrade, _light, _texture
from edgemask.errors import DataError


def _scene_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg, _ = _texture(rng, h, w)
    if rng.random() < 0.5:  # a wall above, a floor/desk below
        y = int(h * rng.uniform(0.5, 0.85))
        low, _ = _texture(rng, h - y, w)
        bg[y:] = low
    return bg


def render_scene(
    rng: np.random.Generator, width: int = 640, height: int = 480, max_faces: int = 4
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
        reg = bg[oy + sy0 : oy + sy1, ox + sx0 : ox + sx1]
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

"""Backgrounds and lighting: procedural textures, light gradients and camera degradation."""

from __future__ import annotations

import math

import numpy as np

from edgemask.data.synth.common import _choice, _col, _colorize, _r, _rand_color, _rgb, _scalar


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
        acc += _smooth_noise(rng, sh, sw, cells) * float(cells**-beta)
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


def _degrade(
    img: np.ndarray, rng: np.random.Generator, strength: float = 1.0, blur_scale: float = 1.0
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

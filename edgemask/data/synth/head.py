"""A whole head: drawn or built on a real LFW face, with its mask, composited into a labelled crop."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemask.data.labels import CLASS_NAMES
from edgemask.data.synth.common import (
    _CROP_CX,
    _CROP_CY,
    _CROP_U,
    _HAIR_STYLES,
    _LFW_CX,
    _LFW_EYE_Y,
    _LFW_UNIT,
    _P_LFW_CROP,
    _P_NOSE_OUT,
    LFW_TRAIN_FACES,
    _choice,
    _col,
    _mix,
    _r,
    _rand_color,
    _rgb,
)
from edgemask.data.synth.features import (
    _draw_beard,
    _draw_eyes,
    _draw_glasses,
    _draw_hair_back,
    _draw_hair_front,
    _draw_hat,
    _draw_mouth,
    _draw_nose,
    _hair_color,
    _skin_tone,
)
from edgemask.data.synth.geometry import _LFW_FACE, _Face, _Frame, _Painter, _sample_face
from edgemask.data.synth.masks import _draw_mask, _sample_mask
from edgemask.data.synth.texture import _degrade, _light, _texture
from edgemask.errors import DataError

_LFW_CACHE: tuple[np.ndarray, np.ndarray] | None = None


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
    return _Face(
        top_h=_LFW_FACE.top_h,
        bottom_h=_LFW_FACE.bottom_h,
        face_w=_LFW_FACE.face_w,
        e_top=_LFW_FACE.e_top,
        e_jaw=_LFW_FACE.e_jaw,
        taper=_LFW_FACE.taper,
        eye_y=float(eye),
        eye_dx=_LFW_FACE.eye_dx,
        nose_y=float(nostril) - 0.065,
        mouth_y=float(mouth),
    )


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
    A = np.array(
        [
            [m / (n * unit), 0.0, m * (0.5 / n - _LFW_CX) / unit],
            [0.0, 1.0 / (n * unit), _LFW_FACE.eye_y + (0.5 / n - _LFW_EYE_Y) / unit],
            [0.0, 0.0, 1.0],
        ]
    )
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
    p.poly(
        [(-neck_w, 0.5), (neck_w, 0.5), (neck_w * 1.1, face.bottom_h + 0.75), (-neck_w * 1.1, face.bottom_h + 0.75)],
        _col(skin, 0.8),
        opaque=True,
    )
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

"""Image layout conversion (numpy) and training augmentation on whole batches (torch, no torchvision).

:func:`to_nchw_float` is the one uint8 NHWC -> float32 NCHW conversion; it is
numpy only because runners on the box use it, so this module imports torch
inside the functions that need it, never at the top (Python 3.8, no torch).

The augmentation works on float NCHW tensors in [0, 1] on any device and draws all
randomness from one ``torch.Generator``, so a seeded training run is
reproducible. One ``grid_sample`` call does flip + rotation + scale +
translation for the whole batch; the colour jitter is a few broadcasts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Augmentation strengths (the defaults training uses).
MAX_ROTATION_DEG = 10.0
SCALE_RANGE = (0.9, 1.1)
MAX_TRANSLATE = 0.06  # fraction of the image side
BRIGHTNESS = 0.2  # multiplicative factor drawn from [1 - b, 1 + b]
CONTRAST = 0.2
SATURATION = 0.2
GRAYSCALE_P = 0.15  # share of images turned grey: night-mode / IR cameras, grey photos

# ITU-R BT.601 luma weights for RGB; used for contrast and saturation.
_LUMA = (0.299, 0.587, 0.114)


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB images -> contiguous float32 NCHW in [0, 1]; float NCHW is copied as float32.

    The one place pixels change layout for a model (``Runner.prepare``,
    ``CalibrationSet.as_nchw_float``, the stability study). Callers check the
    shape they expect first, with their own error and fix-it line.

    Args:
        images: (N, H, W, 3) uint8, or (N, 3, H, W) float already in [0, 1].

    Returns:
        (N, 3, H, W) float32, C-contiguous, a new array.

    Raises:
        ValueError: a uint8 array not shaped (N, H, W, 3) or a float one not shaped (N, 3, H, W).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be NHWC (N, H, W, 3), got shape {images.shape}")
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0  # (N, 3, H, W)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be NCHW (N, 3, H, W), got shape {images.shape}")
    return np.array(images, dtype=np.float32, order="C")


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images → float32 NCHW in [0, 1].

    Args:
        images: (N, H, W, C) uint8 array or tensor (e.g. ``FaceDataset.images``).

    Returns:
        (N, C, H, W) float32 tensor, contiguous, on the input's device (CPU for numpy).
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if t.ndim != 4 or t.dtype != torch.uint8:
        raise ValueError(f"to_tensor expects uint8 images shaped (N, H, W, C), got {tuple(t.shape)} {t.dtype}")
    return t.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=g, device=like.device, dtype=like.dtype)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    box_jitter: float = 0.0,
    blur_p: float = 0.0,
    low_light_p: float = 0.0,
) -> torch.Tensor:
    """Randomly flip, rotate, scale, shift and colour-jitter every image.

    Per image: horizontal flip with p=0.5; rotation in ±10°, scale in
    [0.9, 1.1], translation in ±6% of the side (bilinear, reflection padding
    so no black corners appear); brightness, contrast and saturation factors
    in [0.8, 1.2], and with p=0.15 saturation 0 (a grey image, as from a
    camera in night mode, so colour is never the only cue); the result is
    clamped to [0, 1].

    Real-photo extras (off by default; training turns them on):

    * ``box_jitter`` j: a detector's box is never the annotated one, so the
      crop also shifts by up to ±j of the side and zooms by 1 ± j.
    * ``blur_p``: share of images blurred (3×3 or 5×5 box blur: motion,
      focus, a small face upscaled).
    * ``low_light_p``: share of images darkened (gamma 1.5–2.5, brightness
      0.35–0.7, plus sensor noise), as from an indoor or night camera.

    Args:
        x: (N, C, H, W) float tensor in [0, 1]; C is 3 (RGB) or 1.
        generator: the only source of randomness; must live on ``x.device``.
        box_jitter, blur_p, low_light_p: see above.

    Returns:
        New tensor, same shape, dtype and device as ``x``. ``x`` is not modified.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"augment_batch expects a float NCHW tensor, got {tuple(x.shape)} {x.dtype}")
    n, c = x.shape[:2]
    if n == 0:
        return x.clone()

    # --- geometry: theta (N, 2, 3) maps output coords to input coords in [-1, 1] ---
    angle = _uniform(n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG, generator, x) * (math.pi / 180.0)
    j = max(0.0, float(box_jitter))
    scale = _uniform(n, min(SCALE_RANGE[0], 1.0 - j), max(SCALE_RANGE[1], 1.0 + j), generator, x)
    # ±6% of the side is ±0.12 in normalised coords, which span 2 units.
    t = max(MAX_TRANSLATE, j)
    shift = _uniform(2 * n, -2 * t, 2 * t, generator, x).view(n, 2)
    flip = torch.where(torch.rand(n, generator=generator, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # zoom in (s>1) = sample a smaller area
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),  # flip negates the x input column
            torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # --- colour: factors (N, 1, 1, 1) broadcast over C, H, W ---
    b = _uniform(n, 1 - BRIGHTNESS, 1 + BRIGHTNESS, generator, x).view(n, 1, 1, 1)
    k = _uniform(n, 1 - CONTRAST, 1 + CONTRAST, generator, x).view(n, 1, 1, 1)
    s = _uniform(n, 1 - SATURATION, 1 + SATURATION, generator, x)
    grey = torch.rand(n, generator=generator, device=x.device) < GRAYSCALE_P
    s = torch.where(grey, torch.zeros_like(s), s).view(n, 1, 1, 1)
    y = y * b
    mean_luma = _gray(y).mean(dim=(2, 3), keepdim=True)  # (N, 1, 1, 1)
    y = (y - mean_luma) * k + mean_luma
    if c == 3:
        gray = _gray(y)
        y = (y - gray) * s + gray
    y = y.clamp_(0.0, 1.0)
    if blur_p > 0:
        sel = torch.rand(n, generator=generator, device=x.device) < blur_p
        big = torch.rand(n, generator=generator, device=x.device) < 0.5
        for ksz, pick in ((3, sel & ~big), (5, sel & big)):
            if bool(pick.any()):
                y[pick] = F.avg_pool2d(F.pad(y[pick], [ksz // 2] * 4, mode="replicate"), ksz, stride=1)
    if low_light_p > 0:
        dark = (torch.rand(n, generator=generator, device=x.device) < low_light_p).to(x.dtype).view(n, 1, 1, 1)
        gamma = _uniform(n, 1.5, 2.5, generator, x).view(n, 1, 1, 1)
        gain = _uniform(n, 0.35, 0.7, generator, x).view(n, 1, 1, 1)
        noise = torch.randn(y.shape, generator=generator, device=x.device, dtype=x.dtype) * 0.02
        dimmed = (y.clamp(min=1e-6) ** gamma * gain + noise).clamp_(0.0, 1.0)
        y = dark * dimmed + (1 - dark) * y
    return y


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, 1, H, W) luma (the mean for non-RGB inputs)."""
    import torch

    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)

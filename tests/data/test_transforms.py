"""Batch augmentation and uint8 → float conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgemask.data.transforms import augment_batch, to_nchw_float, to_tensor


def test_to_tensor_layout_and_scale():
    imgs = np.zeros((2, 4, 5, 3), np.uint8)
    imgs[1, 2, 3] = (255, 51, 0)
    t = to_tensor(imgs)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32 and t.is_contiguous()
    assert torch.allclose(t[1, :, 2, 3], torch.tensor([1.0, 0.2, 0.0]))
    assert float(t.sum()) == pytest.approx(1.2)
    assert torch.equal(to_tensor(torch.from_numpy(imgs)), t)
    with pytest.raises(ValueError):
        to_tensor(imgs.astype(np.float32))


def test_to_nchw_float_layout_scale_and_copy():
    imgs = np.zeros((2, 4, 5, 3), np.uint8)
    imgs[1, 2, 3] = (255, 51, 0)
    x = to_nchw_float(imgs)
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, to_tensor(imgs).numpy())  # the numpy and the torch conversion agree bit for bit
    f = np.full((1, 3, 2, 2), 0.5, np.float32)
    y = to_nchw_float(f)
    assert np.array_equal(y, f) and not np.shares_memory(y, f)
    for bad in (np.zeros((2, 3, 4, 5), np.uint8), np.zeros((2, 4, 5, 3), np.float32), np.zeros((4, 5, 3), np.uint8)):
        with pytest.raises(ValueError):
            to_nchw_float(bad)


def _batch(n=64, s=32):
    # Gray images, bright left half: flips show as the bright side moving right.
    x = torch.full((n, 3, s, s), 0.2)
    x[..., : s // 2] = 0.8
    return x


def test_shape_range_and_input_untouched():
    x = _batch()
    before = x.clone()
    y = augment_batch(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, before)
    assert not torch.equal(y, x)


def test_deterministic_per_generator_seed():
    x = _batch()
    a = augment_batch(x, torch.Generator().manual_seed(7))
    b = augment_batch(x, torch.Generator().manual_seed(7))
    c = augment_batch(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flips_about_half_and_per_sample_params():
    x = _batch(n=200)
    y = augment_batch(x, torch.Generator().manual_seed(0))
    left, right = y[..., :12].mean(dim=(1, 2, 3)), y[..., 20:].mean(dim=(1, 2, 3))
    flipped = (right > left).float().mean().item()
    assert 0.35 < flipped < 0.65
    # Each image gets its own transform (vectorised, not one draw for the batch).
    assert len({round(v, 4) for v in y.mean(dim=(1, 2, 3)).tolist()}) > 150


def test_gray_stays_gray_and_content_is_kept():
    x = _batch(n=32)
    y = augment_batch(x, torch.Generator().manual_seed(1))
    # Saturation jitter cannot colour a gray image.
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-5) and torch.allclose(y[:, 1], y[:, 2], atol=1e-5)
    # Small geometry + ±20% colour: the mean stays near the original 0.5.
    assert abs(float(y.mean()) - 0.5) < 0.1


def test_empty_and_bad_inputs():
    assert augment_batch(torch.zeros(0, 3, 8, 8), torch.Generator()).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.Generator())


def test_colour_jitter_keeps_hue_and_jitters_luma_by_brightness_only():
    # A constant colour image is unchanged by the geometry (reflection padding),
    # so the output is pure colour jitter: luma scales by the brightness factor
    # (contrast and saturation keep it), chroma by a positive factor (hue kept).
    c = torch.tensor([0.5, 0.4, 0.3])
    x = c.view(1, 3, 1, 1).expand(300, 3, 16, 16).contiguous()
    y = augment_batch(x, torch.Generator().manual_seed(2))
    w = torch.tensor([0.299, 0.587, 0.114])
    luma_in = float((c * w).sum())
    px = y[:, :, 8, 8]  # (N, 3)
    assert torch.allclose(y, px[:, :, None, None].expand_as(y), atol=1e-5)  # still constant
    ratio = (px @ w) / luma_in
    assert float(ratio.min()) >= 0.8 - 1e-4 and float(ratio.max()) <= 1.2 + 1e-4
    assert float(ratio.max() - ratio.min()) > 0.3  # the brightness really varies
    chroma = (px - (px @ w)[:, None]) / (c - luma_in)  # (N, 3), same factor per channel
    assert torch.allclose(chroma, chroma[:, :1].expand_as(chroma), atol=1e-3)
    grey = chroma[:, 0].abs() < 1e-4  # saturation 0: the GRAYSCALE_P share
    assert 0.08 < float(grey.float().mean()) < 0.24
    coloured = chroma[~grey]
    assert float(coloured.min()) >= 0.8**3 - 1e-3 and float(coloured.max()) <= 1.2**3 + 1e-3

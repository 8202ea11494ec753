"""The study's inputs: the bundle's float model, a seeded stratified sample, images as float NCHW."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemask.data import transforms
from edgemask.errors import BundleError, ConfigError


def load_float_model(bundle: Any, device: str = "cpu") -> Any:
    """The bundle's float model in torch, eval mode, from ``weights.safetensors`` + manifest arch.

    Raises:
        BundleError: no float weights in the bundle.
        ModelError: weights that do not load into the manifest's architecture.
    """
    from edgemask.models import load_weights

    entry = next((m for m in bundle.manifest.models if m.format == "safetensors"), None)
    path = bundle.path(entry.file) if entry is not None else None
    if entry is None or path is None or not path.is_file():
        raise BundleError(
            f"bundle {bundle.root} has no float weights (weights.safetensors); the stability study "
            "attacks the float model, so re-export the bundle with 'edgemask export RUN --out "
            f"{bundle.root} --overwrite'"
        )
    model = load_weights(
        bundle.manifest.arch,
        bundle.manifest.arch_args,
        path,
        fix="re-export the bundle",
        described_by=bundle.root / "manifest.json",
    )
    return model.to(device).eval()


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices drawn without replacement, classes in proportion to their counts, seeded.

    The same (labels, n, seed) always gives the same sorted indices; n = 0 or
    n = len(labels) gives every index.

    Raises:
        ConfigError: n larger than the number of samples.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n == 0 or n == total:
        return np.arange(total)
    if n > total:
        raise ConfigError(
            f"the dataset has only {total} images but --n asks for {n}; lower --n to at most {total} (or --n 0 for all)"
        )
    rng = np.random.default_rng([seed, 1301])
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / total
    take = np.floor(quota).astype(int)
    # Largest remainders get the leftover slots (ties broken by class order: deterministic).
    for i in np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC (a FaceDataset's images) or float NCHW in [0,1] → contiguous float32 NCHW.

    Checks what a user's data must look like (ConfigError with the fix), then
    converts with :func:`edgemask.data.transforms.to_nchw_float`.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ConfigError(f"uint8 images must be (N, S, S, 3) RGB, got shape {images.shape}")
        return transforms.to_nchw_float(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"float images must be (N, 3, S, S) in [0, 1], got shape {images.shape}")
    x = transforms.to_nchw_float(images)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ConfigError(
            f"float images must lie in [0, 1] (got {x.min():.3g}..{x.max():.3g}); divide 8-bit pixels by 255"
        )
    return x


def looks_like_probabilities(logits: np.ndarray) -> bool:
    """True when every row is non-negative and sums to 1: a softmax output, not logits."""
    if logits.size == 0:
        return False
    return bool(np.all(logits >= 0) and np.allclose(logits.sum(1), 1.0, atol=1e-3))


__all__ = ["load_float_model", "looks_like_probabilities", "stratified_sample", "to_nchw_float"]

"""Local sensitivity: how much the logits move per unit of input change.

The seed deck frames stability as the size of the derivative: a model is
stable at ``x`` when ``f(x+δ)`` stays close to ``f(x)`` for small ``δ``. For
an engine we cannot differentiate (ONNX Runtime, TensorRT) the derivative is
estimated by finite differences along random directions::

    s(x) = ‖f(x+δ) − f(x)‖₂ / ‖δ‖₂,   δ random, ‖δ‖₂ = scale · ‖x‖₂

averaged over a few directions. Every engine sees the same δ (the probes are
seeded per scale and trial), so the numbers are comparable. For a smooth
float model ``s`` barely changes with ``scale``; for an int8 engine the
activations move in quantization steps, so at small scales many probes change
nothing (s = 0) and the rest jump: the fraction of zero responses is reported
beside the mean for that reason.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

LogitsFn = Callable[[np.ndarray], np.ndarray]


def probes(
    x: np.ndarray, scales: tuple[float, ...], trials: int, seed: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(scale index, trial, x + δ clipped to [0,1], ‖δ_effective‖₂ per sample)``.

    The same arguments give the same probes, so each engine can regenerate
    them instead of holding all of them in memory.

    Args:
        x: (N, C, H, W) float32 in [0, 1].
    """
    xn = np.sqrt((x.astype(np.float64) ** 2).reshape(len(x), -1).sum(1))  # (N,)
    for si, scale in enumerate(scales):
        for t in range(trials):
            rng = np.random.default_rng([seed, 7919, si, t])
            u = rng.standard_normal(x.shape).astype(np.float32)
            un = np.sqrt((u.astype(np.float64) ** 2).reshape(len(x), -1).sum(1))
            d = u * (scale * xn / np.maximum(un, 1e-12)).astype(np.float32).reshape(-1, 1, 1, 1)
            xp = np.clip(x + d, 0.0, 1.0).astype(np.float32)
            # Clipping shortens δ at saturated pixels; divide by what was really applied.
            dn = np.sqrt(((xp - x).astype(np.float64) ** 2).reshape(len(x), -1).sum(1))
            yield si, t, xp, dn


def local_sensitivity(
    logits_fn: LogitsFn, x: np.ndarray, base_logits: np.ndarray, scales: tuple[float, ...], trials: int, seed: int
) -> dict[float, np.ndarray]:
    """Per-sample finite-difference sensitivity of one engine, per scale.

    Args:
        logits_fn: (M, C, H, W) float32 → (M, K) logits (one engine).
        x: (N, C, H, W) clean inputs; ``base_logits`` their (N, K) logits.

    Returns:
        ``{scale: (N,) mean over trials of ‖Δlogits‖₂ / ‖δ‖₂}`` (NaN where δ vanished).
    """
    acc = {s: np.zeros(len(x)) for s in scales}
    for si, _, xp, dn in probes(x, scales, trials, seed):
        dl = np.sqrt(((logits_fn(xp).astype(np.float64) - base_logits) ** 2).sum(1))
        with np.errstate(divide="ignore", invalid="ignore"):
            acc[scales[si]] += np.where(dn > 0, dl / dn, np.nan)
    return {s: v / max(1, trials) for s, v in acc.items()}


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean, median, 90th percentile and the fraction of exact zeros of per-sample sensitivities."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "p90": None, "zero_fraction": None}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "zero_fraction": float(np.mean(v == 0)),
    }


__all__ = ["local_sensitivity", "probes", "summarize"]

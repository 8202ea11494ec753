"""Local sensitivity ‖f(x+δ) − f(x)‖₂ / ‖δ‖₂ against closed forms."""

from __future__ import annotations

import numpy as np

from edgemask.stability.sensitivity import local_sensitivity, probes, summarize


def _linear(k: int, d: int, seed: int = 0):
    w = np.random.default_rng(seed).standard_normal((k, d))
    return w, lambda z: z.reshape(len(z), -1).astype(np.float64) @ w.T


def test_linear_model_gives_the_directional_gain_of_its_matrix():
    x = np.random.default_rng(1).uniform(0.3, 0.7, (5, 3, 4, 4)).astype(np.float32)  # far from the box edges
    w, f = _linear(3, 48)
    scales, trials = (0.001, 0.01), 3
    got = local_sensitivity(f, x, f(x), scales, trials, seed=2)
    expect = {s: np.zeros(5) for s in scales}
    for si, _, xp, dn in probes(x, scales, trials, seed=2):
        d = (xp - x).reshape(5, -1).astype(np.float64)
        assert np.allclose(np.linalg.norm(d, axis=1), dn)
        assert np.allclose(dn, scales[si] * np.linalg.norm(x.reshape(5, -1).astype(np.float64), axis=1), rtol=1e-5)
        expect[scales[si]] += np.linalg.norm(d @ w.T, axis=1) / dn / trials
    for s in scales:
        assert np.allclose(got[s], expect[s], rtol=1e-3)
        # a linear map's gain lies between its smallest and largest singular values
        sv = np.linalg.svd(w, compute_uv=False)
        assert np.all(got[s] <= sv.max() * (1 + 1e-3))


def test_clipping_shortens_delta_and_is_divided_out():
    x = np.ones((2, 3, 4, 4), np.float32)  # saturated: about half of every δ is clipped away
    x[1] = 0.5
    for _, _, xp, dn in probes(x, (0.01,), 1, seed=0):
        applied = np.linalg.norm((xp - x).reshape(2, -1).astype(np.float64), axis=1)
        assert np.allclose(applied, dn)
        assert dn[0] < 0.8 * 0.01 * np.linalg.norm(x[0])  # clipped
        assert np.isclose(dn[1], 0.01 * np.linalg.norm(x[1]), rtol=1e-5)


def test_step_function_shows_zero_responses_at_small_scales():
    x = np.random.default_rng(3).uniform(0.2, 0.8, (40, 3, 4, 4)).astype(np.float32)

    def quantized(z):  # logits change only when the pixel sum crosses a step of 0.5
        s = z.reshape(len(z), -1).sum(1)
        return np.stack([np.floor(s / 0.5), -np.floor(s / 0.5)], axis=1)

    small = summarize(local_sensitivity(quantized, x, quantized(x), (1e-4,), 2, seed=0)[1e-4])
    assert small["zero_fraction"] > 0.5 and small["n"] == 40
    assert summarize(np.array([np.nan, 0.0, 2.0]))["n"] == 2

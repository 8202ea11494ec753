"""The base Runner's bookkeeping, on the null backend (no model file, no optional dependency)."""

from __future__ import annotations

import numpy as np

from edgemask.backends.base import LATENCY_HISTORY
from edgemask.backends.null.runner import NullRunner


def test_latency_history_is_bounded_and_keeps_the_newest():
    """A service calls infer() for months: the per-call history must not grow without bound."""
    x = np.zeros((1, 3, 8, 8), np.float32)
    with NullRunner(8, 3) as r:
        for _ in range(LATENCY_HISTORY + 25):
            r.infer(x)
        assert len(r.latencies_ms) == LATENCY_HISTORY
        r.latencies_ms.append(-1.0)  # a marker: the next call must push it back from the end, not vanish
        r.infer(x)
        assert len(r.latencies_ms) == LATENCY_HISTORY
        assert r.latencies_ms[-2] == -1.0 and r.latencies_ms[-1] >= 0
        r.latencies_ms.clear()  # what the service does after its warm-up call
        r.infer(x)
        assert len(r.latencies_ms) == 1


def test_uint8_nhwc_input_is_converted_like_the_float_one():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    r = NullRunner(8, 3)
    x = r.prepare(u8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)

"""Defaults of ``edgemask compare`` and ``edgemask bench`` (the one place they live)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgemask.errors import ConfigError


@dataclass
class CompareConfig:
    """Tolerances an engine must meet against the float reference, and how to feed it.

    Rules per precision (an engine passes when its rule holds):

    * fp32: max |Δlogit| ≤ ``fp32_max_abs_diff`` — the same math in another
      runtime; anything above ~1e-4 means a different graph, not rounding.
    * fp16: max |Δlogit| ≤ ``fp16_max_abs_diff`` **or** top-1 agreement ≥
      ``fp16_min_agreement`` — large logits lose absolute precision in half,
      so a big but harmless Δ on a confident sample must not fail the export.
    * int8: top-1 agreement ≥ ``int8_min_agreement`` — quantized logits
      differ by design; what matters is whether decisions change.
    """

    fp32_max_abs_diff: float = 1e-3
    fp16_max_abs_diff: float = 5e-2
    fp16_min_agreement: float = 0.99
    int8_min_agreement: float = 0.98
    batch_size: int = 64  # images per infer() call
    max_images: int = 0  # 0 = every image of --data
    seed: int = 0  # which images --n keeps

    def __post_init__(self) -> None:
        for f in ("fp32_max_abs_diff", "fp16_max_abs_diff"):
            if not getattr(self, f) >= 0:
                raise ConfigError(f"{f} must be >= 0, got {getattr(self, f)!r}")
        for f in ("fp16_min_agreement", "int8_min_agreement"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ConfigError(f"{f} must be a fraction from 0 to 1 (0.98 = 98%), got {getattr(self, f)!r}")
        if self.batch_size < 1 or self.max_images < 0:
            raise ConfigError(f"batch_size must be >= 1 and max_images >= 0, got {self.batch_size}, {self.max_images}")

    def rule(self, precision: str) -> dict[str, float]:
        """The thresholds that apply to ``precision`` (JSON-ready)."""
        if precision == "fp32":
            return {"max_abs_diff": self.fp32_max_abs_diff}
        if precision == "fp16":
            return {"max_abs_diff": self.fp16_max_abs_diff, "min_agreement": self.fp16_min_agreement}
        if precision == "int8":
            return {"min_agreement": self.int8_min_agreement}
        raise ConfigError(f"no tolerance for precision {precision!r}; expected fp32, fp16 or int8")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchConfig:
    """How ``edgemask bench`` times each engine."""

    batch: int = 32  # images per call for the throughput run
    warmup: int = 20  # untimed calls before each timed run (allocations, kernel selection)
    iters: int = 200  # timed batch-1 calls (p99 needs >= 100 to mean anything)
    batch_iters: int = 20  # timed batch-N calls
    seed: int = 0  # random input pixels

    def __post_init__(self) -> None:
        if self.batch < 1 or self.iters < 1 or self.batch_iters < 1 or self.warmup < 0:
            raise ConfigError(
                f"bench needs batch, iters, batch_iters >= 1 and warmup >= 0; got batch={self.batch}, "
                f"iters={self.iters}, batch_iters={self.batch_iters}, warmup={self.warmup}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""NullRunner: a fixed random linear map from pixels to logits.

It needs no model file and no engine, so tests can exercise the Runner
contract, the compare/bench plumbing and the camera pipeline anywhere, and
the service loop can be timed without a model. Its logits mean nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgemask.backends import check_options, check_precision
from edgemask.backends.base import Runner

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle


class NullRunner(Runner):
    """Deterministic fake: ``logits = W · flatten(x) + b`` with a seeded random W."""

    name: ClassVar[str] = "null"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    #: its numbers are not those of any model; compare/contract tests skip parity for it
    fake: ClassVar[bool] = True

    def __init__(self, input_size: int, num_classes: int, precision: str = "fp32", seed: int = 0):
        check_precision(type(self), precision)
        super().__init__(input_size, num_classes, precision)
        self.seed = int(seed)
        self._w: np.ndarray | None = None  # (3*S*S, K)
        self._b: np.ndarray | None = None  # (K,)

    @classmethod
    def from_bundle(cls, bundle: "Bundle", precision: str = "fp32", **options: Any) -> "NullRunner":
        """A NullRunner shaped like the bundle's model (input size, class count)."""
        check_options(cls, options, ("seed",))
        return cls(bundle.input_size, len(bundle.class_names), precision, **options)

    def _activate_impl(self) -> None:
        rng = np.random.default_rng(self.seed)
        d = 3 * self.input_size * self.input_size
        # Scaled so logits of [0,1] images are O(1), like a trained model's.
        self._w = (rng.standard_normal((d, self.num_classes)) / np.sqrt(d)).astype(np.float32)
        self._b = rng.standard_normal(self.num_classes).astype(np.float32)

    def _deactivate_impl(self) -> None:
        self._w = self._b = None

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        assert self._w is not None and self._b is not None
        return x.reshape(x.shape[0], -1) @ self._w + self._b  # (N, 3SS) @ (3SS, K) -> (N, K)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(fake=True, seed=self.seed)
        return d

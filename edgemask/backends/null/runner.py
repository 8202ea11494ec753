"""NullRunner: a fixed random linear map from pixels to logits (or to a detector head).

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
        return cls(bundle.input_size, len(bundle.class_names), precision, **options).shaped_like(bundle)

    def _activate_impl(self) -> None:
        rng = np.random.default_rng(self.seed)
        if len(self.output_tail) == 3:  # a detector head (C, h, w): a 1x1 map of the block-averaged pixels
            c = self.output_tail[0]
            self._w = (rng.standard_normal((c, 3)) * 2.0).astype(np.float32)
            self._b = (rng.standard_normal(c) - 2.0).astype(np.float32)
            return
        d = 3 * self.input_size * self.input_size
        # Scaled so logits of [0,1] images are O(1), like a trained model's.
        self._w = (rng.standard_normal((d, self.num_classes)) / np.sqrt(d)).astype(np.float32)
        self._b = rng.standard_normal(self.num_classes).astype(np.float32)

    def _deactivate_impl(self) -> None:
        self._w = self._b = None

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        assert self._w is not None and self._b is not None
        if len(self.output_tail) == 3:
            c, h, w = self.output_tail
            n, _, hh, ww = x.shape
            pooled = x.reshape(n, 3, h, hh // h, w, ww // w).mean(axis=(3, 5))  # (N, 3, h, w)
            y = np.einsum("kc,nchw->nkhw", self._w, pooled) + self._b[None, :, None, None]
            y[:, 0] = 1.0 / (1.0 + np.exp(-y[:, 0]))  # heat in [0, 1], like the model
            y[:, 3:5] = 1.0 / (1.0 + np.exp(-y[:, 3:5]))
            return y.astype(np.float32)  # (N, C, h, w)
        return x.reshape(x.shape[0], -1) @ self._w + self._b  # (N, 3SS) @ (3SS, K) -> (N, K)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(fake=True, seed=self.seed)
        return d

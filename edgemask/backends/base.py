"""The Runner contract every inference backend implements.

A Runner is cheap to construct; heavy resources (sessions, engines, CUDA
contexts) exist only between :meth:`activate` and :meth:`deactivate`. Use it as
a context manager. :meth:`infer` takes either float32 NCHW pixels in [0, 1]
or uint8 NHWC RGB images, validates them against the bundle's input spec,
times the call, and returns float32 logits (N, K) -- or, for a bundle's face
detector (``Bundle.detector_view()``), its dense head (N, 5, h, w) on
rectangular (H, W) inputs; :meth:`Runner.shape_io` sets those shapes. Backends implement the
small ``*_impl`` hooks only, so every backend raises the same errors.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from typing import Any, ClassVar, Deque

import numpy as np

from edgemask.data.transforms import to_nchw_float
from edgemask.errors import BackendError

#: How many per-call latencies a runner keeps, newest last: a camera service calls infer() for
#: months, so the history is a ring, not a list that grows until the box runs out of memory.
LATENCY_HISTORY = 4096


class Runner(abc.ABC):
    """Base class of all backends."""

    #: registry name, e.g. "onnxrt"
    name: ClassVar[str] = ""
    #: True when numbers come from a host emulation rather than the real engine
    emulated: ClassVar[bool] = False

    def __init__(self, input_size: int, num_classes: int, precision: str = "fp32"):
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.precision = precision
        self.active = False
        #: infer() wall time per call in ms, the newest :data:`LATENCY_HISTORY` calls (oldest dropped).
        self.latencies_ms: Deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._input_hw: tuple[int, int] | None = None
        self._output_tail: tuple[int, ...] | None = None

    @property
    def input_hw(self) -> tuple[int, int]:
        """(H, W) of an input image: square (``input_size``) for a classifier."""
        return self._input_hw or (self.input_size, self.input_size)

    @property
    def output_tail(self) -> tuple[int, ...]:
        """The output's shape after the batch axis: (K,) logits, or a detector head (5, h, w)."""
        return self._output_tail or (self.num_classes,)

    def shape_io(self, input_hw: Any, output_tail: Any) -> "Runner":
        """Set a non-square input and a non-logits output (a detector's); returns self.

        Call before :meth:`activate` (backends size their buffers there).
        """
        self._input_hw = (int(input_hw[0]), int(input_hw[1]))
        self._output_tail = tuple(int(v) for v in output_tail)
        return self

    def shaped_like(self, bundle: Any) -> "Runner":
        """:meth:`shape_io` from a bundle (or its detector view); what every ``from_bundle`` ends with."""
        hw = getattr(bundle, "input_hw", None)
        tail = getattr(bundle, "output_tail", None)
        return self.shape_io(hw, tail) if hw is not None and tail is not None else self

    # -- availability ----------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and if not, why (one line, with the fix)."""
        return True, ""

    # -- lifecycle ---------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.active:
            ok, why = self.available()
            if not ok:
                from edgemask.errors import NotAvailableError

                raise NotAvailableError(f"backend {self.name!r} is not available here: {why}")
            self._activate_impl()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate_impl()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # -- inference ---------------------------------------------------------
    def prepare(self, batch: Any) -> np.ndarray:
        """Validate ``batch`` and return contiguous float32 NCHW in [0, 1]."""
        try:
            import torch

            if isinstance(batch, torch.Tensor):
                batch = batch.detach().cpu().numpy()
        except ImportError:  # torch is optional for pure ONNX deployments
            pass
        if not isinstance(batch, np.ndarray):
            raise BackendError(f"infer() takes a numpy array or torch tensor, got {type(batch).__name__}")
        h, w = self.input_hw
        if batch.dtype == np.uint8:
            if batch.ndim != 4 or batch.shape[1:] != (h, w, 3):
                raise BackendError(f"uint8 input must be NHWC (N, {h}, {w}, 3) RGB, got shape {tuple(batch.shape)}")
            batch = to_nchw_float(batch)  # (N, 3, H, W) float32 in [0, 1]
        elif batch.dtype in (np.float32, np.float64, np.float16):
            if batch.ndim != 4 or batch.shape[1:] != (3, h, w):
                raise BackendError(
                    f"float input must be NCHW (N, 3, {h}, {w}) in [0,1], got shape {tuple(batch.shape)}"
                )
            batch = batch.astype(np.float32, copy=False)
            if batch.size and (float(batch.min()) < -1e-3 or float(batch.max()) > 1.0 + 1e-3):
                raise BackendError(
                    f"float input must lie in [0, 1] (got {float(batch.min()):.3g}..{float(batch.max()):.3g}); "
                    "divide 8-bit pixels by 255, do not normalise: mean/std are inside the model"
                )
        else:
            raise BackendError(f"input dtype {batch.dtype} not supported; use float32 NCHW in [0,1] or uint8 NHWC")
        if batch.shape[0] == 0:
            raise BackendError("empty batch: infer() needs at least one image")
        return np.ascontiguousarray(batch)

    def infer(self, batch: Any) -> np.ndarray:
        """Logits (N, K) float32 -- or the detector head (N, *output_tail) -- for a batch of images (see :meth:`prepare`)."""
        if not self.active:
            raise BackendError(f"{self.name} runner is not active; use 'with runner:' or call activate() first")
        x = self.prepare(batch)
        t0 = time.perf_counter()
        out = np.asarray(self._infer_impl(x), dtype=np.float32)
        self.latencies_ms.append((time.perf_counter() - t0) * 1e3)
        if out.shape != (x.shape[0],) + self.output_tail:
            raise BackendError(
                f"{self.name} returned shape {out.shape}, expected {(x.shape[0],) + self.output_tail}; "
                "the model file does not match the bundle's manifest"
            )
        return out

    def describe(self) -> dict[str, Any]:
        """What produced the numbers: used to label every result."""
        return {"backend": self.name, "precision": self.precision, "emulated": self.emulated}

    # -- hooks -------------------------------------------------------------
    @abc.abstractmethod
    def _activate_impl(self) -> None: ...

    def _deactivate_impl(self) -> None:
        pass

    @abc.abstractmethod
    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        """x: float32 NCHW contiguous in [0,1] → logits (N, K)."""

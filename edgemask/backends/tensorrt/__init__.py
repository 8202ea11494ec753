"""TensorRT backend: the one home of every module that imports ``tensorrt``, ``pycuda`` or ``cuda``.

* ``builder``: ``engine_from_onnx`` (TensorRT's builder), ``import_tensorrt``,
  ``local_tensorrt_info``;
* ``calibrator``: the legacy INT8 calibration cache and calibrator (8.x, 10.x);
* ``runner``: :class:`~edgemask.backends.tensorrt.runner.TensorRTRunner`
  (registry name "tensorrt"), which runs engines with pycuda or cuda-python
  (``cuda_api``);
* ``ort_providers``: ONNX Runtime's TensorRT/CUDA execution-provider options.

Nothing here imports ``tensorrt``, ``pycuda`` or ``cuda`` at import time, and
nothing here imports ``edgemask.export``: export plans engines and calls down
into this package, never the other way round (tests/test_layering.py).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "TensorRTRunner":
        from edgemask.backends.tensorrt.runner import TensorRTRunner

        return TensorRTRunner
    if name == "ort_execution_providers":
        from edgemask.backends.tensorrt.ort_providers import ort_execution_providers

        return ort_execution_providers
    raise AttributeError(f"module 'edgemask.backends.tensorrt' has no attribute {name!r}")


__all__ = ["TensorRTRunner", "ort_execution_providers"]

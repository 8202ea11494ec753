"""TensorRT backend: engines built per device (``edgemask engine build``), run with pycuda or cuda-python.

Nothing here imports ``tensorrt``, ``pycuda`` or ``cuda`` at import time; the
registry name is "tensorrt" → :class:`~edgemask.backends.tensorrt.runner.TensorRTRunner`.
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

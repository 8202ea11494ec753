"""The ``onnxrt`` backend: ONNX Runtime on the bundle's ONNX files (fp32, fp16, int8 QDQ)."""

from edgemask.backends.onnxrt.runner import PROVIDER_ALIASES, OnnxRuntimeRunner

__all__ = ["PROVIDER_ALIASES", "OnnxRuntimeRunner"]

"""The ``opencv`` backend: OpenCV's DNN module on the fp32 ONNX file."""

from edgemask.backends.opencv_dnn.runner import OpenCVRunner

__all__ = ["OpenCVRunner"]

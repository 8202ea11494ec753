"""OpenCVRunner: ``cv2.dnn.readNetFromONNX`` on the bundle's ONNX models.

Many camera applications already link OpenCV and run their classifier
through its DNN module instead of shipping ONNX Runtime, so this is the
second, independent ONNX importer an export is checked against, at every
precision the bundle ships:

* fp32: the reference file. (OpenCV 4.14 died with SIGFPE on a dynamo-exported
  opset-18 file; the exporter's opset-17 TorchScript path is what it reads.)
* fp16: OpenCV's CPU target widens fp16 weights to fp32 when it loads the
  graph, so this runs fp32 arithmetic on fp16-rounded weights -- not the fp16
  arithmetic of ONNX Runtime or TensorRT; :meth:`describe` says so.
* int8: OpenCV's importer maps the QDQ graph onto its own int8 layers, an
  implementation independent of ONNX Runtime's (which runs the TensorRT-placed
  Q/DQ as float ops on exactly quantized tensors), so its logits differ from
  ONNX Runtime's by a few quantization steps.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgemask.backends import check_options, check_precision
from edgemask.backends.base import Runner
from edgemask.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle


class OpenCVRunner(Runner):
    """An ONNX file in a ``cv2.dnn.Net`` on the CPU (OpenCV's own backend)."""

    name: ClassVar[str] = "opencv"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")

    def __init__(
        self,
        model: str | Path,
        input_size: int,
        num_classes: int,
        precision: str = "fp32",
        num_threads: int | None = None,
    ):
        """Record what to load; nothing is read until :meth:`activate`.

        Args:
            model: the ``.onnx`` file of ``precision``.
            input_size, num_classes: from the bundle's manifest.
            precision: fp32, fp16 or int8 (what the file holds).
            num_threads: OpenCV's (process-wide) thread count; default
                ``edgemask.config.num_threads()``.
        """
        check_precision(type(self), precision)
        super().__init__(input_size, num_classes, precision)
        self.model = Path(model)
        self.num_threads = num_threads
        self._net: Any = None
        self._cv2: Any = None
        self._saved_threads: int | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("cv2") is None:
            return False, "OpenCV is not installed here; 'pip install opencv-python-headless'"
        return True, ""

    @classmethod
    def from_bundle(cls, bundle: "Bundle", precision: str = "fp32", **options: Any) -> "OpenCVRunner":
        """The bundle's ONNX model of ``precision``."""
        check_precision(cls, precision)
        check_options(cls, options, ("num_threads",))
        r = cls(bundle.model_path(precision, "onnx"), bundle.input_size, len(bundle.class_names), precision, **options)
        return r.shaped_like(bundle)

    def _activate_impl(self) -> None:
        import cv2

        from edgemask.config import num_threads

        if not self.model.is_file():
            raise ModelError(f"{self.model} is missing; copy the whole bundle folder again or re-export it")
        try:
            net = cv2.dnn.readNetFromONNX(str(self.model))
        except cv2.error as e:
            first = (str(e).strip().splitlines() or ["cv2.error"])[-1]
            raise ModelError(
                f"OpenCV {cv2.__version__} cannot read {self.model.name} ({first.strip()}); "
                "re-export it with opset 17, or use the onnxrt backend"
            ) from None
        if net.empty():
            raise ModelError(f"OpenCV read an empty network from {self.model.name}; re-export the bundle")
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._saved_threads = cv2.getNumThreads()
        cv2.setNumThreads(int(self.num_threads or num_threads()))  # process-wide: restored on deactivate
        self._net = net
        self._cv2 = cv2

    def _deactivate_impl(self) -> None:
        self._net = None
        if self._saved_threads is not None:
            self._cv2.setNumThreads(self._saved_threads)
            self._saved_threads = None

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        self._net.setInput(x)  # (N,3,S,S) float32 blob, already in [0,1]
        return np.array(self._net.forward(), copy=True)  # (N,K); copy: forward() reuses its buffer

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model=self.model.name)
        if self._net is not None:
            d.update(opencv_version=self._cv2.__version__, num_threads=self._cv2.getNumThreads(), target="cpu")
            if self.precision == "fp16":
                d["arithmetic"] = "fp32 on fp16-rounded weights (OpenCV's CPU target widens fp16 at load)"
        return d

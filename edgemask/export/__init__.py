"""Export: torch → ONNX fp32/fp16/int8 (QDQ), calibration, and bundles.

Typical use::

    from edgemask.export import export_bundle
    export_bundle("runs/default", "export/mask-v1", precisions=("fp32", "fp16", "int8"),
                  calibration="default", opset=17, method="minmax")

Importing this package is cheap: torch, onnx and onnxruntime are imported by
the functions that need them.
"""

from __future__ import annotations

from edgemask.export.config import CALIBRATION_METHODS, DEFAULT_OPSET, EXPORT_PRECISIONS, ExportConfig
from edgemask.utils.lazy import lazy_exports

_LAZY = {
    "export_bundle": "edgemask.export.bundle_writer",
    "export_bundle_from_config": "edgemask.export.bundle_writer",
    "export_for_device": "edgemask.export.for_device",
    "parse_precisions": "edgemask.export.bundle_writer",
    "onnx_from_torch": "edgemask.export.onnx_export",
    "load_onnx": "edgemask.export.onnx_export",
    "ort_logits": "edgemask.export.onnx_export",
    "opencv_check": "edgemask.export.onnx_export",
    "fp16_from_onnx": "edgemask.export.quantize",
    "int8_from_onnx": "edgemask.export.quantize",
    "check_qdq_symmetric": "edgemask.export.quantize",
    "qdq_problems": "edgemask.export.quantize",
    "CalibrationRecipe": "edgemask.export.calibration",
    "load_recipe": "edgemask.export.calibration",
    "find_recipe": "edgemask.export.calibration",
    "list_recipes": "edgemask.export.calibration",
    "select_images": "edgemask.export.calibration",
    "trt_cache_text": "edgemask.export.calibration",
    "read_trt_cache": "edgemask.export.calibration",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["CALIBRATION_METHODS", "DEFAULT_OPSET", "EXPORT_PRECISIONS", "ExportConfig", *_LAZY]

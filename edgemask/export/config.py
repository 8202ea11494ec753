"""ExportConfig: the defaults of ``edgemask export`` in one place.

The CLI shows these as its ``--help`` defaults, and every bundle carries the
config it was made with as ``resolved_config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

#: Precisions a bundle can hold, in the order they are built.
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
#: Calibration methods of ONNX Runtime's static quantization that we expose.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: ONNX opsets the TorchScript exporter writes for our models and we test.
MIN_OPSET, MAX_OPSET = 11, 18
#: The opset written when neither the user nor a device profile lowers it (the one home of this number).
DEFAULT_OPSET = 17


@dataclass
class ExportConfig:
    """Everything ``export_bundle`` needs; saved as ``resolved_config.json`` in the bundle.

    Attributes:
        run: training run directory (``weights.safetensors`` + ``model.json``).
        out: bundle directory to write.
        name: bundle name recorded in the manifest (default: the folder name of ``out``).
        precisions: which ONNX models to ship. ``fp32`` is always built, since
            the others are made from it, but is left out of the bundle if not asked for.
        calibration: recipe name (looked up in the calibration search path) or a TOML path.
        method: activation calibration method for int8: minmax | entropy | percentile.
        percentile: the percentile used by ``method="percentile"``.
        opset: target ONNX opset; None = :data:`DEFAULT_OPSET`, or with
            ``device`` the lower of it and the profile's maximum. Older
            TensorRT parsers accept only older opsets (TensorRT 8.2 / JetPack
            4.6: up to 13), so a higher opset for such a device is refused.
        per_channel: per-output-channel weight scales for int8 (TensorRT's
            explicit quantization supports them for Conv and Gemm weights).
        int8_target: where the int8 model's Q/DQ nodes go: ``tensorrt`` (on
            Conv/Gemm inputs only, TensorRT's recommended placement; ONNX
            Runtime runs it as an exact emulation, not faster than fp32) or
            ``cpu`` (ONNX Runtime's placement, fused into integer kernels on
            CPU, 7-bit weights against x86 int16 saturation). See
            ``edgemask.export.quantize.INT8_TARGETS``.
        quantize_output: with the ``cpu`` target, also quantize the graph
            output (the logits; the ``tensorrt`` placement never does). Off by
            default: a Q/DQ pair on the logits clips them to the calibration
            range, so two saturated classes tie and the argmax flips.
        golden_count: images in ``golden/inputs.npy`` for on-device self-tests.
        probe_count: images attacked with DeepFool on the float model for the
            stability probe (``probe/inputs.npy``) a box runs after install; 0 = none.
        tolerance: max |Δlogit| vs torch allowed on the golden inputs, per
            precision; ``None`` means "reported, not enforced" (int8).
        simplify: run onnxslim / onnxsim on the fp32 graph when one is installed.
        opencv_check: load the fp32 file with OpenCV's DNN module (in a child
            process, since a bad file can crash it) and record agreement.
        trt_cache_version: the ``TRT-<version>-EntropyCalibration2`` header of
            the legacy calibration cache, as TensorRT writes it (8.2.1 → 8201).
        overwrite: replace an existing bundle in ``out`` (its version + 1).
        detector: run folder of ``edgemask detector train``: its face detector
            goes into the same bundle (``detector/``, the manifest's ``detector``
            entry) at the same precisions. None = a classifier-only bundle.
        detector_calibration: scenes that calibrate the detector's int8 model and
            make its golden inputs: ``synth`` (generated 640x480 scenes, offline)
            or a VOC / ``data synth`` folder; whole frames, letterboxed to its input.
        detector_calibration_count, detector_calibration_seed: how many scenes, and their seed.
        detector_golden_count: golden scenes stored for on-device self-tests.
        detector_tolerance: per precision ``{"heat_max_abs", "box_agreement"}``
            overriding ``detector_export.DEFAULT_TOLERANCE``.
        detector_decode: overrides of the run's decode parameters (score_threshold, nms_iou, ...).
        device: a device profile (``edgemask devices list``) to export for: its
            opset limit, and warnings for precisions it does not run fast. None = generic.
        engine: also build ``device``'s TensorRT engines into the bundle (needs
            TensorRT and a GPU here; checked before exporting).
        engine_options: passed to ``build_engines_for_bundle`` (dla_core, int8_mode, batch, workspace_mib, ...).
    """

    run: str = ""
    out: str = "export/default"
    name: str | None = None
    precisions: tuple[str, ...] = EXPORT_PRECISIONS
    calibration: str = "default"
    method: str = "minmax"
    percentile: float = 99.999
    opset: Optional[int] = None
    per_channel: bool = True
    int8_target: str = "tensorrt"
    quantize_output: bool = False
    golden_count: int = 16
    probe_count: int = 16
    tolerance: dict[str, float | None] = field(default_factory=lambda: {"fp32": 1e-4, "fp16": 1e-2, "int8": None})
    simplify: bool = True
    opencv_check: bool = True
    trt_cache_version: int = 8201
    overwrite: bool = False
    detector: str | None = None
    detector_calibration: str = "synth"
    detector_calibration_count: int = 32
    detector_calibration_seed: int = 4321
    detector_golden_count: int = 4
    detector_tolerance: dict[str, Any] = field(default_factory=dict)
    detector_decode: dict[str, Any] = field(default_factory=dict)
    device: Optional[str] = None
    engine: bool = False
    engine_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["precisions"] = list(self.precisions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExportConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "precisions" in kw:
            kw["precisions"] = tuple(kw["precisions"])
        return cls(**kw)

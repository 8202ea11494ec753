"""ExportConfig: the defaults of ``edgemask export`` in one place.

The CLI shows these as its ``--help`` defaults, and every bundle carries the
config it was made with as ``resolved_config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from edgemask.config import described

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

    An option's description is its field's ``metadata["help"]``, the line
    ``edgemask export --help`` shows (:func:`edgemask.config.field_help`).
    What a help line has no room for, and the fields without an option:

        name: None = the folder name of ``out``.
        precisions: ``fp32`` is always built, since the others are made from
            it, but is left out of the bundle if not asked for.
        opset: older TensorRT parsers accept only older opsets (TensorRT 8.2 /
            JetPack 4.6: up to 13), so a higher opset for such a device is refused.
        per_channel: per-output-channel weight scales for int8 (TensorRT's
            explicit quantization supports them for Conv and Gemm weights).
        int8_target: ``tensorrt`` is TensorRT's recommended placement; ONNX
            Runtime runs it as an exact emulation, not faster than fp32. ``cpu``
            is fused into integer kernels on CPU, with 7-bit weights against x86
            int16 saturation. See ``edgemask.export.quantize.INT8_TARGETS``.
        quantize_output: with the ``cpu`` target, also quantize the graph
            output (the logits; the ``tensorrt`` placement never does). Off by
            default: a Q/DQ pair on the logits clips them to the calibration
            range, so two saturated classes tie and the argmax flips.
        probe_count: the attacked images are stored as ``probe/inputs.npy``.
        tolerance: max |Δlogit| vs torch allowed on the golden inputs, per
            precision; ``None`` means "reported, not enforced" (int8).
        opencv_check: runs in a child process, since a bad file can crash OpenCV.
        trt_cache_version: the ``TRT-<version>-EntropyCalibration2`` header of
            the legacy calibration cache, as TensorRT writes it.
        overwrite: the new bundle's version is the old one's + 1.
        detector: goes into ``detector/`` and the manifest's ``detector``
            entry. None = a classifier-only bundle.
        detector_calibration: the scenes also make the detector's golden
            inputs; whole frames, letterboxed to its input.
        detector_calibration_seed: seed of the ``synth`` calibration scenes.
        detector_tolerance: per precision ``{"heat_max_abs", "box_agreement"}``
            overriding ``detector_export.DEFAULT_TOLERANCE``.
        detector_decode: overrides of the run's decode parameters (score_threshold, nms_iou, ...).
        engine: needs TensorRT and a GPU here; checked before exporting.
        engine_options: passed to ``build_engines_for_bundle`` (dla_core, int8_mode, batch, workspace_mib, ...).
    """

    run: str = described("", help="Run directory written by 'edgemask train' (weights.safetensors + model.json).")
    out: str = described("export/default", help="Bundle folder to write, e.g. export/mask-v1.")
    name: str | None = described(None, help="Bundle name in the manifest (default: the --out folder name).")
    precisions: tuple[str, ...] = described(
        EXPORT_PRECISIONS, help="Comma-separated precisions to ship: fp32, fp16, int8."
    )
    calibration: str = described(
        "default",
        help="Calibration recipe: a name from calibration/ (or $EDGEMASK_CALIBRATION_DIR) or a .toml path.",
    )
    method: str = described("minmax", help=f"int8 activation calibration: {', '.join(CALIBRATION_METHODS)}.")
    percentile: float = described(99.999, help="Percentile for --calibration-method percentile.")
    opset: Optional[int] = described(
        None,
        help=f"Target ONNX opset ({MIN_OPSET}..{MAX_OPSET}); default {DEFAULT_OPSET}, or with --device the "
        "profile's maximum (13 for TensorRT 8.2 / JetPack 4.6).",
    )
    per_channel: bool = True
    int8_target: str = described(
        "tensorrt",
        help="Q/DQ placement of the int8 model: tensorrt (Conv/Gemm inputs; for TensorRT, "
        "exact emulation on ONNX Runtime) or cpu (ONNX Runtime integer kernels, 7-bit weights).",
    )
    quantize_output: bool = False
    golden_count: int = described(16, help="Golden input images stored for on-device self-tests.")
    probe_count: int = described(
        16,
        help="Images attacked with DeepFool on the float model for the "
        "stability probe a box runs after install (0 = none).",
    )
    tolerance: dict[str, float | None] = field(default_factory=lambda: {"fp32": 1e-4, "fp16": 1e-2, "int8": None})
    simplify: bool = described(True, help="Simplify the fp32 graph with onnxslim/onnxsim if one is installed.")
    opencv_check: bool = described(True, help="Also load the fp32 model with OpenCV's DNN module and compare.")
    trt_cache_version: int = described(
        8201, help="TensorRT version in the legacy calibration cache header (8.2.1 → 8201)."
    )
    overwrite: bool = described(False, help="Replace the bundle in --out (its version goes up by one).")
    detector: str | None = described(
        None,
        help="Run folder of 'edgemask detector train': its face "
        "detector goes into the same bundle at the same precisions.",
    )
    detector_calibration: str = described(
        "synth",
        help="Scenes that calibrate the detector's int8 model (whole frames, "
        "letterboxed): synth, or a VOC / 'data synth' folder.",
    )
    detector_calibration_count: int = described(32, help="Scenes in the detector's calibration set.")
    detector_calibration_seed: int = 4321
    detector_golden_count: int = described(4, help="Golden scenes stored for the detector's self-tests.")
    detector_tolerance: dict[str, Any] = field(default_factory=dict)
    detector_decode: dict[str, Any] = field(default_factory=dict)
    device: Optional[str] = described(
        None,
        help="Target device profile ('edgemask devices list'): "
        "lowers the opset to what its TensorRT reads and warns about precisions it "
        "does not run fast (INT8 on a Jetson Nano).",
    )
    engine: bool = described(
        False,
        help="Also build TensorRT engines for --device into the bundle "
        "(needs TensorRT: run it on the device; checked before exporting).",
    )
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

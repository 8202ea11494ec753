"""The face detector in a bundle: ONNX fp32/fp16/int8 beside the classifier, calibrated on scenes.

:func:`export_detector_into` runs inside the bundle's temporary folder (see
``bundle_writer.export_bundle``), so the detector's files are
hashed, verified and published together with the classifier's, or not at all.
Files, all under ``detector/``::

    weights.safetensors          float weights (the torch runner's)
    model.fp32.onnx              graph: input (N, 3, H, W) in [0, 1] -> head (N, 5, H/4, W/4)
    model.fp16.onnx              float16 inside, float32 I/O
    model.int8.onnx              QDQ, symmetric, calibrated on whole scenes letterboxed to (H, W)
    calibration/table.json       activation ranges; calibration/cache.txt: TensorRT's legacy cache
    golden/inputs.npy            uint8 NHWC letterboxed scenes; golden/outputs.fp32.npy: torch heads

Decode and NMS stay outside the graph (:mod:`edgemask.vision.facedet_decode`),
so every runner runs the same file. Parity is judged on what a detector is
for: the heatmap and the decoded boxes (:func:`~edgemask.vision.facedet_decode.compare_heads`),
fp32 against torch and each precision against the golden reference, with
per-precision tolerances written into the manifest for on-device self-tests.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgemask.errors import ConfigError, DataError, ExportError
from edgemask.progress import Progress

DETECTOR_DIR = "detector"
MODEL_FILES = {p: f"{DETECTOR_DIR}/model.{p}.onnx" for p in ("fp32", "fp16", "int8")}
WEIGHTS_FILE = f"{DETECTOR_DIR}/weights.safetensors"
GOLDEN_INPUTS = f"{DETECTOR_DIR}/golden/inputs.npy"
GOLDEN_OUTPUTS = f"{DETECTOR_DIR}/golden/outputs.fp32.npy"
TABLE_FILE = f"{DETECTOR_DIR}/calibration/table.json"
CACHE_FILE = f"{DETECTOR_DIR}/calibration/cache.txt"
OUTPUT_NAME = "head"
HEAD_CHANNELS = ("heat", "log_w", "log_h", "off_x", "off_y")
LETTERBOX = {
    "align": "top-left",
    "keep_aspect": True,
    "pad_value": 114,
    "resize": "cv2.INTER_AREA when shrinking, cv2.INTER_LINEAR when enlarging",
    "function": "edgemask.vision.facedet_decode.letterbox",
}

#: Per precision, what a runner's heads must meet against ``golden/outputs.fp32.npy`` (torch fp32):
#: the largest heatmap difference and the share of decoded boxes found alike (see ``box_agreement``).
#: None = reported, not enforced. fp32 is a re-implementation of the same arithmetic; fp16 rounds
#: weights and activations; int8 moves peaks near the score threshold, so its boxes may differ.
DEFAULT_TOLERANCE: Dict[str, Dict[str, Optional[float]]] = {
    "fp32": {"heat_max_abs": 1e-3, "box_agreement": 0.95},
    "fp16": {"heat_max_abs": 2e-2, "box_agreement": 0.9},
    "int8": {"heat_max_abs": 0.25, "box_agreement": 0.6},
}


def scene_frames(
    source: str, count: int, seed: int, skip: int = 0, train_split: Optional[Tuple[int, float]] = None
) -> Tuple[List[np.ndarray], List[str]]:
    """``count`` whole RGB frames for calibration or golden inputs, seeded.

    Args:
        source: ``synth`` (640x480 scenes of ``edgemask.data.synth.render_scene``,
            offline) or a VOC / ``data synth`` folder (its images, shuffled with ``seed``).
        skip: leave out the first ``skip`` of that order (the golden set follows the calibration set).
        train_split: (seed, held-out fraction) of a folder the detector trained on: only its
            training images are used, so the held-out photos stay unseen by every step.

    Returns:
        (frames, sources): uint8 RGB (H, W, 3) each, and where each came from.
    """
    if count < 1:
        return [], []
    if source.strip().lower() == "synth":
        from edgemask.data.synth import render_scene

        frames, names = [], []
        i = skip
        while len(frames) < count:
            img, objs = render_scene(np.random.default_rng([seed, i]), 640, 480, 4)
            if objs:  # a calibration frame without a face teaches the heatmap nothing
                frames.append(img)
                names.append(f"synth-scene:{seed}:{i}")
            i += 1
        return frames, names
    from edgemask.data.detection import read_detection_set

    p = Path(source).expanduser()
    if not p.exists():
        raise ConfigError(
            f"--detector-calibration {source} does not exist; pass a VOC or 'data synth' folder, "
            "or synth (generated scenes)"
        )
    ims = read_detection_set(p)  # DataError, one line, for a folder of another layout
    if train_split is not None:
        from edgemask.data.detection import split_images

        ims = split_images(ims, int(train_split[0]), float(train_split[1]))[0] or ims
    order = np.random.default_rng(seed).permutation(len(ims))
    picked = [ims[int(i)] for i in order[skip : skip + count]]
    if not picked and skip:  # too few images to keep golden and calibration apart
        picked = [ims[int(i)] for i in order[:count]]
    if not picked:
        raise DataError(f"{source} has no usable image for the detector's calibration")
    return [im.rgb for im in picked], [im.name for im in picked]


def letterboxed(frames: List[np.ndarray], width: int, height: int) -> np.ndarray:
    """uint8 NHWC canvases (N, height, width, 3) of ``frames`` (the detector's input)."""
    from edgemask.vision.facedet_decode import letterbox

    return (
        np.stack([letterbox(f, width, height)[0] for f in frames])
        if frames
        else np.zeros((0, height, width, 3), np.uint8)
    )


def _nchw(canvases: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(canvases.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _torch_heads(model: Any, x: np.ndarray, batch: int = 8) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def _check(parity: Dict[str, Any], tolerance: Optional[Dict[str, Any]], what: str, fix: str) -> None:
    from edgemask.vision.facedet_decode import within_tolerance

    problems = within_tolerance(parity, tolerance)
    if problems:
        raise ExportError(f"the detector's {what}: {'; '.join(problems)}; {fix}")


def export_detector_into(root: Path, cfg: Any, progress: Progress, producer_extra: Dict[str, str]) -> Any:
    """Export the detector run ``cfg.detector`` into the (temporary) bundle folder ``root``.

    Args:
        root: the bundle being written.
        cfg: the :class:`~edgemask.export.config.ExportConfig` (precisions, opset,
            int8 options and the ``detector_*`` fields).
        progress: the export's progress callback (stages ``detector fp32`` ... ``detector int8``).
        producer_extra: tool versions to record (updated in place).

    Returns:
        The manifest's :class:`~edgemask.bundle.manifest.DetectorEntry`.

    Raises:
        ModelError: not a detector run. ConfigError / DataError: bad calibration source.
        ExportError: a precision outside its tolerance.
    """
    from edgemask.bundle.manifest import ModelEntry
    from edgemask.export.onnx_export import ort_logits
    from edgemask.training.detector import load_detector_run
    from edgemask.vision.facedet_decode import DecodeParams

    model, info = load_detector_run(cfg.detector)
    w, h = int(info["input"]["width"]), int(info["input"]["height"])
    params = DecodeParams.from_dict({**info["decode"], **(cfg.detector_decode or {})})
    tol = {**DEFAULT_TOLERANCE, **(cfg.detector_tolerance or {})}
    want_int8 = "int8" in cfg.precisions
    (root / DETECTOR_DIR).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(cfg.detector) / "weights.safetensors", root / WEIGHTS_FILE)

    progress("detector scenes", 0, 1)
    sc = _scenes(cfg, info, model, w, h, want_int8)
    progress("detector scenes", 1, 1, f"{len(sc.cal_sources) + len(sc.gold_sources)} images")

    measured: Dict[str, Dict[str, Any]] = {}
    models: List[Any] = [
        ModelEntry(
            file=WEIGHTS_FILE,
            precision="fp32",
            format="safetensors",
            extra={"source": "detector run weights, copied unchanged"},
        )
    ]

    # fp32: always built (fp16 and int8 come from it), shipped only when asked for
    fp32_path = root / MODEL_FILES["fp32"]
    entry32, measured["fp32"] = _fp32(fp32_path, cfg, model, sc, params, tol, w, h, progress)
    if "fp32" in cfg.precisions:
        models.append(entry32)
    f32_cal = ort_logits(fp32_path, sc.cal_x, batch_size=8) if sc.cal_x is not None else None

    if "fp16" in cfg.precisions:
        entry16, measured["fp16"] = _fp16(root, sc, f32_cal, params, tol, entry32.opset, producer_extra, progress)
        models.append(entry16)

    calibration: Optional[Dict[str, Any]] = None
    if want_int8:
        assert f32_cal is not None
        entry8, measured["int8"], calibration = _int8(root, cfg, sc, f32_cal, params, tol, entry32.opset, progress)
        models.append(entry8)
    if "fp32" not in cfg.precisions:
        fp32_path.unlink()

    (root / GOLDEN_INPUTS).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / GOLDEN_INPUTS, sc.golden_u8)
    np.save(root / GOLDEN_OUTPUTS, sc.golden_ref)
    return _detector_entry(cfg, info, params, tol, sc, models, measured, calibration)


def _fp32(
    fp32_path: Path,
    cfg: Any,
    model: Any,
    sc: _Scenes,
    params: Any,
    tol: Dict[str, Any],
    w: int,
    h: int,
    progress: Progress,
) -> Tuple[Any, Dict[str, Any]]:
    """The detector's fp32 ONNX model, checked against torch: (its ModelEntry, its golden parity)."""
    from edgemask.bundle.manifest import ModelEntry
    from edgemask.export.onnx_export import onnx_from_torch, opencv_check, ort_logits
    from edgemask.vision.facedet_decode import compare_heads

    progress("detector fp32", 0, 1)
    exp = onnx_from_torch(
        model, fp32_path, input_size=w, input_hw=(h, w), opset=cfg.opset, simplify=cfg.simplify, output_name=OUTPUT_NAME
    )
    fp32_golden = ort_logits(fp32_path, sc.golden_x, batch_size=8)
    par32 = compare_heads(sc.golden_ref, fp32_golden, params)
    _check(
        par32,
        tol.get("fp32"),
        "fp32 ONNX model differs from torch on the golden scenes",
        "try another --opset, or report a bug",
    )
    extra32: Dict[str, Any] = {
        "parity_vs_torch": par32,
        "exporter": exp.exporter,
        "simplified_by": exp.simplified_by,
        "nodes": exp.nodes,
        "op_types": exp.op_types,
        "max_abs_diff_vs_torch": par32["head_max_abs"],
    }
    if cfg.opencv_check:
        cv = opencv_check(fp32_path, sc.golden_x, sc.golden_ref, return_outputs=True)
        outs = cv.pop("outputs", None)
        if outs is not None:
            cv["parity_vs_torch"] = compare_heads(sc.golden_ref, outs, params)
        extra32["opencv"] = cv
    progress("detector fp32", 1, 1, f"max |Δ| {par32['head_max_abs']:.1e}")
    entry = ModelEntry(file=MODEL_FILES["fp32"], precision="fp32", format="onnx", opset=exp.opset, extra=extra32)
    return entry, par32


def _fp16(
    root: Path,
    sc: _Scenes,
    f32_cal: Optional[np.ndarray],
    params: Any,
    tol: Dict[str, Any],
    opset: int,
    producer_extra: Dict[str, str],
    progress: Progress,
) -> Tuple[Any, Dict[str, Any]]:
    """The detector's fp16 model, converted from the fp32 one: (its ModelEntry, its golden parity)."""
    from edgemask.bundle.manifest import ModelEntry
    from edgemask.export.onnx_export import ort_logits
    from edgemask.export.quantize import fp16_from_onnx
    from edgemask.vision.facedet_decode import compare_heads

    progress("detector fp16", 0, 1)
    fp16_path = root / MODEL_FILES["fp16"]
    conv = fp16_from_onnx(root / MODEL_FILES["fp32"], fp16_path)
    producer_extra.setdefault("onnxconverter-common", conv["converter"].split()[-1])
    par16 = compare_heads(sc.golden_ref, ort_logits(fp16_path, sc.golden_x, batch_size=8), params)
    _check(
        par16,
        tol.get("fp16"),
        "fp16 model differs from torch on the golden scenes",
        "the model may overflow fp16: export without fp16",
    )
    extra16: Dict[str, Any] = {"parity_vs_torch": par16, "max_abs_diff_vs_torch": par16["head_max_abs"], **conv}
    if f32_cal is not None:
        extra16["parity_vs_fp32_calibration_scenes"] = compare_heads(
            f32_cal, ort_logits(fp16_path, sc.cal_x, batch_size=8), params
        )
    progress("detector fp16", 1, 1, f"max |Δ| {par16['head_max_abs']:.1e}")
    entry = ModelEntry(file=MODEL_FILES["fp16"], precision="fp16", format="onnx", opset=opset, extra=extra16)
    return entry, par16


def _detector_entry(
    cfg: Any,
    info: Dict[str, Any],
    params: Any,
    tol: Dict[str, Any],
    sc: _Scenes,
    models: List[Any],
    measured: Dict[str, Dict[str, Any]],
    calibration: Optional[Dict[str, Any]],
) -> Any:
    """The manifest's DetectorEntry: the run's input, head and decode, the shipped models and their parity."""
    from edgemask.bundle.manifest import DetectorEntry, InputSpec, Preprocessing

    w, h = int(info["input"]["width"]), int(info["input"]["height"])
    stride = int(info.get("stride", 4))
    args = dict(info["arch_args"])
    return DetectorEntry(
        arch=info["arch"],
        arch_args=args,
        input=InputSpec(shape=["N", 3, h, w], channel_order="RGB"),
        output={
            "name": OUTPUT_NAME,
            "shape": ["N", len(HEAD_CHANNELS), h // stride, w // stride],
            "channels": list(HEAD_CHANNELS),
            "stride": stride,
            "note": "heat and offsets after their sigmoid; log_w, log_h in log(cells)",
        },
        letterbox=dict(LETTERBOX),
        preprocessing=Preprocessing(
            resize="letterbox",
            mean=list(args.get("mean", [])),
            std=list(args.get("std", [])),
            normalization_in_model=True,
            crop=None,
            crop_margin=None,
        ),
        decode=params.to_dict(),
        models=models,
        golden={
            "inputs": GOLDEN_INPUTS,
            "outputs": GOLDEN_OUTPUTS,
            "count": int(len(sc.golden_u8)),
            "layout": "NHWC uint8, letterboxed",
            "reference": "torch fp32, CPU, eval mode",
            "sources": sc.gold_sources,
            "tolerance": {p: tol.get(p) for p in cfg.precisions},
            "measured": measured,
        },
        calibration=calibration,
        source_run=str(cfg.detector),
        training={
            "data": info.get("data", []),
            "split": info.get("split", {}),
            "train_images": info.get("train_images"),
            "epochs_done": info.get("epochs_done"),
        },
    )


@dataclass
class _Scenes:
    """The detector's calibration and golden scenes, and the reference heads."""

    cal_frames: List[np.ndarray]  # RGB frames calibrating int8 (empty without int8)
    cal_sources: List[str]
    gold_sources: List[str]
    train_split: Optional[Tuple[int, float]]  # (seed, held-out share) when the source is the detector's training folder
    golden_u8: np.ndarray  # (G, h, w, 3) uint8, letterboxed
    golden_x: np.ndarray  # (G, 3, h, w) float32
    golden_ref: np.ndarray  # (G, 5, h/4, w/4) torch heads
    cal_x: Optional[np.ndarray]  # (N, 3, h, w) float32, None without int8


def _scenes(cfg: Any, info: Dict[str, Any], model: Any, w: int, h: int, want_int8: bool) -> _Scenes:
    n_cal = int(cfg.detector_calibration_count) if want_int8 else 0
    split = info.get("split") or {}
    trained_on = {d.get("path") for d in info.get("data", [])}
    train_split = (
        (int(split.get("seed", 0)), float(split.get("heldout", 0.0)))
        if cfg.detector_calibration.strip().lower() != "synth"
        and split.get("heldout")
        and Path(cfg.detector_calibration).name in trained_on
        else None
    )
    cal_frames, cal_sources = scene_frames(
        cfg.detector_calibration, n_cal, cfg.detector_calibration_seed, train_split=train_split
    )
    gold_frames, gold_sources = scene_frames(
        cfg.detector_calibration,
        int(cfg.detector_golden_count),
        cfg.detector_calibration_seed,
        skip=n_cal,
        train_split=train_split,
    )
    if not gold_frames:
        raise ExportError(f"the detector's calibration source {cfg.detector_calibration!r} gave no golden scene")
    golden_u8 = letterboxed(gold_frames, w, h)
    golden_x = _nchw(golden_u8)
    return _Scenes(
        cal_frames=cal_frames,
        cal_sources=cal_sources,
        gold_sources=gold_sources,
        train_split=train_split,
        golden_u8=golden_u8,
        golden_x=golden_x,
        golden_ref=_torch_heads(model, golden_x).astype(np.float32),
        cal_x=_nchw(letterboxed(cal_frames, w, h)) if cal_frames else None,
    )


def _int8(
    root: Path,
    cfg: Any,
    sc: _Scenes,
    f32_cal: np.ndarray,
    params: Any,
    tol: Dict[str, Any],
    opset: int,
    progress: Progress,
) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """The detector's int8 model, table and cache: (its ModelEntry, its golden parity, the calibration entry)."""
    from edgemask.bundle.manifest import ModelEntry
    from edgemask.export.calibration import images_sha256, write_table, write_trt_cache
    from edgemask.export.onnx_export import ort_logits
    from edgemask.export.quantize import int8_from_onnx
    from edgemask.vision.facedet_decode import compare_heads

    assert sc.cal_x is not None
    cal_x = sc.cal_x
    progress("detector int8", 0, 1, cfg.method)
    int8_path = root / MODEL_FILES["int8"]
    q = int8_from_onnx(
        root / MODEL_FILES["fp32"],
        int8_path,
        cal_x,
        method=cfg.method,
        per_channel=cfg.per_channel,
        percentile=cfg.percentile,
        quantize_output=False,
        target=cfg.int8_target,
        batch_size=4,
        symbolic_shapes=False,
    )
    par8 = compare_heads(sc.golden_ref, ort_logits(int8_path, sc.golden_x, batch_size=8), params)
    par8_cal = compare_heads(f32_cal, ort_logits(int8_path, cal_x, batch_size=8), params)
    _check(
        par8,
        tol.get("int8"),
        "int8 model differs from torch on the golden scenes",
        "calibrate on more or other scenes (--detector-calibration), or export without int8",
    )
    _check(
        par8_cal,
        tol.get("int8"),
        "int8 model differs from fp32 on its calibration scenes",
        "calibrate on more or other scenes (--detector-calibration), or export without int8",
    )
    entry = ModelEntry(
        file=MODEL_FILES["int8"],
        precision="int8",
        format="onnx",
        opset=opset,
        quantization=q.quantization,
        extra={
            "parity_vs_torch": par8,
            "parity_vs_fp32_calibration_scenes": par8_cal,
            "max_abs_diff_vs_torch": par8["head_max_abs"],
        },
    )
    write_table(
        root / TABLE_FILE,
        q.table,
        {
            "method": cfg.method,
            "source": cfg.detector_calibration,
            "count": len(sc.cal_frames),
            "images_sha256": images_sha256(cal_x),
            "images": sc.cal_sources,
            "note": "amax = scale * 127 (symmetric int8); names are tensors of detector/model.fp32.onnx where "
            "in_fp32_graph is true",
        },
    )
    write_trt_cache(root / CACHE_FILE, q.table, cfg.trt_cache_version)
    calibration = {
        "source": cfg.detector_calibration,
        "count": len(sc.cal_frames),
        "training_images_only": sc.train_split is not None,
        "seed": cfg.detector_calibration_seed,
        "frames": "whole scenes letterboxed to the input",
        "images_sha256": images_sha256(cal_x),
        "method": cfg.method,
        "percentile": cfg.percentile if cfg.method == "percentile" else None,
        "table": TABLE_FILE,
        "cache": CACHE_FILE,
        "cache_header": f"TRT-{int(cfg.trt_cache_version)}-EntropyCalibration2",
        "tensors": len(q.table),
    }
    progress("detector int8", 1, 1, f"agreement {par8_cal['box_agreement'] * 100:.1f}%")
    return entry, par8, calibration


__all__ = [
    "DEFAULT_TOLERANCE",
    "DETECTOR_DIR",
    "GOLDEN_INPUTS",
    "GOLDEN_OUTPUTS",
    "MODEL_FILES",
    "OUTPUT_NAME",
    "export_detector_into",
    "letterboxed",
    "scene_frames",
]

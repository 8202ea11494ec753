"""``export_bundle``: a training run → a verified, self-describing bundle folder.

The whole bundle is built in a temporary folder beside ``out`` (via
``atomic_dir``) and renamed into place only after every model has been
checked and the finished folder has passed ``verify_bundle``; a failure or
Ctrl-C at any step leaves ``out`` as it was (absent, or the previous bundle).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgemask.bundle.manifest import BundleManifest, InputSpec, ModelEntry, Preprocessing
from edgemask.errors import ConfigError, ExportError
from edgemask.export.config import CALIBRATION_METHODS, DEFAULT_OPSET, EXPORT_PRECISIONS, ExportConfig
from edgemask.progress import NO_PROGRESS, Progress
from edgemask.utils.results import FolderResult

# The stages export_bundle reports through its Progress, in order (those of models not asked for are skipped).
STAGES = (
    "load",
    "calibration set",
    "fp32",
    "opencv",
    "fp16",
    "int8",
    "detector scenes",
    "detector fp32",
    "detector fp16",
    "detector int8",
    "write",
)

MODEL_FILES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
GOLDEN_INPUTS = "golden/inputs.npy"
GOLDEN_OUTPUTS = "golden/outputs.fp32.npy"
TABLE_FILE = "calibration/table.json"
CACHE_FILE = "calibration/cache.txt"
RECIPE_FILE = "calibration/recipe.toml"
CONFIG_FILE = "resolved_config.json"
WEIGHTS_FILE = "weights.safetensors"


def parse_precisions(precisions: str | Sequence[str]) -> tuple[str, ...]:
    """``"fp32,int8"`` or a sequence → validated tuple in build order.

    Raises:
        ConfigError: an unknown or empty precision list.
    """
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    items = [str(p).strip().lower() for p in items if str(p).strip()]
    bad = [p for p in items if p not in EXPORT_PRECISIONS]
    if bad:
        raise ConfigError(
            f"unknown precision {', '.join(map(repr, bad))}; choose from {', '.join(EXPORT_PRECISIONS)} "
            "(comma-separated, e.g. --precision fp32,int8)"
        )
    if not items:
        raise ConfigError(f"no precision given; pass e.g. --precision {','.join(EXPORT_PRECISIONS)}")
    return tuple(p for p in EXPORT_PRECISIONS if p in items)


def _check_config(cfg: ExportConfig) -> None:
    from edgemask.export.onnx_export import check_opset

    check_opset(cfg.opset)
    if cfg.method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {cfg.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if cfg.int8_target not in ("tensorrt", "cpu"):
        raise ConfigError(
            f"unknown int8 target {cfg.int8_target!r}; choose tensorrt (Q/DQ for TensorRT, the "
            "default) or cpu (ONNX Runtime integer kernels)"
        )
    if not 0.0 < float(cfg.percentile) <= 100.0:
        raise ConfigError(f"percentile {cfg.percentile} must be in (0, 100], e.g. 99.999")
    if not isinstance(cfg.golden_count, int) or not 1 <= cfg.golden_count <= 1024:
        raise ConfigError(f"golden_count {cfg.golden_count!r} must be 1..1024 (16 is plenty for a self-test)")
    if not isinstance(cfg.probe_count, int) or isinstance(cfg.probe_count, bool) or not 0 <= cfg.probe_count <= 256:
        raise ConfigError(f"probe_count {cfg.probe_count!r} must be 0..256 (0 = no stability probe; 16 is the default)")
    if not cfg.run:
        raise ConfigError("no run directory given; pass the --out folder of 'edgemask train'")
    if cfg.detector:
        for k in ("detector_calibration_count", "detector_golden_count"):
            v = getattr(cfg, k)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1024:
                raise ConfigError(f"--{k.replace('_', '-')} {v!r} must be 1..1024")


def _previous_version(out: Path, overwrite: bool) -> int:
    """Version of the bundle already in ``out`` (0 if none); refuse what must not be replaced."""
    if not out.exists():
        return 0
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder for the bundle")
    if not any(out.iterdir()):
        return 0
    manifest = out / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(
            f"--out {out} exists, is not empty and is not an edgemask bundle; choose another --out "
            "(it will not be overwritten)"
        )
    if not overwrite:
        raise ExportError(
            f"a bundle already exists in {out}; pass --overwrite to replace it (as a new version) "
            "or choose another --out"
        )
    try:  # the raw number is enough here; a damaged manifest must not block replacing the bundle
        return int(json.loads(manifest.read_text(encoding="utf-8")).get("version", 0))
    except (ValueError, TypeError, AttributeError, OSError):
        return 0


def _portable_path(path: str | Path | None) -> str | None:
    """``path`` relative to the working folder when it lies inside it, else its last two parts.

    A bundle travels to other machines (and may ship publicly): it should not
    carry the exporting machine's absolute folder names.
    """
    if path is None:
        return None
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(*p.parts[-2:]).as_posix() if p.is_absolute() else p.as_posix()


def _producer(extra: dict[str, str]) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import edgemask

    out = {
        "edgemask": edgemask.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    out.update(extra)
    return out


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1))) if len(a) else 1.0


def _hash_files(root: Path) -> dict[str, dict[str, Any]]:
    from edgemask.utils.io import sha256_file

    files: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return files


@dataclass
class ExportResult(FolderResult):
    """What :func:`export_bundle` wrote: the bundle, its manifest, and what the user should know.

    Stands for the bundle folder where a path is expected (``Path(result)``,
    ``result / "manifest.json"``), as ``export_bundle`` returned before this type existed.
    """

    bundle: Path  # the bundle folder (verified)
    manifest: BundleManifest  # its manifest.json, as written
    opset: int  # the ONNX opset used (the config's, or the device profile's maximum)
    device: Optional[str] = None  # the device profile exported for (``ExportConfig.device``), None = generic
    warnings: List[str] = field(
        default_factory=list
    )  # one line each: precisions the device runs slowly, a failed OpenCV check, engine notes
    engines: List[Any] = field(default_factory=list)  # EngineResult per TensorRT engine built (``ExportConfig.engine``)

    @property
    def folder(self) -> Path:
        return self.bundle


def export_bundle(
    run_dir: str | Path,
    out: str | Path,
    cfg: ExportConfig | None = None,
    progress: Progress | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    **options: Any,
) -> ExportResult:
    """Export a training run as a bundle folder (for one device, with its engines, when ``cfg`` says so).

    Args:
        run_dir: folder written by ``edgemask train`` (``weights.safetensors`` + ``model.json``).
        out: bundle folder to create (``export/<name>/``).
        cfg: every setting (:class:`ExportConfig`); None = the defaults. ``cfg.device``
            targets a device profile (its opset, its precision warnings) and
            ``cfg.engine`` also builds its TensorRT engines into the bundle.
        progress: ``progress(stage, done, total, note)``; stages are :data:`STAGES`.
        on_warning: also called with each warning as soon as it is known (they
            all end up in ``result.warnings``; a failing export has no result).
        **options: :class:`ExportConfig` fields overriding ``cfg``, the keyword
            form (``precisions="fp32,int8"``, ``calibration="default"``, ``detector=...``).

    Returns:
        An :class:`ExportResult` for the verified bundle in ``out``.

    Raises:
        ConfigError: bad option, unknown recipe or device, opset above the device's, recipe source missing.
        ModelError: the run folder is missing or damaged.
        DataError: the calibration dataset cannot be read or is empty.
        ExportError: a model failed to export, quantize or match torch.
        NotAvailableError: ``engine`` on a machine without TensorRT (before exporting).
    """
    cfg = _with_options(cfg or ExportConfig(), options, run=str(run_dir), out=str(out))
    warnings: List[str] = []
    from edgemask.utils.warn import once_each

    warn = once_each(on_warning, warnings)
    profile = None
    if cfg.device:
        from edgemask.export.for_device import prepare_device_export

        profile, opset = prepare_device_export(cfg, warn)
        cfg = dataclasses.replace(cfg, opset=opset)
    elif cfg.engine:
        raise ConfigError("--engine needs --device NAME (see 'edgemask devices list')")
    elif cfg.opset is None:
        cfg = dataclasses.replace(cfg, opset=DEFAULT_OPSET)
    path, manifest = _write_bundle(cfg, progress or NO_PROGRESS)
    for w in _opencv_warnings(manifest):
        warn(w)
    result = ExportResult(
        bundle=path,
        manifest=manifest,
        opset=int(cfg.opset),
        warnings=warnings,
        device=profile.name if profile is not None else None,
    )
    if cfg.engine:
        from edgemask.export.engine import build_engines_for_bundle

        result.engines = build_engines_for_bundle(
            path, profile.name, cfg.precisions, on_warning=warn, **cfg.engine_options
        )
    return result


def export_bundle_from_config(cfg: ExportConfig, progress: Progress | None = None) -> ExportResult:
    """:func:`export_bundle` driven by a complete :class:`ExportConfig` (``cfg.run`` → ``cfg.out``)."""
    return export_bundle(cfg.run, cfg.out, cfg, progress)


def _with_options(cfg: ExportConfig, options: dict[str, Any], **paths: str) -> ExportConfig:
    """``cfg`` with the keyword ``options`` and the paths applied, precisions parsed; unknown names refused."""
    known = {f.name for f in dataclasses.fields(ExportConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown export option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    kw = {**options, **paths}
    if kw.get("calibration") is not None:
        kw["calibration"] = str(kw["calibration"])
    elif "calibration" in kw:
        del kw["calibration"]
    cfg = dataclasses.replace(cfg, **kw)
    return dataclasses.replace(cfg, precisions=parse_precisions(cfg.precisions))


def _opencv_warnings(manifest: BundleManifest) -> List[str]:
    """A warning per model OpenCV's DNN module could not run (``opencv_check``)."""
    out = []
    for e in manifest.models:
        cv = (e.extra or {}).get("opencv")
        if isinstance(cv, dict) and not cv.get("ok"):
            out.append(
                f"OpenCV's DNN module could not run {e.file}: {cv.get('error')}; "
                "apps that use cv2.dnn need another --opset"
            )
    return out


@dataclass
class _Build:
    """What the steps of one export share: the temporary folder, the reference outputs, and the entries so far."""

    cfg: ExportConfig
    tmp: Path
    model: Any  # torch model, eval mode
    golden_x: np.ndarray  # (G, 3, S, S) float32 [0,1]
    golden_ref: np.ndarray  # (G, K) torch fp32 logits of golden_x
    tol: Dict[str, Optional[float]]  # max |Δlogit| vs torch per precision; None = not enforced
    progress: Progress
    models: List[Any] = field(default_factory=list)  # ModelEntry per file shipped
    producer_extra: Dict[str, str] = field(default_factory=dict)  # tool versions for the manifest's producer
    measured: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # per precision: the checks' numbers
    opset: int = 0  # what the fp32 export wrote

    @property
    def fp32_path(self) -> Path:
        return self.tmp / MODEL_FILES["fp32"]


def _write_bundle(cfg: ExportConfig, progress: Progress) -> Tuple[Path, BundleManifest]:
    """The export itself: every model built and checked in a temporary folder, renamed into ``cfg.out``."""
    from edgemask.export.calibration import load_recipe
    from edgemask.training.run import load_run
    from edgemask.utils.io import atomic_dir

    _check_config(cfg)
    out = Path(cfg.out)
    version = _previous_version(out, cfg.overwrite) + 1

    # -- inputs: everything that can fail because of the user, before writing anything
    progress("load", 0, 1)
    model, info = load_run(cfg.run)
    model.eval()
    recipe = load_recipe(cfg.calibration)
    if cfg.detector:
        from edgemask.training.detector import load_detector_run

        load_detector_run(cfg.detector)  # a wrong --detector fails before anything is written
    progress("load", 1, 1, f"{info.arch}, recipe {recipe.name}")
    calib, golden, probe_set = _image_sets(cfg, recipe, list(info.class_names), info.input_size, progress)

    # An empty folder (e.g. made by hand for --out) is replaced without --overwrite; anything else was checked above.
    replace = cfg.overwrite or (out.is_dir() and not any(out.iterdir()))
    with atomic_dir(out, overwrite=replace) as tmp:
        b = _Build(
            cfg=cfg,
            tmp=tmp,
            model=model,
            golden_x=golden.as_nchw_float(),
            golden_ref=np.zeros(0),
            tol={p: cfg.tolerance.get(p) for p in EXPORT_PRECISIONS},
            progress=progress,
        )
        b.golden_ref = _torch_logits(model, b.golden_x)
        shutil.copyfile(Path(cfg.run) / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        b.models.append(
            ModelEntry(
                file=WEIGHTS_FILE,
                precision="fp32",
                format="safetensors",
                extra={"source": "training run weights, copied unchanged"},
            )
        )
        _add_fp32(b, info.input_size)  # always built: fp16 and int8 are made from it
        if "fp16" in cfg.precisions:
            _add_fp16(b)
        calibration_meta = _add_int8(b, calib, recipe) if calib is not None else None
        if "fp32" not in cfg.precisions:
            b.fp32_path.unlink()
        detector_entry = None
        if cfg.detector:  # the face detector, into detector/ of the same bundle
            from edgemask.export.detector_export import export_detector_into

            detector_entry = export_detector_into(tmp, cfg, progress, b.producer_extra)
        progress("write", 0, 1)
        manifest = _write_manifest(b, info, golden, probe_set, recipe, calibration_meta, detector_entry, version)
        progress("write", 1, 1, f"version {version}")
    return out, manifest


def _torch_logits(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)  # (G, K)


def _image_sets(cfg: ExportConfig, recipe: Any, class_names: List[str], size: int, progress: Progress):
    """(calibration set or None without int8, golden set, probe set or None), disjoint, from the recipe."""
    from edgemask.export.calibration import select_images

    progress("calibration set", 0, 1)
    calib = select_images(recipe, class_names, size) if "int8" in cfg.precisions else None
    golden = select_images(
        recipe,
        class_names,
        size,
        count=cfg.golden_count,
        seed=recipe.seed + 1,
        exclude_sources=calib.sources if calib is not None else (),
    )
    if len(golden.images) == 0:
        raise ExportError(
            f"calibration recipe {recipe.name!r} yielded no golden images; point its source at a "
            "folder with images of the model's classes"
        )
    probe_set = None
    if cfg.probe_count:
        probe_set = select_images(
            recipe,
            class_names,
            size,
            count=cfg.probe_count,
            seed=recipe.seed + 2,
            exclude_sources=list(golden.sources) + (list(calib.sources) if calib is not None else []),
        )
    progress("calibration set", 1, 1, f"{len(calib.images) if calib is not None else 0} images")
    return calib, golden, probe_set


def _add_fp32(b: _Build, size: int) -> None:
    from edgemask.export.onnx_export import onnx_from_torch, opencv_check, ort_logits

    cfg, progress = b.cfg, b.progress
    progress("fp32", 0, 1)
    t = time.perf_counter()
    exp = onnx_from_torch(b.model, b.fp32_path, input_size=size, opset=cfg.opset, simplify=cfg.simplify)
    b.opset = exp.opset
    if exp.simplified_by:
        b.producer_extra["simplifier"] = exp.simplified_by
    fp32_golden = ort_logits(b.fp32_path, b.golden_x)
    d32 = _max_abs(fp32_golden, b.golden_ref)
    if b.tol["fp32"] is not None and d32 > b.tol["fp32"]:
        raise ExportError(
            f"the fp32 ONNX model differs from torch by {d32:.2e} on the golden inputs "
            f"(allowed {b.tol['fp32']:.0e}); try another --opset, or report a bug"
        )
    fp32_extra: dict[str, Any] = {
        "max_abs_diff_vs_torch": d32,
        "agreement_vs_torch": _agreement(fp32_golden, b.golden_ref),
        "exporter": exp.exporter,
        "simplified_by": exp.simplified_by,
        "nodes": exp.nodes,
        "op_types": exp.op_types,
        "export_seconds": round(time.perf_counter() - t, 2),
    }
    if exp.simplify_error:
        fp32_extra["simplify_error"] = exp.simplify_error
    progress("fp32", 1, 1, f"max |Δ| {d32:.1e}")
    if cfg.opencv_check:
        progress("opencv", 0, 1)
        cv = opencv_check(b.fp32_path, b.golden_x, b.golden_ref)
        fp32_extra["opencv"] = cv
        if cv.get("opencv"):
            b.producer_extra["opencv"] = str(cv["opencv"])
        progress("opencv", 1, 1, "ok" if cv.get("ok") else f"failed: {cv.get('error', '')}"[:60])
    if "fp32" in cfg.precisions:
        b.models.append(
            ModelEntry(file=MODEL_FILES["fp32"], precision="fp32", format="onnx", opset=exp.opset, extra=fp32_extra)
        )
    b.measured["fp32"] = fp32_extra


def _add_fp16(b: _Build) -> None:
    from edgemask.export.onnx_export import ort_logits
    from edgemask.export.quantize import fp16_from_onnx

    b.progress("fp16", 0, 1)
    fp16_path = b.tmp / MODEL_FILES["fp16"]
    conv = fp16_from_onnx(b.fp32_path, fp16_path)
    b.producer_extra["onnxconverter-common"] = conv["converter"].split()[-1]
    fp16_golden = ort_logits(fp16_path, b.golden_x)
    d16 = _max_abs(fp16_golden, b.golden_ref)
    if b.tol["fp16"] is not None and d16 > b.tol["fp16"]:
        raise ExportError(
            f"the fp16 ONNX model differs from torch by {d16:.2e} on the golden inputs "
            f"(allowed {b.tol['fp16']:.0e}); the model may overflow fp16, export without fp16"
        )
    extra16 = {"max_abs_diff_vs_torch": d16, "agreement_vs_torch": _agreement(fp16_golden, b.golden_ref), **conv}
    b.models.append(ModelEntry(file=MODEL_FILES["fp16"], precision="fp16", format="onnx", opset=b.opset, extra=extra16))
    b.measured["fp16"] = extra16
    b.progress("fp16", 1, 1, f"max |Δ| {d16:.1e}")


def _add_int8(b: _Build, calib: Any, recipe: Any) -> Dict[str, Any]:
    """The int8 QDQ model, its calibration table and TensorRT cache; returns the manifest's calibration entry."""
    from edgemask.export.calibration import write_table, write_trt_cache
    from edgemask.export.onnx_export import ort_logits
    from edgemask.export.quantize import int8_from_onnx

    cfg = b.cfg
    b.progress("int8", 0, 1, cfg.method)
    int8_path = b.tmp / MODEL_FILES["int8"]
    calib_x = calib.as_nchw_float()  # (N, 3, S, S)
    q = int8_from_onnx(
        b.fp32_path,
        int8_path,
        calib_x,
        method=cfg.method,
        per_channel=cfg.per_channel,
        percentile=cfg.percentile,
        quantize_output=cfg.quantize_output,
        target=cfg.int8_target,
    )
    int8_golden = ort_logits(int8_path, b.golden_x)
    # Agreement on the (labelled) calibration images too: 16 golden images say little about int8.
    f32_cal, i8_cal = ort_logits(b.fp32_path, calib_x), ort_logits(int8_path, calib_x)
    extra8 = {
        "max_abs_diff_vs_torch": _max_abs(int8_golden, b.golden_ref),
        "agreement_vs_torch": _agreement(int8_golden, b.golden_ref),
        "agreement_vs_fp32_calibration_set": _agreement(i8_cal, f32_cal),
        "accuracy_calibration_set": {
            "fp32": float(np.mean(f32_cal.argmax(1) == calib.labels)),
            "int8": float(np.mean(i8_cal.argmax(1) == calib.labels)),
        },
    }
    b.models.append(
        ModelEntry(
            file=MODEL_FILES["int8"],
            precision="int8",
            format="onnx",
            opset=b.opset,
            quantization=q.quantization,
            extra=extra8,
        )
    )
    b.measured["int8"] = extra8
    header = f"TRT-{int(cfg.trt_cache_version)}-EntropyCalibration2"
    meta = {
        "recipe": recipe.name,
        "recipe_file": RECIPE_FILE,
        "recipe_sha256": recipe.sha256,
        "source": recipe.source,
        "count": int(len(calib.images)),
        "per_class": calib.per_class,
        "stratified": recipe.stratified,
        "seed": recipe.seed,
        "generator": calib.generator,
        "images_sha256": calib.images_sha256,
        "method": cfg.method,
        "percentile": cfg.percentile if cfg.method == "percentile" else None,
        "table": TABLE_FILE,
        "cache": CACHE_FILE,
        "cache_header": header,
        "tensors": len(q.table),
    }
    write_table(
        b.tmp / TABLE_FILE,
        q.table,
        {
            "method": cfg.method,
            "recipe": recipe.name,
            "recipe_sha256": recipe.sha256,
            "images_sha256": calib.images_sha256,
            "count": int(len(calib.images)),
            "note": "amax = scale * 127 (symmetric int8); names are tensors of model.fp32.onnx where "
            "in_fp32_graph is true",
            "images": calib.sources,
        },
    )
    write_trt_cache(b.tmp / CACHE_FILE, q.table, cfg.trt_cache_version)
    shutil.copyfile(recipe.path, b.tmp / RECIPE_FILE)
    b.progress("int8", 1, 1, f"agreement {extra8['agreement_vs_fp32_calibration_set'] * 100:.1f}%")
    return meta


def _write_manifest(
    b: _Build,
    info: Any,
    golden: Any,
    probe_set: Any,
    recipe: Any,
    calibration_meta: Optional[Dict[str, Any]],
    detector_entry: Any,
    version: int,
) -> BundleManifest:
    """Golden set, probe, resolved config and the manifest, then the bundle's own verification."""
    from edgemask.bundle.bundle import verify_bundle
    from edgemask.utils.io import atomic_write_json, atomic_write_text

    cfg, tmp = b.cfg, b.tmp
    size = info.input_size
    (tmp / "golden").mkdir()
    np.save(tmp / GOLDEN_INPUTS, b.golden_x)
    np.save(tmp / GOLDEN_OUTPUTS, b.golden_ref)
    probe_meta = None
    if probe_set is not None:
        from edgemask.export.probe import PROBE_INPUTS, probe_from_model

        probe_x, probe_meta = probe_from_model(b.model, probe_set.as_nchw_float(), probe_set.sources)
        (tmp / "probe").mkdir()
        np.save(tmp / PROBE_INPUTS, probe_x)
    atomic_write_json(tmp / CONFIG_FILE, {**cfg.to_dict(), "recipe_path": _portable_path(recipe.path)})
    manifest = BundleManifest(
        name=cfg.name or Path(cfg.out).resolve().name,
        version=version,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        arch=info.arch,
        arch_args=dict(info.arch_args),
        class_names=list(info.class_names),
        input=InputSpec(shape=["N", 3, size, size], channel_order=info.channel_order),
        preprocessing=Preprocessing(
            resize="cv2.INTER_AREA",
            mean=list(info.mean),
            std=list(info.std),
            normalization_in_model=True,
            crop_margin=info.crop_margin,
        ),
        models=b.models,
        files=_hash_files(tmp),
        producer=_producer(b.producer_extra),
        opset=b.opset,
        golden={
            "inputs": GOLDEN_INPUTS,
            "outputs": GOLDEN_OUTPUTS,
            "count": int(len(b.golden_x)),
            "reference": "torch fp32, CPU, eval mode",
            "sources": golden.sources,
            "labels": [int(v) for v in golden.labels],
            # max |Δlogit| vs outputs.fp32.npy a runner must meet; None = not enforced (int8: see agreement)
            "tolerance": {p: b.tol[p] for p in cfg.precisions},
            "agreement": {p: b.measured[p]["agreement_vs_torch"] for p in cfg.precisions if p in b.measured},
        },
        calibration=calibration_meta,
        detector=detector_entry,
        probe=probe_meta,
        source_run=str(cfg.run),
    )
    atomic_write_text(tmp / "manifest.json", manifest.to_json())
    problems = verify_bundle(tmp)
    if problems:  # would be a bug in this function; never publish a bundle that does not verify
        raise ExportError(f"the new bundle failed its own verification: {problems[0]}; report a bug")
    return manifest

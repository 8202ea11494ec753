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
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import numpy as np

from edgemask.errors import ConfigError, ExportError
from edgemask.export.config import CALIBRATION_METHODS, EXPORT_PRECISIONS, ExportConfig

# progress(stage, done, total, info): stage is one of STAGES; done == total marks the end of a stage.
ProgressFn = Callable[[str, int, int, Dict[str, Any]], None]  # typing.Dict: evaluated at import, also on 3.8
STAGES = ("load", "calibration set", "fp32", "opencv", "fp16", "int8", "detector scenes", "detector fp32",
          "detector fp16", "detector int8", "write")

MODEL_FILES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
GOLDEN_INPUTS = "golden/inputs.npy"
GOLDEN_OUTPUTS = "golden/outputs.fp32.npy"
TABLE_FILE = "calibration/table.json"
CACHE_FILE = "calibration/cache.txt"
RECIPE_FILE = "calibration/recipe.toml"
CONFIG_FILE = "resolved_config.json"
WEIGHTS_FILE = "weights.safetensors"


def _noop(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
    pass


def parse_precisions(precisions: str | Sequence[str]) -> tuple[str, ...]:
    """``"fp32,int8"`` or a sequence → validated tuple in build order.

    Raises:
        ConfigError: an unknown or empty precision list.
    """
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    items = [str(p).strip().lower() for p in items if str(p).strip()]
    bad = [p for p in items if p not in EXPORT_PRECISIONS]
    if bad:
        raise ConfigError(f"unknown precision {', '.join(map(repr, bad))}; choose from {', '.join(EXPORT_PRECISIONS)} "
                          "(comma-separated, e.g. --precision fp32,int8)")
    if not items:
        raise ConfigError(f"no precision given; pass e.g. --precision {','.join(EXPORT_PRECISIONS)}")
    return tuple(p for p in EXPORT_PRECISIONS if p in items)


def _check_config(cfg: ExportConfig) -> None:
    from edgemask.export.onnx_export import check_opset

    check_opset(cfg.opset)
    if cfg.method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {cfg.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if cfg.int8_target not in ("tensorrt", "cpu"):
        raise ConfigError(f"unknown int8 target {cfg.int8_target!r}; choose tensorrt (Q/DQ for TensorRT, the "
                          "default) or cpu (ONNX Runtime integer kernels)")
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
        raise ConfigError(f"--out {out} exists, is not empty and is not an edgemask bundle; choose another --out "
                          "(it will not be overwritten)")
    if not overwrite:
        raise ExportError(f"a bundle already exists in {out}; pass --overwrite to replace it (as a new version) "
                          "or choose another --out")
    try:  # the raw number is enough here; a damaged manifest must not block replacing the bundle
        return int(json.loads(manifest.read_text(encoding="utf-8")).get("version", 0))
    except (ValueError, TypeError, AttributeError, OSError):
        return 0


def _producer(extra: dict[str, str]) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import edgemask

    out = {"edgemask": edgemask.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "python": platform.python_version()}
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


def export_bundle(run_dir: str | Path, out: str | Path, *, precisions: str | Sequence[str] = EXPORT_PRECISIONS,
                  calibration: str | Path | None = None, opset: int = 17, name: str | None = None,
                  method: str = "minmax", overwrite: bool = False, progress: ProgressFn | None = None,
                  **options: Any) -> Path:
    """Export a training run as a bundle folder.

    Args:
        run_dir: folder written by ``edgemask train`` (``weights.safetensors`` + ``model.json``).
        out: bundle folder to create (``export/<name>/``).
        precisions: any of fp32, fp16, int8 (a sequence or ``"fp32,int8"``).
        calibration: recipe name or TOML path (default ``"default"``, synthetic images).
        opset: target ONNX opset (11..18; 13 for TensorRT 8.2 / JetPack 4.6).
        name: bundle name in the manifest (default: ``out``'s folder name).
        method: int8 activation calibration: minmax | entropy | percentile.
        overwrite: replace a bundle already in ``out``; its version + 1 is used.
        progress: called as ``progress(stage, done, total, info)``.
        **options: any other :class:`ExportConfig` field (``golden_count``,
            ``percentile``, ``opencv_check``, ``simplify``, ``trt_cache_version``, ...).

    Returns:
        ``Path(out)``, holding the verified bundle.

    Raises:
        ConfigError: bad option, unknown recipe, recipe source missing.
        ModelError: the run folder is missing or damaged.
        DataError: the calibration dataset cannot be read or is empty.
        ExportError: a model failed to export, quantize or match torch.
    """
    known = {f.name for f in dataclasses.fields(ExportConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown export option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    cfg = ExportConfig(**{**options, "run": str(run_dir), "out": str(out), "precisions": parse_precisions(precisions),
                          "calibration": str(calibration) if calibration is not None else ExportConfig.calibration,
                          "opset": opset, "name": name, "method": method, "overwrite": overwrite})
    return export_bundle_from_config(cfg, progress)


def export_bundle_from_config(cfg: ExportConfig, progress: ProgressFn | None = None) -> Path:
    """:func:`export_bundle` driven by a complete :class:`ExportConfig`."""
    import torch

    from edgemask.bundle.bundle import verify_bundle
    from edgemask.bundle.manifest import BundleManifest, InputSpec, ModelEntry, Preprocessing
    from edgemask.export.calibration import load_recipe, select_images, write_table, write_trt_cache
    from edgemask.export.onnx_export import onnx_from_torch, opencv_check, ort_logits
    from edgemask.export.quantize import fp16_from_onnx, int8_from_onnx
    from edgemask.training.run import load_run
    from edgemask.utils.io import atomic_dir, atomic_write_json, atomic_write_text

    progress = progress or _noop
    cfg = dataclasses.replace(cfg, precisions=parse_precisions(cfg.precisions))
    _check_config(cfg)
    out = Path(cfg.out)
    version = _previous_version(out, cfg.overwrite) + 1
    name = cfg.name or out.resolve().name

    # -- inputs: everything that can fail because of the user, before writing anything
    progress("load", 0, 1, {})
    model, info = load_run(cfg.run)
    model.eval()
    size, class_names = info.input_size, list(info.class_names)
    recipe = load_recipe(cfg.calibration)
    if cfg.detector:
        from edgemask.training.detector import load_detector_run

        load_detector_run(cfg.detector)  # a wrong --detector fails before anything is written
    progress("load", 1, 1, {"arch": info.arch, "recipe": recipe.name})

    want_int8 = "int8" in cfg.precisions
    progress("calibration set", 0, 1, {})
    calib = select_images(recipe, class_names, size) if want_int8 else None
    golden = select_images(recipe, class_names, size, count=cfg.golden_count, seed=recipe.seed + 1,
                           exclude_sources=calib.sources if calib is not None else ())
    if len(golden.images) == 0:
        raise ExportError(f"calibration recipe {recipe.name!r} yielded no golden images; point its source at a "
                          "folder with images of the model's classes")
    probe_set = None
    if cfg.probe_count:
        probe_set = select_images(recipe, class_names, size, count=cfg.probe_count, seed=recipe.seed + 2,
                                  exclude_sources=list(golden.sources) + (list(calib.sources) if calib is not None else []))
    progress("calibration set", 1, 1, {"count": len(calib.images) if calib is not None else 0})
    golden_x = golden.as_nchw_float()                      # (G, 3, S, S) float32 [0,1]
    with torch.no_grad():
        golden_ref = model(torch.from_numpy(golden_x)).numpy().astype(np.float32)  # (G, K)

    tol = {p: cfg.tolerance.get(p) for p in EXPORT_PRECISIONS}
    models: list[ModelEntry] = [ModelEntry(file=WEIGHTS_FILE, precision="fp32", format="safetensors",
                                           extra={"source": "training run weights, copied unchanged"})]
    producer_extra: dict[str, str] = {}
    calibration_meta: dict[str, Any] | None = None
    measured: dict[str, dict[str, Any]] = {}

    # An empty folder (e.g. made by hand for --out) is replaced without --overwrite; anything else was checked above.
    replace = cfg.overwrite or (out.is_dir() and not any(out.iterdir()))
    with atomic_dir(out, overwrite=replace) as tmp:
        shutil.copyfile(Path(cfg.run) / WEIGHTS_FILE, tmp / WEIGHTS_FILE)

        # -- fp32 (always built: fp16 and int8 are made from it)
        progress("fp32", 0, 1, {})
        t = time.perf_counter()
        fp32_path = tmp / MODEL_FILES["fp32"]
        exp = onnx_from_torch(model, fp32_path, input_size=size, opset=cfg.opset, simplify=cfg.simplify)
        if exp.simplified_by:
            producer_extra["simplifier"] = exp.simplified_by
        fp32_golden = ort_logits(fp32_path, golden_x)
        d32 = _max_abs(fp32_golden, golden_ref)
        if tol["fp32"] is not None and d32 > tol["fp32"]:
            raise ExportError(f"the fp32 ONNX model differs from torch by {d32:.2e} on the golden inputs "
                              f"(allowed {tol['fp32']:.0e}); try another --opset, or report a bug")
        fp32_extra: dict[str, Any] = {"max_abs_diff_vs_torch": d32, "agreement_vs_torch": _agreement(fp32_golden, golden_ref),
                                      "exporter": exp.exporter, "simplified_by": exp.simplified_by,
                                      "nodes": exp.nodes, "op_types": exp.op_types,
                                      "export_seconds": round(time.perf_counter() - t, 2)}
        if exp.simplify_error:
            fp32_extra["simplify_error"] = exp.simplify_error
        progress("fp32", 1, 1, {"max_abs_diff": d32})
        if cfg.opencv_check:
            progress("opencv", 0, 1, {})
            cv = opencv_check(fp32_path, golden_x, golden_ref)
            fp32_extra["opencv"] = cv
            if cv.get("opencv"):
                producer_extra["opencv"] = str(cv["opencv"])
            progress("opencv", 1, 1, cv)
        if "fp32" in cfg.precisions:
            models.append(ModelEntry(file=MODEL_FILES["fp32"], precision="fp32", format="onnx", opset=exp.opset,
                                     extra=fp32_extra))
        measured["fp32"] = fp32_extra

        # -- fp16
        if "fp16" in cfg.precisions:
            progress("fp16", 0, 1, {})
            fp16_path = tmp / MODEL_FILES["fp16"]
            conv = fp16_from_onnx(fp32_path, fp16_path)
            producer_extra["onnxconverter-common"] = conv["converter"].split()[-1]
            fp16_golden = ort_logits(fp16_path, golden_x)
            d16 = _max_abs(fp16_golden, golden_ref)
            if tol["fp16"] is not None and d16 > tol["fp16"]:
                raise ExportError(f"the fp16 ONNX model differs from torch by {d16:.2e} on the golden inputs "
                                  f"(allowed {tol['fp16']:.0e}); the model may overflow fp16, export without fp16")
            extra16 = {"max_abs_diff_vs_torch": d16, "agreement_vs_torch": _agreement(fp16_golden, golden_ref), **conv}
            models.append(ModelEntry(file=MODEL_FILES["fp16"], precision="fp16", format="onnx", opset=exp.opset,
                                     extra=extra16))
            measured["fp16"] = extra16
            progress("fp16", 1, 1, {"max_abs_diff": d16})

        # -- int8
        if want_int8:
            assert calib is not None
            progress("int8", 0, 1, {"method": cfg.method})
            int8_path = tmp / MODEL_FILES["int8"]
            calib_x = calib.as_nchw_float()                # (N, 3, S, S)
            q = int8_from_onnx(fp32_path, int8_path, calib_x, method=cfg.method, per_channel=cfg.per_channel,
                               percentile=cfg.percentile, quantize_output=cfg.quantize_output,
                               target=cfg.int8_target)
            int8_golden = ort_logits(int8_path, golden_x)
            # Agreement on the (labelled) calibration images too: 16 golden images say little about int8.
            f32_cal, i8_cal = ort_logits(fp32_path, calib_x), ort_logits(int8_path, calib_x)
            extra8 = {
                "max_abs_diff_vs_torch": _max_abs(int8_golden, golden_ref),
                "agreement_vs_torch": _agreement(int8_golden, golden_ref),
                "agreement_vs_fp32_calibration_set": _agreement(i8_cal, f32_cal),
                "accuracy_calibration_set": {"fp32": float(np.mean(f32_cal.argmax(1) == calib.labels)),
                                             "int8": float(np.mean(i8_cal.argmax(1) == calib.labels))},
            }
            models.append(ModelEntry(file=MODEL_FILES["int8"], precision="int8", format="onnx", opset=exp.opset,
                                     quantization=q.quantization, extra=extra8))
            measured["int8"] = extra8
            header = f"TRT-{int(cfg.trt_cache_version)}-EntropyCalibration2"
            calibration_meta = {
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
            write_table(tmp / TABLE_FILE, q.table, {
                "method": cfg.method, "recipe": recipe.name, "recipe_sha256": recipe.sha256,
                "images_sha256": calib.images_sha256, "count": int(len(calib.images)),
                "note": "amax = scale * 127 (symmetric int8); names are tensors of model.fp32.onnx where "
                        "in_fp32_graph is true",
                "images": calib.sources})
            write_trt_cache(tmp / CACHE_FILE, q.table, cfg.trt_cache_version)
            shutil.copyfile(recipe.path, tmp / RECIPE_FILE)
            progress("int8", 1, 1, {"agreement": extra8["agreement_vs_fp32_calibration_set"]})

        if "fp32" not in cfg.precisions:
            fp32_path.unlink()

        # -- the face detector, into detector/ of the same bundle
        detector_entry = None
        if cfg.detector:
            from edgemask.export.detector_export import export_detector_into

            detector_entry = export_detector_into(tmp, cfg, progress, producer_extra)

        # -- golden set, config, manifest
        progress("write", 0, 1, {})
        (tmp / "golden").mkdir()
        np.save(tmp / GOLDEN_INPUTS, golden_x)
        np.save(tmp / GOLDEN_OUTPUTS, golden_ref)
        probe_meta = None
        if probe_set is not None:
            from edgemask.export.probe import PROBE_INPUTS, probe_from_model

            probe_x, probe_meta = probe_from_model(model, probe_set.as_nchw_float(), probe_set.sources)
            (tmp / "probe").mkdir()
            np.save(tmp / PROBE_INPUTS, probe_x)
        atomic_write_json(tmp / CONFIG_FILE, {**cfg.to_dict(), "recipe_path": recipe.path})
        manifest = BundleManifest(
            name=name,
            version=version,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            arch=info.arch,
            arch_args=dict(info.arch_args),
            class_names=class_names,
            input=InputSpec(shape=["N", 3, size, size], channel_order=info.channel_order),
            preprocessing=Preprocessing(resize="cv2.INTER_AREA", mean=list(info.mean), std=list(info.std),
                                        normalization_in_model=True, crop_margin=info.crop_margin),
            models=models,
            files=_hash_files(tmp),
            producer=_producer(producer_extra),
            opset=exp.opset,
            golden={"inputs": GOLDEN_INPUTS, "outputs": GOLDEN_OUTPUTS, "count": int(len(golden_x)),
                    "reference": "torch fp32, CPU, eval mode",
                    "sources": golden.sources,
                    "labels": [int(v) for v in golden.labels],
                    # max |Δlogit| vs outputs.fp32.npy a runner must meet; None = not enforced (int8: see agreement)
                    "tolerance": {p: tol[p] for p in cfg.precisions},
                    "agreement": {p: measured[p]["agreement_vs_torch"] for p in cfg.precisions if p in measured}},
            calibration=calibration_meta,
            detector=detector_entry,
            probe=probe_meta,
            source_run=str(cfg.run),
        )
        atomic_write_text(tmp / "manifest.json", manifest.to_json())
        problems = verify_bundle(tmp)
        if problems:  # would be a bug in this function; never publish a bundle that does not verify
            raise ExportError(f"the new bundle failed its own verification: {problems[0]}; report a bug")
        progress("write", 1, 1, {"version": version})
    return out

"""Building TensorRT engines with the TensorRT Python API (the only module that drives its builder).

:func:`engine_from_onnx` parses one ONNX file and serializes an engine; what
to parse and how (precision, INT8 mode, DLA, batch profile) is decided
beforehand, without TensorRT, by :func:`edgemask.export.engine.plan_engine_build`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemask.backends.tensorrt.calibrator import CalibratorLogic, make_calibrator, read_calibration_cache
from edgemask.bundle.engines import trt_version_code
from edgemask.errors import ExportError, NotAvailableError
from edgemask.utils.io import atomic_write_bytes, sha256_file

DEFAULT_BATCH = (1, 8, 32)  # dynamic batch profile (min, opt, max)


def import_tensorrt() -> Any:
    """``import tensorrt`` with a one-line NotAvailableError that says what to do."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise NotAvailableError(f"TensorRT is not importable here ({e}); build engines on the device itself "
                                "(JetPack ships TensorRT; on x86: pip install tensorrt), or print the equivalent trtexec "
                                "command with 'edgemask engine build BUNDLE --device NAME --print-trtexec'") from None
    return trt


def local_tensorrt_info() -> dict[str, Any]:
    """TensorRT version, CUDA binding, GPU name and compute capability here (None where unknown)."""
    info: dict[str, Any] = {"tensorrt": None, "tensorrt_error": None, "cuda_binding": None,
                            "compute_capability": None, "gpu": None, "cuda_error": None}
    try:
        import tensorrt as trt

        info["tensorrt"] = str(trt.__version__)
    except Exception as e:  # ImportError, or a broken install raising OSError for a missing .so
        info["tensorrt_error"] = f"{type(e).__name__}: {e}"
    try:
        from edgemask.backends.tensorrt.cuda_api import get_cuda_api

        api = get_cuda_api()
        info["cuda_binding"] = api.name
        info["compute_capability"] = api.compute_capability()
        info["gpu"] = api.device_name()
    except Exception as e:
        info["cuda_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return info


@dataclass
class BuiltEngine:
    path: str
    bytes: int
    sha256: str
    tensorrt_version: str
    build_seconds: float
    timing_cache: str | None
    warnings: list[str] = field(default_factory=list)


def _trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def engine_from_onnx(onnx_path: str | Path, out_path: str | Path, *, precision: str, input_name: str,
                     input_chw: Sequence[int], batch: Sequence[int] = DEFAULT_BATCH, workspace_mib: int = 1024,
                     int8_mode: str | None = None, calibration_cache: str | Path | None = None,
                     calibration_batches: np.ndarray | None = None, dla_core: int | None = None,
                     gpu_fallback: bool = True, fp16_fallback: bool = True, timing_cache: str | Path | None = None,
                     verbose: bool = False, trt: Any = None) -> BuiltEngine:
    """Build and serialize a TensorRT engine with the TensorRT Python API.

    Written against TensorRT 8.2 / 8.5 / 8.6 / 10.x: the explicit-batch flag
    only before 10 (10 removed implicit batch), ``set_memory_pool_limit``
    from 8.4 (``max_workspace_size`` before), ``build_serialized_network``.

    Args:
        onnx_path: fp32 ONNX (fp32/fp16/calibrator INT8) or QDQ ONNX (qdq INT8).
        out_path: where the engine goes (written atomically).
        precision: fp32 | fp16 | int8.
        input_name, input_chw: the image input and its (C, H, W).
        batch: (min, opt, max) batch of the optimisation profile.
        int8_mode: "qdq" or "calibrator" when precision is int8.
        calibration_cache: TensorRT calibration cache for "calibrator".
        calibration_batches: float32 NCHW images, fed only if TensorRT
            rejects the cache (needs pycuda or cuda-python).
        dla_core: build for this DLA core; ``gpu_fallback`` lets unsupported
            layers run on the GPU.
        fp16_fallback: with INT8, also allow FP16 kernels for layers that are
            not quantized (otherwise they run in fp32).
        timing_cache: file loaded before and saved after the build, so the
            next build of a similar network skips most kernel timing.
    """
    trt = trt or import_tensorrt()
    major = _trt_major(trt)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 removed implicit batch; before 10 the ONNX parser needs EXPLICIT_BATCH.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    onnx_path = Path(onnx_path)
    ok = parser.parse_from_file(str(onnx_path)) if hasattr(parser, "parse_from_file") else parser.parse(onnx_path.read_bytes())
    if not ok:
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errs[0].splitlines()[0] if errs else "unknown parser error"
        raise ExportError(f"TensorRT {trt.__version__} could not parse {onnx_path.name}: {first} "
                          f"({len(errs)} error(s)); check the opset and 'edgemask engine check-qdq'")

    config = builder.create_builder_config()
    ws = int(workspace_mib) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
    else:  # TensorRT < 8.4
        config.max_workspace_size = ws
    if precision == "fp16" or (precision == "int8" and fp16_fallback):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        # Explicit (QDQ) networks also need the INT8 flag in 8.x to pick INT8 kernels.
        config.set_flag(trt.BuilderFlag.INT8)

    # Dynamic batch: one optimisation profile over the image input.
    inp = None
    for i in range(network.num_inputs):
        if network.get_input(i).name == input_name:
            inp = network.get_input(i)
    if inp is None:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise ExportError(f"{onnx_path.name} has no input {input_name!r} (it has {names}); re-export the bundle")
    c, h, w = (int(x) for x in input_chw)
    bmin, bopt, bmax = (int(x) for x in batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (bmin, c, h, w), (bopt, c, h, w), (bmax, c, h, w))
    config.add_optimization_profile(profile)

    warnings: list[str] = []
    calibrator = cuda = None
    if precision == "int8" and int8_mode == "calibrator":
        cache = read_calibration_cache(calibration_cache) if calibration_cache else None
        if calibration_batches is not None:
            from edgemask.backends.tensorrt.cuda_api import get_cuda_api

            cuda = get_cuda_api()
            cuda.activate()
        logic = CalibratorLogic(cache, calibration_batches, batch_size=bopt,
                                header_code=trt_version_code(trt.__version__))
        calibrator = make_calibrator(trt, logic, cuda)
        config.int8_calibrator = calibrator  # deprecated in TensorRT 10.1 (implicit INT8), still honoured
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)  # dynamic shapes: calibrate at the profile's opt shape

    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        if gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    tc_path = Path(timing_cache) if timing_cache else None
    cache_obj = None
    if tc_path is not None:
        blob = tc_path.read_bytes() if tc_path.is_file() else b""
        cache_obj = config.create_timing_cache(blob)  # an empty buffer makes a new, empty cache
        # ignore_mismatch=False: a cache written on another GPU or TensorRT is refused (returns
        # False) rather than trusted; start a fresh one then, and overwrite the file afterwards.
        if config.set_timing_cache(cache_obj, False) is False and blob:
            warnings.append(f"timing cache {tc_path} was written by another GPU or TensorRT version; "
                            "starting a new one (the file is replaced after this build)")
            cache_obj = config.create_timing_cache(b"")
            config.set_timing_cache(cache_obj, False)

    t0 = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if cuda is not None:
            cuda.deactivate()
    seconds = time.perf_counter() - t0
    if serialized is None:
        hint = (" — the calibration cache did not match this network (tensor names or TensorRT version); "
                "use --int8-mode qdq or re-export the bundle") if int8_mode == "calibrator" else ""
        raise ExportError(f"TensorRT {trt.__version__} failed to build {onnx_path.name} as {precision}"
                          f"{' on DLA ' + str(dla_core) if dla_core is not None else ''}{hint}; rerun with --verbose")
    data = bytes(serialized)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    if tc_path is not None and cache_obj is not None:
        # The attached ITimingCache was extended in place by the build: serialize that object.
        atomic_write_bytes(tc_path, bytes(cache_obj.serialize()))
    return BuiltEngine(path=str(out_path), bytes=len(data), sha256=sha256_file(out_path),
                       tensorrt_version=str(trt.__version__), build_seconds=round(seconds, 3),
                       timing_cache=str(tc_path) if tc_path else None, warnings=warnings)


__all__ = ["BuiltEngine", "DEFAULT_BATCH", "engine_from_onnx", "import_tensorrt", "local_tensorrt_info"]

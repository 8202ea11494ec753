"""Building TensorRT engines with the TensorRT Python API (the only module that drives its builder).

:func:`engine_from_onnx` parses one ONNX file and serializes an engine; what
to parse and how (precision, INT8 mode, DLA, batch profile) is decided
beforehand, without TensorRT, by :func:`edgemask.export.engine.plan_engine_build`.
:func:`require_build_gpu` says in one line, before any work, that TensorRT is
installed but no CUDA device answers.

Versions (the members each path uses are listed in
:mod:`edgemask.backends.tensorrt.api`):

* 8.x: explicit-batch network flag; FP16/INT8 builder flags; implicit INT8
  from the calibration cache through an IInt8 calibrator, or QDQ.
* 10.x: no batch flag (implicit batch is gone); otherwise as 8.x.
* 11.x: strongly typed networks only. The builder flags FP16/INT8, the
  calibrators and ``config.int8_calibrator`` are gone: fp16 comes from an
  fp16-typed ONNX (the bundle's ``model.fp16.onnx``), int8 from the QDQ model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemask.backends.tensorrt.api import explicit_batch_flag, legacy_calibration, strongly_typed
from edgemask.backends.tensorrt.calibrator import (
    CalibratorLogic,
    has_legacy_calibration,
    make_calibrator,
    read_calibration_cache,
)
from edgemask.bundle.engines import trt_major, trt_version_code
from edgemask.errors import ExportError, NotAvailableError
from edgemask.utils.io import atomic_write_bytes, sha256_file

DEFAULT_BATCH = (1, 8, 32)  # dynamic batch profile (min, opt, max)


def import_tensorrt() -> Any:
    """``import tensorrt`` with a one-line NotAvailableError that says what to do."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise NotAvailableError(
            f"TensorRT is not importable here ({e}); build engines on the device itself "
            "(JetPack ships TensorRT; on x86: pip install 'edgemask[tensorrt]'), or print the equivalent trtexec "
            "command with 'edgemask engine build BUNDLE --device NAME --print-trtexec'"
        ) from None
    return trt


def require_build_gpu(trt: Any = None) -> Any:
    """TensorRT, once it is clear this machine can build with it: call before any export or build work.

    TensorRT imports fine on a machine without a usable GPU, and only fails
    when the first builder is made (``trt.Builder`` raises ``TypeError:
    ... factory function returned nullptr`` or returns None). So this asks
    CUDA for a device (when pycuda or cuda-python imports) and then makes one
    Builder, and turns either failure into one line.

    Raises:
        NotAvailableError: TensorRT does not import, or no CUDA device answers.
    """
    trt = trt or import_tensorrt()
    from edgemask.backends.tensorrt.cuda_api import cuda_device_problem

    problem = cuda_device_problem(binding_only=True)
    if problem is None:
        try:
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        except (TypeError, RuntimeError) as e:
            problem = f"trt.Builder failed: {_first_line(e)}"
        else:
            if builder is None:
                problem = "trt.Builder returned None"
            del builder
    if problem is not None:
        raise NotAvailableError(
            f"TensorRT {trt.__version__} is installed but no CUDA device answers ({problem}); "
            "build engines on the device itself or on a machine whose NVIDIA GPU 'nvidia-smi' "
            "lists, or print the trtexec command with --print-trtexec"
        )
    return trt


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def local_tensorrt_info() -> dict[str, Any]:
    """TensorRT version, CUDA binding, GPU name and compute capability here (None where unknown)."""
    info: dict[str, Any] = {
        "tensorrt": None,
        "tensorrt_error": None,
        "cuda_binding": None,
        "compute_capability": None,
        "gpu": None,
        "cuda_error": None,
    }
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


def engine_from_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    precision: str,
    input_name: str,
    input_chw: Sequence[int],
    batch: Sequence[int] = DEFAULT_BATCH,
    workspace_mib: int = 1024,
    int8_mode: str | None = None,
    calibration_cache: str | Path | None = None,
    calibration_batches: np.ndarray | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    fp16_fallback: bool = True,
    timing_cache: str | Path | None = None,
    verbose: bool = False,
    trt: Any = None,
) -> BuiltEngine:
    """Build and serialize a TensorRT engine with the TensorRT Python API.

    Written against TensorRT 8.2 / 8.5 / 8.6 / 10.x / 11.x (see the module
    docstring): the explicit-batch flag only before 10, a strongly typed
    network and no precision flags from 11, ``set_memory_pool_limit`` from
    8.4 (``max_workspace_size`` before), ``build_serialized_network``.

    Args:
        onnx_path: fp32 ONNX (fp32, fp16 before 11, calibrator INT8), fp16
            ONNX (fp16 on 11) or QDQ ONNX (qdq INT8).
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
            not quantized (otherwise they run in fp32); TensorRT 11 follows
            the ONNX types instead.
        timing_cache: file loaded before and saved after the build, so the
            next build of a similar network skips most kernel timing.
    """
    trt = require_build_gpu(trt)
    major = trt_major(trt.__version__)
    if (
        precision == "int8"
        and int8_mode == "calibrator"
        and not (legacy_calibration(major) and has_legacy_calibration(trt))
    ):
        raise ExportError(
            f"TensorRT {trt.__version__} has no INT8 calibrator (removed in 11); build int8 from the "
            "QDQ model with --int8-mode qdq"
        )
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:  # some releases return None instead of raising
        raise NotAvailableError(f"TensorRT {trt.__version__} could not create a builder (no CUDA device answers)")
    onnx_path = Path(onnx_path)
    # The parser owns the network's weights: keep it referenced until the build is done.
    network, parser = _parse_onnx(trt, builder, logger, major, onnx_path)
    config = builder.create_builder_config()
    _set_workspace_and_precision(trt, config, major, workspace_mib, precision, fp16_fallback)
    profile = _add_batch_profile(builder, config, network, onnx_path, input_name, input_chw, batch)

    warnings: list[str] = []
    calibrator = cuda = None  # the calibrator too must outlive the build
    if precision == "int8" and int8_mode == "calibrator":  # 8.x / 10.x only (refused above on 11)
        calibrator, cuda = _attach_calibrator(
            trt, config, profile, calibration_cache, calibration_batches, batch_size=int(batch[1])
        )

    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        if gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    tc_path = Path(timing_cache) if timing_cache else None
    cache_obj = _attach_timing_cache(config, tc_path, warnings) if tc_path is not None else None

    t0 = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if cuda is not None:
            cuda.deactivate()
    seconds = time.perf_counter() - t0
    del parser, calibrator
    if serialized is None:
        hint = (
            (
                " — the calibration cache did not match this network (tensor names or TensorRT version); "
                "use --int8-mode qdq or re-export the bundle"
            )
            if int8_mode == "calibrator"
            else ""
        )
        raise ExportError(
            f"TensorRT {trt.__version__} failed to build {onnx_path.name} as {precision}"
            f"{' on DLA ' + str(dla_core) if dla_core is not None else ''}{hint}; rerun with --verbose"
        )
    data = bytes(serialized)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    if tc_path is not None and cache_obj is not None:
        # The attached ITimingCache was extended in place by the build: serialize that object.
        atomic_write_bytes(tc_path, bytes(cache_obj.serialize()))
    return BuiltEngine(
        path=str(out_path),
        bytes=len(data),
        sha256=sha256_file(out_path),
        tensorrt_version=str(trt.__version__),
        build_seconds=round(seconds, 3),
        timing_cache=str(tc_path) if tc_path else None,
        warnings=warnings,
    )


def _parse_onnx(trt: Any, builder: Any, logger: Any, major: int, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser) of ``onnx_path``, with the network flags this TensorRT major wants."""
    if strongly_typed(major):
        # 11: every tensor keeps the type the ONNX gives it (the flag is accepted and implied there).
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif explicit_batch_flag(major):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # 8.x: the ONNX parser needs it
    else:
        flags = 0  # 10.x: implicit batch is gone, explicit batch is the only kind
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ok = (
        parser.parse_from_file(str(onnx_path))
        if hasattr(parser, "parse_from_file")
        else parser.parse(onnx_path.read_bytes())
    )
    if not ok:
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errs[0].splitlines()[0] if errs else "unknown parser error"
        raise ExportError(
            f"TensorRT {trt.__version__} could not parse {onnx_path.name}: {first} "
            f"({len(errs)} error(s)); check the opset and 'edgemask engine check-qdq'"
        )
    return network, parser


def _set_workspace_and_precision(
    trt: Any, config: Any, major: int, workspace_mib: int, precision: str, fp16_fallback: bool
) -> None:
    ws = int(workspace_mib) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
    else:  # TensorRT < 8.4
        config.max_workspace_size = ws
    if not strongly_typed(major):  # 11 has no precision flags: the ONNX's types decide
        if precision == "fp16" or (precision == "int8" and fp16_fallback):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            # Explicit (QDQ) networks also need the INT8 flag in 8.x to pick INT8 kernels.
            config.set_flag(trt.BuilderFlag.INT8)


def _add_batch_profile(
    builder: Any,
    config: Any,
    network: Any,
    onnx_path: Path,
    input_name: str,
    input_chw: Sequence[int],
    batch: Sequence[int],
) -> Any:
    """Dynamic batch: one optimisation profile over the image input; returns the profile."""
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
    return profile


def _attach_calibrator(
    trt: Any,
    config: Any,
    profile: Any,
    calibration_cache: str | Path | None,
    calibration_batches: np.ndarray | None,
    batch_size: int,
) -> tuple[Any, Any]:
    """Legacy INT8 calibration (8.x / 10.x): (calibrator, CUDA API or None); the caller deactivates the API."""
    cache = read_calibration_cache(calibration_cache) if calibration_cache else None
    cuda = None
    if calibration_batches is not None:
        from edgemask.backends.tensorrt.cuda_api import get_cuda_api

        cuda = get_cuda_api()
        cuda.activate()
    logic = CalibratorLogic(
        cache, calibration_batches, batch_size=batch_size, header_code=trt_version_code(trt.__version__)
    )
    calibrator = make_calibrator(trt, logic, cuda)
    config.int8_calibrator = calibrator  # deprecated in TensorRT 10.1 (implicit INT8), still honoured
    if hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profile)  # dynamic shapes: calibrate at the profile's opt shape
    return calibrator, cuda


def _attach_timing_cache(config: Any, tc_path: Path, warnings: list[str]) -> Any:
    """Load ``tc_path`` (or start empty) as the build's timing cache; returns the ITimingCache to save after."""
    blob = tc_path.read_bytes() if tc_path.is_file() else b""
    cache_obj = config.create_timing_cache(blob)  # an empty buffer makes a new, empty cache
    # ignore_mismatch=False: a cache written on another GPU or TensorRT is refused (returns
    # False) rather than trusted; start a fresh one then, and overwrite the file afterwards.
    if config.set_timing_cache(cache_obj, False) is False and blob:
        warnings.append(
            f"timing cache {tc_path} was written by another GPU or TensorRT version; "
            "starting a new one (the file is replaced after this build)"
        )
        cache_obj = config.create_timing_cache(b"")
        config.set_timing_cache(cache_obj, False)
    return cache_obj


__all__ = [
    "BuiltEngine",
    "DEFAULT_BATCH",
    "engine_from_onnx",
    "import_tensorrt",
    "local_tensorrt_info",
    "require_build_gpu",
]

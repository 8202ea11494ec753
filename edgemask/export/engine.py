"""TensorRT engines: plan, build (TensorRT Python API), name, record, check.

A TensorRT engine is compiled for one GPU and one TensorRT version; it is not
portable. So everything here is keyed by a device profile (``devices/``):

* :func:`plan_engine_build` decides, without TensorRT, what will be built:
  the precision the device really runs (INT8 on a Nano becomes FP16), DLA or
  GPU, which ONNX file to parse (the QDQ model for explicit INT8, the fp32
  model plus the calibration cache for implicit INT8), the dynamic-batch
  profile, the workspace and the engine's file name.
* :func:`engine_build_command` prints the equivalent ``trtexec`` command.
* :func:`engine_from_onnx` builds with the TensorRT Python API (8.2 – 10.x).
* :func:`add_engine_to_bundle` records the engine in the bundle manifest with
  device, compute capability, TensorRT version and precision.
* :func:`check_engine_compatible` refuses an engine built elsewhere and says
  how to rebuild it.

File names: ``model.<device>.<precision>[.dla<N>].trt<major.minor>.engine``;
the manifest holds the exact TensorRT version, which must match at load.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import shlex
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgemask.devices.profiles import (
    DeviceProfile,
    load_profile,
    plan_dla,
    plan_precision,
    tensorrt_version_matches,
)
from edgemask.errors import (
    BackendError,
    BundleError,
    ConfigError,
    ExportError,
    NotAvailableError,
)
from edgemask.utils.io import atomic_write_bytes, atomic_write_text, sha256_file

ENGINE_FORMAT = "tensorrt"
INT8_MODES = ("auto", "qdq", "calibrator")
DEFAULT_BATCH = (1, 8, 32)  # dynamic batch profile (min, opt, max)
_ENGINE_RE = re.compile(r"^model\.(?P<device>[a-z0-9-]+)\.(?P<precision>fp32|fp16|int8)"
                        r"(?:\.dla(?P<dla>\d+))?\.trt(?P<trt>\d+(?:\.\d+)*)\.engine$")


# --------------------------------------------------------------------------- names & versions


def engine_cache_dir() -> Path:
    """Where engines built on first use and timing caches live.

    ``$EDGEMASK_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/edgemask/engines``,
    else ``~/.cache/edgemask/engines``. Kept outside bundles because a
    deployed bundle may be read-only and is verified by hash.
    """
    env = os.environ.get("EDGEMASK_ENGINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgemask" / "engines"


def trt_tag(version: str) -> str:
    """"10.3.0.26" → "10.3" (what a profile pins and what goes in file names)."""
    parts = str(version).split(".")
    return ".".join(parts[:2])


def trt_version_code(version: str) -> int:
    """The number TensorRT writes in calibration-cache headers (``TRT-<code>-...``).

    It is ``NV_TENSORRT_VERSION``: ``major*1000 + minor*100 + patch`` up to
    TensorRT 8/9 (8.5.2 → 8502), and ``NV_TENSORRT_VERSION_INT`` =
    ``major*10000 + minor*100 + patch`` from TensorRT 10's NvInferVersion.h on
    (10.3.0 → 100300; the old formula gave 10300, which TensorRT 10 rejects).
    """
    p = [int(x) for x in (str(version).split(".") + ["0", "0"])[:3]]
    return p[0] * (10000 if p[0] >= 10 else 1000) + p[1] * 100 + p[2]


def engine_file_name(device: str, precision: str, trt_version: str, dla_core: int | None = None) -> str:
    """``model.<device>.<precision>[.dla<N>].trt<major.minor>.engine``."""
    dla = f".dla{dla_core}" if dla_core is not None else ""
    return f"model.{device}.{precision}{dla}.trt{trt_tag(trt_version)}.engine"


def parse_engine_file_name(name: str | Path) -> dict[str, Any] | None:
    """Inverse of :func:`engine_file_name`; None for a name that does not follow it."""
    m = _ENGINE_RE.match(Path(name).name)
    if not m:
        return None
    return {"device": m["device"], "precision": m["precision"],
            "dla_core": int(m["dla"]) if m["dla"] is not None else None, "tensorrt": m["trt"]}


def rebuild_command(bundle_dir: str | Path, device: str, precision: str, dla_core: int | None = None) -> str:
    cmd = ["edgemask", "engine", "build", str(bundle_dir), "--device", device, "--precision", precision]
    if dla_core is not None:
        cmd += ["--dla-core", str(dla_core)]
    return shlex.join(cmd)


# --------------------------------------------------------------------------- compatibility


def check_engine_compatible(entry: Any, runtime_trt: str | None, *, compute_capability: str | None = None,
                            device: str | None = None, bundle_dir: str | Path = "BUNDLE") -> None:
    """Refuse an engine that was built for another TensorRT version, GPU or device.

    Args:
        entry: the engine's ``ModelEntry`` (or a dict with the same keys).
        runtime_trt: ``tensorrt.__version__`` here.
        compute_capability: this GPU's, when known.
        device: this machine's profile name, when known.

    Raises:
        BackendError: one line naming the mismatch and the rebuild command.
    """
    get = entry.get if isinstance(entry, dict) else lambda k: getattr(entry, k, None)
    file = get("file") or "engine"
    built_dev = get("device") or "?"
    precision = get("precision") or "fp16"
    dla = (get("extra") or {}).get("dla_core")
    fix = f"rebuild it on this machine: {rebuild_command(bundle_dir, device or built_dev, precision, dla)}"
    built_trt = get("tensorrt_version")
    if not built_trt:
        raise BackendError(f"{file} records no TensorRT version, so it cannot be checked; {fix}")
    if runtime_trt is not None and str(built_trt) != str(runtime_trt):
        raise BackendError(f"{file} was built with TensorRT {built_trt} but this machine has TensorRT "
                           f"{runtime_trt}; engines are not portable across TensorRT versions; {fix}")
    built_cc = get("compute_capability")
    if built_cc and compute_capability and str(built_cc) != str(compute_capability):
        raise BackendError(f"{file} was built for compute capability {built_cc} but this GPU is "
                           f"{compute_capability}; engines are not portable across GPUs; {fix}")
    if device and built_dev != "?" and built_dev != device:
        raise BackendError(f"{file} was built for device {built_dev!r} but this machine is {device!r}; {fix}")


def engine_entries(manifest: Any, device: str | None = None, precision: str | None = None) -> list[Any]:
    """The manifest's TensorRT engine entries, filtered.

    ``precision`` matches the engine's precision, or the precision that was
    *requested* for it (an "int8" request on a Nano is an fp16 engine).
    """
    out = []
    for m in manifest.models:
        if m.format != ENGINE_FORMAT:
            continue
        if device is not None and m.device != device:
            continue
        if precision is not None and m.precision != precision and (m.extra or {}).get("requested_precision") != precision:
            continue
        out.append(m)
    # exact precision first, GPU engines before DLA ones
    out.sort(key=lambda m: (m.precision != precision, (m.extra or {}).get("dla_core") is not None))
    return out


# --------------------------------------------------------------------------- calibration cache


@dataclass
class CalibrationCache:
    """A TensorRT calibration cache: header ``TRT-<code>-<Algorithm>``, then ``tensor: <hex fp32 scale>``."""

    version_code: int
    algorithm: str
    scales: dict[str, float]
    raw: bytes
    path: str = ""


_CALIB_ALGOS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")


def read_calibration_cache(path: str | Path) -> CalibrationCache:
    """Parse and validate a TensorRT calibration cache.

    Raises:
        ExportError: missing file, unknown header, or a line that is not
            ``name: 8-hex-digit float32`` with a positive, finite value.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"calibration cache {path} not found; re-export the bundle with int8, or use --int8-mode qdq")
    raw = path.read_bytes()
    lines = raw.decode("ascii", "replace").splitlines()
    if not lines:
        raise ExportError(f"calibration cache {path} is empty; re-export the bundle")
    m = re.match(r"^TRT-(\d+)-(\w+)$", lines[0].strip())
    if not m or m.group(2) not in _CALIB_ALGOS:
        raise ExportError(f"calibration cache {path} starts with {lines[0][:40]!r}, expected a header like "
                          "'TRT-8502-EntropyCalibration2'; re-export the bundle")
    scales: dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, hexval = line.rpartition(":")
        hexval = hexval.strip()
        if not sep or not name.strip() or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval):
            raise ExportError(f"calibration cache {path} line {n} is {line[:60]!r}, expected 'tensor: 3c010a14'")
        value = struct.unpack(">f", bytes.fromhex(hexval))[0]
        if not np.isfinite(value) or value < 0:  # 0 is legal: a tensor that was always 0 in calibration
            raise ExportError(f"calibration cache {path} line {n}: scale {value} of {name.strip()!r} is negative "
                              "or not finite; re-calibrate")
        scales[name.strip()] = float(value)
    if not scales:
        raise ExportError(f"calibration cache {path} has a header but no tensor scales; re-export the bundle")
    return CalibrationCache(int(m.group(1)), m.group(2), scales, raw, str(path))


class CalibratorLogic:
    """What a TensorRT calibrator does, without TensorRT (so it is testable anywhere).

    Implicit INT8 (TensorRT without the QDQ path) needs per-tensor scales.
    They come from the bundle's calibration cache; TensorRT asks for batches
    only when the cache does not fit the network, and then ``batches``
    (float32 NCHW) are fed, if given.
    """

    def __init__(self, cache: CalibrationCache | None, batches: np.ndarray | None = None, batch_size: int = 8,
                 write_path: str | Path | None = None, header_code: int | None = None):
        self.cache = cache
        # The bundle's cache holds scales edgemask computed from ONNX tensor ranges; its header
        # version is whatever the export was told (--trt-cache-version). It is presented to
        # TensorRT under the running TensorRT's own code so the version in the header is never
        # the reason TensorRT ignores it and asks for calibration data instead.
        self.header_code = header_code
        self.batch_size = int(batch_size)
        self.batches = None if batches is None else np.ascontiguousarray(batches, dtype=np.float32)
        self.write_path = Path(write_path) if write_path else None
        self._pos = 0
        self.cache_reads = 0
        self.batches_served = 0

    @property
    def algorithm(self) -> str:
        return self.cache.algorithm if self.cache else "EntropyCalibration2"

    def read(self) -> bytes | None:
        self.cache_reads += 1
        if self.cache is None:
            return None
        if self.header_code is None or self.header_code == self.cache.version_code:
            return self.cache.raw
        _, sep, rest = self.cache.raw.partition(b"\n")
        return f"TRT-{self.header_code}-{self.cache.algorithm}".encode() + sep + rest

    def write(self, data: bytes) -> None:
        if self.write_path is not None:
            atomic_write_bytes(self.write_path, bytes(data))

    def next_batch(self) -> np.ndarray | None:
        """The next full batch (N = batch_size), or None when done."""
        if self.batches is None or self._pos + self.batch_size > len(self.batches):
            return None
        b = self.batches[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        self.batches_served += 1
        return b


_CALIBRATOR_BASES = {"EntropyCalibration2": "IInt8EntropyCalibrator2", "EntropyCalibration": "IInt8EntropyCalibrator",
                     "MinMaxCalibration": "IInt8MinMaxCalibrator", "LegacyCalibration": "IInt8LegacyCalibrator"}


def make_calibrator(trt: Any, logic: CalibratorLogic, cuda: Any = None) -> Any:
    """A TensorRT calibrator object whose class matches the cache's algorithm.

    TensorRT ignores a cache written by a different algorithm, so the base
    class is chosen from the header (``EntropyCalibration2`` →
    ``IInt8EntropyCalibrator2``, the default).
    """
    base = getattr(trt, _CALIBRATOR_BASES[logic.algorithm])
    state: dict[str, Any] = {"buf": None}

    def __init__(self: Any) -> None:
        base.__init__(self)  # pybind11 trampolines must have their base constructor called

    def get_batch_size(self: Any) -> int:
        # 1, not logic.batch_size: edgemask networks are explicit-batch, so the batch of each
        # calibration tensor comes from the calibration profile (its opt shape = logic.batch_size
        # rows); TensorRT uses this number only for implicit-batch networks (deprecated in 10.0).
        return 1

    def get_batch(self: Any, names: Sequence[str], *args: Any) -> list[int] | None:
        # names: the network inputs TensorRT wants, in order; edgemask engines have exactly one.
        batch = logic.next_batch() if cuda is not None else None
        if batch is None:  # None tells TensorRT there is no more data
            if state["buf"] is not None:
                state["buf"].free()
                state["buf"] = None
            return None
        if state["buf"] is None:
            state["buf"] = cuda.alloc(batch.nbytes)
        cuda.htod(state["buf"], batch)
        return [int(state["buf"].ptr)]

    def read_calibration_cache(self: Any, *args: Any) -> bytes | None:
        return logic.read()

    def write_calibration_cache(self: Any, cache: Any, *args: Any) -> None:
        logic.write(bytes(cache))

    cls = type("EdgemaskCacheCalibrator", (base,), {
        "__init__": __init__, "get_batch_size": get_batch_size, "get_batch": get_batch,
        "read_calibration_cache": read_calibration_cache, "write_calibration_cache": write_calibration_cache})
    return cls()


# --------------------------------------------------------------------------- the plan


@dataclass
class EnginePlan:
    """Everything decided before TensorRT is touched."""

    bundle: str
    device: str
    requested_precision: str
    precision: str
    int8_mode: str | None              # "qdq" (explicit, QDQ model) | "calibrator" (implicit + cache) | None
    source: str                        # ONNX file parsed, relative to the bundle
    calibration_cache: str | None      # relative to the bundle, for "calibrator"
    dla_core: int | None
    gpu_fallback: bool
    workspace_mib: int
    input_name: str
    input_chw: tuple[int, int, int]
    batch: tuple[int, int, int]
    opset: int
    tensorrt: str                      # expected TensorRT (profile's, or this machine's when known)
    engine_name: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_chw"], d["batch"] = list(self.input_chw), list(self.batch)
        return d


def _bundle_of(bundle: Any) -> Any:
    from edgemask.bundle import Bundle, load_bundle

    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=False)


def _onnx_io(path: Path) -> tuple[str, tuple[Any, ...], int]:
    """(input name, input shape with None for symbolic dims, default-domain opset) of an ONNX file."""
    # Our protobuf reader, not the onnx package: the device runtime (Python 3.8, no ONNX tooling) builds engines.
    from edgemask.utils.onnx_graph import OnnxFormatError, load_model

    try:
        model = load_model(path)
    except (OSError, OnnxFormatError) as e:
        raise ExportError(f"{path} is not a readable ONNX model ({e}); re-export the bundle") from None
    inputs = model.graph.real_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{path} has {len(inputs)} inputs; edgemask engines take exactly one image input")
    dims = tuple(d if isinstance(d, int) else None for d in (inputs[0].shape or ()))
    return inputs[0].name, dims, model.opset()


def plan_engine_build(bundle: Any, device: str | DeviceProfile, precision: str = "fp16", *,
                      dla_core: int | None = None, int8_mode: str = "auto", batch: Sequence[int] = DEFAULT_BATCH,
                      workspace_mib: int | None = None, gpu_fallback: bool = True,
                      tensorrt_version: str | None = None) -> EnginePlan:
    """Decide what :func:`build_engine` will build; needs no TensorRT.

    Args:
        bundle: bundle folder (or a loaded ``Bundle``).
        device: profile name or profile.
        precision: requested precision; may be lowered (see ``plan_precision``).
        dla_core: build for this DLA core (GPU fallback on); ignored with a
            warning on devices without DLA.
        int8_mode: "qdq" = explicit quantization from ``model.int8.onnx``;
            "calibrator" = implicit INT8 from the fp32 model and the bundle's
            calibration cache; "auto" = qdq when the QDQ model passes the
            compliance check for the device's TensorRT, else calibrator.
        batch: (min, opt, max) of the dynamic batch profile.
        tensorrt_version: the TensorRT that will build (this machine's);
            defaults to the profile's.

    Raises:
        ConfigError: unknown device, a device without TensorRT, bad options.
        BundleError / ExportError: the bundle lacks what the plan needs.
    """
    from edgemask.export.qdq_check import check_qdq_for_tensorrt

    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if not profile.has_tensorrt:
        raise ConfigError(f"device {profile.name!r} has no TensorRT (no NVIDIA GPU); TensorRT engines need a CUDA "
                          "device; run the ONNX model with the onnxrt backend instead")
    if int8_mode not in INT8_MODES:
        raise ConfigError(f"--int8-mode {int8_mode!r} is unknown; use one of {', '.join(INT8_MODES)}")
    b = tuple(int(x) for x in batch)
    if len(b) != 3 or not (1 <= b[0] <= b[1] <= b[2]):
        raise ConfigError(f"batch profile {list(batch)} is invalid; give min <= opt <= max, all >= 1 (e.g. 1,8,32)")
    bnd = _bundle_of(bundle)
    warnings: list[str] = []

    prec, w = plan_precision(profile, precision)
    warnings += w
    dla, prec, w = plan_dla(profile, dla_core, prec)
    warnings += w
    trt_ver = tensorrt_version or profile.tensorrt

    mode: str | None = None
    cache_rel: str | None = None
    if prec == "int8":
        cal = bnd.manifest.calibration or {}
        cache_rel = cal.get("cache") or ("calibration/cache.txt" if (bnd.root / "calibration/cache.txt").is_file() else None)
        if int8_mode in ("auto", "qdq"):
            int8_path = bnd.model_path("int8")  # BundleError, one line, if the bundle has no int8 model
            report = check_qdq_for_tensorrt(int8_path, trt_ver)
            if report.passed:
                mode = "qdq"
            elif int8_mode == "qdq" or not cache_rel:
                raise ExportError(f"{int8_path.name} will not build as explicit INT8 on TensorRT {trt_ver}: "
                                  f"{report.errors[0].message} ({len(report.errors)} problem(s); "
                                  f"'edgemask engine check-qdq {bnd.root}' lists them)")
            else:
                mode = "calibrator"
                warnings.append(f"{int8_path.name} fails the TensorRT QDQ check ({report.errors[0].code}); "
                                f"building implicit INT8 from the fp32 model and {cache_rel} instead")
        else:
            if not cache_rel:
                raise ExportError(f"bundle {bnd.manifest.name!r} has no calibration cache for --int8-mode calibrator; "
                                  "re-export it with int8 or use --int8-mode qdq")
            mode = "calibrator"
        if mode == "calibrator":
            read_calibration_cache(bnd.path(cache_rel))  # validate now, fail before a long build
    source = bnd.model_entry("int8").file if mode == "qdq" else bnd.model_entry("fp32").file
    src_path = bnd.path(source)
    if not src_path.is_file():
        raise BundleError(f"{src_path} is listed in the manifest but missing; re-copy or re-export the bundle")
    input_name, dims, opset = _onnx_io(src_path)
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise ExportError(f"{source} input {input_name!r} has shape {dims}; expected (N, 3, H, W) with fixed H, W")
    if dims[0] is not None:  # static batch in the ONNX: the profile must be that batch
        if b != (dims[0],) * 3:
            warnings.append(f"{source} has a fixed batch of {dims[0]}; the engine takes batch {dims[0]} only")
        b = (dims[0],) * 3
    if dla is not None and b[0] != b[2]:
        # DLA engines are built static; the runner pads/splits batches to this size.
        b = (b[1],) * 3
        warnings.append(f"DLA engines use a fixed batch: building batch {b[0]} (the runner splits larger batches)")
    if opset > profile.max_onnx_opset:
        warnings.append(f"{source} is opset {opset} but TensorRT {profile.tensorrt} on {profile.name} documents "
                        f"opsets up to {profile.max_onnx_opset}; if parsing fails, re-export with "
                        f"--opset {profile.max_onnx_opset}")
    ws = int(workspace_mib if workspace_mib is not None else profile.workspace_mib)
    if ws < 16:
        raise ConfigError(f"workspace {ws} MiB is too small; give at least 16")
    return EnginePlan(
        bundle=str(bnd.root), device=profile.name, requested_precision=precision, precision=prec, int8_mode=mode,
        source=source, calibration_cache=cache_rel if mode == "calibrator" else None, dla_core=dla,
        gpu_fallback=bool(gpu_fallback), workspace_mib=ws, input_name=input_name,
        input_chw=(int(dims[1]), int(dims[2]), int(dims[3])), batch=b, opset=opset, tensorrt=trt_ver,
        engine_name=engine_file_name(profile.name, prec, trt_ver, dla), warnings=warnings)


def engine_build_command(plan: EnginePlan, out: str | Path | None = None, timing_cache: str | Path | None = None) -> str:
    """The ``trtexec`` command that builds the same engine as :func:`engine_from_onnx`.

    TensorRT 8.2 takes ``--workspace=MiB``; 8.4+ ``--memPoolSize=workspace:MiB``
    (10.x dropped ``--workspace``). ``--skipInference`` appeared with 8.6;
    older versions use ``--buildOnly``.
    """
    root = Path(plan.bundle)
    major, minor = (int(x) for x in (plan.tensorrt.split(".") + ["0"])[:2])
    c, h, w = plan.input_chw

    def shape(n: int) -> str:
        return f"{plan.input_name}:{n}x{c}x{h}x{w}"

    cmd = ["trtexec", f"--onnx={root / plan.source}", f"--saveEngine={out or root / plan.engine_name}"]
    if plan.precision == "fp16":
        cmd.append("--fp16")
    elif plan.precision == "int8":
        cmd += ["--int8", "--fp16"]
        if plan.int8_mode == "calibrator" and plan.calibration_cache:
            cmd.append(f"--calib={root / plan.calibration_cache}")
    cmd += [f"--minShapes={shape(plan.batch[0])}", f"--optShapes={shape(plan.batch[1])}",
            f"--maxShapes={shape(plan.batch[2])}"]
    if (major, minor) >= (8, 4):
        cmd.append(f"--memPoolSize=workspace:{plan.workspace_mib}")
    else:
        cmd.append(f"--workspace={plan.workspace_mib}")
    if plan.dla_core is not None:
        cmd.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            cmd.append("--allowGPUFallback")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    cmd.append("--skipInference" if (major, minor) >= (8, 6) else "--buildOnly")
    return shlex.join(cmd)


# --------------------------------------------------------------------------- building (TensorRT)


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


# --------------------------------------------------------------------------- bundle side


@contextlib.contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    """Serialise read-modify-write of a bundle's manifest between processes."""
    lock = root / ".manifest.lock"
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(lock, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def add_engine_to_bundle(bundle_dir: str | Path, engine_path: str | Path, entry: Any) -> list[str]:
    """Put an engine into a bundle and record it in the manifest.

    The engine file is moved (or copied) to ``<bundle>/<entry.file>``, its
    SHA-256 and size go into ``files``, and ``entry`` replaces any engine for
    the same device, precision and DLA core. The manifest is rewritten
    atomically under a lock. A signed bundle loses its signature (its
    manifest changed), with a warning.

    Returns:
        Warnings (one line each).
    """
    import shutil

    from edgemask.bundle import MANIFEST_NAME, load_manifest

    root = Path(bundle_dir)
    warnings: list[str] = []
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise ExportError(f"engine {engine_path} not found")
    dest = root / entry.file
    with _manifest_lock(root):
        manifest = load_manifest(root)
        if engine_path.resolve() != dest.resolve():
            tmp = dest.with_name(f".{dest.name}.incoming")
            shutil.copyfile(engine_path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        key = (entry.device, (entry.extra or {}).get("dla_core"))
        stale = [m for m in manifest.models if m.format == ENGINE_FORMAT and (m.device, (m.extra or {}).get("dla_core")) == key
                 and (m.precision == entry.precision or m.file == entry.file)]
        manifest.models = [m for m in manifest.models if m not in stale] + [entry]
        for m in stale:
            if m.file != entry.file:
                manifest.files.pop(m.file, None)
        manifest.files[entry.file] = {"sha256": sha256_file(dest), "bytes": dest.stat().st_size}
        if manifest.signature:
            warnings.append(f"bundle {manifest.name!r} was signed; adding an engine changed its manifest, so the "
                            "signature was dropped: sign the bundle again before deploying it")
            manifest.signature = None
        atomic_write_text(root / MANIFEST_NAME, manifest.to_json())
        for m in stale:
            if m.file != entry.file and not any(x.file == m.file for x in manifest.models):
                with contextlib.suppress(FileNotFoundError):
                    (root / m.file).unlink()
                warnings.append(f"replaced {m.file} (TensorRT {m.tensorrt_version}) with {entry.file}")
    return warnings


@dataclass
class EngineResult:
    """One built engine: the manifest entry, where it lies, and what was adjusted."""

    entry: Any
    path: Path
    plan: EnginePlan
    warnings: list[str]
    built: BuiltEngine | None = None


def default_timing_cache(device: str, trt_version: str) -> Path:
    return engine_cache_dir() / "timing" / f"{device}.trt{trt_tag(trt_version)}.cache"


def _check_build_host(plan: EnginePlan, profile: DeviceProfile, info: dict[str, Any]) -> list[str]:
    """Refuse to build for a profile this machine is not; returns warnings."""
    trt_here = info["tensorrt"]
    if not tensorrt_version_matches(profile.tensorrt, trt_here):
        raise ExportError(f"this machine has TensorRT {trt_here} but device {profile.name!r} runs TensorRT "
                          f"{profile.tensorrt} ({'JetPack ' + profile.jetpack if profile.jetpack else 'profile'}); "
                          "engines only run on the TensorRT that built them: build on the device itself, or pick "
                          "the profile of this machine ('edgemask devices list')")
    warnings = []
    cc = info.get("compute_capability")
    if profile.compute_capability and cc and cc != profile.compute_capability:
        raise ExportError(f"this GPU has compute capability {cc} but device {profile.name!r} is "
                          f"{profile.compute_capability}; build on the device itself")
    if not cc:
        warnings.append(f"could not read this GPU's compute capability ({info.get('cuda_error')}); "
                        "install pycuda or cuda-python so the engine records it")
    return warnings


def build_engine(bundle_dir: str | Path, device: str, precision: str = "fp16", *, dla_core: int | None = None,
                 int8_mode: str = "auto", batch: Sequence[int] = DEFAULT_BATCH, workspace_mib: int | None = None,
                 gpu_fallback: bool = True, timing_cache: str | Path | None | bool = True, out_dir: str | Path | None = None,
                 add_to_bundle: bool = True, verbose: bool = False,
                 on_warning: Callable[[str], None] | None = None) -> EngineResult:
    """Plan, build and record one engine for ``device``; run this on the device.

    The plan is made (and its warnings reported) before TensorRT is imported,
    so a machine without TensorRT still says what *would* be built (e.g. FP16
    instead of INT8 on a Nano) before refusing.

    Args:
        timing_cache: True = the default per-device cache under
            :func:`engine_cache_dir`; a path; False/None = none.
        out_dir: write the engine here instead of into the bundle (used for
            the first-use cache of read-only bundles); ``add_to_bundle``
            must then be False.
        on_warning: called with each warning (one line) as soon as it is
            known; all of them are also in ``EngineResult.warnings``.

    Raises:
        NotAvailableError: no TensorRT here.
        ExportError: wrong machine for the profile, or the build failed.
    """
    from edgemask.bundle import ModelEntry

    if add_to_bundle and out_dir:
        raise ConfigError("out_dir and add_to_bundle cannot be combined; an engine in a bundle lies in the bundle")
    profile = load_profile(device)
    opts = dict(dla_core=dla_core, int8_mode=int8_mode, batch=batch, workspace_mib=workspace_mib,
                gpu_fallback=gpu_fallback)
    warnings: list[str] = []

    def warn(items: Sequence[str]) -> None:
        for w in items:
            if w not in warnings:
                warnings.append(w)
                if on_warning is not None:
                    on_warning(w)

    plan = plan_engine_build(bundle_dir, profile, precision, **opts)  # bundle/option errors come first
    warn(plan.warnings)
    trt = import_tensorrt()
    trt_here = str(trt.__version__)
    info = local_tensorrt_info()
    warn(_check_build_host(plan, profile, info))  # wrong TensorRT or GPU for the profile: refused here
    if trt_tag(trt_here) != plan.tensorrt:
        # The engine name and the QDQ rules follow the TensorRT that really builds (x86-cuda pins only "10").
        plan = plan_engine_build(bundle_dir, profile, precision, tensorrt_version=trt_here, **opts)
        warn(plan.warnings)
    bnd = _bundle_of(bundle_dir)
    tc: Path | None
    if timing_cache is True:
        tc = default_timing_cache(profile.name, trt_here)
    else:
        tc = Path(timing_cache) if timing_cache else None
    target_dir = Path(out_dir) if out_dir else bnd.root
    tmp_out = target_dir / f".{plan.engine_name}.building"
    built = engine_from_onnx(
        bnd.path(plan.source), tmp_out, precision=plan.precision, input_name=plan.input_name,
        input_chw=plan.input_chw, batch=plan.batch, workspace_mib=plan.workspace_mib, int8_mode=plan.int8_mode,
        calibration_cache=bnd.path(plan.calibration_cache) if plan.calibration_cache else None,
        dla_core=plan.dla_core, gpu_fallback=plan.gpu_fallback, timing_cache=tc, verbose=verbose, trt=trt)
    warn(built.warnings)
    src_entry = bnd.model_entry(plan.precision if plan.int8_mode == "qdq" else "fp32")
    extra = {
        "requested_precision": plan.requested_precision, "int8_mode": plan.int8_mode, "dla_core": plan.dla_core,
        "gpu_fallback": plan.gpu_fallback if plan.dla_core is not None else None,
        "batch": {"min": plan.batch[0], "opt": plan.batch[1], "max": plan.batch[2]},
        "workspace_mib": plan.workspace_mib, "source": plan.source,
        "source_sha256": (bnd.manifest.files.get(plan.source) or {}).get("sha256") or sha256_file(bnd.path(plan.source)),
        "build_seconds": built.build_seconds, "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": info.get("gpu"), "timing_cache": bool(tc), "python": sys.version.split()[0],
    }
    if plan.calibration_cache:
        extra["calibration_cache_sha256"] = sha256_file(bnd.path(plan.calibration_cache))
    entry = ModelEntry(file=plan.engine_name, precision=plan.precision, format=ENGINE_FORMAT, opset=plan.opset,
                       quantization=dict(src_entry.quantization or {}, mode=plan.int8_mode) if plan.precision == "int8" else None,
                       device=profile.name, tensorrt_version=built.tensorrt_version,
                       compute_capability=info.get("compute_capability") or profile.compute_capability or None,
                       extra=extra)
    final = target_dir / plan.engine_name
    try:
        if add_to_bundle:
            warn(add_engine_to_bundle(bnd.root, tmp_out, entry))
        else:
            os.replace(tmp_out, final)
            import json

            atomic_write_text(final.with_name(final.name + ".json"), json.dumps(asdict(entry), indent=2) + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_out.unlink()
    return EngineResult(entry=entry, path=final, plan=plan, warnings=warnings, built=built)


def once_each(on_warning: Callable[[str], None] | None, seen: list[str]) -> Callable[[str], None]:
    """A warning callback that records each distinct warning in ``seen`` and passes it on once."""

    def warn(w: str) -> None:
        if w not in seen:
            seen.append(w)
            if on_warning is not None:
                on_warning(w)

    return warn


def build_engines_for_bundle(bundle_dir: str | Path, device: str, precisions: Sequence[str] = ("fp16", "int8"),
                             *, on_warning: Callable[[str], None] | None = None, **options: Any) -> list[EngineResult]:
    """Build one engine per requested precision (what ``export --device NAME --engine`` needs).

    Every precision is planned first, so all warnings (INT8 on a Nano, DLA on
    an Orin Nano, ...) and all bundle errors (no int8 model) are reported
    before TensorRT is imported or anything is built. Precisions the device
    lowers to the same engine (int8 and fp16 on a Nano) are built once.

    Args:
        precisions: requested precisions, e.g. the ones the bundle ships.
        on_warning: called with each warning as soon as it is known.
        **options: those of :func:`build_engine` (dla_core, int8_mode, batch,
            workspace_mib, gpu_fallback, timing_cache, verbose).

    Raises:
        NotAvailableError: no TensorRT here (after the planning warnings).
    """
    profile = load_profile(device)
    plan_opts = {k: options[k] for k in ("dla_core", "int8_mode", "batch", "workspace_mib", "gpu_fallback")
                 if k in options}
    warn = once_each(on_warning, [])
    todo: list[str] = []                     # requested precisions that get their own engine
    served: dict[tuple[str, Any], str] = {}  # (engine precision, DLA core) -> the request that builds it
    also: dict[str, list[str]] = {}          # that request -> the other requests its engine serves
    for p in precisions:
        plan = plan_engine_build(bundle_dir, profile, p, **plan_opts)
        for w in plan.warnings:
            warn(w)
        key = (plan.precision, plan.dla_core)
        if key in served:
            also.setdefault(served[key], []).append(p)
            continue
        served[key] = p
        todo.append(p)
    import_tensorrt()  # NotAvailableError, one line, after the warnings above
    results = []
    for p in todo:
        r = build_engine(bundle_dir, device, p, on_warning=warn, **options)
        for other in also.get(p, []):
            note = f"{other} request served by the {r.entry.precision} engine {r.entry.file}"
            r.warnings.append(note)
            warn(note)
        results.append(r)
    return results


__all__ = [
    "BuiltEngine", "CalibrationCache", "CalibratorLogic", "DEFAULT_BATCH", "ENGINE_FORMAT", "EnginePlan",
    "EngineResult", "INT8_MODES", "add_engine_to_bundle", "build_engine", "build_engines_for_bundle",
    "check_engine_compatible", "default_timing_cache", "engine_build_command", "engine_cache_dir", "engine_entries",
    "engine_file_name", "engine_from_onnx", "import_tensorrt", "local_tensorrt_info", "make_calibrator", "once_each",
    "parse_engine_file_name", "plan_engine_build", "read_calibration_cache", "rebuild_command", "trt_tag",
    "trt_version_code",
]

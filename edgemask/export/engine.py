"""TensorRT engines for a bundle: plan, print the trtexec equivalent, build through the backend, record.

A TensorRT engine is compiled for one GPU and one TensorRT version; it is not
portable. So everything here is keyed by a device profile (``devices/``):

* :func:`plan_engine_build` decides, without TensorRT, what will be built:
  the precision the device really runs (INT8 on a Nano becomes FP16), DLA or
  GPU, which ONNX file to parse (the QDQ model for explicit INT8, the fp32
  model plus the calibration cache for implicit INT8), the dynamic-batch
  profile, the workspace and the engine's file name.
* :func:`engine_build_command` prints the equivalent ``trtexec`` command.
* :func:`build_engine` builds through
  :func:`edgemask.backends.tensorrt.builder.engine_from_onnx` (the one module
  that drives TensorRT's builder) and :func:`add_engine_to_bundle` records the
  engine in the manifest with device, compute capability, TensorRT version
  and precision.
* :func:`first_use_engine` builds an engine into the engine cache when a
  bundle has none for this device (the TensorRT runner's ``engine_loader``).

Engine file names and compatibility checks are :mod:`edgemask.bundle.engines`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgemask.backends.tensorrt.api import strongly_typed
from edgemask.backends.tensorrt.builder import (
    DEFAULT_BATCH,
    BuiltEngine,
    engine_from_onnx,
    import_tensorrt,
    local_tensorrt_info,
    require_build_gpu,
)
from edgemask.backends.tensorrt.calibrator import read_calibration_cache
from edgemask.bundle.engines import (
    ENGINE_FORMAT,
    bundle_cache_dir,
    default_timing_cache,
    engine_file_name,
    find_cached_engine,
    trt_major,
    trt_tag,
)
from edgemask.devices.profiles import (
    DeviceProfile,
    load_profile,
    plan_dla,
    plan_precision,
)
from edgemask.errors import BundleError, ConfigError, ExportError
from edgemask.utils.io import atomic_write_text, sha256_file
from edgemask.utils.warn import once_each

INT8_MODES = ("auto", "qdq", "calibrator")


# --------------------------------------------------------------------------- the plan


@dataclass
class EnginePlan:
    """Everything decided before TensorRT is touched."""

    bundle: str
    device: str
    requested_precision: str
    precision: str
    int8_mode: str | None  # "qdq" (explicit, QDQ model) | "calibrator" (implicit + cache) | None
    source: str  # ONNX file parsed, relative to the bundle
    calibration_cache: str | None  # relative to the bundle, for "calibrator"
    dla_core: int | None
    gpu_fallback: bool
    workspace_mib: int
    input_name: str
    input_chw: tuple[int, int, int]
    batch: tuple[int, int, int]
    opset: int
    tensorrt: str  # expected TensorRT (profile's, or this machine's when known)
    engine_name: str  # the engine's path in the bundle (detector engines: under detector/)
    warnings: list[str] = field(default_factory=list)
    part: str = "classifier"  # which model of the bundle: classifier | detector
    strongly_typed: bool = False  # TensorRT 11: precision from the ONNX types, no precision flags

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_chw"], d["batch"] = list(self.input_chw), list(self.batch)
        return d


#: What ``engine build --model`` accepts: one part of the bundle, or every part it has.
ENGINE_MODELS = ("classifier", "detector", "all")


def _bundle_of(bundle: Any, part: str = "classifier") -> Any:
    """The bundle (loaded unverified if a path), seen as ``part``: its classifier or its detector."""
    from edgemask.bundle import Bundle, load_bundle

    if part not in ("classifier", "detector"):
        raise ConfigError(f"unknown model {part!r} for an engine; choose classifier or detector")
    bnd = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=False)
    if part == "detector":
        return bnd.detector_view()  # BundleError, one line, when the bundle has no detector
    if bnd.part == "detector":
        return Bundle(root=bnd.root, manifest=bnd.full_manifest or bnd.manifest)
    return bnd


def bundle_parts(bundle: Any, model: str = "all") -> list[str]:
    """The parts ``engine build --model MODEL`` builds: ``all`` = the classifier and, if present, the detector."""
    if model not in ENGINE_MODELS:
        raise ConfigError(f"--model {model!r} is unknown; use one of {', '.join(ENGINE_MODELS)}")
    if model != "all":
        return [model]
    bnd = _bundle_of(bundle)
    return ["classifier", "detector"] if bnd.has_detector else ["classifier"]


def _part_prefix(part: str) -> str:
    return "detector/" if part == "detector" else ""


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


def plan_engine_build(
    bundle: Any,
    device: str | DeviceProfile,
    precision: str = "fp16",
    *,
    dla_core: int | None = None,
    int8_mode: str = "auto",
    batch: Sequence[int] = DEFAULT_BATCH,
    workspace_mib: int | None = None,
    gpu_fallback: bool = True,
    tensorrt_version: str | None = None,
    part: str = "classifier",
) -> EnginePlan:
    """Decide what :func:`build_engine` will build; needs no TensorRT.

    Args:
        bundle: bundle folder (or a loaded ``Bundle``).
        device: profile name or profile.
        precision: requested precision; may be lowered (see ``plan_precision``).
        dla_core: build for this DLA core (GPU fallback on); ignored with a
            warning on devices without DLA.
        int8_mode: "qdq" = explicit quantization from ``model.int8.onnx``;
            "calibrator" = implicit INT8 from the fp32 model and the bundle's
            calibration cache (TensorRT 8.x/10.x); "auto" = qdq when the QDQ
            model passes the compliance check for the device's TensorRT, else
            calibrator (TensorRT 11 has no calibrator: qdq or an error).
        batch: (min, opt, max) of the dynamic batch profile.
        tensorrt_version: the TensorRT that will build (this machine's);
            defaults to the profile's. From 11 on the network is strongly
            typed: fp16 is built from the bundle's fp16 ONNX.
        part: ``classifier`` (the bundle's models) or ``detector`` (its
            ``detector`` entry; the engine goes to ``detector/`` and into that entry).

    Raises:
        ConfigError: unknown device, a device without TensorRT, bad options.
        BundleError / ExportError: the bundle lacks what the plan needs.
    """
    from edgemask.export.qdq_check import check_qdq_for_tensorrt

    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if not profile.has_tensorrt:
        raise ConfigError(
            f"device {profile.name!r} has no TensorRT (no NVIDIA GPU); TensorRT engines need a CUDA "
            "device; run the ONNX model with the onnxrt backend instead"
        )
    if int8_mode not in INT8_MODES:
        raise ConfigError(f"--int8-mode {int8_mode!r} is unknown; use one of {', '.join(INT8_MODES)}")
    b = tuple(int(x) for x in batch)
    if len(b) != 3 or not (1 <= b[0] <= b[1] <= b[2]):
        raise ConfigError(f"batch profile {list(batch)} is invalid; give min <= opt <= max, all >= 1 (e.g. 1,8,32)")
    bnd = _bundle_of(bundle, part)
    warnings: list[str] = []

    prec, w = plan_precision(profile, precision)
    warnings += w
    dla, prec, w = plan_dla(profile, dla_core, prec)
    warnings += w
    trt_ver = tensorrt_version or profile.tensorrt
    strong = strongly_typed(trt_major(trt_ver))
    if strong and int8_mode == "calibrator" and prec == "int8":
        raise ConfigError(
            f"TensorRT {trt_ver} has no INT8 calibrator (removed in 11): use --int8-mode qdq "
            "(the bundle's QDQ model) or auto"
        )

    mode: str | None = None
    cache_rel: str | None = None
    if prec == "int8":
        cal = bnd.manifest.calibration or {}
        default_cache = _part_prefix(part) + "calibration/cache.txt"
        cache_rel = cal.get("cache") or (default_cache if (bnd.root / default_cache).is_file() else None)
        if int8_mode in ("auto", "qdq"):
            int8_path = bnd.model_path("int8")  # BundleError, one line, if the bundle has no int8 model
            report = check_qdq_for_tensorrt(int8_path, trt_ver)
            if report.passed:
                mode = "qdq"
            elif int8_mode == "qdq" or not cache_rel or strong:
                raise ExportError(
                    f"{int8_path.name} will not build as explicit INT8 on TensorRT {trt_ver}: "
                    f"{report.errors[0].message} ({len(report.errors)} problem(s); "
                    f"'edgemask engine check-qdq {bnd.root}' lists them"
                    f"{'; TensorRT 11 has no calibrator to fall back on' if strong else ''})"
                )
            else:
                mode = "calibrator"
                warnings.append(
                    f"{int8_path.name} fails the TensorRT QDQ check ({report.errors[0].code}); "
                    f"building implicit INT8 from the fp32 model and {cache_rel} instead"
                )
        else:
            if not cache_rel:
                raise ExportError(
                    f"bundle {bnd.manifest.name!r} has no calibration cache for --int8-mode calibrator; "
                    "re-export it with int8 or use --int8-mode qdq"
                )
            mode = "calibrator"
        if mode == "calibrator":
            read_calibration_cache(bnd.path(cache_rel))  # validate now, fail before a long build
    if mode == "qdq":
        source = bnd.model_entry("int8").file
    elif strong and prec == "fp16":
        # Strongly typed: the fp32 model would build fp32; fp16 kernels need an fp16-typed graph.
        try:
            source = bnd.model_entry("fp16").file
        except BundleError:
            raise BundleError(
                f"bundle {bnd.manifest.name!r} has no fp16 ONNX model, and TensorRT {trt_ver} builds "
                "fp16 only from one (strongly typed networks, no FP16 flag); re-export with "
                "--precision fp32,fp16,int8, or build --precision fp32"
            ) from None
    else:
        source = bnd.model_entry("fp32").file
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
    max_opset = profile.max_onnx_opset_for(trt_ver)
    if opset > max_opset:
        warnings.append(
            f"{source} is opset {opset} but TensorRT {trt_ver} on {profile.name} documents "
            f"opsets up to {max_opset}; if parsing fails, re-export with --opset {max_opset}"
        )
    ws = int(workspace_mib if workspace_mib is not None else profile.workspace_mib)
    if ws < 16:
        raise ConfigError(f"workspace {ws} MiB is too small; give at least 16")
    return EnginePlan(
        bundle=str(bnd.root),
        device=profile.name,
        requested_precision=precision,
        precision=prec,
        int8_mode=mode,
        source=source,
        calibration_cache=cache_rel if mode == "calibrator" else None,
        dla_core=dla,
        gpu_fallback=bool(gpu_fallback),
        workspace_mib=ws,
        input_name=input_name,
        input_chw=(int(dims[1]), int(dims[2]), int(dims[3])),
        batch=b,
        opset=opset,
        tensorrt=trt_ver,
        engine_name=_part_prefix(part) + engine_file_name(profile.name, prec, trt_ver, dla),
        warnings=warnings,
        strongly_typed=strong,
        part=part,
    )


def engine_build_command(
    plan: EnginePlan, out: str | Path | None = None, timing_cache: str | Path | None = None
) -> str:
    """The ``trtexec`` command that builds the same engine as :func:`engine_from_onnx`.

    TensorRT 8.2 takes ``--workspace=MiB``; 8.4+ ``--memPoolSize=workspace:MiB``
    (10.x dropped ``--workspace``). ``--skipInference`` appeared with 8.6;
    older versions use ``--buildOnly``. 11.x removed ``--fp16``, ``--int8``
    and ``--calib`` (strong typing is always on): the precision is the ONNX
    file's, which the plan already chose.
    """
    root = Path(plan.bundle)
    major, minor = (int(x) for x in (plan.tensorrt.split(".") + ["0"])[:2])
    c, h, w = plan.input_chw

    def shape(n: int) -> str:
        return f"{plan.input_name}:{n}x{c}x{h}x{w}"

    cmd = ["trtexec", f"--onnx={root / plan.source}", f"--saveEngine={out or root / plan.engine_name}"]
    if plan.strongly_typed:
        pass  # 11.x: no precision flags; the fp16 / QDQ ONNX carries the precision
    elif plan.precision == "fp16":
        cmd.append("--fp16")
    elif plan.precision == "int8":
        cmd += ["--int8", "--fp16"]
        if plan.int8_mode == "calibrator" and plan.calibration_cache:
            cmd.append(f"--calib={root / plan.calibration_cache}")
    cmd += [
        f"--minShapes={shape(plan.batch[0])}",
        f"--optShapes={shape(plan.batch[1])}",
        f"--maxShapes={shape(plan.batch[2])}",
    ]
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


def add_engine_to_bundle(
    bundle_dir: str | Path, engine_path: str | Path, entry: Any, part: str = "classifier"
) -> list[str]:
    """Put an engine into a bundle and record it in the manifest.

    The engine file is moved (or copied) to ``<bundle>/<entry.file>``, its
    SHA-256 and size go into ``files``, and ``entry`` replaces any engine for
    the same device, precision and DLA core, in the classifier's ``models``
    or (``part="detector"``) the detector entry's. The manifest is rewritten
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
        holder: Any = manifest
        if part == "detector":
            if manifest.detector is None:
                raise BundleError(f"bundle {manifest.name!r} has no detector to add a detector engine to")
            holder = manifest.detector
        if engine_path.resolve() != dest.resolve():
            tmp = dest.with_name(f".{dest.name}.incoming")
            shutil.copyfile(engine_path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        key = (entry.device, (entry.extra or {}).get("dla_core"))
        stale = [
            m
            for m in holder.models
            if m.format == ENGINE_FORMAT
            and (m.device, (m.extra or {}).get("dla_core")) == key
            and (m.precision == entry.precision or m.file == entry.file)
        ]
        holder.models = [m for m in holder.models if m not in stale] + [entry]
        for m in stale:
            if m.file != entry.file:
                manifest.files.pop(m.file, None)
        manifest.files[entry.file] = {"sha256": sha256_file(dest), "bytes": dest.stat().st_size}
        if manifest.signature:
            warnings.append(
                f"bundle {manifest.name!r} was signed; adding an engine changed its manifest, so the "
                "signature was dropped: sign the bundle again before deploying it"
            )
            manifest.signature = None
        atomic_write_text(root / MANIFEST_NAME, manifest.to_json())
        for m in stale:
            if m.file != entry.file and not any(x.file == m.file for x in manifest.all_models()):
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


def _check_build_host(plan: EnginePlan, profile: DeviceProfile, info: dict[str, Any]) -> list[str]:
    """Refuse to build for a profile this machine is not; returns warnings."""
    trt_here = info["tensorrt"]
    if not profile.accepts_tensorrt(trt_here):
        raise ExportError(
            f"this machine has TensorRT {trt_here} but device {profile.name!r} runs TensorRT "
            f"{profile.tensorrt_text()}; engines only run on the TensorRT that built them: build on the "
            "device itself, or pick the profile of this machine ('edgemask devices list')"
        )
    warnings = []
    cc = info.get("compute_capability")
    if profile.compute_capability and cc and cc != profile.compute_capability:
        raise ExportError(
            f"this GPU has compute capability {cc} but device {profile.name!r} is "
            f"{profile.compute_capability}; build on the device itself"
        )
    if not cc:
        warnings.append(
            f"could not read this GPU's compute capability ({info.get('cuda_error')}); "
            "install pycuda or cuda-python so the engine records it"
        )
    return warnings


def build_engine(
    bundle_dir: str | Path,
    device: str,
    precision: str = "fp16",
    *,
    dla_core: int | None = None,
    int8_mode: str = "auto",
    batch: Sequence[int] = DEFAULT_BATCH,
    workspace_mib: int | None = None,
    gpu_fallback: bool = True,
    timing_cache: str | Path | None | bool = True,
    out_dir: str | Path | None = None,
    add_to_bundle: bool = True,
    verbose: bool = False,
    on_warning: Callable[[str], None] | None = None,
    part: str = "classifier",
) -> EngineResult:
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
        part: ``classifier`` or ``detector`` (the bundle's face detector;
            the same builder, its engine recorded in the detector entry).

    Raises:
        NotAvailableError: no TensorRT here.
        ExportError: wrong machine for the profile, or the build failed.
    """
    from edgemask.bundle import ModelEntry

    if add_to_bundle and out_dir:
        raise ConfigError("out_dir and add_to_bundle cannot be combined; an engine in a bundle lies in the bundle")
    profile = load_profile(device)
    opts = dict(
        dla_core=dla_core,
        int8_mode=int8_mode,
        batch=batch,
        workspace_mib=workspace_mib,
        gpu_fallback=gpu_fallback,
        part=part,
    )
    warnings: list[str] = []

    def warn(items: Sequence[str]) -> None:
        for w in items:
            if w not in warnings:
                warnings.append(w)
                if on_warning is not None:
                    on_warning(w)

    plan = plan_engine_build(bundle_dir, profile, precision, **opts)  # bundle/option errors come first
    warn(plan.warnings)
    trt = require_build_gpu()  # no TensorRT, or TensorRT without a GPU: one line, before any work
    trt_here = str(trt.__version__)
    info = local_tensorrt_info()
    warn(_check_build_host(plan, profile, info))  # wrong TensorRT or GPU for the profile: refused here
    if trt_tag(trt_here) != plan.tensorrt:
        # The engine name, the QDQ rules and (11) the typed source follow the TensorRT that really builds.
        plan = plan_engine_build(bundle_dir, profile, precision, tensorrt_version=trt_here, **opts)
        warn(plan.warnings)
    bnd = _bundle_of(bundle_dir, part)
    tc: Path | None
    if timing_cache is True:
        tc = default_timing_cache(profile.name, trt_here)
    else:
        tc = Path(timing_cache) if timing_cache else None
    # In the bundle the engine lies at its manifest path (detector/... for the detector); in a cache
    # folder (out_dir) under its own name.
    final = Path(out_dir) / Path(plan.engine_name).name if out_dir else bnd.root / plan.engine_name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = final.with_name(f".{final.name}.building")
    built = engine_from_onnx(
        bnd.path(plan.source),
        tmp_out,
        precision=plan.precision,
        input_name=plan.input_name,
        input_chw=plan.input_chw,
        batch=plan.batch,
        workspace_mib=plan.workspace_mib,
        int8_mode=plan.int8_mode,
        calibration_cache=bnd.path(plan.calibration_cache) if plan.calibration_cache else None,
        dla_core=plan.dla_core,
        gpu_fallback=plan.gpu_fallback,
        timing_cache=tc,
        verbose=verbose,
        trt=trt,
    )
    warn(built.warnings)
    src_entry = bnd.model_entry(plan.precision if plan.int8_mode == "qdq" else "fp32")
    extra = {
        "requested_precision": plan.requested_precision,
        "int8_mode": plan.int8_mode,
        "dla_core": plan.dla_core,
        "gpu_fallback": plan.gpu_fallback if plan.dla_core is not None else None,
        "batch": {"min": plan.batch[0], "opt": plan.batch[1], "max": plan.batch[2]},
        "workspace_mib": plan.workspace_mib,
        "source": plan.source,
        "source_sha256": (bnd.manifest.files.get(plan.source) or {}).get("sha256")
        or sha256_file(bnd.path(plan.source)),
        "build_seconds": built.build_seconds,
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": info.get("gpu"),
        "timing_cache": bool(tc),
        "python": sys.version.split()[0],
        "strongly_typed": plan.strongly_typed,
    }
    if plan.calibration_cache:
        extra["calibration_cache_sha256"] = sha256_file(bnd.path(plan.calibration_cache))
    entry = ModelEntry(
        file=plan.engine_name,
        precision=plan.precision,
        format=ENGINE_FORMAT,
        opset=plan.opset,
        quantization=dict(src_entry.quantization or {}, mode=plan.int8_mode) if plan.precision == "int8" else None,
        device=profile.name,
        tensorrt_version=built.tensorrt_version,
        compute_capability=info.get("compute_capability") or profile.compute_capability or None,
        extra=extra,
    )
    try:
        if add_to_bundle:
            warn(add_engine_to_bundle(bnd.root, tmp_out, entry, part=part))
        else:
            os.replace(tmp_out, final)
            import json

            atomic_write_text(final.with_name(final.name + ".json"), json.dumps(asdict(entry), indent=2) + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_out.unlink()
    return EngineResult(entry=entry, path=final, plan=plan, warnings=warnings, built=built)


def build_engines_for_bundle(
    bundle_dir: str | Path,
    device: str,
    precisions: Sequence[str] = ("fp16", "int8"),
    *,
    on_warning: Callable[[str], None] | None = None,
    model: str = "all",
    **options: Any,
) -> list[EngineResult]:
    """Build one engine per requested precision and part (what ``export --device NAME --engine`` needs).

    Every (part, precision) is planned first, so all warnings (INT8 on a Nano,
    DLA on an Orin Nano, ...) and all bundle errors (no int8 model) are
    reported before TensorRT is imported or anything is built. Precisions the
    device lowers to the same engine (int8 and fp16 on a Nano) are built once.

    Args:
        precisions: requested precisions, e.g. the ones the bundle ships.
        on_warning: called with each warning as soon as it is known.
        model: ``classifier``, ``detector`` or ``all`` (the classifier and,
            when the bundle has one, its face detector: the whole pipeline on
            one engine path).
        **options: those of :func:`build_engine` (dla_core, int8_mode, batch,
            workspace_mib, gpu_fallback, timing_cache, verbose).

    Raises:
        NotAvailableError: no TensorRT here (after the planning warnings).
    """
    profile = load_profile(device)
    plan_opts = {
        k: options[k] for k in ("dla_core", "int8_mode", "batch", "workspace_mib", "gpu_fallback") if k in options
    }
    warn = once_each(on_warning, [])
    todo: list[tuple[str, str]] = []  # (part, requested precision) that get their own engine
    served: dict[tuple[str, str, Any], tuple[str, str]] = {}  # (part, engine precision, DLA) -> its request
    also: dict[tuple[str, str], list[str]] = {}  # that request -> the other requests its engine serves
    for part in bundle_parts(bundle_dir, model):
        for p in precisions:
            plan = plan_engine_build(bundle_dir, profile, p, part=part, **plan_opts)
            for w in plan.warnings:
                warn(w)
            key = (part, plan.precision, plan.dla_core)
            if key in served:
                also.setdefault(served[key], []).append(p)
                continue
            served[key] = (part, p)
            todo.append((part, p))
    require_build_gpu()  # NotAvailableError (no TensorRT, or no GPU), one line, after the warnings above
    results = []
    for part, p in todo:
        r = build_engine(bundle_dir, device, p, on_warning=warn, part=part, **options)
        for other in also.get((part, p), []):
            note = f"{other} request served by the {r.entry.precision} engine {r.entry.file}"
            r.warnings.append(note)
            warn(note)
        results.append(r)
    return results


def first_use_engine(bundle: Any, device: str, precision: str, dla_core: int | None = None) -> tuple[Path, Any]:
    """An engine for a bundle that ships none for ``device``: from the engine cache, else built into it.

    The bundle stays untouched (signed and read-only bundles work); the engine
    and its manifest entry (``<engine>.json``) go to
    :func:`~edgemask.bundle.engines.bundle_cache_dir`, and later starts reuse
    them until the bundle or the TensorRT version changes. Pass this function
    as ``engine_loader`` to ``TensorRTRunner.from_bundle``.

    Returns:
        (engine path, ModelEntry).
    """
    trt_version = str(import_tensorrt().__version__)
    found = find_cached_engine(bundle, device, precision, dla_core, trt_version)
    if found is not None:
        return found
    cache_dir = bundle_cache_dir(bundle)
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = getattr(bundle, "part", "classifier")  # a detector view builds the detector's engine
    result = build_engine(
        bundle.root, device, precision, dla_core=dla_core, out_dir=cache_dir, add_to_bundle=False, part=part
    )
    return result.path, result.entry


__all__ = [
    "DEFAULT_BATCH",
    "EnginePlan",
    "EngineResult",
    "INT8_MODES",
    "add_engine_to_bundle",
    "build_engine",
    "build_engines_for_bundle",
    "bundle_parts",
    "ENGINE_MODELS",
    "engine_build_command",
    "first_use_engine",
    "plan_engine_build",
]

"""The plan of a TensorRT engine build: what will be built, decided without TensorRT.

* :func:`plan_engine_build` decides the precision the device really runs
  (INT8 on a Nano becomes FP16), DLA or GPU, which ONNX file to parse (the QDQ
  model for explicit INT8, the fp32 model plus the calibration cache for
  implicit INT8), the dynamic-batch profile, the workspace and the engine's
  file name.
* :func:`engine_build_command` prints the equivalent ``trtexec`` command.

Building and recording the planned engine is :mod:`edgemask.export.engine`,
which re-exports these names. This module runs on the device (Python 3.8, no
torch or ONNX tooling): ``engine build --print-trtexec`` needs only the plan.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgemask.backends.tensorrt.api import strongly_typed
from edgemask.backends.tensorrt.builder import DEFAULT_BATCH
from edgemask.backends.tensorrt.calibrator import read_calibration_cache
from edgemask.bundle.engines import engine_file_name, trt_major
from edgemask.devices.profiles import (
    DeviceProfile,
    load_profile,
    plan_dla,
    plan_precision,
)
from edgemask.errors import BundleError, ConfigError, ExportError

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


def bundle_view(bundle: Any, part: str = "classifier") -> Any:
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
    bnd = bundle_view(bundle)
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
    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    b = _checked_options(profile, int8_mode, batch)
    bnd = bundle_view(bundle, part)
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
        mode, cache_rel = _int8_mode_and_cache(bnd, part, int8_mode, trt_ver, strong, warnings)
    source = _source_model(bnd, mode, prec, strong, trt_ver)
    input_name, dims, opset = _source_input(bnd, source)
    b = _batch_profile(source, dims, b, dla, warnings)
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


def _checked_options(profile: DeviceProfile, int8_mode: str, batch: Sequence[int]) -> tuple[int, ...]:
    """The batch profile (min, opt, max) as ints, once the device and the options are known to be buildable."""
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
    return b


def _int8_mode_and_cache(
    bnd: Any, part: str, int8_mode: str, trt_ver: str, strong: bool, warnings: list[str]
) -> tuple[str, str | None]:
    """INT8's mode ("qdq" or "calibrator") and calibration cache (relative to the bundle); appends warnings."""
    from edgemask.export.qdq_check import check_qdq_for_tensorrt

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
    return mode, cache_rel


def _source_model(bnd: Any, mode: str | None, prec: str, strong: bool, trt_ver: str) -> str:
    """The ONNX file TensorRT parses, relative to the bundle."""
    if mode == "qdq":
        return bnd.model_entry("int8").file
    if strong and prec == "fp16":
        # Strongly typed: the fp32 model would build fp32; fp16 kernels need an fp16-typed graph.
        try:
            return bnd.model_entry("fp16").file
        except BundleError:
            raise BundleError(
                f"bundle {bnd.manifest.name!r} has no fp16 ONNX model, and TensorRT {trt_ver} builds "
                "fp16 only from one (strongly typed networks, no FP16 flag); re-export with "
                "--precision fp32,fp16,int8, or build --precision fp32"
            ) from None
    return bnd.model_entry("fp32").file


def _source_input(bnd: Any, source: str) -> tuple[str, tuple[Any, ...], int]:
    """(input name, (N, 3, H, W) with N None when dynamic, opset) of the source model; H, W must be fixed."""
    src_path = bnd.path(source)
    if not src_path.is_file():
        raise BundleError(f"{src_path} is listed in the manifest but missing; re-copy or re-export the bundle")
    input_name, dims, opset = _onnx_io(src_path)
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise ExportError(f"{source} input {input_name!r} has shape {dims}; expected (N, 3, H, W) with fixed H, W")
    return input_name, dims, opset


def _batch_profile(
    source: str, dims: tuple[Any, ...], b: tuple[int, ...], dla: int | None, warnings: list[str]
) -> tuple[int, ...]:
    """The requested (min, opt, max) batch, narrowed to what the model and the DLA allow; appends warnings."""
    if dims[0] is not None:  # static batch in the ONNX: the profile must be that batch
        if b != (dims[0],) * 3:
            warnings.append(f"{source} has a fixed batch of {dims[0]}; the engine takes batch {dims[0]} only")
        b = (dims[0],) * 3
    if dla is not None and b[0] != b[2]:
        # DLA engines are built static; the runner pads/splits batches to this size.
        b = (b[1],) * 3
        warnings.append(f"DLA engines use a fixed batch: building batch {b[0]} (the runner splits larger batches)")
    return b


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


__all__ = [
    "DEFAULT_BATCH",
    "ENGINE_MODELS",
    "EnginePlan",
    "INT8_MODES",
    "bundle_parts",
    "bundle_view",
    "engine_build_command",
    "plan_engine_build",
]

"""TensorRT engines for a bundle: plan, print the trtexec equivalent, build through the backend, record.

A TensorRT engine is compiled for one GPU and one TensorRT version; it is not
portable. So everything here is keyed by a device profile (``devices/``):

* :func:`plan_engine_build` decides, without TensorRT, what will be built, and
  :func:`engine_build_command` prints the equivalent ``trtexec`` command; both
  live in :mod:`edgemask.export.engine_plan` and are re-exported here.
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
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgemask.backends.tensorrt.builder import (
    DEFAULT_BATCH,
    BuiltEngine,
    engine_from_onnx,
    import_tensorrt,
    local_tensorrt_info,
    require_build_gpu,
)
from edgemask.bundle.engines import (
    ENGINE_FORMAT,
    bundle_cache_dir,
    default_timing_cache,
    find_cached_engine,
    trt_tag,
)
from edgemask.devices.profiles import DeviceProfile, load_profile
from edgemask.errors import BundleError, ConfigError, ExportError

# The plan's names stay importable from here: callers build and plan through one module.
from edgemask.export.engine_plan import (
    ENGINE_MODELS,
    INT8_MODES,
    EnginePlan,
    bundle_parts,
    bundle_view,
    engine_build_command,
    plan_engine_build,
)
from edgemask.utils.io import atomic_write_text, sha256_file
from edgemask.utils.warn import once_each

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
    note = once_each(on_warning, warnings)

    def warn(items: Sequence[str]) -> None:
        for w in items:
            note(w)

    plan, trt, info = _plan_on_this_machine(bundle_dir, profile, precision, opts, warn)
    trt_here = str(trt.__version__)
    bnd = bundle_view(bundle_dir, part)
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
    entry = _engine_entry(plan, bnd, built, profile, info, timing_cache=bool(tc))
    warn(_publish_engine(bnd, tmp_out, final, entry, add_to_bundle=add_to_bundle, part=part))
    return EngineResult(entry=entry, path=final, plan=plan, warnings=warnings, built=built)


def _plan_on_this_machine(
    bundle_dir: str | Path, profile: DeviceProfile, precision: str, opts: dict[str, Any], warn: Callable[..., None]
) -> tuple[EnginePlan, Any, dict[str, Any]]:
    """(plan, tensorrt module, this machine's TensorRT/GPU info): the plan remade for the TensorRT really here."""
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
    return plan, trt, info


def _engine_entry(
    plan: EnginePlan, bnd: Any, built: BuiltEngine, profile: DeviceProfile, info: dict[str, Any], timing_cache: bool
) -> Any:
    """The manifest's ModelEntry of a built engine: what was built from what, where and how."""
    from edgemask.bundle import ModelEntry

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
        "timing_cache": timing_cache,
        "python": sys.version.split()[0],
        "strongly_typed": plan.strongly_typed,
    }
    if plan.calibration_cache:
        extra["calibration_cache_sha256"] = sha256_file(bnd.path(plan.calibration_cache))
    return ModelEntry(
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


def _publish_engine(bnd: Any, tmp_out: Path, final: Path, entry: Any, *, add_to_bundle: bool, part: str) -> list[str]:
    """Move the freshly built ``tmp_out`` to ``final``: into the bundle's manifest, or beside its ``.json`` entry.

    Returns:
        Warnings of :func:`add_engine_to_bundle` (one line each).
    """
    warnings: list[str] = []
    try:
        if add_to_bundle:
            warnings = add_engine_to_bundle(bnd.root, tmp_out, entry, part=part)
        else:
            os.replace(tmp_out, final)
            import json

            atomic_write_text(final.with_name(final.name + ".json"), json.dumps(asdict(entry), indent=2) + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_out.unlink()
    return warnings


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

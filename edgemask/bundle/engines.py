"""The vocabulary of TensorRT engine files shared by export, backends, doctor and the fleet.

Nothing here imports TensorRT: these are names, version numbers and the
records a bundle keeps about its engines, so a machine without a GPU can read,
check and explain them.

* File names: ``model.<device>.<precision>[.dla<N>].trt<major.minor>.engine``
  (:func:`engine_file_name`, :func:`parse_engine_file_name`); the manifest
  holds the exact TensorRT version, which must match at load.
* :func:`check_engine_compatible` refuses an engine built for another
  TensorRT, GPU or device and says how to rebuild it (:func:`rebuild_command`).
* :func:`engine_entries` finds a bundle's engines; :func:`find_cached_engine`
  finds an engine built on first use in :func:`engine_cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, List, Optional, Tuple

from edgemask.errors import BackendError

ENGINE_FORMAT = "tensorrt"
_ENGINE_RE = re.compile(
    r"^model\.(?P<device>[a-z0-9-]+)\.(?P<precision>fp32|fp16|int8)"
    r"(?:\.dla(?P<dla>\d+))?\.trt(?P<trt>\d+(?:\.\d+)*)\.engine$"
)


def engine_cache_dir() -> Path:
    """Where engines built on first use and timing caches live.

    ``$EDGEMASK_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/edgemask/engines``,
    else ``~/.cache/edgemask/engines``. Kept outside bundles because a
    deployed bundle may be read-only and is verified by hash.
    """
    from edgemask.config import EDGEMASK_ENGINE_CACHE, setting

    env = setting(EDGEMASK_ENGINE_CACHE)
    if env:
        return Path(env).expanduser()
    # XDG_CACHE_HOME is not an edgemask knob (see edgemask/config.py): read where it is used.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgemask" / "engines"


def default_timing_cache(device: str, trt_version: str) -> Path:
    """The per-device TensorRT timing cache of :func:`engine_cache_dir`."""
    return engine_cache_dir() / "timing" / f"{device}.trt{trt_tag(trt_version)}.cache"


def trt_tag(version: str) -> str:
    """ "10.3.0.26" → "10.3" (what a profile pins and what goes in file names)."""
    parts = str(version).split(".")
    return ".".join(parts[:2])


def trt_major(version: str) -> int:
    """ "10.3.0.26" → 10."""
    return int(str(version).split(".")[0])


def trt_version_code(version: str) -> int:
    """The number TensorRT writes in calibration-cache headers (``TRT-<code>-...``).

    It is ``NV_TENSORRT_VERSION``: ``major*1000 + minor*100 + patch`` up to
    TensorRT 8/9 (8.5.2 → 8502), and ``NV_TENSORRT_VERSION_INT`` =
    ``major*10000 + minor*100 + patch`` from TensorRT 10's NvInferVersion.h on
    (10.3.0 → 100300; the old formula gave 10300, which TensorRT 10 rejects).
    """
    p = [int(x) for x in (str(version).split(".") + ["0", "0"])[:3]]
    return p[0] * (10000 if p[0] >= 10 else 1000) + p[1] * 100 + p[2]


def engine_file_name(device: str, precision: str, trt_version: str, dla_core: Optional[int] = None) -> str:
    """``model.<device>.<precision>[.dla<N>].trt<major.minor>.engine``."""
    dla = f".dla{dla_core}" if dla_core is not None else ""
    return f"model.{device}.{precision}{dla}.trt{trt_tag(trt_version)}.engine"


def parse_engine_file_name(name: "str | Path") -> Optional[dict]:
    """Inverse of :func:`engine_file_name`; None for a name that does not follow it."""
    m = _ENGINE_RE.match(Path(name).name)
    if not m:
        return None
    return {
        "device": m.group("device"),
        "precision": m.group("precision"),
        "dla_core": int(m.group("dla")) if m.group("dla") is not None else None,
        "tensorrt": m.group("trt"),
    }


def rebuild_command(bundle_dir: "str | Path", device: str, precision: str, dla_core: Optional[int] = None) -> str:
    """The ``edgemask engine build`` command that makes this engine on the device."""
    cmd = ["edgemask", "engine", "build", str(bundle_dir), "--device", device, "--precision", precision]
    if dla_core is not None:
        cmd += ["--dla-core", str(dla_core)]
    return shlex.join(cmd)


def check_engine_compatible(
    entry: Any,
    runtime_trt: Optional[str],
    *,
    compute_capability: Optional[str] = None,
    device: Optional[str] = None,
    bundle_dir: "str | Path" = "BUNDLE",
) -> None:
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
        raise BackendError(
            f"{file} was built with TensorRT {built_trt} but this machine has TensorRT "
            f"{runtime_trt}; engines are not portable across TensorRT versions; {fix}"
        )
    built_cc = get("compute_capability")
    if built_cc and compute_capability and str(built_cc) != str(compute_capability):
        raise BackendError(
            f"{file} was built for compute capability {built_cc} but this GPU is "
            f"{compute_capability}; engines are not portable across GPUs; {fix}"
        )
    if device and built_dev != "?" and built_dev != device:
        raise BackendError(f"{file} was built for device {built_dev!r} but this machine is {device!r}; {fix}")


def engine_entries(manifest: Any, device: Optional[str] = None, precision: Optional[str] = None) -> List[Any]:
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
        if (
            precision is not None
            and m.precision != precision
            and (m.extra or {}).get("requested_precision") != precision
        ):
            continue
        out.append(m)
    # exact precision first, GPU engines before DLA ones
    out.sort(key=lambda m: (m.precision != precision, (m.extra or {}).get("dla_core") is not None))
    return out


def bundle_cache_dir(bundle: Any) -> Path:
    """The engine-cache folder of one bundle's content.

    Keyed by bundle name, version and a hash over the SHA-256 of all its
    files, so a re-exported bundle gets a fresh folder.
    """
    m = bundle.manifest
    content = json.dumps(sorted((k, v.get("sha256")) for k, v in m.files.items())).encode()
    return engine_cache_dir() / f"{m.name}-v{m.version}-{hashlib.sha256(content).hexdigest()[:12]}"


def find_cached_engine(
    bundle: Any, device: str, precision: str, dla_core: Optional[int], trt_version: str
) -> Optional[Tuple[Path, Any]]:
    """(engine path, ModelEntry) of an engine built on first use for this bundle, or None.

    Only an engine of this exact TensorRT version counts, so one from before a
    JetPack upgrade is rebuilt, not loaded.
    """
    from edgemask.bundle.manifest import ModelEntry

    for meta in sorted(bundle_cache_dir(bundle).glob("model.*.engine.json")):
        try:
            entry = ModelEntry(**json.loads(meta.read_text()))
        except (ValueError, TypeError):
            continue
        extra = entry.extra or {}
        if (
            entry.device == device
            and entry.tensorrt_version == trt_version
            and (entry.precision == precision or extra.get("requested_precision") == precision)
            and (dla_core is None or extra.get("dla_core") == dla_core)
        ):
            engine = meta.with_name(meta.name[: -len(".json")])
            if engine.is_file():
                return engine, entry
    return None


__all__ = [
    "ENGINE_FORMAT",
    "bundle_cache_dir",
    "check_engine_compatible",
    "default_timing_cache",
    "engine_cache_dir",
    "engine_entries",
    "engine_file_name",
    "find_cached_engine",
    "parse_engine_file_name",
    "rebuild_command",
    "trt_major",
    "trt_tag",
    "trt_version_code",
]

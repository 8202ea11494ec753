"""Device profiles: what a target box runs, read from ``devices/<name>.toml``.

A profile pins the software stack of a target (JetPack / L4T, CUDA, TensorRT),
the GPU (compute capability, the precisions it runs fast, DLA cores), the
engine-builder workspace and the default camera pipelines. Engine builds use
it to pick a precision the hardware can actually run (a Jetson Nano has no
fast INT8, an Orin Nano has no DLA) and to refuse to build on a machine whose
TensorRT does not match, because serialized engines are not portable across
TensorRT versions or GPUs.

Profiles are looked up, first match wins, in:

1. every folder in ``$EDGEMASK_DEVICES_DIR`` (``os.pathsep``-separated),
2. ``devices/`` at the top of a source checkout (beside ``pyproject.toml``),
3. ``share/edgemask/devices`` under each place pip puts a wheel's data files:
   ``sys.prefix`` (virtualenvs), the interpreter's default data path (e.g.
   ``/usr/local`` for ``sudo pip install`` on Ubuntu/JetPack, whose
   ``sys.prefix`` is ``/usr``) and the user data path (``pip install --user``:
   ``~/.local``).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
KINDS = ("jetson", "x86")
# Profile names are file stems; "fleet.example" (a dot) is therefore never a profile.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_VERSION_RE = re.compile(r"^\d+(\.\d+)*$")
_CC_RE = re.compile(r"^\d+\.\d+$")

# (table, key) -> (python type, required). Table "" is the top level.
_SCHEMA: dict[tuple[str, str], tuple[type, bool]] = {
    ("", "name"): (str, True),
    ("", "description"): (str, True),
    ("", "kind"): (str, True),
    ("software", "jetpack"): (str, True),
    ("software", "l4t"): (str, True),
    ("software", "cuda"): (str, True),
    ("software", "tensorrt"): (str, True),
    ("software", "tensorrt_also"): (list, False),
    ("software", "max_onnx_opset"): (int, True),
    ("gpu", "compute_capability"): (str, True),
    ("gpu", "fast_precisions"): (list, True),
    ("gpu", "dla_cores"): (int, True),
    ("gpu", "workspace_mib"): (int, True),
    ("camera", "csi"): (str, True),
    ("camera", "usb"): (str, True),
    ("runtime", "backends"): (list, True),
}
_TABLES = {"software", "gpu", "camera", "runtime"}
# onnx-tensorrt docs/operators.md of each release (devices/README.md): opset 13 for 8.2, 17 for 8.5/8.6, 9-20 for 10.0.
_DOCUMENTED_MAX_OPSET = {"8.2": 13, "8.5": 17, "8.6": 17, "10": 20}


@dataclass(frozen=True)
class DeviceProfile:
    """One target device. Empty strings mean "not applicable" (no JetPack on x86)."""

    name: str
    description: str
    kind: str  # jetson | x86
    jetpack: str
    l4t: str
    cuda: str
    tensorrt: str  # expected TensorRT "major.minor" (or "major"); "" = no TensorRT
    max_onnx_opset: int  # highest opset the target's ONNX importer accepts
    compute_capability: str  # "5.3"; "" = read from the GPU at build time
    fast_precisions: tuple[str, ...]
    dla_cores: int
    workspace_mib: int
    camera_csi: str  # GStreamer pipeline with {index} {width} {height} {fps}; "" = none
    camera_usb: str  # GStreamer pipeline, or "v4l2:{index}" for an OpenCV device index
    backends: tuple[str, ...]  # preferred inference backends, best first
    source: str = field(default="", compare=False)  # file it was read from
    # Other TensorRT releases this device really runs (another JetPack for the module; 11 beside 10 on x86).
    tensorrt_also: tuple[str, ...] = ()

    @property
    def has_tensorrt(self) -> bool:
        return bool(self.tensorrt)

    @property
    def tensorrt_versions(self) -> tuple[str, ...]:
        """Every TensorRT this device may have, the profile's own first; () without TensorRT."""
        return ((self.tensorrt,) + tuple(self.tensorrt_also)) if self.tensorrt else ()

    def accepts_tensorrt(self, version: str | None) -> bool:
        """Is ``version`` (e.g. ``tensorrt.__version__``) one this device really runs?"""
        return any(tensorrt_version_matches(v, version or "") for v in self.tensorrt_versions)

    def tensorrt_text(self) -> str:
        """ "10.3 (JetPack 6.2), 8.6 or 8.5" — for messages."""
        own = self.tensorrt + (f" (JetPack {self.jetpack})" if self.jetpack else "")
        rest = list(self.tensorrt_also)
        if not rest:
            return own
        return ", ".join([own] + rest[:-1]) + f" or {rest[-1]}"

    def max_onnx_opset_for(self, version: str | None) -> int:
        """The highest ONNX opset the parser of this TensorRT documents (the profile's for its own)."""
        if not version or tensorrt_version_matches(self.tensorrt, version):
            return self.max_onnx_opset
        parts = str(version).split(".")
        known = _DOCUMENTED_MAX_OPSET.get(".".join(parts[:2])) or _DOCUMENTED_MAX_OPSET.get(parts[0])
        return known or self.max_onnx_opset

    @property
    def is_jetson(self) -> bool:
        return self.kind == "jetson"

    def camera_pipeline(
        self, kind: str = "usb", index: int = 0, width: int = 640, height: int = 480, fps: int = 30
    ) -> str:
        """The camera source string for OpenCV, placeholders filled in.

        Returns a GStreamer pipeline (open with ``cv2.CAP_GSTREAMER``) or
        ``"v4l2:N"`` (open device index N with ``cv2.CAP_V4L2``).
        """
        template = {"csi": self.camera_csi, "usb": self.camera_usb}.get(kind)
        if template is None:
            raise ConfigError(f"camera kind {kind!r} is unknown; use 'csi' or 'usb'")
        if not template:
            raise ConfigError(f"device {self.name!r} has no {kind.upper()} camera pipeline; use --camera usb")
        return template.format(index=index, width=width, height=height, fps=fps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fast_precisions"] = list(self.fast_precisions)
        d["backends"] = list(self.backends)
        d["tensorrt_also"] = list(self.tensorrt_also)
        return d


# --------------------------------------------------------------------------- search


def profile_dirs() -> list[Path]:
    """Folders searched for profiles, in priority order (existing ones only).

    ``$EDGEMASK_DEVICES_DIR``, then the checkout's ``devices/``, then the
    installed wheel's ``share/edgemask/devices`` (see :mod:`edgemask.utils.datadirs`).
    """
    from edgemask.config import EDGEMASK_DEVICES_DIR
    from edgemask.utils.datadirs import search_dirs

    return search_dirs("devices", EDGEMASK_DEVICES_DIR)


def _profile_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for p in sorted(d.glob("*.toml")):
            if _NAME_RE.match(p.stem) and p.stem not in found:
                found[p.stem] = p
    return found


def list_profiles() -> list[str]:
    """Names of all profiles found, sorted."""
    return sorted(_profile_files())


def load_profile(name: str | os.PathLike) -> DeviceProfile:
    """Load and validate a profile by name (or by path to a ``.toml`` file).

    Raises:
        ConfigError: unknown name (the message lists the known ones), or a
            profile with a missing, unknown or mistyped field (named).
    """
    text = str(name)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"device profile file {path} not found")
    else:
        files = _profile_files()
        if text not in files:
            known = ", ".join(sorted(files)) or "none (no devices/ folder found; set EDGEMASK_DEVICES_DIR)"
            close = difflib.get_close_matches(text, list(files), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown device {text!r}; {hint}known devices: {known}")
        path = files[text]
    return parse_profile(path.read_text(encoding="utf-8"), where=str(path), expected_name=path.stem)


def load_all_profiles() -> list[DeviceProfile]:
    return [load_profile(n) for n in list_profiles()]


# --------------------------------------------------------------------------- parsing


def _toml_loads(text: str) -> dict[str, Any]:
    from edgemask.utils.toml_compat import tomllib

    return tomllib.loads(text)


def parse_profile(text: str, where: str = "profile", expected_name: str | None = None) -> DeviceProfile:
    """Validate the TOML text of a profile; every error names the field and the file."""
    try:
        data = _toml_loads(text)
    except Exception as e:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{where} is not valid TOML ({e}); fix the syntax") from None

    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in _TABLES:
                _unknown(where, key, sorted(_TABLES), "table")
            for sub, v in value.items():
                if (key, sub) not in _SCHEMA:
                    _unknown(where, f"{key}.{sub}", [f"{t}.{k}" if t else k for t, k in _SCHEMA if t == key], "field")
                flat[f"{key}.{sub}"] = v
        else:
            if ("", key) not in _SCHEMA:
                _unknown(where, key, [k for t, k in _SCHEMA if not t] + sorted(_TABLES), "field")
            flat[key] = value

    for (table, key), (typ, required) in _SCHEMA.items():
        dotted = f"{table}.{key}" if table else key
        if dotted not in flat:
            if required:
                raise ConfigError(f"{where} is missing the field {dotted!r}; see devices/README.md for the fields")
            continue
        v = flat[dotted]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise ConfigError(f"{where} field {dotted!r} should be {typ.__name__}, got {type(v).__name__} ({v!r})")
        if typ is list and not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{where} field {dotted!r} should be a list of strings")

    p = DeviceProfile(
        name=flat["name"],
        description=flat["description"],
        kind=flat["kind"],
        jetpack=flat["software.jetpack"],
        l4t=flat["software.l4t"],
        cuda=flat["software.cuda"],
        tensorrt=flat["software.tensorrt"],
        max_onnx_opset=flat["software.max_onnx_opset"],
        compute_capability=flat["gpu.compute_capability"],
        fast_precisions=tuple(flat["gpu.fast_precisions"]),
        dla_cores=flat["gpu.dla_cores"],
        workspace_mib=flat["gpu.workspace_mib"],
        camera_csi=flat["camera.csi"],
        camera_usb=flat["camera.usb"],
        backends=tuple(flat["runtime.backends"]),
        source=where,
        tensorrt_also=tuple(flat.get("software.tensorrt_also") or ()),
    )
    _check_values(p, where, expected_name)
    return p


def _unknown(where: str, key: str, valid: list[str], what: str) -> None:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{where} has an unknown {what} {key!r}{hint}; valid: {', '.join(valid)}")


def _check_values(p: DeviceProfile, where: str, expected_name: str | None) -> None:
    def bad(field_: str, msg: str) -> ConfigError:
        return ConfigError(f"{where} field {field_!r} {msg}")

    if not _NAME_RE.match(p.name):
        raise bad("name", f"is {p.name!r}; use lower-case letters, digits and '-'")
    if expected_name is not None and p.name != expected_name:
        raise bad("name", f"is {p.name!r} but the file is {expected_name}.toml; they must match")
    if p.kind not in KINDS:
        raise bad("kind", f"is {p.kind!r}; expected one of {', '.join(KINDS)}")
    for f_, v in [("software.tensorrt", p.tensorrt), ("software.cuda", p.cuda)] + [
        ("software.tensorrt_also", v) for v in p.tensorrt_also
    ]:
        if v and not _VERSION_RE.match(v):
            raise bad(f_, f"is {v!r}; write a version like '10.3'")
    if p.tensorrt_also and not p.tensorrt:
        raise bad("software.tensorrt_also", "needs software.tensorrt (the profile's own TensorRT) as well")
    if p.compute_capability and not _CC_RE.match(p.compute_capability):
        raise bad("gpu.compute_capability", f"is {p.compute_capability!r}; write it like '8.7'")
    if p.is_jetson and not (p.jetpack and p.l4t and p.tensorrt and p.compute_capability):
        raise ConfigError(
            f"{where}: a jetson profile needs software.jetpack, software.l4t, software.tensorrt "
            "and gpu.compute_capability"
        )
    if not 7 <= p.max_onnx_opset <= 30:
        raise bad("software.max_onnx_opset", f"is {p.max_onnx_opset}; expected an ONNX opset such as 17")
    if not p.fast_precisions or "fp32" not in p.fast_precisions:
        raise bad("gpu.fast_precisions", "must include 'fp32'")
    for prec in p.fast_precisions:
        if prec not in PRECISIONS:
            raise bad("gpu.fast_precisions", f"has {prec!r}; expected some of {', '.join(PRECISIONS)}")
    if p.dla_cores < 0 or p.dla_cores > 4:
        raise bad("gpu.dla_cores", f"is {p.dla_cores}; expected 0..4")
    if p.workspace_mib < 0:
        raise bad("gpu.workspace_mib", "must be >= 0")
    if p.tensorrt and p.workspace_mib < 16:
        raise bad("gpu.workspace_mib", f"is {p.workspace_mib}; a TensorRT target needs at least 16 MiB")
    for f_, tmpl in (("camera.csi", p.camera_csi), ("camera.usb", p.camera_usb)):
        if tmpl:
            try:
                tmpl.format(index=0, width=640, height=480, fps=30)
            except (KeyError, IndexError, ValueError) as e:
                raise bad(f_, f"has a bad placeholder ({e}); allowed: {{index}} {{width}} {{height}} {{fps}}") from None
    if not p.backends:
        raise bad("runtime.backends", "must list at least one backend")


# --------------------------------------------------------------------------- planning


def plan_precision(profile: DeviceProfile, requested: str) -> tuple[str, list[str]]:
    """The precision an engine for ``profile`` will really use, and why if it differs.

    A precision the GPU does not run fast is replaced by the next one down
    (int8 → fp16 → fp32), because e.g. TensorRT on a Jetson Nano would build
    an "INT8" engine that silently runs in float.

    Returns:
        (precision, warnings): warnings say what was asked and what is done instead.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision {requested!r} is unknown; use one of {', '.join(PRECISIONS)}")
    if requested in profile.fast_precisions:
        return requested, []
    order = list(PRECISIONS[PRECISIONS.index(requested) - 1 :: -1]) if requested != "fp32" else []
    fallback = next((p for p in order if p in profile.fast_precisions), "fp32")
    cc = f" (compute capability {profile.compute_capability})" if profile.compute_capability else ""
    return fallback, [
        f"{profile.name}{cc} has no fast {requested.upper()}: building {fallback} instead "
        f"(it runs: {', '.join(profile.fast_precisions)})"
    ]


def plan_dla(profile: DeviceProfile, dla_core: int | None, precision: str) -> tuple[int | None, str, list[str]]:
    """Whether a DLA engine can be built; DLA runs fp16/int8 only.

    Returns:
        (dla_core or None, precision, warnings)
    Raises:
        ConfigError: a DLA core number the device does not have.
    """
    if dla_core is None:
        return None, precision, []
    if dla_core < 0:
        raise ConfigError(f"--dla-core must be >= 0, got {dla_core}")
    if profile.dla_cores == 0:
        return (
            None,
            precision,
            [f"{profile.name} has no DLA cores: building a GPU engine instead of DLA core {dla_core}"],
        )
    if dla_core >= profile.dla_cores:
        raise ConfigError(
            f"{profile.name} has {profile.dla_cores} DLA core(s) (0..{profile.dla_cores - 1}); "
            f"there is no DLA core {dla_core}"
        )
    if precision == "fp32":
        return dla_core, "fp16", [f"DLA runs fp16 and int8 only: building fp16 on DLA core {dla_core} instead of fp32"]
    return dla_core, precision, []


# --------------------------------------------------------------------------- detection


def profile_name_for(model: str | None, mem_total_gib: float | None = None, has_nvidia_gpu: bool = False) -> str:
    """Map a Jetson board model string (``/proc/device-tree/model``) to a profile name.

    Orin is tested before "Nano" because "Jetson Orin Nano" contains both;
    the two Orin NX modules differ only in memory.

    Raises:
        ConfigError: a Jetson no shipped profile describes (e.g. a TX1); a
            PC profile would be wrong for it, so the user must pick or add one.
    """
    m = (model or "").lower()
    if "jetson" in m or "tegra" in m or "orin" in m or "xavier" in m:
        if "orin" in m:
            if "nano" in m:
                return "jetson-orin-nano"
            if " nx" in m or "orin nx" in m:
                return "jetson-orin-nx-16gb" if (mem_total_gib or 0) > 10 else "jetson-orin-nx-8gb"
            return "jetson-agx-orin"
        if "xavier" in m:
            return "jetson-xavier-nx" if " nx" in m else "jetson-agx-xavier"
        if "tx2" in m:
            return "jetson-tx2"
        if "nano" in m:
            return "jetson-nano"
        raise ConfigError(
            f"this Jetson ({model!r}) has no device profile; add one (devices/README.md, "
            "'Adding a profile') and pass its name with --device"
        )
    return "x86-cuda" if has_nvidia_gpu else "x86-cpu"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _mem_total_gib() -> float | None:
    text = _read("/proc/meminfo") or ""
    m = re.search(r"MemTotal:\s+(\d+)\s+kB", text)
    return int(m.group(1)) / 2**20 if m else None


def has_nvidia_gpu() -> bool:
    """An NVIDIA kernel driver is loaded (desktop GPU) or this is a Tegra board."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/etc/nv_tegra_release").exists()


def jetson_model() -> str | None:
    """The board model string on a Jetson (``/proc/device-tree/model``), else None."""
    model = _read("/proc/device-tree/model")
    if model and ("jetson" in model.lower() or Path("/etc/nv_tegra_release").exists()):
        return model
    return None


def detect_profile_name() -> str:
    """Best guess of the profile of the machine this runs on.

    Raises:
        ConfigError: a Jetson without a profile (see :func:`profile_name_for`).
    """
    return profile_name_for(jetson_model(), _mem_total_gib(), has_nvidia_gpu())


def tensorrt_version_matches(expected: str, actual: str) -> bool:
    """``expected`` "8.5" matches "8.5.2.2"; "10" matches any 10.x; "" never matches."""
    if not expected or not actual:
        return False
    e, a = expected.split("."), actual.split(".")
    return a[: len(e)] == e


__all__ = [
    "DeviceProfile",
    "KINDS",
    "PRECISIONS",
    "detect_profile_name",
    "has_nvidia_gpu",
    "jetson_model",
    "list_profiles",
    "load_all_profiles",
    "load_profile",
    "parse_profile",
    "plan_dla",
    "plan_precision",
    "profile_dirs",
    "profile_name_for",
    "tensorrt_version_matches",
]

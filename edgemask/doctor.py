"""``edgemask doctor``: is this machine ready to run (and build for) its device?

Every check returns a :class:`Check` with a status — pass, warn, fail or skip
(not applicable here) — a one-line detail, and for anything but pass, a fix.
Checks never raise: a probe that breaks becomes a ``fail`` with the reason.

Covered: Python, the detected device profile, JetPack/L4T and the power mode
on a Jetson (``/etc/nv_tegra_release`` or the ``nvidia-l4t-core`` package,
``nvpmodel -q``), whether this Python is the one JetPack's TensorRT bindings
are built for (docs/jetson.md has the table), NVIDIA driver,
TensorRT and its version against the profile, pycuda / cuda-python, ONNX
Runtime's execution providers, OpenCV and whether it was built with
GStreamer (needed for CSI cameras), camera devices (``/dev/video*`` opened
with OpenCV), write access to the engine cache, and optionally a bundle:
hashes, the QDQ compliance of its int8 model and whether its engines load here.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

STATUSES = ("pass", "warn", "fail", "skip")
# Where L4T says its version; module-level so tests can point them at fake files.
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DPKG_STATUS = Path("/var/lib/dpkg/status")  # holds the nvidia-l4t-core package (and its version) on every JetPack
JETSON_DOCS = "docs/jetson.md"


@dataclass(frozen=True)
class JetPack:
    """What one JetPack line ships, as far as edgemask cares (docs/jetson.md says the same)."""

    name: str  # "JetPack 5"
    python: tuple[int, int]  # the Ubuntu Python its TensorRT bindings (python3-libnvinfer) are built for
    tensorrt: str  # the TensorRT it ships
    supported: bool  # whether edgemask runs on that Python


# L4T major -> JetPack. R34 was JetPack 5.0's developer preview (Python 3.8, TensorRT 8.4).
JETPACKS: dict[int, JetPack] = {
    32: JetPack("JetPack 4.6", (3, 6), "8.2 (8.0 on 4.6.0)", False),
    34: JetPack("JetPack 5.0 DP", (3, 8), "8.4", True),
    35: JetPack("JetPack 5", (3, 8), "8.5 (8.4 on 5.0.2)", True),
    36: JetPack("JetPack 6", (3, 10), "10.3 (8.6 on 6.0)", True),
}


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail | skip
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _guard(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as e:  # a broken probe must not hide the other checks
        return [
            Check(
                name,
                "fail",
                f"check crashed: {type(e).__name__}: {e}",
                "report this as a bug with the output of 'edgemask doctor --json'",
            )
        ]


# --------------------------------------------------------------------------- probes


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R35 (release), REVISION: 4.1, ...`` → ``"R35.4.1"``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def parse_l4t_core_version(dpkg_status: str) -> str | None:
    """The ``nvidia-l4t-core`` entry of ``/var/lib/dpkg/status`` (``Version: 35.4.1-2023...``) → ``"R35.4.1"``."""
    for stanza in re.split(r"\n\s*\n", dpkg_status):
        if re.search(r"^Package:\s*nvidia-l4t-core\s*$", stanza, re.MULTILINE) and re.search(
            r"^Status:.*\binstalled\s*$", stanza, re.MULTILINE
        ):
            m = re.search(r"^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", stanza, re.MULTILINE)
            if m:
                return f"R{m.group(1)}.{m.group(2)}" + (f".{m.group(3)}" if m.group(3) else "")
    return None


def detect_l4t() -> tuple[str | None, str]:
    """(L4T version like ``"R35.4.1"`` or None, where it was read) from the release file, else dpkg."""
    if NV_TEGRA_RELEASE.exists():
        return parse_nv_tegra_release(NV_TEGRA_RELEASE.read_text(errors="replace")), str(NV_TEGRA_RELEASE)
    if DPKG_STATUS.exists():
        v = parse_l4t_core_version(DPKG_STATUS.read_text(errors="replace"))
        if v is not None:
            return v, "the nvidia-l4t-core package"
    return None, ""


def jetpack_of(l4t: str | None) -> JetPack | None:
    """The JetPack line of an L4T version (``"R35.4.1"`` → JetPack 5), None when unknown."""
    m = re.match(r"R(\d+)", l4t or "")
    return JETPACKS.get(int(m.group(1))) if m else None


def venv_hides_system_packages() -> bool:
    """Whether this is a venv made without ``--system-site-packages`` (JetPack's TensorRT is a system package)."""
    if sys.prefix == sys.base_prefix:
        return False
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    try:
        text = cfg.read_text(errors="replace")
    except OSError:
        return False
    m = re.search(r"^include-system-site-packages\s*=\s*(\S+)", text, re.MULTILINE)
    return not (m and m.group(1).lower() == "true")


def parse_nvpmodel(text: str) -> str | None:
    """``nvpmodel -q`` output → the power mode name (``MAXN``, ``15W``...)."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    return m.group(1) if m else None


def opencv_has_gstreamer(build_info: str) -> bool:
    """Whether ``cv2.getBuildInformation()`` lists GStreamer as enabled."""
    m = re.search(r"^\s*GStreamer:\s*(\S+)", build_info, re.MULTILINE)
    return bool(m) and m.group(1).upper() in ("YES", "ON")


def _run(cmd: list[str], timeout: float = 5.0) -> tuple[int, str]:
    exe = shutil.which(cmd[0])
    if exe is None:
        return 127, f"{cmd[0]} not found"
    try:
        p = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)


# --------------------------------------------------------------------------- checks


def check_python(version: tuple[int, ...] | None = None) -> list[Check]:
    v = tuple(version or sys.version_info[:3])
    text = f"Python {'.'.join(map(str, v[:3]))} at {sys.executable}"
    if v[:2] < (3, 8):
        return [
            Check(
                "python",
                "fail",
                text,
                f"edgemask needs Python 3.8+ (the device runtime) or 3.10+ (the "
                f"train extra); on JetPack 4.6 see {JETSON_DOCS}",
            )
        ]
    if v[:2] < (3, 10):
        return [Check("python", "pass", text + " (device runtime; the train extra needs 3.10+)")]
    return [Check("python", "pass", text)]


def check_jetpack_python(l4t: str | None, version: tuple[int, ...] | None = None) -> list[Check]:
    """Is this the Python JetPack's TensorRT bindings are built for? On JetPack 4.6, say what works."""
    v = tuple(version or sys.version_info[:2])[:2]
    here = f"Python {v[0]}.{v[1]}"
    jp = jetpack_of(l4t)
    if jp is None:
        return [
            Check(
                "jetpack python",
                "warn",
                f"L4T {l4t or '(unknown)'} is not in edgemask's JetPack table (4.6, 5, 6)",
                f"check {JETSON_DOCS}; TensorRT needs the Python its bindings were built for",
            )
        ]
    theirs = f"{jp.python[0]}.{jp.python[1]}"
    if not jp.supported:
        return [
            Check(
                "jetpack python",
                "warn",
                f"{jp.name} ships Python {theirs}, which edgemask does not support, and its TensorRT "
                f"{jp.tensorrt} bindings exist only for {theirs}: here {here} runs the onnxrt and opencv "
                "backends (CPU), not the tensorrt backend or 'engine build'",
                f"run edgemask in an L4T r32.7 container with Python 3.8+ for onnxrt/opencv, "
                f"see {JETSON_DOCS}#jetpack-46",
            )
        ]
    if v == jp.python:
        return [
            Check(
                "jetpack python", "pass", f"{here} is {jp.name}'s; its TensorRT {jp.tensorrt} bindings are built for it"
            )
        ]
    return [
        Check(
            "jetpack python",
            "warn",
            f"{jp.name}'s TensorRT {jp.tensorrt} bindings are built for Python "
            f"{theirs}; this is {here}, so the tensorrt backend cannot load them",
            f"make the venv from /usr/bin/python3 ({theirs}): /usr/bin/python3 -m venv --system-site-packages .venv",
        )
    ]


def check_profile(device: str | None) -> tuple[list[Check], Any]:
    from edgemask.devices.profiles import detect_profile_name, load_profile
    from edgemask.errors import ConfigError

    try:
        detected = detect_profile_name()
    except ConfigError as e:  # a Jetson no profile describes
        if not device:
            return [
                Check(
                    "device profile",
                    "fail",
                    str(e),
                    "pass --device with a profile from 'edgemask devices list', or add one for this board",
                )
            ], None
        detected = "unknown"
    name = device or detected
    try:
        profile = load_profile(name)
    except ConfigError as e:
        return [Check("device profile", "fail", str(e), "pick a profile from 'edgemask devices list'")], None
    checks = [
        Check(
            "device profile",
            "pass",
            f"{profile.name}: {profile.description}"
            + (f" (detected {detected})" if device and device != detected else " (detected)" if not device else ""),
        )
    ]
    if device and device != detected and detected != "unknown" and not detected.startswith("x86"):
        checks[0] = Check(
            "device profile",
            "warn",
            f"asked for {device}, but this machine looks like {detected}",
            f"use --device {detected}, or build engines on the {device} itself",
        )
    return checks, profile


def check_jetson(profile: Any, python_version: tuple[int, ...] | None = None) -> list[Check]:
    l4t, where = detect_l4t()
    if not where:
        if profile is not None and profile.is_jetson:
            return [
                Check(
                    "jetson",
                    "fail",
                    f"no {NV_TEGRA_RELEASE} and no nvidia-l4t-core package: this is not a "
                    "Jetson (or L4T is not installed)",
                    "run doctor on the Jetson itself, or pass the matching --device",
                )
            ]
        return [Check("jetson", "skip", "not a Jetson")]
    out = []
    if l4t is None:
        out.append(Check("jetpack/l4t", "warn", f"could not parse {NV_TEGRA_RELEASE}", "check the L4T install"))
    elif profile is not None and profile.l4t and not l4t.startswith(profile.l4t + ".") and l4t != profile.l4t:
        out.append(
            Check(
                "jetpack/l4t",
                "warn",
                f"L4T {l4t}, profile {profile.name} expects {profile.l4t} (JetPack {profile.jetpack})",
                "flash the JetPack of the profile, or add a profile for "
                "this JetPack (devices/README.md) so engines are built for the right TensorRT",
            )
        )
    else:
        out.append(
            Check(
                "jetpack/l4t",
                "pass",
                f"L4T {l4t}"
                + (f" (JetPack {profile.jetpack})" if profile else "")
                + (f", from {where}" if where != str(NV_TEGRA_RELEASE) else ""),
            )
        )
    if l4t is not None:
        out += check_jetpack_python(l4t, python_version)
    rc, text = _run(["nvpmodel", "-q"])
    mode = parse_nvpmodel(text) if rc == 0 else None
    if mode is None:
        out.append(
            Check(
                "power mode",
                "warn",
                f"nvpmodel -q failed ({text.splitlines()[0] if text else rc})",
                "run 'sudo nvpmodel -q' to see the power mode; benchmarks depend on it",
            )
        )
    else:
        status = "pass" if "MAXN" in mode.upper() else "warn"
        out.append(
            Check(
                "power mode",
                status,
                f"nvpmodel: {mode}",
                ""
                if status == "pass"
                else "for full speed: sudo nvpmodel -m 0 && sudo jetson_clocks "
                "(check 'nvpmodel -p --verbose' for the MAXN mode id on this module)",
            )
        )
    return out


def check_nvidia(profile: Any) -> list[Check]:
    from edgemask.devices.profiles import has_nvidia_gpu

    needs = profile is not None and profile.has_tensorrt
    if has_nvidia_gpu():
        text = ""
        v = Path("/proc/driver/nvidia/version")
        if v.exists():
            text = v.read_text(errors="replace").splitlines()[0]
        return [Check("nvidia driver", "pass", text or "Tegra GPU driver (L4T)")]
    if not needs:
        return [Check("nvidia driver", "skip", "no NVIDIA GPU; the profile does not need one")]
    return [
        Check(
            "nvidia driver",
            "fail",
            "no NVIDIA driver loaded (/proc/driver/nvidia/version missing)",
            "install the NVIDIA driver, or use --device x86-cpu on this machine",
        )
    ]


def check_tensorrt(profile: Any) -> list[Check]:
    from edgemask.backends.tensorrt.builder import local_tensorrt_info

    info = local_tensorrt_info()
    needs = profile is not None and profile.has_tensorrt
    out = []
    if info["tensorrt"] is None:
        fix = ""
        if needs and venv_hides_system_packages():
            fix = (
                "this venv hides the system's packages, where JetPack puts TensorRT: recreate it with "
                "python3 -m venv --system-site-packages (on x86: pip install 'edgemask[tensorrt-cu12]')"
            )
        elif needs:
            fix = (
                "JetPack ships it (sudo apt install nvidia-tensorrt / python3-libnvinfer); "
                "on x86: pip install 'edgemask[tensorrt-cu12]' or 'edgemask[tensorrt-cu13]'"
            )
        out.append(Check("tensorrt", "fail" if needs else "skip", f"not importable ({info['tensorrt_error']})", fix))
    elif needs and not profile.accepts_tensorrt(info["tensorrt"]):
        out.append(
            Check(
                "tensorrt",
                "warn",
                f"TensorRT {info['tensorrt']}, profile {profile.name} expects {profile.tensorrt_text()}",
                "engines built here are for this TensorRT only: use a profile that "
                "matches (or add one, devices/README.md)",
            )
        )
    else:
        out.append(Check("tensorrt", "pass", f"TensorRT {info['tensorrt']}"))
    from edgemask.backends.tensorrt.cuda_api import cuda_binding_versions

    vers = cuda_binding_versions()
    have = {k: v for k, v in vers.items() if v}
    if have:
        gpu = f"; GPU {info['gpu']} (compute capability {info['compute_capability']})" if info["gpu"] else ""
        status = "pass"
        fix = ""
        if (
            needs
            and profile.compute_capability
            and info["compute_capability"]
            and info["compute_capability"] != profile.compute_capability
        ):
            status, fix = "warn", f"this GPU is not a {profile.name}; pass the matching --device"
        elif info["gpu"] is None and needs:
            status, fix = "warn", f"the binding imports but CUDA failed: {info['cuda_error']}"
        out.append(Check("pycuda/cuda-python", status, ", ".join(f"{k} {v}" for k, v in have.items()) + gpu, fix))
    else:
        out.append(
            Check(
                "pycuda/cuda-python",
                "fail" if needs else "skip",
                "neither pycuda nor cuda-python imports",
                "pip install pycuda (on JetPack) or pip install cuda-python" if needs else "",
            )
        )
    return out


def check_onnxruntime(profile: Any) -> list[Check]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return [Check("onnxruntime", "fail", f"not importable ({e})", "pip install onnxruntime")]
    provs = ort.get_available_providers()
    gpu = [p for p in provs if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    status, fix = "pass", ""
    if profile is not None and profile.has_tensorrt and not gpu:
        status, fix = (
            "warn",
            (
                "no CUDA/TensorRT provider: the onnxrt backend runs on the CPU here; install "
                "onnxruntime-gpu (or the Jetson Zoo wheel)"
            ),
        )
    return [Check("onnxruntime", status, f"onnxruntime {ort.__version__}; providers: {', '.join(provs)}", fix)]


def check_opencv(profile: Any) -> list[Check]:
    try:
        import cv2
    except ImportError as e:
        return [Check("opencv", "fail", f"not importable ({e})", "pip install opencv-python-headless")]
    gst = opencv_has_gstreamer(cv2.getBuildInformation())
    needs_gst = profile is not None and bool(profile.camera_csi)
    if gst:
        return [Check("opencv gstreamer", "pass", f"OpenCV {cv2.__version__} with GStreamer")]
    return [
        Check(
            "opencv gstreamer",
            "warn" if needs_gst else "skip",
            f"OpenCV {cv2.__version__} without GStreamer" + ("; CSI cameras need it" if needs_gst else ""),
            "use the system OpenCV of JetPack (sudo apt install python3-opencv) instead of the pip wheel, "
            "or use USB cameras through V4L2"
            if needs_gst
            else "",
        )
    ]


def check_cameras(probe: bool = True) -> list[Check]:
    devs = sorted(glob.glob("/dev/video*"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    if not devs:
        return [
            Check(
                "cameras",
                "warn",
                "no /dev/video* devices",
                "plug in a USB camera (or check the CSI ribbon and 'ls /dev/video*'); "
                "'edgemask run --source FILE' works without one",
            )
        ]
    if not probe:
        return [Check("cameras", "pass", f"found {', '.join(devs)} (not opened: --no-camera-probe)")]
    import cv2

    opened, failed = [], []
    for d in devs[:8]:
        idx = int(re.sub(r"\D", "", d) or 0)
        cap = cv2.VideoCapture(idx, cv2.CAP_V4L2)
        try:
            ok = cap.isOpened() and cap.read()[0]
        finally:
            cap.release()
        (opened if ok else failed).append(d)
    if opened:
        return [
            Check(
                "cameras",
                "pass",
                f"frames from {', '.join(opened)}"
                + (f"; no frames from {', '.join(failed)} (metadata nodes are normal)" if failed else ""),
            )
        ]
    return [
        Check(
            "cameras",
            "warn",
            f"{', '.join(devs)} exist but none gave a frame",
            "check permissions (user in group 'video'), that no other process holds the camera, "
            "and for CSI cameras use the GStreamer pipeline of the profile",
        )
    ]


def check_engine_cache() -> list[Check]:
    from edgemask.bundle.engines import engine_cache_dir

    d = engine_cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-", delete=True) as f:
            f.write(b"ok")
            f.flush()
        return [Check("engine cache", "pass", f"{d} is writable")]
    except OSError as e:
        return [
            Check(
                "engine cache",
                "fail",
                f"cannot write {d} ({e.strerror or e})",
                "set EDGEMASK_ENGINE_CACHE to a writable folder, or fix its permissions; "
                "without it engines are rebuilt on every start",
            )
        ]


def check_bundle(bundle_dir: str | Path, profile: Any) -> list[Check]:
    from edgemask.backends.tensorrt.builder import local_tensorrt_info
    from edgemask.bundle import load_manifest, verify_bundle
    from edgemask.bundle.engines import check_engine_compatible, rebuild_command
    from edgemask.errors import EdgemaskError

    out: list[Check] = []
    try:
        manifest = load_manifest(bundle_dir)
    except EdgemaskError as e:
        return [Check("bundle", "fail", str(e), "re-export or re-copy the bundle")]
    problems = verify_bundle(bundle_dir)
    if problems:
        out.append(
            Check(
                "bundle hashes",
                "fail",
                f"{len(problems)} problem(s): {problems[0]}",
                "re-copy the bundle; never edit files inside it",
            )
        )
    else:
        out.append(
            Check("bundle hashes", "pass", f"{manifest.name} v{manifest.version}: {len(manifest.files)} files match")
        )
    if profile is None or not profile.has_tensorrt:
        devs = sorted({str(m.device) for m in manifest.models if m.format == "tensorrt"})
        who = profile.name if profile is not None else "this machine"
        out.append(
            Check(
                "engines",
                "skip",
                f"{who} runs no TensorRT: the onnxrt backend runs the bundle's ONNX "
                "models" + (f"; its TensorRT engines are for {', '.join(devs)}" if devs else ""),
            )
        )
        return out
    int8 = [m for m in manifest.models if m.format == "onnx" and m.precision == "int8"]
    if int8:
        from edgemask.export.qdq_check import check_qdq_for_tensorrt

        rep = check_qdq_for_tensorrt(Path(bundle_dir) / int8[0].file, profile.tensorrt)
        out.append(
            Check(
                "int8 QDQ for TensorRT",
                "pass" if rep.passed else "warn",
                rep.summary(),
                ""
                if rep.passed
                else "re-export with the TensorRT QDQ settings (see 'edgemask engine "
                "check-qdq'); int8 engines will otherwise use the calibration cache",
            )
        )
    engines = [m for m in manifest.models if m.format == "tensorrt" and m.device == profile.name]
    if not engines:
        out.append(
            Check(
                "engines",
                "warn",
                f"no TensorRT engine for {profile.name} in the bundle",
                rebuild_command(bundle_dir, profile.name, "fp16"),
            )
        )
        return out
    info = local_tensorrt_info()
    for e in engines:
        if info["tensorrt"] is None:
            out.append(Check(f"engine {e.file}", "skip", "TensorRT not importable here; cannot check"))
            continue
        try:
            check_engine_compatible(
                e,
                info["tensorrt"],
                compute_capability=info["compute_capability"],
                device=profile.name,
                bundle_dir=bundle_dir,
            )
            out.append(
                Check(
                    f"engine {e.file}",
                    "pass",
                    f"{e.precision}, TensorRT {e.tensorrt_version}, compute capability {e.compute_capability}",
                )
            )
        except EdgemaskError as err:
            msg = str(err)
            detail, _, fix = msg.partition("; rebuild it on this machine: ")
            out.append(Check(f"engine {e.file}", "fail", detail, fix or msg))
    return out


def run_doctor(bundle: str | Path | None = None, device: str | None = None, probe_cameras: bool = True) -> list[Check]:
    """Run every check; never raises."""
    checks: list[Check] = []
    checks += _guard("python", check_python)
    prof_checks: list[Check] = []
    profile = None

    def _prof() -> list[Check]:
        nonlocal profile
        c, profile = check_profile(device)
        return c

    prof_checks = _guard("device profile", _prof)
    checks += prof_checks
    checks += _guard("jetson", lambda: check_jetson(profile))
    checks += _guard("nvidia driver", lambda: check_nvidia(profile))
    checks += _guard("tensorrt", lambda: check_tensorrt(profile))
    checks += _guard("onnxruntime", lambda: check_onnxruntime(profile))
    checks += _guard("opencv", lambda: check_opencv(profile))
    checks += _guard("cameras", lambda: check_cameras(probe_cameras))
    checks += _guard("engine cache", check_engine_cache)
    if bundle is not None:
        checks += _guard("bundle", lambda: check_bundle(bundle, profile))
    return checks


def worst_status(checks: list[Check]) -> str:
    order = {"fail": 3, "warn": 2, "pass": 1, "skip": 0}
    return max((c.status for c in checks), key=lambda s: order[s], default="pass")


__all__ = [
    "JETPACKS",
    "Check",
    "JetPack",
    "STATUSES",
    "check_bundle",
    "check_cameras",
    "check_engine_cache",
    "check_jetpack_python",
    "check_jetson",
    "check_nvidia",
    "check_onnxruntime",
    "check_opencv",
    "check_profile",
    "check_python",
    "check_tensorrt",
    "detect_l4t",
    "jetpack_of",
    "opencv_has_gstreamer",
    "parse_l4t_core_version",
    "parse_nv_tegra_release",
    "parse_nvpmodel",
    "run_doctor",
    "worst_status",
]

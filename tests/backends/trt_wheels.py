"""Real TensorRT Python bindings on a machine without TensorRT: fetch the wheel, satisfy its loader, import it.

Used by test_tensorrt_conformance.py only.

The bindings wheels (``tensorrt-bindings``, ``tensorrt-cu12-bindings``,
``tensorrt-cu13-bindings``; about 1 MB each) hold one extension module,
``tensorrt_bindings/tensorrt.so``. It links against NVIDIA's libraries
(``libnvinfer.so.N``, ``libnvonnxparser.so.N``, ``libnvinfer_plugin.so.N``, and
``libnvparsers.so.8`` for 8.x), hundreds of MB that come with a GPU driver
stack, so on a CI machine the module cannot load as shipped. It needs only a
handful of C entry points from them (``createInferBuilder_INTERNAL``,
``createInferRuntime_INTERNAL``, ``createNvOnnxParser_INTERNAL``,
``getPluginRegistry``, ...), read here from the module's own dynamic symbol
table. :func:`standin_libs` compiles, with the C compiler, one small shared
object per library SONAME that defines each of those functions as "return
NULL". The real pybind11 module then imports: every class, enum, property
and method signature is TensorRT's own, and anything that reaches into the
library (creating a Builder or a Runtime) gets a null pointer, which the
bindings turn into ``TypeError: ... factory function returned nullptr`` —
exactly what they do on a machine that has TensorRT but no usable GPU.
Parsing, building and inference stay out of reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

#: (distribution, version) of the bindings checked: JetPack 6.0 / x86 8.6, JetPack 6.1-6.2's 10.3, the newest
#: 10.x, and the 11.x that `pip install tensorrt` picks today (CUDA 13).
TRT_WHEELS = (
    ("tensorrt-bindings", "8.6.1"),
    ("tensorrt-cu12-bindings", "10.3.0"),
    ("tensorrt-cu12-bindings", "10.16.1.11"),
    ("tensorrt-cu13-bindings", "11.4.0.106"),
)
#: cuda-python's runtime bindings (what CudaPythonApi imports) and the package they load the driver with.
CUDA_WHEELS = (("cuda-bindings", "13.5.0"), ("cuda-pathfinder", "1.9.1"))


class Unavailable(Exception):
    """Why the real bindings cannot be set up here (no registry, no compiler); the test skips with it."""


def cache_dir() -> Path:
    """Downloads and stand-ins are kept between runs: ``$EDGEMASK_TRT_WHEELS`` or ``~/.cache/edgemask/trt-wheels``."""
    env = os.environ.get("EDGEMASK_TRT_WHEELS")
    base = (
        Path(env)
        if env
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgemask" / "trt-wheels"
    )
    base.mkdir(parents=True, exist_ok=True)
    return base


def fetch_wheel(dist: str, version: str, dest: Path) -> Path:
    """The wheel for this interpreter, from the cache or ``pip download`` (the configured index)."""
    stem = dist.replace("-", "_") + "-" + version + "-"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"

    def this_python() -> list[Path]:  # the cache may hold the same release built for another Python
        return [w for w in sorted(dest.glob(stem + "*.whl")) if f"-{tag}-" in w.name or "-py3-" in w.name]

    found = this_python()
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            f"{dist}=={version}",
        ]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"pip download {dist}=={version} failed ({type(e).__name__})") from None
        found = this_python()
        if r.returncode != 0 or not found:
            last = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and "is ignored" not in ln][-1:]
            raise Unavailable(
                f"the package index has no {dist}=={version} wheel for Python "
                f"{sys.version_info[0]}.{sys.version_info[1]} ({' '.join(last)[:160]})"
            )
    return found[0]


def extract(wheel: Path, dest: Path) -> Path:
    """Unzip once; returns the folder to put on sys.path."""
    out = dest / ("x-" + wheel.name[:-4])
    if not (out / ".done").is_file():
        shutil.rmtree(out, ignore_errors=True)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(out)
        (out / ".done").write_text("")
    return out


def _readelf(args: list[str], so: Path) -> str:
    tool = shutil.which("readelf")
    if tool is None:
        raise Unavailable("readelf (binutils) is not installed, so the bindings' library needs cannot be read")
    return subprocess.run([tool, *args, str(so)], capture_output=True, text=True, check=True).stdout


def library_needs(so: Path) -> tuple[list[str], list[str]]:
    """(NVIDIA libraries the module is linked against, functions it imports from outside libc/libstdc++/Python)."""
    needed = []
    for line in _readelf(["-d", "-W"], so).splitlines():
        if "(NEEDED)" in line and "[libnv" in line:
            needed.append(line.split("[", 1)[1].split("]", 1)[0])
    funcs = []
    for line in _readelf(["--dyn-syms", "-W"], so).splitlines():
        p = line.split()
        # Num: Value Size Type Bind Vis Ndx Name — undefined functions without a version tag come from
        # the unversioned NVIDIA libraries (glibc/libstdc++ symbols carry @GLIBC_/@GLIBCXX_ versions).
        if len(p) >= 8 and p[6] == "UND" and p[3] == "FUNC" and "@" not in p[7]:
            funcs.append(p[7])
    return needed, funcs


def standin_libs(so: Path, dest: Path) -> Path:
    """A folder of stand-in NVIDIA libraries the bindings module loads against (see the module docstring)."""
    needed, funcs = library_needs(so)
    if not needed:
        raise Unavailable(f"{so} links no libnv* library; this is not a TensorRT bindings module")
    out = dest / ("standin-" + so.parent.parent.name)
    if (out / ".done").is_file():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Unavailable("no C compiler (cc/gcc) to build the stand-in libraries")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    src = out / "standin.c"
    # Every imported entry point returns NULL / 0: "no builder, no runtime, no parser, no plugins".
    src.write_text("".join(f"void *{f}(void) {{ return 0; }}\n" for f in funcs))
    for i, lib in enumerate(needed):
        # all functions go into the first library; the dynamic loader finds them in any loaded one
        body = src if i == 0 else out / "empty.c"
        if i == 1:
            body.write_text("int edgemask_standin_empty;\n")
        subprocess.run(
            [cc, "-shared", "-fPIC", "-o", str(out / lib), f"-Wl,-soname,{lib}", str(body)],
            check=True,
            capture_output=True,
        )
    (out / ".done").write_text("\n".join(needed + funcs) + "\n")
    return out


def bindings_env(dist: str, version: str) -> dict[str, str]:
    """Environment for a subprocess in which ``import tensorrt_bindings`` loads this release's real module."""
    cache = cache_dir()
    site = extract(fetch_wheel(dist, version, cache), cache)
    so = site / "tensorrt_bindings" / "tensorrt.so"
    if not so.is_file():
        raise Unavailable(f"{dist}=={version} has no tensorrt_bindings/tensorrt.so")
    libs = standin_libs(so, cache)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libs)] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["EDGEMASK_TRT_SITE"] = str(site)
    return env


def cuda_python_site() -> Path:
    """A folder holding the real ``cuda.bindings`` (cuda-python) and ``cuda.pathfinder``."""
    cache = cache_dir()
    out = cache / f"x-cuda-python-cp{sys.version_info[0]}{sys.version_info[1]}"
    if not (out / ".done").is_file():
        shutil.rmtree(out, ignore_errors=True)
        for dist, version in CUDA_WHEELS:
            with zipfile.ZipFile(fetch_wheel(dist, version, cache)) as z:
                z.extractall(out)
        (out / ".done").write_text("")
    return out

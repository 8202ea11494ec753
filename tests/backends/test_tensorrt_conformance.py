"""edgemask's use of TensorRT and cuda-python, checked against the real Python bindings of several releases.

How, and how far (read this before trusting a green run):

* Which members edgemask uses is one table, ``edgemask/backends/tensorrt/api.py``
  (TRT_API, with the version branch of each) and ``cuda_api.CUDART_USED``.
  ``test_the_table_lists_everything_the_code_touches`` reads the source of the
  builder, calibrator and runner and fails on any TensorRT member they touch
  that the table does not list, so the table cannot drift from the code.
* The real bindings wheels (8.6.1, 10.3.0, 10.16.1.11, 11.4.0.106; ~1 MB each)
  are fetched with ``pip download`` from the configured index into a cache
  (``$EDGEMASK_TRT_WHEELS``, else ``~/.cache/edgemask/trt-wheels``); a test
  skips with the reason when the index has no such wheel for this Python.
* The wheels' module links NVIDIA's native libraries, which a CI machine does
  not have. We *import* it anyway, against stand-in libraries compiled here
  that define the few entry points it imports as "return NULL"
  (tests/backends/trt_wheels.py). The classes, enums, properties and pybind11
  signatures checked are therefore TensorRT's own. Every table row on the code
  path a version takes must exist there, with an overload that accepts the
  arguments edgemask passes; the rows of the other paths must be absent where
  the code assumes they are gone (FP16/INT8 flags and calibrators in 11, ...).
* Beyond names, edgemask's own code runs on the real module as far as it can
  without a GPU: ``require_build_gpu`` meets the real ``trt.Builder`` failing
  (the stand-in returns NULL, as a machine without a usable GPU does), the
  calibrator classes are really subclassed and constructed (8.x, 10.x), and the
  tests marked ``tensorrt`` are run in a subprocess against the real 10.3
  module to see that they skip with that one-line reason.
* Out of reach here: parsing an ONNX file, building, deserializing and running
  an engine (they need libnvinfer and a GPU; the ``tensorrt``-marked tests do
  them on such a machine), and the binding-index API as TensorRT 8.2 has it
  (no 8.2 bindings wheel exists; it is checked against 8.6.1, which still has it).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from trt_wheels import CUDA_WHEELS, TRT_WHEELS, Unavailable, bindings_env, cuda_python_site

from edgemask.backends.tensorrt import api
from edgemask.backends.tensorrt.cuda_api import CUDART_USED

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "edgemask" / "backends" / "tensorrt"
PROBE = Path(__file__).with_name("trt_conformance_probe.py")

# Names the builder, calibrator and runner give TensorRT objects -> the TensorRT class they are.
OBJECTS = {
    "builder": "Builder",
    "config": "IBuilderConfig",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "profile": "IOptimizationProfile",
    "cache_obj": "ITimingCache",
    "engine": "ICudaEngine",
    "ctx": "IExecutionContext",
    "self._context": "IExecutionContext",
    "self._runtime": "Runtime",
    "self._engine": "ICudaEngine",
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def touched_members(path: Path) -> set[str]:
    """TensorRT members a source file touches: ``trt.X.Y`` chains and attributes of the OBJECTS names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _dotted(node)
        if chain and chain.startswith("trt."):
            parts = chain.split(".")[1:]
            # trt.BuilderFlag.FP16 -> "BuilderFlag.FP16"; trt.Builder -> "Builder"; keep the longest chain only
            out.add(".".join(parts))
        for name, cls in OBJECTS.items():
            base = _dotted(node.value)
            if base == name:
                out.add(f"{cls}.{node.attr}")
        if isinstance(node.value, ast.Call) and _dotted(node.value.func) == "network.get_input":
            out.add("ITensor." + node.attr)
    for node in ast.walk(ast.parse(path.read_text())):
        # hasattr(config, "set_memory_pool_limit") / getattr(self._runtime, "num_DLA_cores", None) touch members too
        if (
            isinstance(node, ast.Call)
            and _dotted(node.func) in ("hasattr", "getattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            cls = OBJECTS.get(_dotted(node.args[0]) or "")
            if cls:
                out.add(f"{cls}.{node.args[1].value}")
    # drop prefixes of longer chains ("BuilderFlag" when "BuilderFlag.FP16" is there)
    return {m for m in out if not any(o.startswith(m + ".") for o in out)}


def test_the_table_lists_everything_the_code_touches():
    listed = {u.path for u in api.TRT_API}
    touched = set()
    for f in ("builder.py", "calibrator.py", "runner.py"):
        touched |= touched_members(PKG / f)
    # the calibrator subclass overrides the base's methods: they are listed under IInt8EntropyCalibrator2
    assert touched - listed == set(), "TensorRT members the code uses but api.TRT_API does not list"
    assert {
        "BuilderFlag.FP16",
        "IBuilderConfig.int8_calibrator",
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "IExecutionContext.execute_async_v3",
    } <= touched  # the scan really sees the code
    unused = {u.path for u in api.TRT_API if u.kind in ("enum", "method", "property")} - touched
    overridden = {u.path for u in api.TRT_API if u.path.startswith("IInt8EntropyCalibrator2.")}
    assert unused - overridden == set(), "rows in api.TRT_API no code uses (delete them or the code is not scanned)"


def test_every_cudart_member_the_binding_wrapper_touches_is_listed():
    src = (PKG / "cuda_api.py").read_text()
    used = set()
    for node in ast.walk(ast.parse(src)):
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        if chain and chain.startswith("self._rt."):
            used.add(chain[len("self._rt.") :])
    used = {m for m in used if not any(o.startswith(m + ".") for o in used)}
    assert used == {name for name, _ in CUDART_USED}


def test_branches_cover_each_major():
    assert api.strongly_typed(11) and not api.weakly_typed(11) and not api.legacy_calibration(11)
    assert api.weakly_typed(10) and api.legacy_calibration(10) and not api.explicit_batch_flag(10)
    assert api.explicit_batch_flag(8) and api.binding_api(8) and not api.strongly_typed(10)


def _probe(dist: str, version: str) -> dict:
    try:
        env = bindings_env(dist, version)
    except Unavailable as e:
        pytest.skip(str(e))
    r = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("dist,version", TRT_WHEELS, ids=[v for _, v in TRT_WHEELS])
def test_real_bindings_have_what_edgemask_calls(dist, version):
    got = _probe(dist, version)
    major = int(version.split(".")[0])
    assert got["version"].startswith(version)
    assert got["problems"] == [], got["problems"]
    assert got["checked"] == len(api.uses_for(major)) > 40
    absent = set(got["off_branch_absent"])
    # what the code's branches assume is gone really is gone in that release
    if major >= 11:
        assert {
            "BuilderFlag.FP16",
            "BuilderFlag.INT8",
            "IInt8EntropyCalibrator2",
            "IBuilderConfig.int8_calibrator",
            "IBuilderConfig.set_calibration_profile",
            "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
        } <= absent
    if major >= 10:
        assert {"ICudaEngine.num_bindings", "IExecutionContext.execute_async_v2"} <= absent
    if major < 10:
        assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in absent
    code = got["code"]
    # the stand-in makes the factory return NULL, which is what a machine without a usable GPU gives
    assert code["no_gpu"] == (
        f"TensorRT {got['version']} is installed but no CUDA device answers (trt.Builder failed: "
        "pybind11::init(): factory function returned nullptr); build engines on the device "
        "itself or on a machine whose NVIDIA GPU 'nvidia-smi' lists, or print the trtexec "
        "command with --print-trtexec"
    )
    assert code["legacy_calibration_detected"] is api.legacy_calibration(major)
    if api.legacy_calibration(major):
        assert set(code["calibrators"]) == {
            "EntropyCalibration2",
            "EntropyCalibration",
            "MinMaxCalibration",
            "LegacyCalibration",
        }
        for algo, c in code["calibrators"].items():
            assert c == {"is_base": True, "cache": True, "batch_size": 1, "batch": None}, algo


@pytest.mark.slow
def test_tensorrt_tests_skip_with_the_reason_on_tensorrt_without_gpu(tmp_path):
    """The real 10.3 module, importable as ``tensorrt``, on this machine: the tensorrt-marked tests skip."""
    dist, version = TRT_WHEELS[1]
    try:
        env = bindings_env(dist, version)
    except Unavailable as e:
        pytest.skip(str(e))
    shim = tmp_path / "shim" / "tensorrt"
    shim.mkdir(parents=True)
    # what the tensorrt-cu12 frontend package does: "tensorrt" is the bindings module
    (shim / "__init__.py").write_text("import sys, tensorrt_bindings\nsys.modules[__name__] = tensorrt_bindings\n")
    env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env["EDGEMASK_TRT_SITE"]])
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-m",
            "tensorrt",
            "tests/backends/test_tensorrt.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode in (0, 5), out[-3000:]  # 5: everything deselected/skipped
    summary = [ln for ln in out.splitlines() if " skipped" in ln and " in " in ln]
    assert summary and not re.search(r"\d+ (failed|passed|error)", summary[-1]), out[-3000:]
    assert f"TensorRT {version} is installed but no CUDA device answers (trt.Builder failed" in out, out[-3000:]


@pytest.mark.slow
def test_real_cuda_python_has_what_the_wrapper_calls():
    try:
        site = cuda_python_site()
    except Unavailable as e:
        pytest.skip(str(e))
    code = f"""
import inspect, json, sys
sys.path.insert(0, {str(site)!r})
from cuda.bindings import runtime as rt
from edgemask.backends.tensorrt.cuda_api import CUDART_USED, CudaPythonApi, cuda_device_problem
import edgemask.backends.tensorrt.cuda_api as c
problems = []
for name, nargs in CUDART_USED:
    obj = rt
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if obj is None:
        problems.append(name + ": missing")
    elif nargs is not None:
        try:
            inspect.signature(obj).bind(*range(nargs))
        except TypeError as e:
            problems.append(f"{{name}}: {{e}}")
c._import_cudart = lambda: rt
api = CudaPythonApi()
try:
    count = api.device_count()
except Exception as e:
    count = type(e).__name__ + ": " + str(e)
c.get_cuda_api = lambda prefer=None: api
print(json.dumps({{"problems": problems, "count": count, "problem": cuda_device_problem()}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["problems"] == []
    if not Path("/proc/driver/nvidia/version").exists():
        # no driver: the runtime answers an error code (cuda-bindings 13.5: cudaErrorInsufficientDriver),
        # and the wrapper turns it into one line
        assert str(got["count"]).startswith("BackendError: CUDA call failed: cudaError")
        assert got["problem"].startswith("cuda-python: CUDA call failed: cudaError") and "\n" not in got["problem"]
    assert CUDA_WHEELS[0][0] == "cuda-bindings"

"""The backend registry: names, lazy imports, unavailable backends, runner_from_bundle."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import edgemask.backends as backends
from edgemask.backends import get_backend, list_backends, register_backend, runner_from_bundle
from edgemask.backends.base import Runner
from edgemask.errors import BackendError, BundleError, NotAvailableError


def test_builtin_names_are_registered():
    assert {"torch", "onnxrt", "opencv", "null", "tensorrt"} <= set(list_backends())
    assert list_backends() == sorted(list_backends())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(BackendError, match=r"unknown backend 'onnx'.*null, onnxrt, opencv, tensorrt, torch"):
        get_backend("onnx")


def test_classes_have_their_registry_name():
    for name in list_backends():
        cls = get_backend(name)
        assert issubclass(cls, Runner) and cls.name == name


def test_importing_backends_imports_no_engine():
    # A fresh interpreter: this process has long since imported everything.
    code = (
        "import sys, edgemask, edgemask.backends, edgemask.compare; "
        "heavy = [m for m in ('onnxruntime', 'tensorrt', 'pycuda', 'cv2', 'torch') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(backends.__file__).parents[2]),
    )
    assert out.stdout.strip() == "[]"


def test_get_backend_imports_the_module_not_the_engine():
    code = (
        "import sys; from edgemask.backends import get_backend; "
        "[get_backend(n) for n in ('onnxrt', 'opencv', 'null')]; "
        "print([m for m in ('onnxruntime', 'cv2', 'tensorrt') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(backends.__file__).parents[2]),
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_degrades_cleanly(tiny_bundle):
    cls = get_backend("tensorrt")
    ok, why = cls.available()
    assert not ok and "TensorRT is not installed" in why
    assert "tensorrt" in list_backends() and "tensorrt" not in list_backends(available_only=True)
    with pytest.raises(NotAvailableError, match="TensorRT"):
        runner_from_bundle(tiny_bundle, "tensorrt", "int8")


def test_available_only_keeps_what_runs_here():
    avail = list_backends(available_only=True)
    assert "null" in avail and "onnxrt" in avail
    # torch is the train extra: not there on the device runtime (.ci/run's Python 3.8 job).
    assert ("torch" in avail) == (importlib.util.find_spec("torch") is not None)
    for name in avail:
        assert get_backend(name).available()[0]


def test_register_custom_backend(monkeypatch, tiny_bundle, images):
    monkeypatch.setattr(backends, "_CLASSES", dict(backends._CLASSES))

    @register_backend
    class Doubler(Runner):
        name = "doubler"

        @classmethod
        def from_bundle(cls, bundle, precision="fp32", **options):
            return cls(bundle.input_size, len(bundle.class_names), precision)

        def _activate_impl(self):
            pass

        def _infer_impl(self, x):
            return np.repeat(x.mean(axis=(1, 2, 3))[:, None] * 2, self.num_classes, axis=1)

    assert get_backend("doubler") is Doubler and "doubler" in list_backends()
    with runner_from_bundle(tiny_bundle, "doubler") as r:
        assert r.infer(images(3)[0]).shape == (3, 3)


def test_register_rejects_non_runner():
    with pytest.raises(BackendError, match="Runner subclass"):
        register_backend(dict)  # type: ignore[arg-type]

    class Nameless(Runner):
        def _activate_impl(self):
            pass

        def _infer_impl(self, x):
            return x

    with pytest.raises(BackendError, match="name"):
        register_backend(Nameless)


def test_missing_backend_module_becomes_unavailable(monkeypatch):
    monkeypatch.setattr(backends, "_CLASSES", dict(backends._CLASSES))
    monkeypatch.setitem(backends._LAZY, "ghost", ("edgemask.backends.ghost.runner", "GhostRunner"))
    cls = get_backend("ghost")
    ok, why = cls.available()
    assert not ok and why
    with pytest.raises(NotAvailableError):
        cls.from_bundle(None)


def test_bug_inside_a_backend_module_is_not_hidden(monkeypatch, tmp_path):
    # A backend module that imports a misspelled module of our own is a bug: keep the traceback.
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "runner.py").write_text("import edgemask.no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(backends, "_CLASSES", dict(backends._CLASSES))
    monkeypatch.setitem(backends._LAZY, "broken", ("brokenpkg.runner", "X"))
    with pytest.raises(ModuleNotFoundError):
        get_backend("broken")


def test_runner_from_bundle_path_and_errors(tiny_bundle, images):
    with runner_from_bundle(str(tiny_bundle), "onnxrt", "int8") as r:
        assert r.precision == "int8" and r.infer(images(2)[0]).shape == (2, 3)
    with pytest.raises(BackendError, match="does not run 'int8'"):
        runner_from_bundle(tiny_bundle, "torch", "int8")
    with pytest.raises(BackendError, match="no option 'providers'"):
        runner_from_bundle(tiny_bundle, "torch", "fp32", providers=["cuda"])
    with pytest.raises(BundleError):
        runner_from_bundle(tiny_bundle.parent / "nope", "onnxrt")


def test_runner_from_bundle_refuses_tampered_bundle(tiny_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_bundle, tmp_path / "b")
    with open(copy / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="failed verification"):
        runner_from_bundle(copy, "onnxrt", "int8")


def test_bundle_without_a_precision(tiny_bundle, tmp_path):
    import shutil

    from edgemask.utils.io import atomic_write_json

    copy = shutil.copytree(tiny_bundle, tmp_path / "b")
    m = json.loads((copy / "manifest.json").read_text())
    m["models"] = [e for e in m["models"] if e["precision"] != "fp16"]
    atomic_write_json(copy / "manifest.json", m)
    with pytest.raises(BundleError, match="no onnx model at precision 'fp16'"):
        runner_from_bundle(copy, "onnxrt", "fp16")


def test_onnxrt_provider_errors(tiny_bundle):
    import onnxruntime as ort

    with pytest.raises(BackendError, match="unknown ONNX Runtime provider"):
        runner_from_bundle(tiny_bundle, "onnxrt", providers=["gpu"])
    r = runner_from_bundle(tiny_bundle, "onnxrt", providers="cuda")
    assert r.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(NotAvailableError, match="onnxruntime-gpu"):
            r.activate()
        assert not r.active


def test_onnxrt_device_profile_picks_execution_providers(tiny_bundle, monkeypatch):
    """--device on the onnxrt backend: the profile's TensorRT/CUDA options when ORT has those providers, else CPU."""
    import onnxruntime as ort

    with pytest.raises(BackendError, match="not both"):
        runner_from_bundle(tiny_bundle, "onnxrt", "int8", providers="cuda", device="jetson-orin-nano")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():  # this CPU build: falls back, says why
        with runner_from_bundle(tiny_bundle, "onnxrt", "int8", device="jetson-orin-nano") as r:
            d = r.describe()
            assert r.infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 3)
        assert d["providers"] == ["CPUExecutionProvider"] and d["device_profile"] == "jetson-orin-nano"
        assert any("onnxruntime-gpu" in w for w in d["provider_warnings"])
    # With the GPU build's providers present, the session gets the profile's options.
    seen = {}

    class Session:
        def __init__(self, path, sess_options=None, providers=None):
            seen["providers"] = providers

        def get_providers(self):
            return [p if isinstance(p, str) else p[0] for p in seen["providers"]]

        def get_inputs(self):
            return [type("I", (), {"name": "input", "type": "tensor(float)"})()]

    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort, "InferenceSession", Session)
    import edgemask.backends.tensorrt.cuda_api as cuda_api

    # A GPU build of onnxruntime on a machine where no CUDA device answers: CPU only, said in one line.
    monkeypatch.setattr(
        cuda_api, "cuda_device_problem", lambda binding_only=False: "cuda-python reports 0 CUDA devices"
    )
    r = runner_from_bundle(tiny_bundle, "onnxrt", "int8", device="jetson-orin-nano")
    r.activate()
    assert seen["providers"] == ["CPUExecutionProvider"] and len(r.provider_warnings) == 1
    assert (
        "no CUDA device answers (cuda-python reports 0 CUDA devices); running on CPUExecutionProvider"
        in r.provider_warnings[0]
    )
    r.deactivate()
    monkeypatch.setattr(cuda_api, "cuda_device_problem", lambda binding_only=False: None)  # a GPU answers
    r = runner_from_bundle(tiny_bundle, "onnxrt", "int8", device="jetson-orin-nano")
    r.activate()
    trt, cuda, cpu = seen["providers"]
    assert trt[0] == "TensorrtExecutionProvider" and trt[1]["trt_int8_enable"] and trt[1]["trt_engine_cache_enable"]
    assert trt[1]["trt_profile_max_shapes"].endswith("x3x32x32") and cuda[0] == "CUDAExecutionProvider"
    assert cpu == "CPUExecutionProvider"
    assert r.providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    r.deactivate()


def test_onnxrt_threads_from_config(tiny_bundle, monkeypatch):
    monkeypatch.setenv("EDGEMASK_NUM_THREADS", "1")
    with runner_from_bundle(tiny_bundle, "onnxrt") as r:
        d = r.describe()
    assert d["num_threads"] == 1 and d["providers"] == ["CPUExecutionProvider"] and d["graph_optimization"] == "all"


def test_torch_runner_pins_tf32_off_and_restores_threads(tiny_bundle, monkeypatch):
    torch = pytest.importorskip("torch", reason="the torch backend needs the train extra")

    before = torch.get_num_threads()
    monkeypatch.setenv("EDGEMASK_NUM_THREADS", "1")
    with runner_from_bundle(tiny_bundle, "torch") as r:
        d = r.describe()
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert d["tf32"] == {"matmul": False, "cudnn": False} and d["device"] == "cpu"
    with pytest.raises(BackendError, match="fp16 runs on CUDA only"):
        runner_from_bundle(tiny_bundle, "torch", "fp16", device="cpu")


def test_null_runner_is_seeded(tiny_bundle, images):
    x, _ = images(4)
    with runner_from_bundle(tiny_bundle, "null") as a, runner_from_bundle(tiny_bundle, "null", seed=1) as b:
        ya, yb = a.infer(x), b.infer(x)
    with runner_from_bundle(tiny_bundle, "null") as a2:
        np.testing.assert_array_equal(a2.infer(x), ya)
    assert not np.allclose(ya, yb)

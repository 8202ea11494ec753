"""TensorRT backend.

Two kinds of tests:

* Everywhere: the runner's own logic (version/GPU/device refusal, chunking a
  batch into the engine's profile, padding static DLA engines, both TensorRT
  APIs, buffer release, bundle lookup) driven by ``FakeRuntime`` — a small
  stand-in for the documented TensorRT runtime API whose "engine" computes
  known logits in numpy — and ``FakeCuda`` (numpy "device memory"). These
  check our code, not TensorRT.
* ``@pytest.mark.tensorrt``: a real engine built from the tiny bundle and run
  against ONNX Runtime; skipped where TensorRT is not importable.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgemask.backends.tensorrt.cuda_api import CudaApi, DeviceBuffer
from edgemask.backends.tensorrt.ort_providers import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    ort_execution_providers,
)
from edgemask.backends.tensorrt.runner import TensorRTRunner
from edgemask.bundle import BundleManifest, InputSpec, ModelEntry, Preprocessing
from edgemask.errors import BackendError, BundleError, NotAvailableError
from edgemask.utils.io import sha256_file

S, K = 32, 3
ENGINE_BYTES = b"FAKE-ENGINE"
# find_spec, not import: collecting this file must not load TensorRT, and the session fixtures the real
# tests use (a trained, exported bundle) should not even be built where they would be skipped.
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(
    not HAS_TRT,
    reason="TensorRT is not installed here (it ships with JetPack; on x86 pip install 'edgemask[tensorrt-cu12]')",
)
W = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.0], [0.5, 0.5, -2.0]], dtype=np.float32)


def reference_logits(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32).mean(axis=(2, 3)) @ W


class FakeCuda(CudaApi):
    name = "fake"

    def __init__(self, cc: str = "8.7"):
        self.cc, self.mem, self._next = cc, {}, 1 << 20
        self.active = False
        self.pinned_live = 0
        self.syncs = 0

    def activate(self):
        self.active = True

    def deactivate(self):
        self.active = False

    def device_count(self):
        return 1

    def compute_capability(self):
        return self.cc

    def device_name(self):
        return "FakeGPU"

    def alloc(self, nbytes):
        ptr = self._next
        self._next += nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return DeviceBuffer(ptr, nbytes, _free=lambda: self.mem.pop(ptr))

    def pinned_empty(self, shape, dtype):
        self.pinned_live += 1
        return np.zeros(shape, dtype)

    def free_pinned(self, arr):
        self.pinned_live -= 1

    def create_stream(self):
        return "stream"

    def stream_handle(self, stream):
        return 42

    def destroy_stream(self, stream):
        pass

    def htod_async(self, dst, src, stream):
        assert self.active and src.flags.c_contiguous
        b = src.reshape(-1).view(np.uint8)
        self.mem[dst.ptr][: b.size] = b

    def dtoh_async(self, dst, src, stream):
        flat = dst.reshape(-1).view(np.uint8)
        flat[:] = self.mem[src.ptr][: flat.size]

    def synchronize(self, stream):
        self.syncs += 1

    def htod(self, dst, src):
        self.htod_async(dst, np.ascontiguousarray(src), None)


def make_fake_trt(
    cuda: FakeCuda,
    version: str = "10.3.0.26",
    legacy: bool = False,
    batch: tuple[int, int, int] = (1, 4, 8),
    dla_cores: int = 0,
    classes: int = K,
    context_ok: bool = True,
    in_chw: tuple[int, int, int] = (3, S, S),
    out_tail: tuple | None = None,
    fn=None,
):
    """A TensorRT-shaped module: Runtime → engine → context that runs ``fn`` (default ``reference_logits``)."""
    log = {"shapes": [], "executes": 0}
    mode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    fn = fn or reference_logits
    shapes = {"input": (-1,) + tuple(in_chw), "logits": (-1,) + tuple(out_tail or (classes,))}

    class Context:
        def __init__(self):
            self.addr, self.shape = {}, None

        def _set(self, shape):
            if not batch[0] <= shape[0] <= batch[2]:
                return False
            self.shape = tuple(shape)
            log["shapes"].append(self.shape)
            return True

        def _run(self, in_ptr, out_ptr):
            n = self.shape[0]
            x = cuda.mem[in_ptr][: n * int(np.prod(in_chw)) * 4].view(np.float32).reshape(self.shape)
            y = fn(x).astype(np.float32)
            cuda.mem[out_ptr][: y.nbytes] = y.reshape(-1).view(np.uint8)
            log["executes"] += 1
            return True

        # TensorRT 8.5+ / 10 tensor API
        def set_input_shape(self, name, shape):
            assert name == "input"
            return self._set(shape)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 42
            return self._run(self.addr["input"], self.addr["logits"])

        # TensorRT 8.2 binding API
        def set_binding_shape(self, index, shape):
            assert index == 0
            return self._set(shape)

        def execute_async_v2(self, bindings, stream_handle):
            log["api"] = "v2"
            return self._run(bindings[0], bindings[1])

    class Engine:
        def create_execution_context(self):
            return Context() if context_ok else None  # TensorRT returns None when it cannot allocate

    class TensorEngine(Engine):
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, name):
            return mode.INPUT if name == "input" else mode.OUTPUT

        def get_tensor_dtype(self, name):
            return np.float32

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_profile_shape(self, name, profile):
            return [(b,) + tuple(in_chw) for b in batch]

    class BindingEngine(Engine):
        num_bindings = 2

        def get_binding_name(self, i):
            return ["input", "logits"][i]

        def binding_is_input(self, i):
            return i == 0

        def get_binding_dtype(self, i):
            return np.float32

        def get_binding_shape(self, i):
            return shapes[self.get_binding_name(i)]

        def get_profile_shape(self, profile, i):
            return [(b,) + tuple(in_chw) for b in batch]

    if legacy:
        BindingEngine.create_execution_context = lambda self: _strip(Context())

    class Runtime:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.DLA_core = -1  # TensorRT's default: no DLA core chosen

        def deserialize_cuda_engine(self, data):
            log["dla_core_at_deserialize"] = self.DLA_core
            if data != ENGINE_BYTES:
                return None
            return BindingEngine() if legacy else TensorEngine()

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    trt = SimpleNamespace(__version__=version, Logger=Logger, Runtime=Runtime, TensorIOMode=mode, nptype=lambda dt: dt)
    return trt, log


class _LegacyCtx:
    """Wraps a context so only the TensorRT 8.2 (binding) methods exist."""

    def __init__(self, ctx):
        self._ctx = ctx

    def set_binding_shape(self, i, shape):
        return self._ctx.set_binding_shape(i, shape)

    def execute_async_v2(self, bindings, stream_handle):
        return self._ctx.execute_async_v2(bindings, stream_handle)


def _strip(ctx):
    return _LegacyCtx(ctx)


def _entry(**kw):
    base = dict(
        file="model.jetson-orin-nano.fp16.trt10.3.engine",
        precision="fp16",
        format="tensorrt",
        device="jetson-orin-nano",
        tensorrt_version="10.3.0.26",
        compute_capability="8.7",
        extra={"requested_precision": "fp16", "dla_core": None},
    )
    base.update(kw)
    return ModelEntry(**base)


def _runner(tmp_path, cuda, trt, entry=None, device="jetson-orin-nano", name=None):
    entry = entry if entry is not None else _entry()
    path = tmp_path / (name or (entry.file if entry else "engine.engine"))
    path.write_bytes(ENGINE_BYTES)
    return TensorRTRunner(
        path,
        S,
        K,
        entry.precision if entry else "fp16",
        entry=entry or None,
        device=device,
        bundle_root=tmp_path,
        input_name="input",
        _trt=trt,
        _cuda=cuda,
    )


def _x(n, seed=0):
    return np.random.default_rng(seed).random((n, 3, S, S), dtype=np.float32)


def test_tensor_api_splits_batches_into_the_profile(tmp_path):
    cuda = FakeCuda()
    trt, log = make_fake_trt(cuda)
    with _runner(tmp_path, cuda, trt) as r:
        assert r.batch_range == (1, 4, 8) and cuda.active
        x = _x(20)
        np.testing.assert_allclose(r.infer(x), reference_logits(x), rtol=1e-6)
        assert [s[0] for s in log["shapes"]] == [8, 8, 4] and log["executes"] == 3
        u8 = (x[:2].transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)  # NHWC uint8 goes through the base class
        np.testing.assert_allclose(r.infer(u8), reference_logits(u8.transpose(0, 3, 1, 2) / 255.0), rtol=1e-5)
        d = r.describe()
        assert d["backend"] == "tensorrt" and d["tensorrt_version"] == "10.3.0.26" and d["emulated"] is False
    assert cuda.mem == {} and cuda.pinned_live == 0 and not cuda.active  # everything released


def _reference_head(x: np.ndarray) -> np.ndarray:
    """A detector-shaped output (N, 5, H/4, W/4): block means of the channels, then a fixed mix."""
    n, c, h, w = x.shape
    pooled = x.reshape(n, c, h // 4, 4, w // 4, 4).mean(axis=(3, 5))
    return np.concatenate([pooled, pooled[:, :2] * 2.0], axis=1)


def test_detector_engine_runs_rectangular_inputs_and_dense_heads(tmp_path):
    """A bundle's face detector: input (N, 3, 96, 128), output (N, 5, 24, 32); buffers and shapes follow shape_io."""
    cuda = FakeCuda()
    trt, log = make_fake_trt(cuda, in_chw=(3, 96, 128), out_tail=(5, 24, 32), fn=_reference_head)
    e = _entry(file="model.jetson-orin-nano.fp16.trt10.3.engine")
    path = tmp_path / "detector" / e.file
    path.parent.mkdir()
    path.write_bytes(ENGINE_BYTES)
    r = TensorRTRunner(
        path,
        96,
        1,
        "fp16",
        entry=e,
        device="jetson-orin-nano",
        bundle_root=tmp_path,
        input_name="input",
        _trt=trt,
        _cuda=cuda,
    ).shape_io((96, 128), (5, 24, 32))
    with r:
        x = np.random.default_rng(3).random((10, 3, 96, 128), dtype=np.float32)
        np.testing.assert_allclose(r.infer(x), _reference_head(x), rtol=1e-6)
        assert [s[0] for s in log["shapes"]] == [8, 2] and log["shapes"][0][1:] == (3, 96, 128)
        u8 = np.zeros((1, 96, 128, 3), np.uint8)
        assert r.infer(u8).shape == (1, 5, 24, 32)
    assert cuda.mem == {} and cuda.pinned_live == 0
    # a classifier engine in the detector's place is refused at activation, in one line
    cuda2 = FakeCuda()
    trt2, _ = make_fake_trt(cuda2)
    bad = TensorRTRunner(
        path,
        96,
        1,
        "fp16",
        entry=e,
        device="jetson-orin-nano",
        bundle_root=tmp_path,
        input_name="input",
        _trt=trt2,
        _cuda=cuda2,
    ).shape_io((96, 128), (5, 24, 32))
    with pytest.raises(BackendError, match=r"the bundle needs \(N, 3, 96, 128\)"):
        bad.activate()
    assert cuda2.mem == {} and not cuda2.active


def test_static_engine_pads_small_batches(tmp_path):
    cuda = FakeCuda()
    trt, log = make_fake_trt(cuda, batch=(4, 4, 4))  # a DLA engine is built static
    with _runner(tmp_path, cuda, trt) as r:
        x = _x(9, seed=1)
        out = r.infer(x)
        assert out.shape == (9, K)
        np.testing.assert_allclose(out, reference_logits(x), rtol=1e-6)
        assert [s[0] for s in log["shapes"]] == [4, 4, 4]


def test_tensorrt_82_binding_api(tmp_path):
    cuda = FakeCuda(cc="5.3")
    trt, log = make_fake_trt(cuda, version="8.2.1.8", legacy=True)
    e = _entry(
        file="model.jetson-nano.fp16.trt8.2.engine",
        device="jetson-nano",
        tensorrt_version="8.2.1.8",
        compute_capability="5.3",
    )
    with _runner(tmp_path, cuda, trt, e, device="jetson-nano") as r:
        x = _x(5)
        np.testing.assert_allclose(r.infer(x), reference_logits(x), rtol=1e-6)
    assert log["api"] == "v2"


@pytest.mark.parametrize(
    "entry_kw,cuda_cc,device,fragment",
    [
        (
            dict(tensorrt_version="8.6.2.3"),
            "8.7",
            "jetson-orin-nano",
            "built with TensorRT 8.6.2.3 but this machine has TensorRT 10.3.0.26",
        ),
        ({}, "7.2", "jetson-orin-nano", "compute capability 8.7 but this GPU is 7.2"),
        ({}, "8.7", "jetson-agx-orin", "built for device 'jetson-orin-nano' but this machine is 'jetson-agx-orin'"),
    ],
)
def test_mismatching_engines_are_refused_with_the_rebuild_command(tmp_path, entry_kw, cuda_cc, device, fragment):
    cuda = FakeCuda(cc=cuda_cc)
    trt, log = make_fake_trt(cuda)
    r = _runner(tmp_path, cuda, trt, _entry(**entry_kw), device=device)
    with pytest.raises(BackendError) as e:
        r.activate()
    msg = str(e.value)
    assert fragment in msg and "edgemask engine build" in msg and "\n" not in msg
    assert not r.active and cuda.mem == {} and not cuda.active and log["executes"] == 0


def test_undeserializable_engine_is_refused_and_released(tmp_path):
    cuda = FakeCuda()
    trt, _ = make_fake_trt(cuda)
    r = _runner(tmp_path, cuda, trt)
    r.engine_path.write_bytes(b"garbage from another TensorRT")
    with pytest.raises(BackendError, match="could not deserialize"):
        r.activate()
    assert not cuda.active and cuda.mem == {}


def test_bare_engine_file_checked_by_its_name(tmp_path):
    cuda = FakeCuda()
    trt, _ = make_fake_trt(cuda)
    bad = TensorRTRunner(tmp_path / "model.jetson-orin-nano.fp16.trt8.6.engine", S, K, _trt=trt, _cuda=cuda)
    bad.engine_path.write_bytes(ENGINE_BYTES)
    with pytest.raises(BackendError, match="built with TensorRT 8.6 but this machine has TensorRT 10.3.0.26"):
        bad.activate()
    odd = TensorRTRunner(tmp_path / "whatever.plan", S, K, _trt=trt, _cuda=cuda)
    odd.engine_path.write_bytes(ENGINE_BYTES)
    with pytest.raises(BackendError, match="TensorRT version is unknown"):
        odd.activate()
    ok = TensorRTRunner(tmp_path / "model.jetson-orin-nano.fp16.trt10.3.engine", S, K, _trt=trt, _cuda=cuda)
    ok.engine_path.write_bytes(ENGINE_BYTES)
    with ok:
        assert ok.infer(_x(2)).shape == (2, K)
    elsewhere = TensorRTRunner(ok.engine_path, S, K, device="jetson-agx-orin", _trt=trt, _cuda=cuda)
    with pytest.raises(BackendError, match="built for device 'jetson-orin-nano' but this machine is 'jetson-agx-orin'"):
        elsewhere.activate()


def test_engine_for_another_model_is_refused(tmp_path):
    cuda = FakeCuda()
    trt, _ = make_fake_trt(cuda)
    r = _runner(tmp_path, cuda, trt)
    r.input_size = 64
    with pytest.raises(BackendError, match=r"bundle needs \(N, 3, 64, 64\)"):
        r.activate()
    trt, _ = make_fake_trt(cuda, classes=5)
    with pytest.raises(BackendError, match="the bundle has 3 classes"):
        _runner(tmp_path, cuda, trt).activate()
    assert cuda.mem == {} and not cuda.active


def test_dla_engine_sets_the_runtime_dla_core_before_deserializing(tmp_path):
    cuda = FakeCuda()
    trt, log = make_fake_trt(cuda, batch=(8, 8, 8), dla_cores=2)
    e = _entry(
        file="model.jetson-agx-orin.int8.dla1.trt10.3.engine",
        device="jetson-agx-orin",
        precision="int8",
        extra={"requested_precision": "int8", "dla_core": 1},
    )
    with _runner(tmp_path, cuda, trt, e, device="jetson-agx-orin") as r:
        assert log["dla_core_at_deserialize"] == 1
        assert r.infer(_x(3)).shape == (3, K)
    trt, log = make_fake_trt(cuda)
    with _runner(tmp_path, cuda, trt):
        assert log["dla_core_at_deserialize"] == -1  # GPU engines leave the runtime alone
    # a bare DLA engine file: the core comes from its name; a device without that core refuses it
    trt, log = make_fake_trt(cuda, dla_cores=1)
    bare = TensorRTRunner(tmp_path / "model.jetson-agx-orin.int8.dla1.trt10.3.engine", S, K, _trt=trt, _cuda=cuda)
    with pytest.raises(BackendError, match="built for DLA core 1 but TensorRT sees 1 DLA core"):
        bare.activate()
    assert cuda.mem == {} and not cuda.active


def test_failed_execution_context_is_a_clear_error(tmp_path):
    cuda = FakeCuda()
    trt, _ = make_fake_trt(cuda, context_ok=False)
    with pytest.raises(BackendError, match="could not create an execution context"):
        _runner(tmp_path, cuda, trt).activate()
    assert cuda.mem == {} and cuda.pinned_live == 0 and not cuda.active


# --------------------------------------------------------------------------- bundle lookup


def _engine_bundle(root: Path, entries: list[ModelEntry]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (root / e.file).write_bytes(ENGINE_BYTES)
    m = BundleManifest(
        name="tiny",
        version=3,
        created="2026-01-01T00:00:00+00:00",
        arch="seed_cnn",
        arch_args={},
        class_names=["mask", "no_mask", "mask_incorrect"],
        input=InputSpec(shape=["N", 3, S, S]),
        preprocessing=Preprocessing(),
        models=entries,
        files={e.file: {"sha256": sha256_file(root / e.file), "bytes": len(ENGINE_BYTES)} for e in entries},
        producer={},
    )
    (root / "manifest.json").write_text(m.to_json())
    return root


def test_from_bundle_picks_the_engine_for_device_and_precision(tmp_path, monkeypatch):
    nano = _entry(
        file="model.jetson-nano.fp16.trt8.2.engine",
        device="jetson-nano",
        tensorrt_version="8.2.1.8",
        compute_capability="5.3",
        extra={"requested_precision": "int8", "dla_core": None},
    )
    orin_gpu = _entry(file="model.jetson-agx-orin.int8.trt10.3.engine", device="jetson-agx-orin", precision="int8")
    orin_dla = _entry(
        file="model.jetson-agx-orin.int8.dla0.trt10.3.engine",
        device="jetson-agx-orin",
        precision="int8",
        extra={"dla_core": 0},
    )
    b = _engine_bundle(tmp_path / "b", [nano, orin_dla, orin_gpu])
    r = TensorRTRunner.from_bundle(b, "int8", device="jetson-nano")
    assert r.engine_path.name == nano.file and r.precision == "fp16" and r.requested_precision == "int8"
    assert TensorRTRunner.from_bundle(b, "int8", device="jetson-agx-orin").engine_path.name == orin_gpu.file
    assert TensorRTRunner.from_bundle(b, "int8", device="jetson-agx-orin", dla_core=0).engine_path.name == orin_dla.file
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(NotAvailableError, match="TensorRT is not importable here"):
        TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano")  # nothing here could build or pick one
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0.26"))
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BundleError) as e:
        TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano")  # no engine_loader
    msg = str(e.value)
    assert "has no TensorRT engine for device 'jetson-orin-nano'" in msg and "jetson-nano:fp16" in msg
    assert "edgemask engine build" in msg and "--device jetson-orin-nano --precision fp16" in msg
    with pytest.raises(BackendError, match="precision 'int4'"):
        TensorRTRunner.from_bundle(b, "int4", device="jetson-nano")


def test_from_bundle_then_run_end_to_end_with_fakes(tmp_path):
    cuda = FakeCuda()
    trt, _ = make_fake_trt(cuda)
    b = _engine_bundle(tmp_path / "b", [_entry()])
    r = TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano")
    r._trt_override, r._cuda_override = trt, cuda
    with r:
        x = _x(3)
        np.testing.assert_allclose(r.infer(x), reference_logits(x), rtol=1e-6)


def test_registry_knows_the_backend_and_says_why_it_is_unavailable():
    from edgemask.backends import get_backend, list_backends

    assert "tensorrt" in list_backends()
    cls = get_backend("tensorrt")
    ok, why = cls.available()
    try:
        import tensorrt  # noqa: F401
    except Exception:
        assert not ok and "TensorRT" in why
    if cls.__name__ == "TensorRTRunner":
        assert cls.precisions == ("fp32", "fp16", "int8")


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, edgemask.backends.tensorrt, edgemask.backends.tensorrt.runner, edgemask.export.engine, "
        "edgemask.backends.tensorrt.builder, edgemask.backends.tensorrt.calibrator, edgemask.bundle.engines, "
        "edgemask.doctor, edgemask.devices; "
        "print(sorted(m for m in ('tensorrt','pycuda','cuda','cv2','torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# --------------------------------------------------------------------------- ONNX Runtime providers


def _gpu():
    return None  # "a CUDA device answers", for ort_execution_providers on this CPU-only machine


def test_ort_providers_from_profile(tmp_path, monkeypatch):
    import edgemask.backends.tensorrt.cuda_api as cuda_api

    monkeypatch.setattr(cuda_api, "cuda_device_problem", lambda binding_only=False: None)
    all_eps = [TRT_EP, CUDA_EP, CPU_EP]
    provs, warnings = ort_execution_providers(
        "jetson-orin-nano", "int8", input_size=S, available=all_eps, cache_dir=tmp_path, dla_core=0
    )
    name, opts = provs[0]
    assert name == TRT_EP and [p if isinstance(p, str) else p[0] for p in provs] == all_eps
    assert opts["trt_int8_enable"] and opts["trt_fp16_enable"] and opts["trt_engine_cache_enable"]
    assert opts["trt_engine_cache_path"] == str(tmp_path) and opts["trt_timing_cache_enable"]
    # the timing cache beside the engines, not in the working directory (ONNX Runtime's default)
    assert opts["trt_timing_cache_path"] == str(tmp_path)
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "engines"))
    default, _ = ort_execution_providers("jetson-orin-nano", "fp16", available=all_eps)
    assert (
        default[0][1]["trt_timing_cache_path"]
        == default[0][1]["trt_engine_cache_path"]
        == str(tmp_path / "engines" / "ort" / "jetson-orin-nano")
    )
    assert opts["trt_profile_max_shapes"] == f"input:32x3x{S}x{S}" and opts["trt_max_workspace_size"] == 512 << 20
    assert "trt_dla_enable" not in opts and any("no DLA" in w for w in warnings)
    nano, w = ort_execution_providers("jetson-nano", "int8", available=all_eps, cache_dir=tmp_path)
    assert nano[0][1]["trt_int8_enable"] is False and nano[0][1]["trt_fp16_enable"] and "no fast INT8" in w[0]
    agx, _ = ort_execution_providers("jetson-agx-orin", "fp16", available=all_eps, cache_dir=tmp_path, dla_core=1)
    assert agx[0][1]["trt_dla_enable"] and agx[0][1]["trt_dla_core"] == 1
    cpu, _ = ort_execution_providers("x86-cpu", "int8", available=all_eps)
    assert cpu == [CPU_EP]
    here, w = ort_execution_providers("x86-cuda", "fp16", available=[CPU_EP])
    assert here == [CPU_EP] and "onnxruntime-gpu" in w[0]


def test_ort_providers_without_a_gpu_are_cpu_only_with_one_warning(tmp_path):
    provs, w = ort_execution_providers(
        "jetson-orin-nano",
        "fp16",
        available=[TRT_EP, CUDA_EP, CPU_EP],
        cache_dir=tmp_path,
        gpu_problem=lambda: "no NVIDIA driver loaded",
    )
    assert provs == [CPU_EP] and len(w) == 1 and "\n" not in w[0]
    assert w[0] == (
        f"onnxruntime has {TRT_EP} and {CUDA_EP} but no CUDA device answers (no NVIDIA driver loaded); "
        f"running on {CPU_EP}"
    )
    assert not list(tmp_path.iterdir())  # nothing was set up for TensorRT
    gpu, _ = ort_execution_providers(
        "jetson-orin-nano", "fp16", available=[TRT_EP, CUDA_EP, CPU_EP], cache_dir=tmp_path, gpu_problem=_gpu
    )
    assert gpu[0][0] == TRT_EP


# --------------------------------------------------------------------------- real TensorRT


def _local_profile(tmp_path, monkeypatch) -> str:
    """A profile for whatever GPU/TensorRT this machine has (engines are built for 'here')."""
    import tensorrt as trt

    src = (Path(__file__).resolve().parents[2] / "devices" / "x86-cuda.toml").read_text()
    ver = ".".join(trt.__version__.split(".")[:2])
    text = src.replace('name = "x86-cuda"', 'name = "test-gpu"').replace('tensorrt = "10"', f'tensorrt = "{ver}"')
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "test-gpu.toml").write_text(text)
    monkeypatch.setenv("EDGEMASK_DEVICES_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    return "test-gpu"


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.slow
@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_real_engine_matches_onnxruntime(tiny_bundle, images, tmp_path, monkeypatch, precision):
    ok, why = TensorRTRunner.available()
    if not ok:
        pytest.skip(why)
    from edgemask.backends import runner_from_bundle
    from edgemask.bundle import load_bundle, verify_bundle
    from edgemask.export.engine import build_engine

    device = _local_profile(tmp_path, monkeypatch)
    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, b)
    res = build_engine(b, device, precision)
    assert verify_bundle(b) == []
    x = images
    with TensorRTRunner.from_bundle(load_bundle(b), precision, device=device) as trt_runner, runner_from_bundle(
        b, "onnxrt", "fp32"
    ) as ref:
        got, want = trt_runner.infer(x), ref.infer(x)
    assert got.shape == want.shape
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert agree >= (0.99 if precision == "fp16" else 0.95), (precision, res.entry.file, agree)


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_trt
def test_real_engine_from_other_version_is_refused(tmp_path):
    import tensorrt as trt

    entry = _entry(tensorrt_version="0.0.0", device="test-gpu")
    path = tmp_path / "model.test-gpu.fp16.trt0.0.engine"
    path.write_bytes(b"not an engine")
    r = TensorRTRunner(path, S, K, entry=entry, device="test-gpu")
    with pytest.raises(BackendError, match=f"this machine has TensorRT {trt.__version__}"):
        r.activate()


def test_first_use_engine_is_built_once_into_the_cache_and_reused(tmp_path, monkeypatch):
    """first_use_engine as engine_loader: the engine goes to the engine cache (bundle untouched) and is reused
    until TensorRT changes; the runner finds a cached engine without asking the loader."""
    import dataclasses
    import json
    import sys

    import edgemask.export.engine as engine_mod
    from edgemask.bundle.engines import engine_file_name

    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    b = _engine_bundle(tmp_path / "b", [_entry(device="jetson-nano", file="model.jetson-nano.fp16.trt8.2.engine")])
    before = sorted(p.name for p in b.iterdir())
    builds = []

    def fake_build(bundle_dir, device, precision, *, dla_core=None, out_dir=None, add_to_bundle=True, **kw):
        assert add_to_bundle is False and out_dir is not None
        version = sys.modules["tensorrt"].__version__
        e = _entry(
            device=device,
            precision=precision,
            tensorrt_version=version,
            file=engine_file_name(device, precision, version),
        )
        path = Path(out_dir) / e.file
        path.write_bytes(ENGINE_BYTES)
        (path.parent / (path.name + ".json")).write_text(json.dumps(dataclasses.asdict(e)))
        builds.append(version)
        return SimpleNamespace(path=path, entry=e)

    monkeypatch.setattr(engine_mod, "build_engine", fake_build)
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0.26"))
    load = engine_mod.first_use_engine
    r1 = TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano", engine_loader=load)
    r2 = TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano")  # found in the cache, no loader needed
    assert builds == ["10.3.0.26"] and r1.engine_path == r2.engine_path
    assert (tmp_path / "cache") in r1.engine_path.parents and sorted(p.name for p in b.iterdir()) == before
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.4.0.1"))  # JetPack upgrade
    with pytest.raises(BundleError, match="no TensorRT engine for device 'jetson-orin-nano'"):
        TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano")  # the cached one is for 10.3
    r3 = TensorRTRunner.from_bundle(b, "fp16", device="jetson-orin-nano", engine_loader=load)
    assert builds == ["10.3.0.26", "10.4.0.1"] and r3.entry.tensorrt_version == "10.4.0.1"

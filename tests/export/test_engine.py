"""Engine planning, naming, compatibility, calibration cache, trtexec command and bundle recording.

TensorRT is not installed here. The build path (engine_from_onnx/build_engine)
is driven against ``FakeTensorRT``, a recording stand-in for the documented
TensorRT Python API, so these tests check *our* calls and bookkeeping, not
TensorRT. Real builds are in tests/backends/test_tensorrt.py (marker tensorrt).
"""

from __future__ import annotations

import json
import shlex
import struct
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from trt_fixtures import make_bundle_fixture, onnx_models_fixture  # noqa: F401  (registers the fixtures)

from edgemask.bundle import ModelEntry, load_manifest, verify_bundle
from edgemask.errors import (
    BackendError,
    BundleError,
    ConfigError,
    ExportError,
    NotAvailableError,
)
from edgemask.export import engine as E

# --------------------------------------------------------------------------- names / versions


def test_engine_file_names_round_trip():
    name = E.engine_file_name("jetson-orin-nano", "int8", "10.3.0.26")
    assert name == "model.jetson-orin-nano.int8.trt10.3.engine"
    assert E.parse_engine_file_name(name) == {"device": "jetson-orin-nano", "precision": "int8", "dla_core": None,
                                              "tensorrt": "10.3"}
    dla = E.engine_file_name("jetson-agx-orin", "fp16", "8.6.2", dla_core=1)
    assert dla == "model.jetson-agx-orin.fp16.dla1.trt8.6.engine"
    assert E.parse_engine_file_name(dla)["dla_core"] == 1
    assert E.parse_engine_file_name("model.fp32.onnx") is None
    assert E.trt_version_code("8.5.2.2") == 8502 and E.trt_version_code("10.3.0") == 100300
    assert E.trt_version_code("8.6.1") == 8601 and E.trt_version_code("11.4.0") == 110400


def _entry(**kw):
    base = dict(file="model.jetson-orin-nano.fp16.trt10.3.engine", precision="fp16", format="tensorrt",
                device="jetson-orin-nano", tensorrt_version="10.3.0.26", compute_capability="8.7", extra={})
    base.update(kw)
    return ModelEntry(**base)


def test_check_engine_compatible_refuses_with_rebuild_command():
    E.check_engine_compatible(_entry(), "10.3.0.26", compute_capability="8.7", device="jetson-orin-nano")
    with pytest.raises(BackendError) as e:
        E.check_engine_compatible(_entry(tensorrt_version="8.6.2.3"), "10.3.0.26", bundle_dir="export/tiny")
    msg = str(e.value)
    assert "built with TensorRT 8.6.2.3" in msg and "this machine has TensorRT 10.3.0.26" in msg
    assert "edgemask engine build export/tiny --device jetson-orin-nano --precision fp16" in msg and "\n" not in msg
    with pytest.raises(BackendError, match="compute capability 8.7 but this GPU is 7.2"):
        E.check_engine_compatible(_entry(), "10.3.0.26", compute_capability="7.2")
    with pytest.raises(BackendError, match="built for device 'jetson-orin-nano' but this machine is 'jetson-agx-orin'"):
        E.check_engine_compatible(_entry(), "10.3.0.26", device="jetson-agx-orin")
    with pytest.raises(BackendError, match="--dla-core 1"):
        E.check_engine_compatible(_entry(tensorrt_version="10.2.0", extra={"dla_core": 1}), "10.3.0.26")
    with pytest.raises(BackendError, match="records no TensorRT version"):
        E.check_engine_compatible(_entry(tensorrt_version=None), "10.3.0.26")


def test_engine_entries_lookup_by_requested_precision():
    m = SimpleNamespace(models=[
        ModelEntry(file="model.fp32.onnx", precision="fp32", format="onnx"),
        _entry(file="a", device="jetson-nano", precision="fp16", extra={"requested_precision": "int8"}),
        _entry(file="b", device="jetson-agx-orin", precision="int8", extra={"dla_core": 0}),
        _entry(file="c", device="jetson-agx-orin", precision="int8", extra={}),
    ])
    assert [e.file for e in E.engine_entries(m, "jetson-nano", "int8")] == ["a"]
    assert [e.file for e in E.engine_entries(m, "jetson-agx-orin", "int8")] == ["c", "b"]  # GPU first
    assert E.engine_entries(m, "jetson-orin-nano", "fp16") == []


# --------------------------------------------------------------------------- calibration cache


def test_read_calibration_cache(tmp_path):
    p = tmp_path / "cache.txt"
    p.write_text(f"TRT-8502-EntropyCalibration2\ninput: {struct.pack('>f', 0.0078125).hex()}\n"
                 f"/features/Conv_output_0: {struct.pack('>f', 0.25).hex()}\n")
    c = E.read_calibration_cache(p)
    assert (c.version_code, c.algorithm) == (8502, "EntropyCalibration2")
    assert c.scales == {"input": 0.0078125, "/features/Conv_output_0": 0.25} and c.raw == p.read_bytes()
    for text, frag in [("", "is empty"), ("hello\n", "expected a header"),
                       ("TRT-8502-EntropyCalibration2\ninput 3c010a14\n", "line 2"),
                       (f"TRT-8502-EntropyCalibration2\ninput: {struct.pack('>f', -1.0).hex()}\n", "negative"),
                       ("TRT-8502-EntropyCalibration2\n", "no tensor scales")]:
        p.write_text(text)
        with pytest.raises(ExportError, match=frag):
            E.read_calibration_cache(p)
    with pytest.raises(ExportError, match="not found"):
        E.read_calibration_cache(tmp_path / "nope.txt")


class _Base:
    """Stands in for a TensorRT calibrator base class (pybind11 trampoline)."""

    def __init__(self):
        self.base_init_called = True


class _FakeCuda:
    def __init__(self):
        self.copies = []
        self.freed = 0

    def alloc(self, nbytes):
        def free():
            self.freed += 1

        return SimpleNamespace(ptr=4096, nbytes=nbytes, free=free)

    def htod(self, buf, arr):
        self.copies.append(arr.copy())


@pytest.mark.parametrize("algo,base", [("EntropyCalibration2", "IInt8EntropyCalibrator2"),
                                       ("MinMaxCalibration", "IInt8MinMaxCalibrator")])
def test_calibrator_reads_the_cache_and_matches_its_algorithm(tmp_path, algo, base):
    p = tmp_path / "cache.txt"
    p.write_text(f"TRT-8601-{algo}\ninput: {struct.pack('>f', 0.5).hex()}\n")
    trt = SimpleNamespace(**{name: type(name, (_Base,), {}) for name in
                             ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
                              "IInt8LegacyCalibrator")})
    batches = np.arange(2 * 4 * 3 * 2 * 2, dtype=np.float32).reshape(8, 3, 2, 2)
    logic = E.CalibratorLogic(E.read_calibration_cache(p), batches, batch_size=4, write_path=tmp_path / "out.txt")
    cuda = _FakeCuda()
    cal = E.make_calibrator(trt, logic, cuda)
    assert isinstance(cal, getattr(trt, base)) and cal.base_init_called
    # explicit-batch network: the calibration profile sets the batch (4 rows per get_batch), not this
    assert cal.get_batch_size() == 1
    assert cal.read_calibration_cache() == p.read_bytes()
    assert cal.get_batch(["input"]) == [4096] and cal.get_batch(["input"]) == [4096]
    assert cuda.freed == 0
    assert cal.get_batch(["input"]) is None  # 8 images = 2 batches of 4
    assert cuda.freed == 1  # the device buffer is released once TensorRT has had all batches
    np.testing.assert_array_equal(np.concatenate(cuda.copies), batches)
    cal.write_calibration_cache(memoryview(b"TRT-8601-X\n"))
    assert (tmp_path / "out.txt").read_bytes() == b"TRT-8601-X\n"
    no_data = E.make_calibrator(trt, E.CalibratorLogic(None), None)
    assert no_data.read_calibration_cache() is None and no_data.get_batch(["input"]) is None


def test_calibrator_presents_the_cache_under_the_running_tensorrt_version(tmp_path):
    p = tmp_path / "cache.txt"
    body = f"input: {struct.pack('>f', 0.5).hex()}\n/conv/Conv_output_0: {struct.pack('>f', 0.25).hex()}\n"
    p.write_text("TRT-8201-EntropyCalibration2\n" + body)
    cache = E.read_calibration_cache(p)
    shown = E.CalibratorLogic(cache, header_code=8502).read()
    assert shown == ("TRT-8502-EntropyCalibration2\n" + body).encode()
    assert E.CalibratorLogic(cache, header_code=8201).read() == p.read_bytes()
    assert E.CalibratorLogic(cache).read() == p.read_bytes()


# --------------------------------------------------------------------------- planning


def test_plan_orin_int8_uses_the_qdq_model(make_bundle):
    b = make_bundle()
    plan = E.plan_engine_build(b, "jetson-orin-nano", "int8")
    assert (plan.precision, plan.int8_mode, plan.source, plan.calibration_cache) == ("int8", "qdq", "model.int8.onnx", None)
    assert plan.engine_name == "model.jetson-orin-nano.int8.trt10.3.engine"
    assert plan.batch == (1, 8, 32) and plan.input_name == "input" and plan.input_chw == (3, 32, 32)
    assert plan.workspace_mib == 512 and plan.warnings == []
    json.dumps(plan.to_dict())


def test_plan_nano_int8_warns_and_builds_fp16_from_fp32(make_bundle):
    plan = E.plan_engine_build(make_bundle(), "jetson-nano", "int8")
    assert plan.precision == "fp16" and plan.int8_mode is None and plan.source == "model.fp32.onnx"
    assert plan.engine_name == "model.jetson-nano.fp16.trt8.2.engine"
    assert any("no fast INT8: building fp16 instead" in w for w in plan.warnings)
    assert any("opset 17" in w and "--opset 13" in w for w in plan.warnings)


def test_plan_orin_nano_dla_warns_and_builds_gpu(make_bundle):
    plan = E.plan_engine_build(make_bundle(), "jetson-orin-nano", "fp16", dla_core=0)
    assert plan.dla_core is None and plan.batch == (1, 8, 32)
    assert any("no DLA cores" in w for w in plan.warnings)


def test_plan_dla_engine_is_static(make_bundle):
    plan = E.plan_engine_build(make_bundle(), "jetson-agx-orin", "int8", dla_core=1)
    assert plan.dla_core == 1 and plan.batch == (8, 8, 8) and plan.engine_name.endswith(".dla1.trt10.3.engine")
    assert any("fixed batch" in w for w in plan.warnings)


def test_plan_int8_falls_back_to_calibrator_when_qdq_fails(make_bundle):
    b = make_bundle(int8="sym")  # int32 bias DQ: TensorRT rejects it
    plan = E.plan_engine_build(b, "jetson-xavier-nx", "int8")
    assert plan.int8_mode == "calibrator" and plan.source == "model.fp32.onnx"
    assert plan.calibration_cache == "calibration/cache.txt"
    assert any("fails the TensorRT QDQ check" in w for w in plan.warnings)
    with pytest.raises(ExportError, match="will not build as explicit INT8 on TensorRT 8.5") as e:
        E.plan_engine_build(b, "jetson-xavier-nx", "int8", int8_mode="qdq")
    assert "\n" not in str(e.value)
    nocache = make_bundle("nocache", int8="sym", cache=False)
    with pytest.raises(ExportError, match="will not build"):
        E.plan_engine_build(nocache, "jetson-xavier-nx", "int8")
    with pytest.raises(ExportError, match="no calibration cache"):
        E.plan_engine_build(make_bundle("nc2", cache=False), "jetson-xavier-nx", "int8", int8_mode="calibrator")


def test_plan_bad_input(make_bundle):
    b = make_bundle(int8=None)
    with pytest.raises(BundleError, match="no onnx model at precision 'int8'") as e:
        E.plan_engine_build(b, "jetson-orin-nano", "int8")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown device 'orin'"):
        E.plan_engine_build(b, "orin", "fp16")
    with pytest.raises(ConfigError, match="has no TensorRT"):
        E.plan_engine_build(b, "x86-cpu", "fp16")
    with pytest.raises(ConfigError, match="batch profile"):
        E.plan_engine_build(b, "jetson-orin-nano", "fp16", batch=(8, 1, 32))
    with pytest.raises(ConfigError, match="--int8-mode"):
        E.plan_engine_build(b, "jetson-orin-nano", "int8", int8_mode="magic")


# --------------------------------------------------------------------------- trtexec


def test_trtexec_command_tensorrt10(make_bundle):
    plan = E.plan_engine_build(make_bundle(), "jetson-orin-nano", "int8")
    cmd = E.engine_build_command(plan, timing_cache="/tmp/t.cache")
    args = shlex.split(cmd)
    assert args[0] == "trtexec" and args[1].endswith("/model.int8.onnx")
    assert args[2].endswith("/model.jetson-orin-nano.int8.trt10.3.engine")
    for a in ("--int8", "--fp16", "--minShapes=input:1x3x32x32", "--optShapes=input:8x3x32x32",
              "--maxShapes=input:32x3x32x32", "--memPoolSize=workspace:512", "--timingCacheFile=/tmp/t.cache",
              "--skipInference"):
        assert a in args
    assert not any(a.startswith("--workspace") or a.startswith("--calib") for a in args)


def test_trtexec_command_nano_and_dla_and_calibrator(make_bundle):
    b = make_bundle(int8="sym")
    nano = shlex.split(E.engine_build_command(E.plan_engine_build(b, "jetson-nano", "fp16")))
    assert "--workspace=256" in nano and "--buildOnly" in nano and "--fp16" in nano and "--int8" not in nano
    dla = shlex.split(E.engine_build_command(E.plan_engine_build(b, "jetson-agx-xavier", "int8", dla_core=0)))
    assert "--useDLACore=0" in dla and "--allowGPUFallback" in dla and "--minShapes=input:8x3x32x32" in dla
    assert any(a.startswith("--calib=") and a.endswith("calibration/cache.txt") for a in dla)
    assert "--memPoolSize=workspace:1024" in dla and "--buildOnly" in dla  # TensorRT 8.5


# --------------------------------------------------------------------------- bundle recording


def test_add_engine_to_bundle_updates_manifest_and_hashes(make_bundle, tmp_path):
    b = make_bundle(signed=True)
    eng = tmp_path / "built.engine"
    eng.write_bytes(b"engine-v1")
    old = _entry(file="model.jetson-orin-nano.fp16.trt10.2.engine", tensorrt_version="10.2.0.19")
    assert E.add_engine_to_bundle(b, eng, old)[0].startswith("bundle 'tiny' was signed")
    m = load_manifest(b)
    assert m.signature is None and m.model("fp16", "tensorrt", "jetson-orin-nano").tensorrt_version == "10.2.0.19"
    assert verify_bundle(b) == []
    eng.write_bytes(b"engine-v2")
    warnings = E.add_engine_to_bundle(b, eng, _entry())
    assert any("replaced model.jetson-orin-nano.fp16.trt10.2.engine" in w for w in warnings)
    m = load_manifest(b)
    engines = [x for x in m.models if x.format == "tensorrt"]
    assert [x.file for x in engines] == ["model.jetson-orin-nano.fp16.trt10.3.engine"]
    assert not (b / "model.jetson-orin-nano.fp16.trt10.2.engine").exists()
    assert (b / engines[0].file).read_bytes() == b"engine-v2" and verify_bundle(b) == []
    # a DLA engine of the same precision is a different engine, kept beside the GPU one
    E.add_engine_to_bundle(b, eng, _entry(file="model.jetson-orin-nano.fp16.dla0.trt10.3.engine", extra={"dla_core": 0}))
    assert len([x for x in load_manifest(b).models if x.format == "tensorrt"]) == 2
    with pytest.raises(ExportError, match="not found"):
        E.add_engine_to_bundle(b, tmp_path / "missing.engine", _entry())


def test_engine_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "c"))
    assert E.engine_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEMASK_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert E.engine_cache_dir() == tmp_path / "x" / "edgemask" / "engines"
    assert E.default_timing_cache("jetson-nano", "8.2.1.8").name == "jetson-nano.trt8.2.cache"


# --------------------------------------------------------------------------- build path against a fake TensorRT


class FakeTensorRT:
    """Records the calls engine_from_onnx makes; shaped after the TensorRT 8.x/10.x Python API."""

    def __init__(self, version: str = "10.3.0.26", parse_ok: bool = True, build_ok: bool = True,
                 timing_cache_accepted: bool = True):
        self.__version__ = version
        self.parse_ok, self.build_ok = parse_ok, build_ok
        self.timing_cache_accepted = timing_cache_accepted
        self.rec: dict = {"flags": set(), "profile": None}
        major_minor = tuple(int(x) for x in version.split(".")[:2])
        rec, fake = self.rec, self

        class Logger:
            WARNING, VERBOSE = 2, 4

            def __init__(self, level):
                rec["log_level"] = level

            def log(self, level, msg):
                rec.setdefault("log", []).append(msg)

        self.Logger = Logger
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
        self.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")
        for n in ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator"):
            setattr(self, n, type(n, (), {"__init__": lambda s: None}))

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return b"TIMING" + self.blob[:0] + b"-v" + str(len(rec.get("timing_loaded", b""))).encode()

        class Config:
            def __init__(self):
                self.int8_calibrator = None
                self.default_device_type = "GPU"
                self.DLA_core = -1

            def set_flag(self, f):
                rec["flags"].add(f)

            def add_optimization_profile(self, p):
                rec["profile"] = p.shapes

            def set_calibration_profile(self, p):
                rec["calibration_profile"] = p.shapes

            def create_timing_cache(self, blob):
                rec["timing_loaded"] = bytes(blob)
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                # TensorRT returns False for a cache from another device/version when ignore_mismatch is False
                rec["timing_ignore_mismatch"] = ignore_mismatch
                ok = fake.timing_cache_accepted or not cache.blob or ignore_mismatch
                rec.setdefault("timing_attached", []).append((bytes(cache.blob), ok))
                return ok


        if major_minor >= (8, 4):
            Config.set_memory_pool_limit = lambda self, pool, size: rec.__setitem__("workspace", (pool, size))
        else:
            Config.max_workspace_size = property(lambda s: 0, lambda s, v: rec.__setitem__("workspace", ("max", v)))
        self._Config = Config

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, mn, opt, mx):
                self.shapes[name] = (mn, opt, mx)

        class Network:
            num_inputs = 1

            def get_input(self, i):
                return SimpleNamespace(name="input")

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                c = Config()
                rec["config"] = c
                return c

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                if config.int8_calibrator is not None:  # TensorRT reads the cache first
                    rec["calibrator_cache"] = config.int8_calibrator.read_calibration_cache()
                rec["dla"] = (config.default_device_type, config.DLA_core)
                return b"FAKE-ENGINE:" + ",".join(sorted(rec["flags"])).encode() if fake.build_ok else None

        class Parser:
            num_errors = 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec["parsed"] = path
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (importDequantizeLinear): UNSUPPORTED_NODE\nmore"

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version="10.3.0.26", **kw):
        fake = FakeTensorRT(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install


def test_engine_from_onnx_tensorrt10_calls(fake_trt, onnx_models, tmp_path):
    trt = fake_trt("10.3.0.26")
    tc = tmp_path / "timing.cache"
    built = E.engine_from_onnx(onnx_models["trt"], tmp_path / "e.engine", precision="int8", input_name="input",
                               input_chw=(3, 32, 32), batch=(1, 4, 16), workspace_mib=64, int8_mode="qdq",
                               timing_cache=tc)
    r = trt.rec
    assert r["network_flags"] == 0  # TensorRT 10: no EXPLICIT_BATCH flag
    assert r["workspace"] == ("WORKSPACE", 64 << 20)
    assert r["flags"] == {"FP16", "INT8"} and r["config"].int8_calibrator is None
    assert r["profile"] == {"input": ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))}
    assert r["timing_loaded"] == b"" and r["timing_ignore_mismatch"] is False and tc.read_bytes().startswith(b"TIMING")
    assert (tmp_path / "e.engine").read_bytes() == b"FAKE-ENGINE:FP16,INT8"
    assert built.bytes == len(b"FAKE-ENGINE:FP16,INT8") and built.tensorrt_version == "10.3.0.26"
    E.engine_from_onnx(onnx_models["fp32"], tmp_path / "e2.engine", precision="fp16", input_name="input",
                       input_chw=(3, 32, 32), timing_cache=tc)
    assert trt.rec["timing_loaded"].startswith(b"TIMING")  # second build reuses the saved cache


def test_timing_cache_from_another_gpu_is_replaced_not_trusted(fake_trt, onnx_models, tmp_path):
    trt = fake_trt("10.3.0.26", timing_cache_accepted=False)
    tc = tmp_path / "timing.cache"
    tc.write_bytes(b"CACHE-FROM-ANOTHER-GPU")
    built = E.engine_from_onnx(onnx_models["fp32"], tmp_path / "e.engine", precision="fp16", input_name="input",
                               input_chw=(3, 32, 32), timing_cache=tc)
    # the refused cache was offered with ignore_mismatch=False, then a fresh empty one was attached
    assert trt.rec["timing_attached"] == [(b"CACHE-FROM-ANOTHER-GPU", False), (b"", True)]
    assert any("another GPU or TensorRT" in w for w in built.warnings)
    assert tc.read_bytes().startswith(b"TIMING")  # overwritten with this build's cache


def test_engine_from_onnx_tensorrt82_and_dla(fake_trt, onnx_models, tmp_path):
    trt = fake_trt("8.2.1.8")
    E.engine_from_onnx(onnx_models["fp32"], tmp_path / "n.engine", precision="fp16", input_name="input",
                       input_chw=(3, 32, 32), workspace_mib=256)
    assert trt.rec["network_flags"] == 1 and trt.rec["workspace"] == ("max", 256 << 20)  # pre-8.4 API
    trt = fake_trt("8.5.2.2")
    E.engine_from_onnx(onnx_models["fp32"], tmp_path / "d.engine", precision="fp16", input_name="input",
                       input_chw=(3, 32, 32), batch=(8, 8, 8), dla_core=1)
    assert trt.rec["dla"] == ("DLA", 1) and "GPU_FALLBACK" in trt.rec["flags"]


def test_engine_from_onnx_calibrator_reads_bundle_cache(fake_trt, make_bundle, tmp_path):
    trt = fake_trt("8.5.2.2")
    b = make_bundle(int8="sym")
    E.engine_from_onnx(b / "model.fp32.onnx", tmp_path / "c.engine", precision="int8", input_name="input",
                       input_chw=(3, 32, 32), int8_mode="calibrator", calibration_cache=b / "calibration/cache.txt")
    assert trt.rec["calibrator_cache"] == (b / "calibration/cache.txt").read_bytes()
    assert trt.rec["calibration_profile"]["input"][1] == (8, 3, 32, 32)


def test_engine_from_onnx_failures_are_one_line(fake_trt, onnx_models, tmp_path):
    fake_trt(parse_ok=False)
    with pytest.raises(ExportError, match="could not parse fp32.onnx: In node 3") as e:
        E.engine_from_onnx(onnx_models["fp32"], tmp_path / "x.engine", precision="fp16", input_name="input",
                           input_chw=(3, 32, 32))
    assert "\n" not in str(e.value)
    fake_trt(build_ok=False)
    with pytest.raises(ExportError, match="calibration cache did not match"):
        E.engine_from_onnx(onnx_models["fp32"], tmp_path / "x.engine", precision="int8", input_name="input",
                           input_chw=(3, 32, 32), int8_mode="calibrator")
    assert not (tmp_path / "x.engine").exists()
    with pytest.raises(ExportError, match="has no input 'images'"):
        fake_trt()
        E.engine_from_onnx(onnx_models["fp32"], tmp_path / "x.engine", precision="fp16", input_name="images",
                           input_chw=(3, 32, 32))


def test_build_engine_records_it_in_the_bundle(fake_trt, make_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    fake_trt("10.3.0.26")
    b = make_bundle()
    r = E.build_engine(b, "jetson-orin-nano", "int8")
    e = load_manifest(b).model("int8", "tensorrt", "jetson-orin-nano")
    assert e.file == "model.jetson-orin-nano.int8.trt10.3.engine" == r.path.name
    assert (e.tensorrt_version, e.compute_capability, e.device) == ("10.3.0.26", "8.7", "jetson-orin-nano")
    assert e.extra["int8_mode"] == "qdq" and e.extra["source"] == "model.int8.onnx"
    assert e.extra["batch"] == {"min": 1, "opt": 8, "max": 32} and e.quantization["mode"] == "qdq"
    assert verify_bundle(b) == [] and (tmp_path / "cache" / "timing" / "jetson-orin-nano.trt10.3.cache").is_file()
    assert any("compute capability" in w for w in r.warnings)  # no pycuda here to read it
    assert not list(b.glob(".*.building"))
    # the other precision lands beside it
    E.build_engine(b, "jetson-orin-nano", "fp16", timing_cache=False)
    assert len([m for m in load_manifest(b).models if m.format == "tensorrt"]) == 2


def test_build_engine_refuses_a_machine_that_is_not_the_device(fake_trt, make_bundle):
    fake_trt("10.3.0.26")
    with pytest.raises(ExportError, match="this machine has TensorRT 10.3.0.26 but device 'jetson-xavier-nx' runs "
                                          "TensorRT 8.5") as e:
        E.build_engine(make_bundle(), "jetson-xavier-nx", "fp16")
    assert "build on the device itself" in str(e.value)


def test_build_engines_for_bundle_nano_builds_once(fake_trt, make_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    fake_trt("8.2.1.8")
    b = make_bundle()
    results = E.build_engines_for_bundle(b, "jetson-nano", ["fp16", "int8"])
    assert len(results) == 1 and results[0].entry.precision == "fp16"
    assert any("int8 request served by the fp16 engine" in w for w in results[0].warnings)
    assert results[0].entry.file == "model.jetson-nano.fp16.trt8.2.engine"


def test_build_engine_without_tensorrt_is_a_clear_error(make_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes 'import tensorrt' raise ImportError
    with pytest.raises(NotAvailableError, match="TensorRT is not importable here") as e:
        E.build_engine(make_bundle(), "jetson-orin-nano", "fp16")
    assert "--print-trtexec" in str(e.value)
    seen = []
    with pytest.raises(NotAvailableError):  # the plan's warnings come first, then the refusal
        E.build_engine(make_bundle("nano"), "jetson-nano", "int8", on_warning=seen.append)
    assert any("no fast INT8: building fp16 instead" in w for w in seen)
    with pytest.raises(BundleError, match="no onnx model at precision 'int8'"):  # bundle errors before TensorRT
        E.build_engine(make_bundle("no-int8", int8=None), "jetson-orin-nano", "int8")
    with pytest.raises(ConfigError, match="out_dir and add_to_bundle"):
        E.build_engine(make_bundle("both"), "jetson-orin-nano", "fp16", out_dir="x", add_to_bundle=True)


def test_build_engines_for_bundle_plans_everything_before_tensorrt(make_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    seen = []
    with pytest.raises(NotAvailableError, match="TensorRT is not importable here"):
        E.build_engines_for_bundle(make_bundle(), "jetson-nano", ["fp16", "int8"], on_warning=seen.append)
    assert any("jetson-nano (compute capability 5.3) has no fast INT8" in w for w in seen)
    assert any("--opset 13" in w for w in seen) and len(seen) == len(set(seen))  # each warning once
    seen.clear()
    with pytest.raises(NotAvailableError):
        E.build_engines_for_bundle(make_bundle("orin"), "jetson-orin-nano", ["int8"], dla_core=0,
                                   on_warning=seen.append)
    assert any("jetson-orin-nano has no DLA cores: building a GPU engine instead" in w for w in seen)
    with pytest.raises(BundleError, match="no onnx model at precision 'int8'"):
        E.build_engines_for_bundle(make_bundle("n8", int8=None), "jetson-orin-nano", ["fp16", "int8"])
    with pytest.raises(ConfigError, match="unknown device 'jetson-nanoo'"):
        E.build_engines_for_bundle(make_bundle("x"), "jetson-nanoo")


def test_build_engine_names_the_engine_after_the_tensorrt_that_built_it(fake_trt, make_bundle, monkeypatch, tmp_path):
    """x86-cuda pins only TensorRT "10": the file name and manifest carry the real 10.x."""
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    fake_trt("10.7.0.23")
    b = make_bundle()
    r = E.build_engine(b, "x86-cuda", "fp16", timing_cache=False)
    assert r.entry.file == "model.x86-cuda.fp16.trt10.7.engine" and r.entry.tensorrt_version == "10.7.0.23"
    assert load_manifest(b).model("fp16", "tensorrt", "x86-cuda").file == r.entry.file
    assert not list(b.glob(".*.building"))


# --------------------------------------------------------------------------- CLI


def _app():
    import typer

    from edgemask.cli import engine as engine_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    engine_cli.register(app)
    return app


def test_engine_build_cli(make_bundle, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    b = make_bundle()
    r = CliRunner()
    res = r.invoke(_app(), ["engine", "build", str(b), "--device", "jetson-nano", "--precision", "int8", "--print-trtexec"])
    assert res.exit_code == 0, res.output
    assert "trtexec --onnx=" in res.output and "--fp16" in res.output and "no fast INT8" in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "--device", "jetson-nano", "-p", "int8"])
    assert res.exit_code == 1 and "error: TensorRT is not importable here" in res.output
    assert res.output.index("no fast INT8") < res.output.index("error:") and "Traceback" not in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "--device", "jetson-nanoo", "--print-trtexec"])
    assert res.exit_code == 1 and "unknown device 'jetson-nanoo'" in res.output and "Traceback" not in res.output
    res = r.invoke(_app(), ["engine", "build", str(make_bundle("n8", int8=None)), "-d", "jetson-orin-nano",
                            "-p", "int8", "--print-trtexec"])
    assert res.exit_code == 1 and "no onnx model at precision 'int8'" in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "-d", "jetson-orin-nano", "--batch", "1,8", "--print-trtexec"])
    assert res.exit_code == 1 and "MIN,OPT,MAX" in res.output


# --------------------------------------------------------------------------- the bundle's face detector


@pytest.mark.slow  # the session detector bundle (trained + exported once for all detector tests)
def test_detector_engine_plan_and_build_through_the_same_builder(fake_trt, detector_bundle, monkeypatch, tmp_path):
    import shutil

    from edgemask.backends.tensorrt.runner import TensorRTRunner
    from edgemask.bundle import load_bundle

    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    b = shutil.copytree(detector_bundle, tmp_path / "b")
    plan = E.plan_engine_build(b, "jetson-orin-nano", "int8", part="detector")
    assert plan.part == "detector" and plan.source == "detector/model.int8.onnx" and plan.int8_mode == "qdq"
    assert plan.input_chw == (3, 96, 128) and plan.engine_name == "detector/model.jetson-orin-nano.int8.trt10.3.engine"
    calib = E.plan_engine_build(b, "jetson-orin-nano", "int8", part="detector", int8_mode="calibrator")
    assert calib.source == "detector/model.fp32.onnx" and calib.calibration_cache == "detector/calibration/cache.txt"
    cmd = E.engine_build_command(plan)
    assert "detector/model.int8.onnx" in cmd and "input:8x3x96x128" in cmd
    assert E.bundle_parts(b) == ["classifier", "detector"]

    trt = fake_trt("10.3.0.26")
    results = E.build_engines_for_bundle(b, "jetson-orin-nano", ["int8"], timing_cache=False)
    assert [r.plan.part for r in results] == ["classifier", "detector"]
    assert trt.rec["parsed"].endswith("detector/model.int8.onnx")  # the detector's engine was built last
    m = load_manifest(b)
    det_engine = m.detector.model("int8", "tensorrt", "jetson-orin-nano")
    assert det_engine.file == "detector/model.jetson-orin-nano.int8.trt10.3.engine"
    assert det_engine.extra["source"] == "detector/model.int8.onnx"
    assert m.model("int8", "tensorrt", "jetson-orin-nano").file == "model.jetson-orin-nano.int8.trt10.3.engine"
    assert verify_bundle(b) == [] and not list((b / "detector").glob(".*.building"))
    # the runner finds the detector's engine (not the classifier's) in the detector view
    r = TensorRTRunner.from_bundle(load_bundle(b).detector_view(), "int8", device="jetson-orin-nano",
                                   build_if_missing=False)
    assert r.engine_path.name == "model.jetson-orin-nano.int8.trt10.3.engine" and r.engine_path.parent.name == "detector"
    assert r.input_hw == (96, 128) and r.output_tail == (5, 24, 32)
    # rebuilding replaces the detector's engine in place; the classifier's stays
    E.build_engine(b, "jetson-orin-nano", "int8", part="detector", timing_cache=False)
    m = load_manifest(b)
    assert len([e for e in m.detector.models if e.format == "tensorrt"]) == 1
    assert len([e for e in m.models if e.format == "tensorrt"]) == 1 and verify_bundle(b) == []


def test_detector_part_of_a_bundle_without_detector_is_one_line(make_bundle):
    with pytest.raises(BundleError, match="has no face detector"):
        E.plan_engine_build(make_bundle(), "jetson-orin-nano", "fp16", part="detector")
    assert E.bundle_parts(make_bundle("nodet")) == ["classifier"]
    with pytest.raises(ConfigError, match="--model 'everything' is unknown"):
        E.bundle_parts(make_bundle("x"), "everything")


@pytest.mark.slow
def test_engine_build_cli_prints_both_trtexec_commands(detector_bundle, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    res = CliRunner().invoke(_app(), ["engine", "build", str(detector_bundle), "--device", "jetson-orin-nano",
                                      "--precision", "fp16", "--print-trtexec"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("trtexec")]
    assert len(lines) == 2 and "model.fp32.onnx" in lines[0] and "detector/model.fp32.onnx" in lines[1]
    res = CliRunner().invoke(_app(), ["engine", "build", str(detector_bundle), "--device", "jetson-orin-nano",
                                      "--model", "detector"])
    assert res.exit_code == 1 and "TensorRT is not importable here" in res.output and "Traceback" not in res.output

"""The TensorRT engine builder and the legacy INT8 calibrator, driven against a fake TensorRT.

TensorRT is not installed here. ``engine_from_onnx`` is driven against
``FakeTensorRT`` (tests/fake_tensorrt.py), a recording stand-in shaped after
the documented Python API of each TensorRT version, so these tests check our
calls, not TensorRT: parsing, building and inference are out of their reach
(tests marked ``tensorrt`` do those on a machine with TensorRT and a GPU).
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

from edgemask.backends.tensorrt import builder as B
from edgemask.backends.tensorrt import calibrator as C
from edgemask.errors import ExportError


@pytest.fixture
def onnx_files(tmp_path):
    """Stand-ins for the bundle's ONNX files: the fake parser only records the path it is given."""
    out = {}
    for name in ("fp32", "fp16", "trt"):
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(b"not parsed by the fake")
        out[name] = p
    cache = tmp_path / "cache.txt"
    cache.write_text(
        f"TRT-8502-EntropyCalibration2\ninput: {struct.pack('>f', 0.05).hex()}\n"
        f"logits: {struct.pack('>f', 0.1).hex()}\n"
    )
    out["cache"] = cache
    return out


def test_read_calibration_cache(tmp_path):
    p = tmp_path / "cache.txt"
    p.write_text(
        f"TRT-8502-EntropyCalibration2\ninput: {struct.pack('>f', 0.0078125).hex()}\n"
        f"/features/Conv_output_0: {struct.pack('>f', 0.25).hex()}\n"
    )
    c = C.read_calibration_cache(p)
    assert (c.version_code, c.algorithm) == (8502, "EntropyCalibration2")
    assert c.scales == {"input": 0.0078125, "/features/Conv_output_0": 0.25} and c.raw == p.read_bytes()
    for text, frag in [
        ("", "is empty"),
        ("hello\n", "expected a header"),
        ("TRT-8502-EntropyCalibration2\ninput 3c010a14\n", "line 2"),
        (f"TRT-8502-EntropyCalibration2\ninput: {struct.pack('>f', -1.0).hex()}\n", "negative"),
        ("TRT-8502-EntropyCalibration2\n", "no tensor scales"),
    ]:
        p.write_text(text)
        with pytest.raises(ExportError, match=frag):
            C.read_calibration_cache(p)
    with pytest.raises(ExportError, match="not found"):
        C.read_calibration_cache(tmp_path / "nope.txt")


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


@pytest.mark.parametrize(
    "algo,base", [("EntropyCalibration2", "IInt8EntropyCalibrator2"), ("MinMaxCalibration", "IInt8MinMaxCalibrator")]
)
def test_calibrator_reads_the_cache_and_matches_its_algorithm(tmp_path, algo, base):
    p = tmp_path / "cache.txt"
    p.write_text(f"TRT-8601-{algo}\ninput: {struct.pack('>f', 0.5).hex()}\n")
    trt = SimpleNamespace(
        **{
            name: type(name, (_Base,), {})
            for name in (
                "IInt8EntropyCalibrator2",
                "IInt8EntropyCalibrator",
                "IInt8MinMaxCalibrator",
                "IInt8LegacyCalibrator",
            )
        }
    )
    batches = np.arange(2 * 4 * 3 * 2 * 2, dtype=np.float32).reshape(8, 3, 2, 2)
    logic = C.CalibratorLogic(C.read_calibration_cache(p), batches, batch_size=4, write_path=tmp_path / "out.txt")
    cuda = _FakeCuda()
    cal = C.make_calibrator(trt, logic, cuda)
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
    no_data = C.make_calibrator(trt, C.CalibratorLogic(None), None)
    assert no_data.read_calibration_cache() is None and no_data.get_batch(["input"]) is None


def test_calibrator_presents_the_cache_under_the_running_tensorrt_version(tmp_path):
    p = tmp_path / "cache.txt"
    body = f"input: {struct.pack('>f', 0.5).hex()}\n/conv/Conv_output_0: {struct.pack('>f', 0.25).hex()}\n"
    p.write_text("TRT-8201-EntropyCalibration2\n" + body)
    cache = C.read_calibration_cache(p)
    shown = C.CalibratorLogic(cache, header_code=8502).read()
    assert shown == ("TRT-8502-EntropyCalibration2\n" + body).encode()
    assert C.CalibratorLogic(cache, header_code=8201).read() == p.read_bytes()
    assert C.CalibratorLogic(cache).read() == p.read_bytes()


def test_engine_from_onnx_tensorrt10_calls(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("10.3.0.26")
    tc = tmp_path / "timing.cache"
    built = B.engine_from_onnx(
        onnx_files["trt"],
        tmp_path / "e.engine",
        precision="int8",
        input_name="input",
        input_chw=(3, 32, 32),
        batch=(1, 4, 16),
        workspace_mib=64,
        int8_mode="qdq",
        timing_cache=tc,
    )
    r = trt.rec
    assert r["network_flags"] == 0  # TensorRT 10: no EXPLICIT_BATCH flag
    assert r["workspace"] == ("WORKSPACE", 64 << 20)
    assert r["flags"] == {"FP16", "INT8"} and r["config"].int8_calibrator is None
    assert r["profile"] == {"input": ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))}
    assert r["timing_loaded"] == b"" and r["timing_ignore_mismatch"] is False and tc.read_bytes().startswith(b"TIMING")
    assert (tmp_path / "e.engine").read_bytes() == b"FAKE-ENGINE:FP16,INT8"
    assert built.bytes == len(b"FAKE-ENGINE:FP16,INT8") and built.tensorrt_version == "10.3.0.26"
    B.engine_from_onnx(
        onnx_files["fp32"],
        tmp_path / "e2.engine",
        precision="fp16",
        input_name="input",
        input_chw=(3, 32, 32),
        timing_cache=tc,
    )
    assert trt.rec["timing_loaded"].startswith(b"TIMING")  # second build reuses the saved cache


def test_timing_cache_from_another_gpu_is_replaced_not_trusted(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("10.3.0.26", timing_cache_accepted=False)
    tc = tmp_path / "timing.cache"
    tc.write_bytes(b"CACHE-FROM-ANOTHER-GPU")
    built = B.engine_from_onnx(
        onnx_files["fp32"],
        tmp_path / "e.engine",
        precision="fp16",
        input_name="input",
        input_chw=(3, 32, 32),
        timing_cache=tc,
    )
    # the refused cache was offered with ignore_mismatch=False, then a fresh empty one was attached
    assert trt.rec["timing_attached"] == [(b"CACHE-FROM-ANOTHER-GPU", False), (b"", True)]
    assert any("another GPU or TensorRT" in w for w in built.warnings)
    assert tc.read_bytes().startswith(b"TIMING")  # overwritten with this build's cache


def test_engine_from_onnx_tensorrt82_and_dla(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("8.2.1.8")
    B.engine_from_onnx(
        onnx_files["fp32"],
        tmp_path / "n.engine",
        precision="fp16",
        input_name="input",
        input_chw=(3, 32, 32),
        workspace_mib=256,
    )
    assert trt.rec["network_flags"] == 1 and trt.rec["workspace"] == ("max", 256 << 20)  # pre-8.4 API
    trt = fake_trt("8.5.2.2")
    B.engine_from_onnx(
        onnx_files["fp32"],
        tmp_path / "d.engine",
        precision="fp16",
        input_name="input",
        input_chw=(3, 32, 32),
        batch=(8, 8, 8),
        dla_core=1,
    )
    assert trt.rec["dla"] == ("DLA", 1) and "GPU_FALLBACK" in trt.rec["flags"]


def test_engine_from_onnx_calibrator_reads_bundle_cache(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("8.5.2.2")
    B.engine_from_onnx(
        onnx_files["fp32"],
        tmp_path / "c.engine",
        precision="int8",
        input_name="input",
        input_chw=(3, 32, 32),
        int8_mode="calibrator",
        calibration_cache=onnx_files["cache"],
    )
    assert trt.rec["calibrator_cache"] == onnx_files["cache"].read_bytes()
    assert trt.rec["calibration_profile"]["input"][1] == (8, 3, 32, 32)


def test_engine_from_onnx_failures_are_one_line(fake_trt, onnx_files, tmp_path):
    fake_trt(parse_ok=False)
    with pytest.raises(ExportError, match="could not parse fp32.onnx: In node 3") as e:
        B.engine_from_onnx(
            onnx_files["fp32"], tmp_path / "x.engine", precision="fp16", input_name="input", input_chw=(3, 32, 32)
        )
    assert "\n" not in str(e.value)
    fake_trt(build_ok=False)
    with pytest.raises(ExportError, match="calibration cache did not match"):
        B.engine_from_onnx(
            onnx_files["fp32"],
            tmp_path / "x.engine",
            precision="int8",
            input_name="input",
            input_chw=(3, 32, 32),
            int8_mode="calibrator",
        )
    assert not (tmp_path / "x.engine").exists()
    with pytest.raises(ExportError, match="has no input 'images'"):
        fake_trt()
        B.engine_from_onnx(
            onnx_files["fp32"], tmp_path / "x.engine", precision="fp16", input_name="images", input_chw=(3, 32, 32)
        )


# --------------------------------------------------------------------------- TensorRT 11: strongly typed


def test_engine_from_onnx_tensorrt11_builds_strongly_typed_without_precision_flags(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("11.4.0.106")
    B.engine_from_onnx(
        onnx_files["fp16"], tmp_path / "h.engine", precision="fp16", input_name="input", input_chw=(3, 32, 32)
    )
    assert trt.rec["network_flags"] == 1 << 0  # STRONGLY_TYPED is 0 in 11's enum
    assert trt.rec["flags"] == set() and trt.rec["parsed"] == str(onnx_files["fp16"])
    trt = fake_trt("11.4.0.106")
    B.engine_from_onnx(
        onnx_files["trt"],
        tmp_path / "q.engine",
        precision="int8",
        input_name="input",
        input_chw=(3, 32, 32),
        int8_mode="qdq",
        dla_core=0,
    )
    assert trt.rec["flags"] == {"GPU_FALLBACK"} and trt.rec["network_flags"] == 1  # no FP16/INT8: they are gone


def test_engine_from_onnx_tensorrt10_stays_weakly_typed(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("10.16.1.11")  # 10.x has STRONGLY_TYPED too, but builds the fp32 model with the FP16 flag
    B.engine_from_onnx(
        onnx_files["fp32"], tmp_path / "h.engine", precision="fp16", input_name="input", input_chw=(3, 32, 32)
    )
    assert trt.rec["network_flags"] == 0 and trt.rec["flags"] == {"FP16"}


def test_tensorrt11_refuses_the_calibrator_in_one_line(fake_trt, onnx_files, tmp_path):
    fake_trt("11.4.0.106")
    with pytest.raises(ExportError, match="has no INT8 calibrator .removed in 11.; build int8 from the QDQ") as e:
        B.engine_from_onnx(
            onnx_files["fp32"],
            tmp_path / "c.engine",
            precision="int8",
            input_name="input",
            input_chw=(3, 32, 32),
            int8_mode="calibrator",
            calibration_cache=onnx_files["cache"],
        )
    assert "\n" not in str(e.value) and not (tmp_path / "c.engine").exists()


def test_legacy_calibration_is_detected_by_what_the_module_has(fake_trt):
    assert C.has_legacy_calibration(fake_trt("8.6.1")) and C.has_legacy_calibration(fake_trt("10.3.0"))
    assert not C.has_legacy_calibration(fake_trt("11.4.0.106"))


# --------------------------------------------------------------------------- TensorRT without a GPU


def test_tensorrt_without_a_gpu_is_one_line_before_any_work(fake_trt, onnx_files, tmp_path, monkeypatch):
    import edgemask.backends.tensorrt.cuda_api as cuda_api
    from edgemask.errors import NotAvailableError

    monkeypatch.setattr(cuda_api, "get_cuda_api", _no_binding)
    trt = fake_trt("10.3.0", builder_fails=True)
    with pytest.raises(NotAvailableError) as e:
        B.engine_from_onnx(
            onnx_files["fp32"], tmp_path / "x.engine", precision="fp16", input_name="input", input_chw=(3, 32, 32)
        )
    msg = str(e.value)
    assert msg.startswith("TensorRT 10.3.0 is installed but no CUDA device answers (trt.Builder failed: pybind11")
    assert "--print-trtexec" in msg and "\n" not in msg
    assert "parsed" not in trt.rec and not (tmp_path / "x.engine").exists()


def test_a_cuda_binding_that_sees_no_device_is_asked_before_tensorrt(fake_trt, monkeypatch):
    import edgemask.backends.tensorrt.cuda_api as cuda_api
    from edgemask.errors import BackendError, NotAvailableError

    class NoDevice:
        name = "cuda-python"

        def __init__(self, count=0, error=None):
            self.count, self.error = count, error

        def device_count(self):
            if self.error:
                raise self.error
            return self.count

    trt = fake_trt("11.4.0.106")
    monkeypatch.setattr(cuda_api, "get_cuda_api", lambda prefer=None: NoDevice())
    with pytest.raises(NotAvailableError, match=r"no CUDA device answers \(cuda-python reports 0 CUDA devices\)"):
        B.require_build_gpu()
    assert trt.rec["builders"] == 0  # the binding already said no: no Builder was made
    err = BackendError("CUDA call failed: cudaErrorInsufficientDriver; check 'edgemask doctor'")
    monkeypatch.setattr(cuda_api, "get_cuda_api", lambda prefer=None: NoDevice(error=err))
    assert cuda_api.cuda_device_problem() == (
        "cuda-python: CUDA call failed: cudaErrorInsufficientDriver; check 'edgemask doctor'"
    )
    monkeypatch.setattr(cuda_api, "get_cuda_api", lambda prefer=None: NoDevice(count=1))
    assert B.require_build_gpu() is trt and trt.rec["builders"] == 1


def _no_binding(prefer=None):
    from edgemask.errors import NotAvailableError

    raise NotAvailableError("no CUDA Python binding importable")

"""Engine planning, naming, compatibility, calibration cache, trtexec command and bundle recording.

TensorRT is not installed here. The build path (engine_from_onnx/build_engine)
is driven against ``FakeTensorRT``, a recording stand-in for the documented
TensorRT Python API, so these tests check *our* calls and bookkeeping, not
TensorRT. Real builds are in tests/backends/test_tensorrt.py (marker tensorrt).
"""

from __future__ import annotations

import json
import shlex
import sys

import pytest
from trt_fixtures import make_bundle_fixture, onnx_models_fixture  # noqa: F401  (registers the fixtures)

from edgemask.bundle import ModelEntry, load_manifest, verify_bundle
from edgemask.errors import (
    BundleError,
    ConfigError,
    ExportError,
    NotAvailableError,
)
from edgemask.export import engine as E


def _entry(**kw):
    base = dict(
        file="model.jetson-orin-nano.fp16.trt10.3.engine",
        precision="fp16",
        format="tensorrt",
        device="jetson-orin-nano",
        tensorrt_version="10.3.0.26",
        compute_capability="8.7",
        extra={},
    )
    base.update(kw)
    return ModelEntry(**base)


# --------------------------------------------------------------------------- planning


def test_plan_orin_int8_uses_the_qdq_model(make_bundle):
    b = make_bundle()
    plan = E.plan_engine_build(b, "jetson-orin-nano", "int8")
    assert (plan.precision, plan.int8_mode, plan.source, plan.calibration_cache) == (
        "int8",
        "qdq",
        "model.int8.onnx",
        None,
    )
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
    for a in (
        "--int8",
        "--fp16",
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:8x3x32x32",
        "--maxShapes=input:32x3x32x32",
        "--memPoolSize=workspace:512",
        "--timingCacheFile=/tmp/t.cache",
        "--skipInference",
    ):
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
    E.add_engine_to_bundle(
        b, eng, _entry(file="model.jetson-orin-nano.fp16.dla0.trt10.3.engine", extra={"dla_core": 0})
    )
    assert len([x for x in load_manifest(b).models if x.format == "tensorrt"]) == 2
    with pytest.raises(ExportError, match="not found"):
        E.add_engine_to_bundle(b, tmp_path / "missing.engine", _entry())


# --------------------------------------------------------------------------- build path against a fake TensorRT


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
    with pytest.raises(
        ExportError, match="this machine has TensorRT 10.3.0.26 but device 'jetson-xavier-nx' runs TensorRT 8.5"
    ) as e:
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
        E.build_engines_for_bundle(
            make_bundle("orin"), "jetson-orin-nano", ["int8"], dla_core=0, on_warning=seen.append
        )
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


# --------------------------------------------------------------------------- TensorRT 11 (strongly typed)


def test_plan_tensorrt11_fp16_builds_from_the_fp16_onnx(make_bundle):
    b = make_bundle(fp16=True)
    plan = E.plan_engine_build(b, "x86-cuda", "fp16", tensorrt_version="11.4.0.106")
    assert plan.strongly_typed and plan.source == "model.fp16.onnx" and plan.engine_name.endswith(".trt11.4.engine")
    ten = E.plan_engine_build(b, "x86-cuda", "fp16", tensorrt_version="10.16.1.11")
    assert not ten.strongly_typed and ten.source == "model.fp32.onnx"  # 10.x: fp32 model + the FP16 flag
    with pytest.raises(BundleError, match="has no fp16 ONNX model, and TensorRT 11.4.0.106 builds fp16 only") as e:
        E.plan_engine_build(make_bundle("no16"), "x86-cuda", "fp16", tensorrt_version="11.4.0.106")
    assert "\n" not in str(e.value)
    fp32 = E.plan_engine_build(make_bundle("no16b"), "x86-cuda", "fp32", tensorrt_version="11.4.0.106")
    assert fp32.source == "model.fp32.onnx" and fp32.strongly_typed


def test_plan_tensorrt11_int8_is_qdq_only(make_bundle):
    plan = E.plan_engine_build(make_bundle(), "x86-cuda", "int8", tensorrt_version="11.4.0.106")
    assert (plan.int8_mode, plan.source, plan.calibration_cache) == ("qdq", "model.int8.onnx", None)
    with pytest.raises(ConfigError, match="has no INT8 calibrator .removed in 11.: use --int8-mode qdq"):
        E.plan_engine_build(make_bundle("c"), "x86-cuda", "int8", int8_mode="calibrator", tensorrt_version="11.4.0")
    # a QDQ model TensorRT rejects: on 10.x the calibrator takes over, on 11 there is nothing to fall back on
    bad = make_bundle("sym", int8="sym")
    assert E.plan_engine_build(bad, "x86-cuda", "int8", tensorrt_version="10.16.1").int8_mode == "calibrator"
    with pytest.raises(ExportError, match="TensorRT 11 has no calibrator to fall back on"):
        E.plan_engine_build(bad, "x86-cuda", "int8", tensorrt_version="11.4.0")


def test_trtexec_command_tensorrt11_has_no_precision_flags(make_bundle):
    b = make_bundle(fp16=True)
    for precision, onnx in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")):
        args = shlex.split(
            E.engine_build_command(E.plan_engine_build(b, "x86-cuda", precision, tensorrt_version="11.4.0.106"))
        )
        assert args[1].endswith("/" + onnx) and "--skipInference" in args
        assert not any(a in ("--fp16", "--int8", "--best") or a.startswith("--calib") for a in args), args


def test_build_engine_tensorrt11_on_x86(fake_trt, make_bundle, monkeypatch, tmp_path):
    """x86-cuda accepts TensorRT 11 (tensorrt-cu13): a strongly typed fp16 engine from the fp16 ONNX."""
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    trt = fake_trt("11.4.0.106")
    b = make_bundle(fp16=True)
    r = E.build_engine(b, "x86-cuda", "fp16", timing_cache=False)
    assert r.entry.file == "model.x86-cuda.fp16.trt11.4.engine" and r.entry.tensorrt_version == "11.4.0.106"
    assert r.entry.extra["strongly_typed"] and r.entry.extra["source"] == "model.fp16.onnx"
    assert trt.rec["parsed"].endswith("model.fp16.onnx") and trt.rec["flags"] == set()
    with pytest.raises(ExportError, match="runs TensorRT 10.3 .JetPack 6.2., 8.6 or 8.5"):
        E.build_engine(b, "jetson-orin-nano", "fp16")  # no JetPack has TensorRT 11


def test_build_refuses_a_tensorrt_without_gpu_before_any_work(fake_trt, make_bundle, monkeypatch, tmp_path):
    import edgemask.backends.tensorrt.cuda_api as cuda_api

    monkeypatch.setattr(cuda_api, "cuda_device_problem", lambda binding_only=False: None)
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    trt = fake_trt("10.3.0.26", builder_fails=True)
    b = make_bundle()
    before = (b / "manifest.json").read_bytes()
    seen = []
    with pytest.raises(NotAvailableError, match="TensorRT 10.3.0.26 is installed but no CUDA device answers"):
        E.build_engines_for_bundle(b, "jetson-nano", ["fp16", "int8"], on_warning=seen.append)
    assert any("no fast INT8" in w for w in seen)  # the plan still speaks first
    assert "parsed" not in trt.rec and (b / "manifest.json").read_bytes() == before and not list(b.glob(".*.building"))


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
    res = r.invoke(
        _app(), ["engine", "build", str(b), "--device", "jetson-nano", "--precision", "int8", "--print-trtexec"]
    )
    assert res.exit_code == 0, res.output
    assert "trtexec --onnx=" in res.output and "--fp16" in res.output and "no fast INT8" in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "--device", "jetson-nano", "-p", "int8"])
    assert res.exit_code == 1 and "error: TensorRT is not importable here" in res.output
    assert res.output.index("no fast INT8") < res.output.index("error:") and "Traceback" not in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "--device", "jetson-nanoo", "--print-trtexec"])
    assert res.exit_code == 1 and "unknown device 'jetson-nanoo'" in res.output and "Traceback" not in res.output
    res = r.invoke(
        _app(),
        [
            "engine",
            "build",
            str(make_bundle("n8", int8=None)),
            "-d",
            "jetson-orin-nano",
            "-p",
            "int8",
            "--print-trtexec",
        ],
    )
    assert res.exit_code == 1 and "no onnx model at precision 'int8'" in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "-d", "jetson-orin-nano", "--batch", "1,8", "--print-trtexec"])
    assert res.exit_code == 1 and "MIN,OPT,MAX" in res.output


def test_engine_build_cli_prints_the_trtexec_of_another_tensorrt(make_bundle):
    from typer.testing import CliRunner

    b = make_bundle(fp16=True)
    r = CliRunner()
    res = r.invoke(_app(), ["engine", "build", str(b), "-d", "x86-cuda", "--print-trtexec", "--tensorrt", "11.4"])
    assert res.exit_code == 0, res.output
    assert "model.fp16.onnx" in res.output and "--fp16" not in res.output and ".trt11.4.engine" in res.output
    res = r.invoke(
        _app(), ["engine", "build", str(b), "-d", "jetson-orin-nano", "--print-trtexec", "--tensorrt", "11.4"]
    )
    assert res.exit_code == 1 and "does not run TensorRT 11.4 (it runs 10.3 (JetPack 6.2), 8.6 or 8.5)" in res.output
    res = r.invoke(_app(), ["engine", "build", str(b), "-d", "x86-cuda", "--tensorrt", "11.4"])
    assert res.exit_code == 1 and "--tensorrt only goes with --print-trtexec" in res.output


def test_engine_build_cli_on_tensorrt_without_gpu_says_so_in_one_line(fake_trt, make_bundle, monkeypatch):
    from typer.testing import CliRunner

    import edgemask.backends.tensorrt.cuda_api as cuda_api

    monkeypatch.setattr(cuda_api, "cuda_device_problem", lambda binding_only=False: None)
    trt = fake_trt("8.2.1.8", builder_fails=True)
    res = CliRunner().invoke(_app(), ["engine", "build", str(make_bundle()), "--device", "jetson-nano", "-p", "int8"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "TensorRT 8.2.1.8 is installed but no CUDA device answers" in errors[0]
    assert res.output.index("no fast INT8") < res.output.index("error:") and "parsed" not in trt.rec


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
    r = TensorRTRunner.from_bundle(load_bundle(b).detector_view(), "int8", device="jetson-orin-nano")
    assert (
        r.engine_path.name == "model.jetson-orin-nano.int8.trt10.3.engine" and r.engine_path.parent.name == "detector"
    )
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
    res = CliRunner().invoke(
        _app(),
        [
            "engine",
            "build",
            str(detector_bundle),
            "--device",
            "jetson-orin-nano",
            "--precision",
            "fp16",
            "--print-trtexec",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("trtexec")]
    assert len(lines) == 2 and "model.fp32.onnx" in lines[0] and "detector/model.fp32.onnx" in lines[1]
    res = CliRunner().invoke(
        _app(), ["engine", "build", str(detector_bundle), "--device", "jetson-orin-nano", "--model", "detector"]
    )
    assert res.exit_code == 1 and "TensorRT is not importable here" in res.output and "Traceback" not in res.output

"""Engine file names, TensorRT version numbers, compatibility records and the engine cache (no TensorRT)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgemask.bundle import ModelEntry
from edgemask.bundle import engines as E
from edgemask.errors import BackendError


def test_engine_file_names_round_trip():
    name = E.engine_file_name("jetson-orin-nano", "int8", "10.3.0.26")
    assert name == "model.jetson-orin-nano.int8.trt10.3.engine"
    assert E.parse_engine_file_name(name) == {
        "device": "jetson-orin-nano",
        "precision": "int8",
        "dla_core": None,
        "tensorrt": "10.3",
    }
    dla = E.engine_file_name("jetson-agx-orin", "fp16", "8.6.2", dla_core=1)
    assert dla == "model.jetson-agx-orin.fp16.dla1.trt8.6.engine"
    assert E.parse_engine_file_name(dla)["dla_core"] == 1
    assert E.parse_engine_file_name("model.fp32.onnx") is None
    assert E.trt_version_code("8.5.2.2") == 8502 and E.trt_version_code("10.3.0") == 100300
    assert E.trt_version_code("8.6.1") == 8601 and E.trt_version_code("11.4.0") == 110400


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
    m = SimpleNamespace(
        models=[
            ModelEntry(file="model.fp32.onnx", precision="fp32", format="onnx"),
            _entry(file="a", device="jetson-nano", precision="fp16", extra={"requested_precision": "int8"}),
            _entry(file="b", device="jetson-agx-orin", precision="int8", extra={"dla_core": 0}),
            _entry(file="c", device="jetson-agx-orin", precision="int8", extra={}),
        ]
    )
    assert [e.file for e in E.engine_entries(m, "jetson-nano", "int8")] == ["a"]
    assert [e.file for e in E.engine_entries(m, "jetson-agx-orin", "int8")] == ["c", "b"]  # GPU first
    assert E.engine_entries(m, "jetson-orin-nano", "fp16") == []


def test_engine_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "c"))
    assert E.engine_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEMASK_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert E.engine_cache_dir() == tmp_path / "x" / "edgemask" / "engines"
    assert E.default_timing_cache("jetson-nano", "8.2.1.8").name == "jetson-nano.trt8.2.cache"

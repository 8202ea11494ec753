"""bench_bundle: timings, skipped engines, machine info, JSON."""

from __future__ import annotations

import json

import pytest

from edgemask.compare import BenchConfig, bench_bundle, machine_info
from edgemask.compare.bench import cpu_model
from edgemask.errors import ConfigError

FAST = BenchConfig(batch=8, warmup=2, iters=20, batch_iters=3)


def test_bench_fields_are_consistent(tiny_bundle):
    calls = []
    res = bench_bundle(
        tiny_bundle,
        engines="onnxrt:fp32,null,tensorrt:int8",
        config=FAST,
        progress=lambda e, d, t: calls.append((e, d, t)),
    )
    ort, null, trt = res.engines
    for e in (ort, null):
        assert not e.skipped
        assert 0 < e.min_ms <= e.p50_ms <= e.p99_ms
        assert e.mean_ms >= e.min_ms and e.call_p50_ms >= e.p50_ms * 0.5
        assert e.batch == 8 and e.per_image_ms == pytest.approx(e.batch_ms / 8)
        assert e.throughput_ips > 0
        assert e.describe["backend"] == e.backend
    assert ort.describe["num_threads"] >= 1
    assert trt.engine == "tensorrt:int8" and "TensorRT" in trt.skipped and trt.to_dict()["p50_ms"] is None
    assert {e for e, _, _ in calls} == {"onnxrt:fp32", "null:fp32"}
    assert res.config == FAST.to_dict()
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["engines"][0]["engine"] == "onnxrt:fp32" and d["machine"]["cores"] >= 1


def test_bench_shortcuts_override_config(tiny_bundle):
    res = bench_bundle(tiny_bundle, engines="null", config=FAST, batch=4, iters=10)
    assert res.config["batch"] == 4 and res.config["iters"] == 10 and res.engines[0].batch == 4


def test_bench_default_engines(tiny_bundle):
    res = bench_bundle(tiny_bundle, config=BenchConfig(batch=4, warmup=1, iters=5, batch_iters=2))
    assert [e.engine for e in res.engines] == [
        "torch:fp32",
        "onnxrt:fp32",
        "onnxrt:fp16",
        "onnxrt:int8",
        "opencv:fp32",
        "opencv:fp16",
        "opencv:int8",
    ]
    assert all(not e.skipped and e.p50_ms > 0 for e in res.engines)


def test_machine_info(monkeypatch):
    monkeypatch.setenv("EDGEMASK_NUM_THREADS", "3")
    m = machine_info()
    assert m["threads"] == 3 and m["cores"] >= 1 and 1 <= m["usable_cores"] <= m["cores"]
    assert m["cpu"] and m["platform"] and "numpy" in m["versions"] and "python" in m["versions"]


def test_cpu_model_reads_proc_cpuinfo(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: Test\nmodel name\t: Test CPU 9000 @ 1.00GHz\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k))
    assert cpu_model() == "Test CPU 9000 @ 1.00GHz"


def test_bench_config_validates():
    with pytest.raises(ConfigError):
        BenchConfig(batch=0)
    with pytest.raises(ConfigError):
        BenchConfig(warmup=-1)

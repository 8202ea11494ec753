"""``edgemask compare`` / ``edgemask bench``: output, --json, exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from edgemask.cli.compare import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture
def cli(app):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_compare_passes_with_table(cli, tiny_bundle, tiny_data):
    r = cli(
        "compare", str(tiny_bundle), "--data", str(tiny_data), "--engines", "onnxrt:fp32,onnxrt:int8", "--confusion"
    )
    assert r.exit_code == 0, r.output
    for word in ("torch:fp32", "onnxrt:fp32", "onnxrt:int8", "reference", "pass", "rows = label"):
        assert word in r.output
    assert "FAIL" not in r.output


def test_compare_json(cli, tiny_bundle, tiny_data, tmp_path):
    r = cli(
        "compare",
        str(tiny_bundle),
        "--data",
        str(tiny_data),
        "--engines",
        "onnxrt:fp16",
        "--n",
        "10",
        "--json",
        "--out",
        str(tmp_path / "cmp.json"),
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert json.loads((tmp_path / "cmp.json").read_text()) == d
    assert d["passed"] is True and d["n"] == 10 and d["reference"] == "torch:fp32"
    assert [e["engine"] for e in d["engines"]] == ["torch:fp32", "onnxrt:fp16"]
    assert d["config"]["fp16_max_abs_diff"] == 0.05


def test_compare_exits_1_when_tolerance_is_zero(cli, tiny_bundle, tiny_data):
    # onnxrt and torch differ by ~1e-6 in fp32: a zero tolerance must fail, naming the engine.
    r = cli("compare", str(tiny_bundle), "--data", str(tiny_data), "--engines", "onnxrt:fp32", "--fp32-tol", "0")
    assert r.exit_code == 1
    assert "exceeded their tolerance" in r.output and "onnxrt:fp32" in r.output and "Traceback" not in r.output


def test_compare_exits_1_on_an_odd_engine_even_with_json(cli, tiny_bundle):
    r = cli("compare", str(tiny_bundle), "--engines", "null", "--json")  # golden inputs, no --data
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["passed"] is False and d["engines"][1]["engine"] == "null:fp32" and not d["engines"][1]["passed"]


def test_compare_user_errors_are_one_line(cli, tiny_bundle, tmp_path):
    for args, msg in [
        (("--engines", "onnx:fp32"), "unknown backend 'onnx'"),
        (("--engines", "torch:int8"), "does not run 'int8'"),
        (("--data", str(tmp_path / "none")), "does not exist"),
        (("--device", "tpu"), "--device 'tpu'"),
        (("--int8-agreement", "98"), "fraction"),
    ]:
        r = cli("compare", str(tiny_bundle), *args)
        assert r.exit_code == 1, (args, r.output)
        assert msg in r.output and "Traceback" not in r.output, r.output


def test_compare_refuses_tampered_bundle(cli, tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "b")
    (copy / "model.fp16.onnx").write_bytes(b"tampered")
    r = cli("compare", str(copy))
    assert r.exit_code == 1 and "failed verification" in r.output


def test_bench_table_and_json(cli, tiny_bundle):
    common = (
        "--engines",
        "onnxrt:fp32,null,tensorrt:int8",
        "--batch",
        "4",
        "--warmup",
        "1",
        "--iters",
        "10",
        "--batch-iters",
        "2",
    )
    r = cli("bench", str(tiny_bundle), *common)
    assert r.exit_code == 0, r.output
    for word in ("onnxrt:fp32", "null:fp32", "skipped", "b1 p50", "b4 ms/img", "machine:", "versions:", "thr"):
        assert word in r.output, word
    r = cli("bench", str(tiny_bundle), *common, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["config"]["batch"] == 4 and d["machine"]["threads"] >= 1
    assert d["engines"][0]["p50_ms"] > 0 and d["engines"][2]["skipped"]


def test_bench_bad_option(cli, tiny_bundle):
    r = cli("bench", str(tiny_bundle), "--batch", "0")
    assert r.exit_code == 1 and "batch" in r.output


def test_device_cuda_without_a_gpu(cli, tiny_bundle):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = cli("compare", str(tiny_bundle), "--engines", "onnxrt:fp32", "--device", "cuda")
    assert r.exit_code == 1 and "CUDA is not available" in r.output and "Traceback" not in r.output
    # bench reports what cannot run instead of stopping
    r = cli(
        "bench",
        str(tiny_bundle),
        "--engines",
        "torch,null",
        "--device",
        "cuda",
        "--iters",
        "5",
        "--warmup",
        "1",
        "--batch-iters",
        "1",
        "--json",
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "CUDA" in d["engines"][0]["skipped"] and not d["engines"][1]["skipped"]

"""QDQ compliance check: real ONNX Runtime quantizer outputs in each dialect, plus hand-made breakages."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from trt_fixtures import make_bundle_fixture, onnx_models_fixture  # noqa: F401  (registers the fixtures)

from edgemask.errors import ExportError
from edgemask.export.qdq_check import check_qdq_for_tensorrt


def test_tensorrt_recipe_passes_for_every_target(onnx_models):
    for target in (None, "8.2", "8.5", "10.3"):
        r = check_qdq_for_tensorrt(onnx_models["trt"], target)
        assert r.passed, r.summary()
        assert r.stats["quantizable_ops"] == 4 and r.stats["quantized_ops"] == 4
        assert r.stats["q_nodes"] > 0 and r.stats["q_nodes"] == r.stats["dq_nodes"]
    assert "PASS" in r.summary()


def test_symmetric_ort_default_layout_fails_on_int32_bias_and_int8_weights(onnx_models):
    r = check_qdq_for_tensorrt(onnx_models["sym"])
    assert not r.passed
    assert {"int32-dq", "int8-weight-initializer"} <= r.codes()
    assert "zero-point-nonzero" not in r.codes()  # symmetric: all zero points are 0
    assert "QuantizeBias=False" in next(i for i in r.errors if i.code == "int32-dq").message
    # TensorRT 10 accepts int8 weight initializers but still not the int32 bias DQ
    r10 = check_qdq_for_tensorrt(onnx_models["sym"], "10.3")
    assert r10.codes() == {"int32-dq"}
    assert "int8-weight-initializer" in check_qdq_for_tensorrt(onnx_models["sym"], "8.5").codes()


def test_asymmetric_fails_with_zero_point_issues(onnx_models):
    r = check_qdq_for_tensorrt(onnx_models["asym"], "10.3")
    assert not r.passed and "zero-point-nonzero" in r.codes()
    assert any("ActivationSymmetric" in i.message for i in r.errors)


def test_qoperator_format_fails(onnx_models):
    r = check_qdq_for_tensorrt(onnx_models["qop"])
    assert not r.passed and "qoperator" in r.codes()
    assert any(i.node and "QLinearConv" in i.message for i in r.errors)


def test_float_model_is_not_int8(onnx_models):
    r = check_qdq_for_tensorrt(onnx_models["fp32"])
    assert not r.passed and "no-qdq" in r.codes()
    assert r.stats["quantized_ops"] == 0


def _mutate(src, dst, fn):
    m = onnx.load(str(src))
    fn(m)
    onnx.save(m, str(dst))
    return dst


def _init(m, name):
    return next(i for i in m.graph.initializer if i.name == name)


def _set_init(m, name, arr):
    _init(m, name).CopyFrom(numpy_helper.from_array(arr, name))


def test_per_channel_axis_on_conv_weights_must_be_zero(onnx_models, tmp_path):
    def fn(m):
        conv = next(n for n in m.graph.node if n.op_type == "Conv")
        dq = next(n for n in m.graph.node if n.output[0] == conv.input[1])
        q = next(n for n in m.graph.node if n.output[0] == dq.input[0])
        for node in (q, dq):
            next(a for a in node.attribute if a.name == "axis").i = 1

    r = check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "axis.onnx", fn))
    assert "per-channel-axis" in r.codes() and not r.passed


def test_scales_must_be_positive_and_finite(onnx_models, tmp_path):
    def zero(m):
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
        _set_init(m, q.input[1], np.zeros_like(numpy_helper.to_array(_init(m, q.input[1]))))

    def nan(m):
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
        _set_init(m, q.input[1], np.full_like(numpy_helper.to_array(_init(m, q.input[1])), np.nan))

    assert (
        "scale-not-positive" in check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "z.onnx", zero)).codes()
    )
    assert "scale-not-finite" in check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "n.onnx", nan)).codes()


def test_uint8_zero_point_and_missing_zero_point(onnx_models, tmp_path):
    def drop_zp(m):
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
        del q.input[2]

    r = check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "nozp.onnx", drop_zp))
    assert "uint8" in r.codes()


def test_unsupported_op_and_partial_coverage(onnx_models, tmp_path):
    def add_unique(m):
        # Route the logits through an op TensorRT has no importer for.
        out = m.graph.output[0].name
        prod = next(n for n in m.graph.node if out in n.output)
        prod.output[0] = out + "_pre"
        m.graph.node.append(onnx.helper.make_node("Hardmax", [out + "_pre"], [out], axis=1))

    def unquantize_first_conv(m):
        conv = next(n for n in m.graph.node if n.op_type == "Conv")
        dq = next(n for n in m.graph.node if n.output[0] == conv.input[0])
        conv.input[0] = next(n for n in m.graph.node if n.output[0] == dq.input[0]).input[0]

    hardmax = _mutate(onnx_models["trt"], tmp_path / "op.onnx", add_unique)
    r = check_qdq_for_tensorrt(hardmax)
    assert "unsupported-op" in r.codes() and any("Hardmax" in i.message for i in r.errors)
    assert "unsupported-op" in check_qdq_for_tensorrt(hardmax, "8.5").codes()
    assert check_qdq_for_tensorrt(hardmax, "10.3").passed  # TensorRT 10's parser imports Hardmax
    r = check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "cov.onnx", unquantize_first_conv))
    assert "not-quantized" in r.codes()
    assert r.stats["quantized_ops"] == 3
    assert any(i.severity == "warning" and "data input" in i.message for i in r.issues)


def test_low_opset_per_channel(onnx_models, tmp_path):
    def opset12(m):
        next(o for o in m.opset_import if o.domain in ("", "ai.onnx")).version = 12

    assert "opset" in check_qdq_for_tensorrt(_mutate(onnx_models["trt"], tmp_path / "o12.onnx", opset12)).codes()


def test_report_serialises(onnx_models):
    import json

    d = json.loads(check_qdq_for_tensorrt(onnx_models["sym"], "8.5").to_json())
    assert d["passed"] is False and d["tensorrt_target"] == "8.5" and d["issues"][0]["severity"] == "error"


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        check_qdq_for_tensorrt(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx file")
    with pytest.raises(ExportError, match="not a readable ONNX model") as e:
        check_qdq_for_tensorrt(tmp_path / "junk.onnx")
    assert "\n" not in str(e.value)


def test_check_qdq_cli(onnx_models, make_bundle):
    import typer
    from typer.testing import CliRunner

    from edgemask.cli import engine as engine_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    engine_cli.register(app)
    r = CliRunner()
    ok = r.invoke(app, ["engine", "check-qdq", str(onnx_models["trt"])])
    assert ok.exit_code == 0 and "PASS" in ok.output
    bad = r.invoke(app, ["engine", "check-qdq", str(onnx_models["sym"]), "--device", "jetson-orin-nano"])
    assert bad.exit_code == 1 and "[int32-dq]" in bad.output and "TensorRT 10.3" in bad.output
    bundle = make_bundle(int8="sym")
    res = r.invoke(app, ["engine", "check-qdq", str(bundle), "--json"])
    assert res.exit_code == 1 and '"passed": false' in res.output
    nob = make_bundle("noint8", int8=None)
    res = r.invoke(app, ["engine", "check-qdq", str(nob)])
    assert res.exit_code == 1 and "no onnx model at precision 'int8'" in res.output

"""fp16 and int8 QDQ models: types, symmetric zero points, the range table, and int8 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from edgemask.errors import ConfigError, ExportError
from edgemask.export.onnx_export import ort_logits
from edgemask.export.quantize import (
    INT8_QMAX,
    check_qdq_symmetric,
    fp16_from_onnx,
    int8_from_onnx,
    qdq_problems,
)


def _inits(model):
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_fp16_keeps_float32_io_and_matches(tiny_onnx, tmp_path, calib_images):
    import onnx
    from onnx import TensorProto

    dst = tmp_path / "model.fp16.onnx"
    info = fp16_from_onnx(tiny_onnx, dst)
    assert info["keep_io_types"] is True
    m = onnx.load(str(dst))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = [t for t in m.graph.initializer if t.dims and len(t.dims) == 4]
    assert conv_weights and all(t.data_type == TensorProto.FLOAT16 for t in conv_weights)
    diff = np.max(np.abs(ort_logits(dst, calib_images) - ort_logits(tiny_onnx, calib_images)))
    assert diff < 1e-2


def test_fp16_of_a_truncated_file_is_an_export_error(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_onnx.read_bytes()[:500])
    with pytest.raises(ExportError, match="truncated or corrupted"):
        fp16_from_onnx(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    "method,target", [("minmax", "tensorrt"), ("entropy", "tensorrt"), ("percentile", "tensorrt"), ("minmax", "cpu")]
)
def test_int8_is_symmetric_per_channel_qdq(tiny_onnx, tmp_path, calib_images, method, target, monkeypatch):
    import onnx

    import edgemask.export.quantize as quantize

    monkeypatch.setattr(quantize, "ENTROPY_BINS", 512)  # the KL search is Python; 2048 bins take seconds

    dst = tmp_path / "model.int8.onnx"
    info = int8_from_onnx(tiny_onnx, dst, calib_images, method=method, target=target)
    q = onnx.load(str(dst))
    inits = _inits(q)
    qdq = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) == info.quantization["qdq_nodes"] > 0
    # TensorRT's explicit quantization: int8 everywhere, zero points exactly 0, no int32 bias DQ.
    assert qdq_problems(q) == []
    for n in qdq:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    # Per-channel weights: some DQ carries one scale per output channel (conv 1 has 8 channels).
    assert any(inits[n.input[1]].size == 8 for n in qdq if n.op_type == "DequantizeLinear")
    # Logits stay float: the graph output is produced by the last Gemm, not by a DequantizeLinear.
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producer["logits"] == "Gemm" and info.quantization["output_quantized"] is False
    assert info.quantization["method"] == method and info.quantization["symmetric"] is True
    assert info.quantization["target"] == target
    # Placement: every Conv/Gemm reads a dequantized input; only the cpu target quantizes their outputs.
    consumers: dict[str, list[str]] = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    weighted = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm")]
    assert all(
        producer[n.input[0]] == "DequantizeLinear" and producer[n.input[1]] == "DequantizeLinear" for n in weighted
    )
    out_quantized = [n for n in weighted if "QuantizeLinear" in consumers.get(n.output[0], [])]
    if target == "tensorrt":
        assert out_quantized == []
        # weights stay float behind a Q→DQ pair (what TensorRT 8.x imports), and the check agrees
        for n in weighted:
            wq = next(
                m
                for m in q.graph.node
                if m.output[0] == next(d for d in q.graph.node if d.output[0] == n.input[1]).input[0]
            )
            assert wq.op_type == "QuantizeLinear" and inits[wq.input[0]].dtype == np.float32
        from edgemask.export.qdq_check import check_qdq_for_tensorrt

        for trt in ("8.2", "8.5", "10.3"):
            assert check_qdq_for_tensorrt(dst, trt).passed, check_qdq_for_tensorrt(dst, trt).summary()
    else:
        assert len(out_quantized) >= 2
        # reduce_range: 7-bit weights, |w_q| <= 64, against int16 saturation on x86 without VNNI
        wq = [inits[n.input[0]] for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        assert wq and max(int(np.abs(w.astype(np.int32)).max()) for w in wq) <= 64
    # The table is read back from the QDQ scales: amax = scale * 127, names from the fp32 graph.
    fp32_names = {o for n in onnx.load(str(tiny_onnx)).graph.node for o in n.output} | {"input"}
    q_scales = {
        n.input[0]: float(inits[n.input[1]])
        for n in q.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits
    }  # activations, not weights
    assert len(info.table) >= len(q_scales)
    for name, e in info.table.items():
        assert name in fp32_names and e["in_fp32_graph"]
        assert e["amax"] == pytest.approx(e["scale"] * INT8_QMAX)
        if name in q_scales:
            assert e["scale"] == pytest.approx(q_scales[name])
    assert info.table["input"]["amax"] == 1.0 and info.table["input"]["source"] == "input_spec"
    assert "logits" not in info.table  # unquantized logits get no range, in the QDQ graph or the TensorRT cache
    if method == "entropy":  # real KL calibration, not ORT's 128/128-bin default that equals minmax
        assert info.quantization["entropy_bins"] == [512, 128]
    if method == "minmax":  # ORT's symmetric scale is max(|rmin|, |rmax|) / 127 of the calibrated range
        raw = [e for e in info.table.values() if "rmax" in e and e["source"] == "qdq" and e["rmin"] >= 0]
        assert raw and all(e["amax"] == pytest.approx(max(abs(e["rmin"]), abs(e["rmax"])), rel=1e-5) for e in raw)
    got = ort_logits(dst, calib_images)
    assert got.shape == (len(calib_images), 3) and np.isfinite(got).all()


def test_quantize_output_keeps_ort_output_qdq(tiny_onnx, tmp_path, calib_images):
    import onnx

    info = int8_from_onnx(tiny_onnx, tmp_path / "q.onnx", calib_images, quantize_output=True, target="cpu")
    q = onnx.load(str(tmp_path / "q.onnx"))
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producer["logits"] == "DequantizeLinear" and info.quantization["output_quantized"] is True


def test_asymmetric_quantization_is_detected(tiny_onnx, tmp_path, calib_images):
    """ORT's default (asymmetric) activations leave non-zero zero points; the check must catch them."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgemask.export.quantize import _ArrayReader

    out = tmp_path / "asym.onnx"
    quantize_static(
        str(tiny_onnx),
        str(out),
        _ArrayReader(calib_images, 8),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    problems = qdq_problems(out)
    assert problems
    with pytest.raises(ExportError, match="not symmetric"):
        check_qdq_symmetric(out)


def test_int8_errors(tiny_onnx, tmp_path, calib_images):
    with pytest.raises(ConfigError, match="tensorrt, cpu"):
        int8_from_onnx(tiny_onnx, tmp_path / "q.onnx", calib_images, target="gpu")
    with pytest.raises(ExportError, match="calibration set is empty"):
        int8_from_onnx(tiny_onnx, tmp_path / "q.onnx", np.zeros((0, 3, 32, 32), np.float32))
    with pytest.raises(ConfigError, match="minmax, entropy, percentile"):
        int8_from_onnx(tiny_onnx, tmp_path / "q.onnx", calib_images, method="kl")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_int8_accuracy_close_to_fp32_on_a_trained_model(trained_run, tmp_path, synth_data):
    """A briefly trained model keeps its accuracy and predictions after int8 (minmax, 96 calibration images)."""
    from edgemask.export.onnx_export import onnx_from_torch
    from edgemask.training.run import load_run

    model, _ = load_run(trained_run)
    fp32 = tmp_path / "m.onnx"
    onnx_from_torch(model, fp32, input_size=32, simplify=False)
    calib, _ = synth_data(96, 32, seed=21)
    int8 = tmp_path / "q.onnx"
    int8_from_onnx(fp32, int8, calib, method="minmax")
    x, y = synth_data(300, 32, seed=31)
    f, q = ort_logits(fp32, x).argmax(1), ort_logits(int8, x).argmax(1)
    acc_f, acc_q = float((f == y).mean()), float((q == y).mean())
    assert acc_f > 0.6, f"the fixture model did not learn (accuracy {acc_f:.2f})"
    assert float((f == q).mean()) >= 0.97
    assert acc_q >= acc_f - 0.02


def test_entropy_really_searches_a_threshold(tiny_onnx, tmp_path, calib_images, monkeypatch):
    """ORT's own entropy defaults (128 bins, 128 levels) leave one candidate and equal minmax; ours must not."""
    import edgemask.export.quantize as quantize

    monkeypatch.setattr(quantize, "ENTROPY_BINS", 512)
    mm = int8_from_onnx(tiny_onnx, tmp_path / "mm.onnx", calib_images, method="minmax").table
    en = int8_from_onnx(tiny_onnx, tmp_path / "en.onnx", calib_images, method="entropy").table
    shared = [k for k in mm if k in en and k != "input"]
    assert shared
    assert all(en[k]["amax"] <= mm[k]["amax"] * (1 + 1e-5) for k in shared)
    assert any(en[k]["amax"] < 0.9 * mm[k]["amax"] for k in shared)

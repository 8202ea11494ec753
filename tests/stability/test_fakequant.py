"""The fake-quant twin reproduces ONNX Runtime on the bundle's int8 graph, and on graphs with every op it claims."""

from __future__ import annotations

import numpy as np
import pytest


def _ort(path, x, level: str = "ORT_ENABLE_ALL") -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _quantize(src, dst, x_calib, per_channel=True) -> None:
    """ONNX Runtime's own QDQ placement (Conv/Gemm outputs quantized too), symmetric int8, full-range weights."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x_calib[i : i + 8]} for i in range(0, len(x_calib), 8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def test_twin_matches_onnxruntime_int8_on_the_bundle(tiny_bundle, synth_xy):
    from edgemask.backends import runner_from_bundle
    from edgemask.bundle import load_bundle
    from edgemask.stability.fakequant import FakeQuantTwin, twin_agreement

    b = load_bundle(tiny_bundle)
    x, _ = synth_xy(48, seed=21)
    with runner_from_bundle(b, "onnxrt", "int8") as r:
        engine = r.infer(x)
    twin = FakeQuantTwin(b.model_path("int8"))
    a = twin_agreement(twin, engine, x)
    assert a["argmax_agreement"] == 1.0
    # ORT's graph rewrites (constant folding, fusions) change float rounding upstream of a
    # QuantizeLinear, so now and then a value lands one quantization step away: small, rare.
    assert a["max_abs_diff"] <= 0.02 * a["logit_range"] and a["mean_abs_diff"] <= 0.002 * a["logit_range"], a
    # Against the graph executed node by node, the twin is exact to float rounding.
    reference = _ort(b.model_path("int8"), x, "ORT_DISABLE_ALL")
    plain = twin_agreement(twin, reference, x)
    assert plain["max_abs_diff"] <= 1e-5 * max(1.0, plain["logit_range"]), plain
    # and the twin is really quantized: the float graph is far from that exact reference
    fp = twin_agreement(FakeQuantTwin(b.model_path("fp32")), reference, x)
    assert fp["max_abs_diff"] > 100 * plain["max_abs_diff"] + 1e-4, (fp, plain)


def test_twin_of_the_float_graph_equals_torch(tiny_bundle, synth_xy):
    import torch

    from edgemask.bundle import load_bundle
    from edgemask.stability.fakequant import FakeQuantTwin, twin_logits
    from edgemask.stability.inputs import load_float_model

    b = load_bundle(tiny_bundle)
    x, _ = synth_xy(16, seed=22)
    with torch.no_grad():
        ref = load_float_model(b)(torch.from_numpy(x)).numpy()
    assert np.abs(twin_logits(FakeQuantTwin(b.model_path("fp32")), x) - ref).max() < 1e-4


def test_twin_gradient_runs_deepfool_through_the_rounding(tiny_bundle, synth_xy):
    import torch

    from edgemask.attacks import deepfool
    from edgemask.bundle import load_bundle
    from edgemask.stability.fakequant import FakeQuantTwin

    twin = FakeQuantTwin(load_bundle(tiny_bundle).model_path("int8")).eval()
    x, _ = synth_xy(12, seed=23)
    xt = torch.from_numpy(x).requires_grad_(True)
    twin(xt)[:, 0].sum().backward()
    g = xt.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0  # without the straight-through estimator this is 0
    res = deepfool(twin, torch.from_numpy(x), max_iter=50)
    # A tiny ReLU net can be flat on some inputs (every unit of a layer off, the
    # logits a constant bias): DeepFool must flag exactly those, not fail on
    # them silently, and fool the rest.
    grads = []
    for k in range(3):
        xk = torch.from_numpy(x).requires_grad_(True)
        grads.append(torch.autograd.grad(twin(xk)[:, k].sum(), xk)[0].flatten(1))
    flat = torch.stack([(g - grads[0]).abs().sum(1) == 0 for g in grads[1:]]).all(0)  # every ∇(f_k − f_0) = 0
    assert res.zero_grad[flat].all() and not res.iterations[flat].any() and not res.success[flat].any()
    live = ~flat
    assert int(live.sum()) >= 4
    assert float(res.success[live].double().mean()) >= 0.9


class _OpZoo:
    """A module whose TorchScript export uses Shape/Gather/Unsqueeze/Concat/Reshape, Transpose,
    AveragePool, GlobalAveragePool, Clip, MatMul, Mul, Add, Sub, Div, ReduceMax/Mean, Gemm, Relu, MaxPool."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Zoo(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1 = nn.Conv2d(3, 6, 3, padding=1)
                self.c2 = nn.Conv2d(6, 6, 3, stride=2, padding=(0, 1))
                self.proj = nn.Parameter(torch.randn(6, 6) * 0.3)
                self.fc = nn.Linear(12, 3)

            def forward(self, x):
                x = (x - 0.5) / 0.25
                a = torch.relu(self.c1(x))
                a = torch.clamp(a, 0.0, 6.0) * 0.5 + 0.1
                b = nn.functional.avg_pool2d(a, 2)  # AveragePool
                m = nn.functional.max_pool2d(self.c2(a), 2, ceil_mode=True)
                g = nn.functional.adaptive_avg_pool2d(b, 1)  # GlobalAveragePool
                t = b.permute(0, 2, 3, 1)  # Transpose
                t = torch.matmul(t, self.proj).permute(0, 3, 1, 2)  # MatMul
                h = torch.cat(
                    [g.view(g.size(0), -1), t.mean(dim=(2, 3)) + m.amax(dim=(2, 3))], dim=1
                )  # Shape/Gather/Concat/Reshape
                return self.fc(h)

        torch.manual_seed(1)
        return Zoo().eval()


@pytest.mark.parametrize("quantized", [False, True])
def test_twin_interprets_every_claimed_op(tmp_path, synth_xy, quantized):
    import onnx
    import torch

    from edgemask.stability.fakequant import FakeQuantTwin, twin_logits

    model = _OpZoo.build()
    path = tmp_path / "zoo.onnx"
    torch.onnx.export(
        model,
        torch.rand(2, 3, 16, 16),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    x = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(3)).numpy()
    if quantized:
        q = tmp_path / "zoo.int8.onnx"
        _quantize(path, q, x)
        path = q
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {
        "Transpose",
        "MatMul",
        "Concat",
        "AveragePool",
        "GlobalAveragePool",
        "Clip",
        "Gemm",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Reshape",
        "ReduceMax",
        "ReduceMean",
        "MaxPool",
    } <= ops, ops
    if quantized:
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # With optimizations off ORT runs the QDQ graph node by node: the spec's arithmetic.
    ref = _ort(path, x, "ORT_DISABLE_ALL")
    got = twin_logits(FakeQuantTwin(path, mode="reference"), x)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_x86_mode_reproduces_fused_int8_kernels(tiny_bundle, tmp_path, synth_xy):
    """ORT's own placement fuses into QLinearConv/QGemm; the twin mode closest to it agrees closely.

    On an x86 CPU without VNNI those kernels saturate u8·s8 pair sums in int16,
    which only the x86-u8s8 mode reproduces (exactly, on the machine we measured).
    """
    from edgemask.bundle import load_bundle
    from edgemask.stability.fakequant import FakeQuantTwin, twin_agreement
    from edgemask.stability.provenance import host_info

    x, _ = synth_xy(64, seed=24)
    q = tmp_path / "ort_placement.int8.onnx"
    _quantize(load_bundle(tiny_bundle).model_path("fp32"), q, x[:32])
    ref = FakeQuantTwin(q, mode="reference")
    x86 = FakeQuantTwin(q, mode="x86-u8s8")
    assert len(x86._sites) > 0  # full-range int8 weights: some pairs can saturate
    basic = _ort(q, x, "ORT_DISABLE_ALL")
    assert twin_agreement(ref, basic, x)["max_abs_diff"] <= 1e-4 * max(1.0, float(np.abs(basic).max()))
    fused = _ort(q, x, "ORT_ENABLE_ALL")
    a = {"reference": twin_agreement(ref, fused, x), "x86-u8s8": twin_agreement(x86, fused, x)}
    best = min(a.values(), key=lambda v: v["max_abs_diff"])
    assert best["argmax_agreement"] >= 0.95 and best["max_abs_diff"] <= 0.05 * best["logit_range"], a
    h = host_info()
    if h.get("machine") == "x86_64" and h.get("avx2") and not h.get("vnni"):
        assert a["x86-u8s8"]["max_abs_diff"] <= 1e-4 * max(1.0, a["x86-u8s8"]["logit_range"]), a


def test_unsupported_op_is_an_export_error_naming_it(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgemask.errors import ExportError
    from edgemask.stability.fakequant import FakeQuantTwin

    graph = helper.make_graph(
        [helper.make_node("LeakyRelu", ["input"], ["logits"], alpha=0.1)],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
    )
    path = tmp_path / "leaky.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError, match="LeakyRelu"):
        FakeQuantTwin(path)
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ExportError, match="cannot read"):
        FakeQuantTwin(tmp_path / "junk.onnx")
    with pytest.raises(ExportError, match="unknown twin mode"):
        FakeQuantTwin(path, mode="fast")


def test_every_supported_op_has_a_handler():
    """SUPPORTED_OPS (what the twin promises before it runs) and the interpreter's dispatch table agree."""
    from edgemask.stability import fakequant

    assert set(fakequant.SUPPORTED_OPS) == set(fakequant._OPS)

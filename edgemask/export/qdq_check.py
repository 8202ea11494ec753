"""Will TensorRT build this INT8 ONNX? A static check that needs no GPU.

TensorRT's *explicit quantization* takes an ONNX graph with QuantizeLinear /
DequantizeLinear (Q/DQ) nodes and fuses them into INT8 kernels. It accepts a
narrower dialect than ONNX Runtime produces by default, and a model outside
it either fails to parse on the device, or builds and then runs in float.
This module checks the rules offline so a CPU-only machine can tell a user
whether the model will build:

* signed INT8 only, zero points all 0 (TensorRT quantization is symmetric);
* scales constant, positive and finite;
* per-channel scales only on weights, along the output-channel axis
  (Conv/ConvTranspose weights axis 0; Gemm axis 0 with transB=1, else 1;
  MatMul weights axis 1), which needs opset >= 13;
* a DequantizeLinear reads an *activation* (a QuantizeLinear output):
  ONNX Runtime's default int32 bias DQ ("only activation types allowed as
  input to this layer") and, before TensorRT 10, int8 weight initializers
  feeding a DQ are rejected by the parser;
* QOperator ops (QLinearConv, com.microsoft QGemm, ...) are not supported;
* every op is one TensorRT's ONNX parser imports;
* Conv/Gemm/MatMul without DQ on their inputs run in float (warning), and a
  model with no quantized op at all is an error: "INT8" that does nothing.

ONNX Runtime settings that satisfy all rules::

    quantize_static(..., quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "AddQDQPairToWeight": True, "QuantizeBias": False})
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ExportError

# Ops TensorRT's ONNX parser imports (onnx-tensorrt docs/operators.md, 8.5 release:
# "Supported: Y"). A model with anything else fails on the device.
TENSORRT_ONNX_OPS = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
)

# Importers newer than that list: all are "Supported: Y" in the operators.md of TensorRT 9.2,
# so every 10.x (JetPack 6) has them; TensorRT 8.x targets (JetPack 4/5) are held to the list above.
TENSORRT_10_EXTRA_OPS = frozenset({"CastLike", "GroupNormalization", "Hardmax", "IsInf", "LayerNormalization"})

# Integer-arithmetic ("QOperator") ops: ONNX Runtime's other quantized format. Not importable.
QOPERATOR_OPS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearConcat",
        "QLinearGlobalAveragePool",
        "QLinearAveragePool",
        "QLinearLeakyRelu",
        "QLinearSigmoid",
        "QLinearSoftmax",
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "QAttention",
    }
)

# Ops whose inputs TensorRT runs in INT8 when both data and weight come through DQ.
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

_ONNX_INT8, _ONNX_UINT8, _ONNX_INT32 = 3, 2, 6
_TYPE_NAMES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    6: "int32",
    7: "int64",
    10: "float16",
    16: "bfloat16",
    17: "float8e4m3fn",
    22: "int4",
}

FIX_ORT = (
    "quantize with ONNX Runtime QuantFormat.QDQ, QInt8 activations and weights, extra_options="
    "{ActivationSymmetric: True, WeightSymmetric: True, AddQDQPairToWeight: True, QuantizeBias: False}"
)


@dataclass
class QDQIssue:
    """One rule a node breaks. ``severity``: "error" (will not build / not INT8) or "warning"."""

    severity: str
    code: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: [{self.code}] {self.node}: {self.message}"


@dataclass
class QDQReport:
    """Result of :func:`check_qdq_for_tensorrt`. ``passed`` is False if any issue is an error."""

    path: str
    opset: int
    tensorrt_target: str | None
    issues: list[QDQIssue] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[QDQIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[QDQIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def codes(self) -> set[str]:
        return {i.code for i in self.issues}

    def summary(self) -> str:
        """One line: verdict, counts and the first error."""
        target = f"TensorRT {self.tensorrt_target}" if self.tensorrt_target else "TensorRT 8.x and 10.x"
        s = self.stats
        head = (
            f"{Path(self.path).name}: {'PASS' if self.passed else 'FAIL'} for {target} explicit quantization "
            f"({s.get('quantized_ops', 0)}/{s.get('quantizable_ops', 0)} Conv/Gemm/MatMul quantized, "
            f"{s.get('q_nodes', 0)} Q + {s.get('dq_nodes', 0)} DQ nodes, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s))"
        )
        if self.errors:
            head += f"; first: {self.errors[0]}"
        return head

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "opset": self.opset,
            "tensorrt_target": self.tensorrt_target,
            "passed": self.passed,
            "stats": dict(self.stats),
            "issues": [asdict(i) for i in self.issues],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _trt_major(version: str | None) -> int | None:
    if not version:
        return None
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


@dataclass
class _Graph:
    """What the checks look up: constants with their ONNX types, who makes and who reads each tensor."""

    consts: dict[str, np.ndarray]
    const_types: dict[str, int]
    producer: dict[str, Any]
    consumers: dict[str, list[Any]]
    major: int | None  # the target TensorRT major version, None = the strictest (8.x)
    tensorrt_version: str | None


_Add = Any  # add(severity, code, node name, message)


def _name_of(n: Any) -> str:
    return n.name or f"{n.op_type}({','.join(n.output)})"


def _attr(n: Any, key: str, default: Any = None) -> Any:
    return n.attr(key, default)


def check_qdq_for_tensorrt(onnx_path: str | Path, tensorrt_version: str | None = None) -> QDQReport:
    """Check an INT8 QDQ ONNX model against TensorRT's explicit-quantization rules.

    Args:
        onnx_path: the quantized model (e.g. a bundle's ``model.int8.onnx``).
        tensorrt_version: the target TensorRT ("8.5", "10.3"); None applies
            the strictest rules (those of TensorRT 8.x) so a pass means the
            model builds on every supported JetPack.

    Returns:
        A report; ``report.passed`` is the verdict.

    Raises:
        ExportError: the file is missing or is not an ONNX model.
    """
    # Our own protobuf reader, not the onnx package: the device runtime (Python 3.8, no ONNX tooling) runs this.
    from edgemask.utils.onnx_graph import OnnxFormatError, load_model

    path = Path(onnx_path)
    if not path.is_file():
        raise ExportError(f"{path} not found; pass an int8 ONNX file or a bundle folder")
    try:
        model = load_model(path)
    except (OSError, OnnxFormatError) as e:
        raise ExportError(f"{path} is not a readable ONNX model ({e}); re-export it") from None

    graph = model.graph
    opset = model.opset()
    report = QDQReport(path=str(path), opset=opset, tensorrt_target=tensorrt_version)
    add = lambda sev, code, node, msg: report.issues.append(QDQIssue(sev, code, node, msg))  # noqa: E731
    g = _index_graph(graph, path, tensorrt_version)

    if opset < 10:
        add("error", "opset", "model", f"opset {opset} has no QuantizeLinear/DequantizeLinear; export with opset >= 13")
    _check_importable(graph, g, add)

    q_nodes = [n for n in graph.nodes if n.op_type == "QuantizeLinear" and n.domain in ("", "ai.onnx")]
    dq_nodes = [n for n in graph.nodes if n.op_type == "DequantizeLinear" and n.domain in ("", "ai.onnx")]
    report.stats.update(q_nodes=len(q_nodes), dq_nodes=len(dq_nodes))
    if not q_nodes and not dq_nodes and not report.codes() & {"qoperator"}:
        add(
            "error",
            "no-qdq",
            "model",
            "no QuantizeLinear/DequantizeLinear nodes: this is not an explicitly "
            f"quantized (QDQ) model, TensorRT would build it in float; {FIX_ORT}",
        )

    per_channel_seen = False
    for n in q_nodes + dq_nodes:
        _check_scale(n, g, add)
        _check_zero_point(n, g, add)
        per_channel_seen |= _check_per_channel(n, g, add)
        if n.op_type == "QuantizeLinear":
            _check_q_output(n, g, add)
        else:
            _check_dq_input(n, g, add)

    if per_channel_seen and opset < 13:
        add(
            "error",
            "opset",
            "model",
            f"per-channel quantization needs opset >= 13 (model has {opset}); export with opset 13 or newer",
        )
    _check_coverage(graph, g, bool(q_nodes or dq_nodes), report, add)
    return report


def _index_graph(graph: Any, path: Path, tensorrt_version: str | None) -> _Graph:
    """Constants (initializers and Constant nodes), producers and consumers of every tensor."""
    from edgemask.utils.onnx_graph import OnnxFormatError

    consts: dict[str, np.ndarray] = {}
    const_types: dict[str, int] = {}
    tensors = [(t.name, t) for t in graph.initializers]
    tensors += [
        (n.output[0], n.attr("value"))
        for n in graph.nodes
        if n.op_type == "Constant" and n.output and n.attr("value") is not None
    ]
    for name, t in tensors:
        try:
            consts[name] = t.to_array()
        except OnnxFormatError as e:
            raise ExportError(f"{path}: {e}") from None
        const_types[name] = t.data_type
    producer = {o: n for n in graph.nodes for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return _Graph(consts, const_types, producer, consumers, _trt_major(tensorrt_version), tensorrt_version)


def _check_importable(graph: Any, g: _Graph, add: _Add) -> None:
    """Ops TensorRT cannot import at all."""
    importable = TENSORRT_ONNX_OPS | (TENSORRT_10_EXTRA_OPS if g.major is not None and g.major >= 10 else frozenset())
    for n in graph.nodes:
        if n.op_type in QOPERATOR_OPS or n.domain not in ("", "ai.onnx"):
            if n.op_type in QOPERATOR_OPS:
                add(
                    "error",
                    "qoperator",
                    _name_of(n),
                    f"{n.op_type} is ONNX Runtime's QOperator format, which TensorRT does not import; {FIX_ORT}",
                )
            else:
                add(
                    "error",
                    "custom-domain",
                    _name_of(n),
                    f"op {n.domain}::{n.op_type} is not a standard ONNX op; TensorRT imports only the default domain",
                )
        elif n.op_type not in importable:
            target = f"TensorRT {g.tensorrt_version}" if g.tensorrt_version else "TensorRT 8.x"
            add("error", "unsupported-op", _name_of(n), f"{target}'s ONNX parser has no importer for {n.op_type}")


def _check_scale(n: Any, g: _Graph, add: _Add) -> None:
    """A Q/DQ scale: constant, positive, finite."""
    scale_name = n.input[1] if len(n.input) > 1 else ""
    scale = g.consts.get(scale_name)
    if scale is None:
        add(
            "error",
            "scale-not-constant",
            _name_of(n),
            f"scale {scale_name!r} is computed at run time; TensorRT needs scales as initializers",
        )
        return
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        add("error", "scale-not-finite", _name_of(n), f"scale {scale_name!r} has NaN/Inf values; re-calibrate")
    elif np.any(s <= 0):
        add(
            "error",
            "scale-not-positive",
            _name_of(n),
            f"scale {scale_name!r} has values <= 0 (min {s.min():.3g}); "
            "re-calibrate (an all-zero calibration range gives scale 0)",
        )


def _check_zero_point(n: Any, g: _Graph, add: _Add) -> None:
    """A Q/DQ zero point: present, constant int8, all zero."""
    nm = _name_of(n)
    zp_name = n.input[2] if len(n.input) > 2 else ""
    if not zp_name:
        if n.op_type == "QuantizeLinear":
            add(
                "error",
                "uint8",
                nm,
                "QuantizeLinear without a zero point outputs uint8 (ONNX default); "
                "TensorRT supports signed INT8 only — give it an int8 zero point of 0",
            )
        return
    zp = g.consts.get(zp_name)
    zp_type = g.const_types.get(zp_name)
    if zp is None:
        add("error", "zero-point-not-constant", nm, f"zero point {zp_name!r} is not an initializer")
        return
    if zp_type == _ONNX_UINT8:
        add(
            "error",
            "uint8",
            nm,
            "uint8 quantization; TensorRT explicit quantization supports signed "
            f"INT8 only: quantize with QuantType.QInt8; {FIX_ORT}",
        )
    elif zp_type not in (_ONNX_INT8, _ONNX_INT32) and zp_type is not None:
        add("error", "quant-type", nm, f"quantized type {_TYPE_NAMES.get(zp_type, zp_type)} is not INT8")
    if np.any(np.asarray(zp) != 0):
        nz = int(np.count_nonzero(np.asarray(zp)))
        add(
            "error",
            "zero-point-nonzero",
            nm,
            f"{nz} non-zero zero point(s) in {zp_name!r}; TensorRT "
            "quantization is symmetric (zero point 0): use ActivationSymmetric/WeightSymmetric=True",
        )


def _check_per_channel(n: Any, g: _Graph, add: _Add) -> bool:
    """Per-channel placement: weights only, one scale per output channel. True when ``n`` is per-channel."""
    scale_name = n.input[1] if len(n.input) > 1 else ""
    scale = g.consts.get(scale_name)
    size = int(np.asarray(scale).size) if scale is not None else 1
    if size <= 1:
        return False
    nm = _name_of(n)
    axis = int(_attr(n, "axis", 1))
    data = g.consts.get(n.input[0])
    if data is None and n.op_type == "QuantizeLinear":
        add(
            "error",
            "per-channel-activation",
            nm,
            f"per-channel scale ({size} values) on an activation; "
            "TensorRT supports per-channel quantization of weights only",
        )
        return True
    # Find the weight tensor this Q/DQ quantizes and the op that consumes it.
    w_shape = data.shape if data is not None else _weight_shape_through(n, g.producer, g.consts)
    user = _final_consumer(n, g.consumers)
    want = _expected_axis(user, _attr) if user is not None else None
    if w_shape is not None:
        ax = axis % len(w_shape) if len(w_shape) else axis
        if len(w_shape) and w_shape[ax] != size:
            add(
                "error",
                "per-channel-size",
                nm,
                f"{size} scales but the weight has {w_shape[ax]} channels along axis {axis}",
            )
        if want is not None and ax != want:
            add(
                "error",
                "per-channel-axis",
                nm,
                f"per-channel axis {axis} for {user.op_type} weights; TensorRT expects the output-channel axis {want}",
            )
    return True


def _check_dq_input(n: Any, g: _Graph, add: _Add) -> None:
    """What a DequantizeLinear reads: an INT8 activation from a QuantizeLinear (or, on TensorRT 10, int8 weights)."""
    nm = _name_of(n)
    src = n.input[0]
    if src not in g.consts:
        p = g.producer.get(src)
        if p is None or p.op_type != "QuantizeLinear":
            what = "a graph input" if p is None else f"{p.op_type}"
            add(
                "error",
                "dq-without-q",
                nm,
                f"DequantizeLinear reads {what}, not a QuantizeLinear; TensorRT needs Q→DQ pairs",
            )
        return
    t = g.const_types.get(src)
    if t == _ONNX_INT32:
        add(
            "error",
            "int32-dq",
            nm,
            "DequantizeLinear of an int32 initializer (a quantized bias); "
            "TensorRT accepts only activations as DQ input ('only activation types allowed'): "
            "quantize with extra_options QuantizeBias=False",
        )
    elif t == _ONNX_INT8:
        if g.major is None or g.major < 10:
            when = "TensorRT 8.x rejects" if g.major is None else f"TensorRT {g.tensorrt_version} rejects"
            add(
                "error",
                "int8-weight-initializer",
                nm,
                f"{when} int8 weight initializers feeding a "
                "DequantizeLinear (TensorRT 10 accepts them): store weights as float with a Q/DQ "
                "pair, extra_options AddQDQPairToWeight=True",
            )
    else:
        add(
            "error",
            "dq-input-type",
            nm,
            f"DequantizeLinear of a {_TYPE_NAMES.get(t, t)} initializer; expected an INT8 activation",
        )


def _check_q_output(n: Any, g: _Graph, add: _Add) -> None:
    """A QuantizeLinear must feed DequantizeLinear nodes only."""
    bad = [c.op_type for c in g.consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
    if bad:
        add(
            "error",
            "q-without-dq",
            _name_of(n),
            f"QuantizeLinear output feeds {', '.join(sorted(set(bad)))} "
            "instead of a DequantizeLinear; TensorRT needs Q→DQ pairs",
        )


def _check_coverage(graph: Any, g: _Graph, has_qdq: bool, report: QDQReport, add: _Add) -> None:
    """Do Conv/Gemm/MatMul actually get INT8 inputs?"""
    quantizable = [n for n in graph.nodes if n.op_type in QUANTIZABLE_OPS]
    covered = 0
    for n in quantizable:
        ins = [i for i in n.input[:2] if i]
        from_dq = [g.producer.get(i) is not None and g.producer[i].op_type == "DequantizeLinear" for i in ins]
        if all(from_dq):
            covered += 1
        else:
            which = " and ".join(w for w, ok in zip(("data", "weight"), from_dq) if not ok)
            add(
                "warning",
                "not-quantized",
                _name_of(n),
                f"{n.op_type} has no DequantizeLinear on its {which} input; it will run in float",
            )
    report.stats.update(quantizable_ops=len(quantizable), quantized_ops=covered)
    if quantizable and covered == 0 and has_qdq:
        add(
            "error",
            "nothing-quantized",
            "model",
            "no Conv/Gemm/MatMul has Q/DQ on both inputs: an INT8 engine would run entirely in float",
        )


def _weight_shape_through(dq: Any, producer: dict[str, Any], consts: dict[str, np.ndarray]) -> tuple | None:
    """Shape of the float weight behind a Q→DQ pair (AddQDQPairToWeight layout)."""
    q = producer.get(dq.input[0])
    if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in consts:
        return consts[q.input[0]].shape
    return None


def _final_consumer(n: Any, consumers: dict[str, list[Any]]) -> Any | None:
    """The compute op that finally uses a (Q→)DQ output."""
    outs = consumers.get(n.output[0], [])
    if n.op_type == "QuantizeLinear":
        dqs = [c for c in outs if c.op_type == "DequantizeLinear"]
        outs = [c for d in dqs for c in consumers.get(d.output[0], [])]
    for c in outs:
        if c.op_type in QUANTIZABLE_OPS:
            return c
    return None


def _expected_axis(op: Any, attr: Any) -> int | None:
    if op.op_type == "Conv":
        return 0
    # ConvTranspose: not checked. Its weights are (C_in, C_out/group, kH, kW) and NVIDIA's
    # pytorch-quantization toolkit switched its default deconv axis to 0 (TensorRT OSS 8.4.1
    # changelog); we do not know a documented rule precise enough to flag either axis.
    if op.op_type == "Gemm":
        return 0 if int(attr(op, "transB", 0)) == 1 else 1
    if op.op_type == "MatMul":
        return 1
    return None


def check_bundle_int8(bundle_dir: str | Path, tensorrt_version: str | None = None) -> QDQReport:
    """Check the int8 model of a bundle; a BundleError if the bundle has none."""
    from edgemask.bundle import load_bundle

    bundle = load_bundle(bundle_dir, verify=False)
    return check_qdq_for_tensorrt(bundle.model_path("int8"), tensorrt_version)


__all__ = [
    "FIX_ORT",
    "QDQIssue",
    "QDQReport",
    "QOPERATOR_OPS",
    "QUANTIZABLE_OPS",
    "TENSORRT_10_EXTRA_OPS",
    "TENSORRT_ONNX_OPS",
    "check_bundle_int8",
    "check_qdq_for_tensorrt",
]

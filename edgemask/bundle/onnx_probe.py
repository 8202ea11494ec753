"""What an ONNX file holds, read straight from its protobuf bytes (no ``onnx`` package).

The device runtime has ONNX Runtime but not the ``onnx`` package (that is the
train extra), and ONNX Runtime cannot list a graph's nodes. Checking that a
bundle's model file is the one its manifest describes needs only three facts:
the graph input's element type and shape, the op types, and the element types
of the weights. They are a short walk over the protobuf wire format, done
here; the tensor payloads are skipped by their length, never copied.

Field numbers are those of ``onnx.proto`` (ModelProto.graph = 7,
GraphProto.node = 1, .initializer = 5, .input = 11, NodeProto.op_type = 4,
TensorProto.data_type = 2, ValueInfoProto.type = 2, TypeProto.tensor_type = 1,
Tensor.elem_type = 1, .shape = 2, TensorShapeProto.dim = 1, Dimension.dim_value = 1,
.dim_param = 2, TensorProto.name = 8).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

#: ONNX TensorProto.DataType values we name in messages.
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
              11: "float64", 16: "bfloat16"}
#: Op types that mark a quantized (QDQ or QOperator) graph.
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                       "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})

Dim = Union[int, str, None]  # a size, a symbolic name ("N"), or unknown


class OnnxProbeError(Exception):
    """The bytes are not a readable ONNX model; ``args[0]`` says what was wrong."""


@dataclass
class OnnxFacts:
    """The parts of an ONNX model a manifest can be checked against."""

    inputs: List[Tuple[str, Optional[int], List[Dim]]] = field(default_factory=list)  # (name, elem type, dims)
    op_types: Counter = field(default_factory=Counter)
    initializer_types: Counter = field(default_factory=Counter)  # elem type -> count of weight tensors

    @property
    def quantized(self) -> bool:
        return any(op in QUANT_OPS for op in self.op_types)

    @property
    def has_float16_weights(self) -> bool:
        return self.initializer_types.get(10, 0) > 0


def _varint(buf: memoryview, i: int) -> Tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise OnnxProbeError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise OnnxProbeError("varint longer than 64 bits")


def _fields(buf: memoryview) -> Iterator[Tuple[int, int, Union[int, memoryview]]]:
    """(field number, wire type, value) of one message; length-delimited values as views."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise OnnxProbeError("field number 0")
        if wt == 0:
            v, i = _varint(buf, i)
            yield num, wt, v
        elif wt == 2:
            ln, i = _varint(buf, i)
            if i + ln > n:
                raise OnnxProbeError("a field runs past the end of its message (truncated file?)")
            yield num, wt, buf[i:i + ln]
            i += ln
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise OnnxProbeError(f"wire type {wt} (not a protobuf written by ONNX)")
        if i > n:
            raise OnnxProbeError("truncated field")


def _str(v: Union[int, memoryview]) -> str:
    if not isinstance(v, memoryview):
        raise OnnxProbeError("a string field holds a number")
    try:
        return bytes(v).decode("utf-8")
    except UnicodeDecodeError:
        raise OnnxProbeError("a name is not UTF-8") from None


def _value_info(buf: memoryview) -> Tuple[str, Optional[int], List[Dim]]:
    name, elem, dims = "", None, []  # type: str, Optional[int], List[Dim]
    for num, wt, v in _fields(buf):
        if num == 1 and wt == 2:
            name = _str(v)
        elif num == 2 and wt == 2:  # TypeProto
            for tn, twt, tv in _fields(v):  # type: ignore[arg-type]
                if tn == 1 and twt == 2:  # Tensor
                    for en, ewt, ev in _fields(tv):  # type: ignore[arg-type]
                        if en == 1 and ewt == 0:
                            elem = int(ev)  # type: ignore[arg-type]
                        elif en == 2 and ewt == 2:  # TensorShapeProto
                            for dn, dwt, dv in _fields(ev):  # type: ignore[arg-type]
                                if dn == 1 and dwt == 2:
                                    d: Dim = None
                                    for xn, xwt, xv in _fields(dv):  # type: ignore[arg-type]
                                        if xn == 1 and xwt == 0:
                                            d = int(xv)  # type: ignore[arg-type]
                                        elif xn == 2 and xwt == 2:
                                            d = _str(xv)
                                    dims.append(d)
    return name, elem, dims


def probe_onnx_bytes(data: bytes) -> OnnxFacts:
    """Facts of a serialized ModelProto; OnnxProbeError when it is not one."""
    buf = memoryview(data)
    graph = None
    saw_ir = False
    for num, wt, v in _fields(buf):
        if num == 1 and wt == 0:
            saw_ir = True
        elif num == 7 and wt == 2:
            graph = v
    if graph is None or not saw_ir:
        raise OnnxProbeError("no graph or IR version (not an ONNX model)")
    facts = OnnxFacts()
    raw_inputs = []
    init_names = set()
    for num, wt, v in _fields(graph):  # type: ignore[arg-type]
        if num == 1 and wt == 2:  # NodeProto
            for nn, nwt, nv in _fields(v):  # type: ignore[arg-type]
                if nn == 4 and nwt == 2:
                    facts.op_types[_str(nv)] += 1
        elif num == 5 and wt == 2:  # TensorProto
            dtype, name = None, ""
            for tn, twt, tv in _fields(v):  # type: ignore[arg-type]
                if tn == 2 and twt == 0:
                    dtype = int(tv)  # type: ignore[arg-type]
                elif tn == 8 and twt == 2:
                    name = _str(tv)
            facts.initializer_types[dtype] += 1
            init_names.add(name)
        elif num == 11 and wt == 2:
            raw_inputs.append(_value_info(v))  # type: ignore[arg-type]
    # Older exporters list the weights among the graph inputs too.
    facts.inputs = [x for x in raw_inputs if x[0] not in init_names]
    if not facts.op_types:
        raise OnnxProbeError("the graph has no nodes")
    return facts


def probe_onnx(path: Union[str, Path]) -> OnnxFacts:
    """Facts of an ONNX file (see :func:`probe_onnx_bytes`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise OnnxProbeError(f"cannot read it: {e.strerror or e}") from None
    if not data:
        raise OnnxProbeError("empty file")
    return probe_onnx_bytes(data)


def elem_name(t: Optional[int]) -> str:
    return ELEM_TYPES.get(t, f"type {t}") if t is not None else "unknown type"


__all__ = ["ELEM_TYPES", "OnnxFacts", "OnnxProbeError", "QUANT_OPS", "elem_name", "probe_onnx", "probe_onnx_bytes"]

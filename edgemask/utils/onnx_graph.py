"""Read the graph of an ONNX file without the ``onnx`` package.

The device runtime (``pip install edgemask``, Python 3.8 on JetPack 5) has no
ONNX tooling, yet ``engine build`` and ``engine check-qdq`` need to look at a
model: its opset, input shape, nodes, attributes and constant tensors. An
ONNX file is one protobuf ``ModelProto``; this module decodes the protobuf
wire format for the handful of messages and fields that carry those (field
numbers from onnx/onnx.proto3) and skips everything else. It does not write,
check or shape-infer models.

Typical use::

    m = load_model("bundle/model.int8.onnx")
    m.opset()                        # 17
    m.graph.inputs[0].shape          # ("N", 3, 64, 64)
    [n.op_type for n in m.graph.nodes]
    {t.name: t.to_array() for t in m.graph.initializers}
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

# TensorProto.DataType -> numpy dtype (the ones a CNN or its Q/DQ nodes use).
DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}
DTYPE_NAMES = {
    1: "FLOAT",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FLOAT16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    16: "BFLOAT16",
}

# AttributeProto.AttributeType values.
FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS = 1, 2, 3, 4, 5, 6, 7, 8


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


# --------------------------------------------------------------------------- wire format

Fields = Dict[int, List[Tuple[int, Any]]]  # field number -> [(wire type, value)] in file order


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Fields:
    """Split one message into its fields (length-delimited values stay bytes)."""
    out: Fields = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        if pos > end or num == 0:
            raise OnnxFormatError("truncated or corrupt message")
        out.setdefault(num, []).append((wire, val))
    return out


def _signed(v: int) -> int:  # int64 / int32 fields hold two's complement in 64 bits
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(f: Fields, num: int) -> List[int]:
    """A repeated int64/int32 field, packed or not."""
    out: List[int] = []
    for wire, v in f.get(num, []):
        if wire == 0:
            out.append(_signed(v))
        elif wire == 2:
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                out.append(_signed(x))
        else:
            raise OnnxFormatError(f"field {num}: integers with wire type {wire}")
    return out


def _floats(f: Fields, num: int, fmt: str = "f") -> List[float]:
    """A repeated float (``fmt='f'``) or double (``'d'``) field, packed or not."""
    size = struct.calcsize("<" + fmt)
    out: List[float] = []
    for _, v in f.get(num, []):
        out.extend(struct.unpack(f"<{len(v) // size}{fmt}", v))
    return out


def _int(f: Fields, num: int, default: int = 0) -> int:
    vals = _ints(f, num)
    return vals[-1] if vals else default


def _str(f: Fields, num: int) -> str:
    vals = f.get(num)
    return vals[-1][1].decode("utf-8", errors="replace") if vals else ""


def _strs(f: Fields, num: int) -> List[str]:
    return [v.decode("utf-8", errors="replace") for _, v in f.get(num, [])]


def _msgs(f: Fields, num: int) -> List[Fields]:
    return [_fields(v) for wire, v in f.get(num, []) if wire == 2]


# --------------------------------------------------------------------------- messages


@dataclass
class Tensor:
    """A ``TensorProto``: an initializer or a Constant's value."""

    name: str
    data_type: int
    dims: Tuple[int, ...]
    _f: Fields = field(repr=False, default_factory=dict)

    @classmethod
    def parse(cls, f: Fields) -> "Tensor":
        return cls(_str(f, 8), _int(f, 2), tuple(_ints(f, 1)), f)

    def to_array(self) -> np.ndarray:
        """The values as a numpy array of ``dims`` (what ``onnx.numpy_helper.to_array`` gives)."""
        f = self._f
        if _int(f, 14) == 1 or 13 in f:
            raise OnnxFormatError(
                f"tensor {self.name!r} keeps its data in an external file; re-export the model "
                "as one self-contained .onnx"
            )
        dtype = DTYPES.get(self.data_type)
        if dtype is None:
            raise OnnxFormatError(
                f"tensor {self.name!r}: data type "
                f"{DTYPE_NAMES.get(self.data_type, self.data_type)} is not supported here"
            )
        shape = self.dims
        if 9 in f:  # raw_data: little-endian, row-major
            return np.frombuffer(f[9][-1][1], dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
        if self.data_type == 1:
            vals: Any = _floats(f, 4)
        elif self.data_type == 11:
            vals = _floats(f, 10, "d")
        elif self.data_type == 7:
            vals = _ints(f, 7)
        elif self.data_type in (12, 13):
            vals = [v & ((1 << 64) - 1) for v in _ints(f, 11)]
        elif self.data_type == 10:  # float16 bits in int32_data
            return np.array(_ints(f, 5), dtype=np.uint16).view(np.float16).reshape(shape)
        else:  # int8/uint8/int16/uint16/int32/bool in int32_data
            vals = _ints(f, 5)
        return np.array(vals, dtype=dtype).reshape(shape)


@dataclass
class Attribute:
    """An ``AttributeProto``; ``value`` is decoded by type (a Tensor for TENSOR)."""

    name: str
    type: int
    value: Any

    @classmethod
    def parse(cls, f: Fields) -> "Attribute":
        kind = _int(f, 20)
        if kind == 0:  # files from before IR v3 name no type: infer it from the field that is set
            kind = next(
                (
                    k
                    for num, k in (
                        (2, FLOAT),
                        (3, INT),
                        (4, STRING),
                        (5, TENSOR),
                        (6, GRAPH),
                        (7, FLOATS),
                        (8, INTS),
                        (9, STRINGS),
                    )
                    if num in f
                ),
                0,
            )
        value: Any
        if kind == FLOAT:
            value = _floats(f, 2)[-1] if 2 in f else 0.0
        elif kind == INT:
            value = _int(f, 3)
        elif kind == STRING:
            value = f[4][-1][1] if 4 in f else b""
        elif kind == TENSOR:
            value = Tensor.parse(_msgs(f, 5)[-1]) if 5 in f else None
        elif kind == FLOATS:
            value = _floats(f, 7)
        elif kind == INTS:
            value = _ints(f, 8)
        elif kind == STRINGS:
            value = [v for _, v in f.get(9, [])]
        else:  # graphs, sparse tensors, type protos: not needed here
            value = None
        return cls(_str(f, 1), kind, value)


@dataclass
class Node:
    """A ``NodeProto``."""

    name: str
    op_type: str
    domain: str
    input: List[str]
    output: List[str]
    attribute: List[Attribute]

    @classmethod
    def parse(cls, f: Fields) -> "Node":
        return cls(
            _str(f, 3), _str(f, 4), _str(f, 7), _strs(f, 1), _strs(f, 2), [Attribute.parse(a) for a in _msgs(f, 5)]
        )

    def attr(self, key: str, default: Any = None) -> Any:
        """The value of attribute ``key``, ``default`` when the node does not set it."""
        for a in self.attribute:
            if a.name == key:
                return a.value
        return default


@dataclass
class ValueInfo:
    """A graph input or output: name, element type and shape (ints, names of symbolic dims, or None)."""

    name: str
    elem_type: int
    shape: Optional[Tuple[Union[int, str, None], ...]]

    @classmethod
    def parse(cls, f: Fields) -> "ValueInfo":
        elem, shape = 0, None
        for tp in _msgs(f, 2):  # TypeProto
            for tt in _msgs(tp, 1):  # .tensor_type
                elem = _int(tt, 1)
                for sh in _msgs(tt, 2):  # .shape
                    dims: List[Union[int, str, None]] = []
                    for d in _msgs(sh, 1):  # .dim
                        dims.append(_int(d, 1) if 1 in d else (_str(d, 2) or None))
                    shape = tuple(dims)
        return cls(_str(f, 1), elem, shape)


@dataclass
class Graph:
    """A ``GraphProto``: nodes in file order, initializers, inputs and outputs."""

    name: str
    nodes: List[Node]
    initializers: List[Tensor]
    inputs: List[ValueInfo]
    outputs: List[ValueInfo]

    @classmethod
    def parse(cls, f: Fields) -> "Graph":
        return cls(
            _str(f, 2),
            [Node.parse(n) for n in _msgs(f, 1)],
            [Tensor.parse(t) for t in _msgs(f, 5)],
            [ValueInfo.parse(v) for v in _msgs(f, 11)],
            [ValueInfo.parse(v) for v in _msgs(f, 12)],
        )

    def real_inputs(self) -> List[ValueInfo]:
        """Inputs that are not initializers (old exporters list weights as inputs too)."""
        inits = {t.name for t in self.initializers}
        return [i for i in self.inputs if i.name not in inits]


@dataclass
class Model:
    """A ``ModelProto``."""

    ir_version: int
    opset_import: Dict[str, int]
    producer_name: str
    graph: Graph

    def opset(self, domain: str = "") -> int:
        """The opset of ``domain`` ("" = the default ONNX domain, also spelled ``ai.onnx``); 0 if not imported."""
        if domain in ("", "ai.onnx"):
            return self.opset_import.get("", self.opset_import.get("ai.onnx", 0))
        return self.opset_import.get(domain, 0)


def parse_model(data: bytes) -> Model:
    """Decode the bytes of an ``.onnx`` file.

    Raises:
        OnnxFormatError: not a protobuf ModelProto with a graph.
    """
    try:
        f = _fields(bytes(data))
        graphs = _msgs(f, 7)
        if not graphs or 1 not in f:
            raise OnnxFormatError("no ir_version or graph: not an ONNX model")
        opsets = {}
        for o in _msgs(f, 8):
            opsets[_str(o, 1)] = _int(o, 2)
        return Model(_int(f, 1), opsets, _str(f, 2), Graph.parse(graphs[-1]))
    except OnnxFormatError:
        raise
    except (struct.error, ValueError, IndexError, TypeError) as e:  # bytes that only look like protobuf
        raise OnnxFormatError(f"corrupt ONNX model ({type(e).__name__})") from None


def load_model(path: Union[str, Path]) -> Model:
    """Read and decode an ``.onnx`` file (OSError if unreadable, OnnxFormatError if not ONNX)."""
    return parse_model(Path(path).read_bytes())


__all__ = [
    "DTYPE_NAMES",
    "Attribute",
    "Graph",
    "Model",
    "Node",
    "OnnxFormatError",
    "Tensor",
    "ValueInfo",
    "load_model",
    "parse_model",
]

"""edgemask.utils.onnx_graph: the onnx-free reader agrees with the onnx package, and refuses junk.

The first tests build models with onnx.helper (the workstation suite); the
hand-encoded ones and the prebuilt-bundle one run on the Python 3.8 job too.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from edgemask.utils.onnx_graph import OnnxFormatError, load_model, parse_model


def _onnx():
    return pytest.importorskip("onnx", reason="the comparison builds models with onnx (the train extra)")


def _rich_model(onnx):
    """Every kind of field the reader decodes: typed and raw tensors, each attribute type, symbolic dims."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(-12, 12, dtype=np.float32).reshape(4, 3, 1, 2) / 7
    inits = [
        numpy_helper.from_array(w, "w_raw"),  # raw_data
        helper.make_tensor("w_typed", TensorProto.FLOAT, [2, 2], [1.5, -2.0, 3.25, 0.0]),  # float_data
        helper.make_tensor("zp", TensorProto.INT8, [3], [0, -7, 127]),  # int32_data, negative
        helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1 << 40]),  # int64_data
        helper.make_tensor("half", TensorProto.FLOAT16, [2], np.array([0.5, -3.0], np.float16).view(np.uint16)),
        numpy_helper.from_array(np.array([255, 0, 7], np.uint8), "u8"),
        numpy_helper.from_array(np.array(2.5, np.float64), "scalar"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "w_raw"], ["c"], name="conv", pads=[0, 0, 0, 1], group=1, auto_pad="NOTSET", dilations=[1, 1]
        ),
        helper.make_node("LeakyRelu", ["c"], ["r"], alpha=-0.25),
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kt", TensorProto.INT32, [2], [-3, 4])),
        helper.make_node("QuantizeLinear", ["r", "scalar", "zp"], ["q"], axis=-1, domain=""),
        helper.make_node("Custom", ["q"], ["y"], domain="com.example", names=["a", "b"], scales=[0.5, 2.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("w_raw", TensorProto.FLOAT, [4, 3, 1, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 3)], producer_name="test"
    )


def test_agrees_with_the_onnx_package(tmp_path):
    onnx = _onnx()
    from onnx import helper, numpy_helper

    ref = _rich_model(onnx)
    path = tmp_path / "m.onnx"
    onnx.save(ref, str(path))
    m = load_model(path)
    assert m.opset() == 17 and m.opset("ai.onnx") == 17 and m.opset("com.example") == 3 and m.opset("x") == 0
    assert m.ir_version == ref.ir_version and m.producer_name == "test" and m.graph.name == "g"
    assert [(n.name, n.op_type, n.domain, n.input, n.output) for n in m.graph.nodes] == [
        (n.name, n.op_type, n.domain, list(n.input), list(n.output)) for n in ref.graph.node
    ]
    for mine, theirs in zip(m.graph.nodes, ref.graph.node):
        assert [a.name for a in mine.attribute] == [a.name for a in theirs.attribute]
        for a, b in zip(mine.attribute, theirs.attribute):
            want = helper.get_attribute_value(b)
            if a.type == 4:
                assert np.array_equal(a.value.to_array(), numpy_helper.to_array(want))
            elif a.type in (6, 7, 8):  # FLOATS, INTS, STRINGS
                assert a.value == list(want), (a, want)
            else:
                assert a.value == want, (a, want)
    for t, u in zip(m.graph.initializers, ref.graph.initializer):
        a, b = t.to_array(), numpy_helper.to_array(u)
        assert (t.name, t.data_type, a.dtype, a.shape) == (u.name, u.data_type, b.dtype, b.shape)
        assert np.array_equal(a, b), t.name
    assert [(i.name, i.shape) for i in m.graph.inputs] == [("x", ("N", 3, 8, 8)), ("w_raw", (4, 3, 1, 2))]
    assert [i.name for i in m.graph.real_inputs()] == ["x"] and m.graph.outputs[0].shape is None
    assert m.graph.nodes[1].attr("alpha") == -0.25 and m.graph.nodes[3].attr("axis") == -1
    assert m.graph.nodes[0].attr("missing", "dflt") == "dflt"


def test_external_data_is_a_clear_error(tmp_path):
    onnx = _onnx()
    from onnx import numpy_helper

    model = _rich_model(onnx)
    big = numpy_helper.from_array(np.ones((64, 64), np.float32), "big")
    model.graph.initializer.append(big)
    onnx.save(
        model,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.data",
        size_threshold=1024,
    )
    t = {t.name: t for t in load_model(tmp_path / "m.onnx").graph.initializers}["big"]
    with pytest.raises(OnnxFormatError, match="external file"):
        t.to_array()


# --- a ModelProto encoded by hand (no onnx package needed) ---


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint(num << 3 | wire)


def _ld(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _varint(len(payload)) + payload


def _vi(num: int, n: int) -> bytes:
    return _key(num, 0) + _varint(n)


def test_hand_encoded_model():
    packed = b"".join(_varint(v) for v in (2, -3))  # INT64 data as one packed field
    tensor = _vi(1, 2) + _vi(2, 7) + _ld(7, packed) + _ld(8, b"t")
    attr_ints = _ld(1, b"perm") + _vi(20, 7) + _vi(8, 1) + _vi(8, -1)  # INTS, not packed
    attr_f = _ld(1, b"alpha") + _vi(20, 1) + _key(2, 5) + struct.pack("<f", 0.125)
    unknown = _ld(99, b"ignored") + _vi(98, 5)  # fields this reader does not know are skipped
    node = (
        _ld(1, b"x")
        + _ld(2, b"y")
        + _ld(3, b"n0")
        + _ld(4, b"Transpose")
        + _ld(5, attr_ints)
        + _ld(5, attr_f)
        + unknown
    )
    dim = _ld(1, _vi(1, 1)) + _ld(1, _ld(2, b"H")) + _ld(1, b"")
    value_info = _ld(1, b"x") + _ld(2, _ld(1, _vi(1, 1) + _ld(2, dim)))
    graph = _ld(1, node) + _ld(2, b"g") + _ld(5, tensor) + _ld(11, value_info)
    model = _vi(1, 8) + _ld(8, _ld(1, b"") + _vi(2, 13)) + _ld(7, graph) + unknown
    m = parse_model(model)
    assert m.ir_version == 8 and m.opset() == 13
    (n,) = m.graph.nodes
    assert (n.name, n.op_type, n.input, n.output) == ("n0", "Transpose", ["x"], ["y"])
    assert n.attr("perm") == [1, -1] and n.attr("alpha") == 0.125
    (t,) = m.graph.initializers
    assert t.to_array().tolist() == [2, -3] and t.to_array().dtype == np.int64
    assert m.graph.inputs[0].shape == (1, "H", None)


@pytest.mark.parametrize(
    "junk", [b"", b"\x00not an onnx file", b"\x08\x08", b"\x08" + b"\xff" * 12, b"\x0a\x05ab", b"\x3a\x02\x0f\x00"]
)
def test_junk_is_an_onnx_format_error(junk):
    with pytest.raises(OnnxFormatError):
        parse_model(junk)


def test_reads_the_models_a_workstation_exported():
    """On the Python 3.8 job: the bundle the 3.10+ interpreter exported (tests/bundle_cache.py)."""
    root = os.environ.get("EDGEMASK_TEST_BUNDLES")
    if not root:
        pytest.skip("EDGEMASK_TEST_BUNDLES is not set (the Python 3.8 job of .ci/run sets it)")
    bundle = Path(root) / "backends" / "bundle"
    for f in ("model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx"):
        m = load_model(bundle / f)
        assert m.opset() == 17 and [(i.name, i.shape[1:]) for i in m.graph.real_inputs()] == [("input", (3, 32, 32))]
        assert all(t.to_array().size > 0 for t in m.graph.initializers)
    ops = {n.op_type for n in load_model(bundle / "model.int8.onnx").graph.nodes}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops

"""Is a bundle's model file the one its manifest describes? Checked before any session is made.

A model whose input shape or precision disagrees with ``manifest.json`` used
to surface as an ONNX Runtime traceback on the first frame (``Got invalid
dimensions for input``), or worse, ran and reported numbers under the wrong
precision label. :func:`check_onnx_model` reads the graph's input and op
types from the file's protobuf bytes (:mod:`edgemask.utils.onnx_graph`, so
it works on the device runtime, which has no ``onnx`` package) and refuses a
mismatch in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List

from edgemask.errors import ModelError
from edgemask.utils.onnx_graph import DTYPE_NAMES, OnnxFormatError, load_model

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle.manifest import BundleManifest, ModelEntry

_FLOAT, _FLOAT16 = 1, 10
#: Op types that mark a quantized graph (QDQ, or ONNX Runtime's QOperator form).
QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    }
)


def _elem_name(t: int) -> str:
    return {_FLOAT: "float32", _FLOAT16: "float16"}.get(t) or DTYPE_NAMES.get(t, f"type {t}").lower()


def _fmt(dims: List[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _shape_matches(got: List[Any], want: List[Any]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        # A symbolic or unknown size in the file accepts any size; "N" in the manifest accepts any batch.
        if isinstance(g, int) and isinstance(w, int) and g != w and g > 0:
            return False
    return True


def onnx_model_problem(path: Path, entry: "ModelEntry", manifest: "BundleManifest") -> str | None:
    """Why ``path`` is not the ``entry`` of ``manifest`` (one line), or None when it is."""
    rel = entry.file
    try:
        model = load_model(path)
    except OSError as e:
        return f"cannot read {rel} ({e.strerror or e}); copy the whole bundle folder again"
    except OnnxFormatError as e:
        return f"{rel} is not a readable ONNX model ({e}); the file is damaged, re-export the bundle or copy it again"
    graph = model.graph
    if not graph.nodes:
        return f"{rel} is not a readable ONNX model (its graph has no nodes); re-export the bundle or copy it again"
    inputs = graph.real_inputs()
    if len(inputs) != 1:
        return (
            f"{rel} has {len(inputs)} graph inputs, an edgemask model has one ({manifest.input.name!r}); "
            "it is not this bundle's model, re-export the bundle"
        )
    elem, dims = inputs[0].elem_type, list(inputs[0].shape or ())
    want = list(manifest.input.shape)
    if not _shape_matches(dims, want):
        return (
            f"{rel} takes input {_fmt(dims)} but the manifest says {_fmt(want)}; the model file does not belong "
            "to this bundle, re-export it"
        )
    allowed = (_FLOAT, _FLOAT16) if entry.precision == "fp16" else (_FLOAT,)
    if elem not in allowed:
        return (
            f"{rel} takes {_elem_name(elem)} input but a {entry.precision} edgemask model takes float32 pixels; "
            "the model file does not belong to this bundle, re-export it"
        )
    if any(n.op_type in QUANT_OPS for n in graph.nodes):
        held = "int8 (quantized, with QuantizeLinear/DequantizeLinear)"
    elif any(t.data_type == _FLOAT16 for t in graph.initializers):
        held = "fp16 (float16 weights)"
    else:
        held = "fp32 (float32 weights, no quantization)"
    if held.split()[0] != entry.precision:
        return (
            f"{rel} holds an {held} model but the manifest lists it as {entry.precision}; the bundle's model files "
            "are mixed up, re-export it"
        )
    return None


def check_onnx_model(path: Path, entry: "ModelEntry", manifest: "BundleManifest") -> None:
    """Raise ModelError (one line) when :func:`onnx_model_problem` finds one."""
    why = onnx_model_problem(path, entry, manifest)
    if why:
        raise ModelError(why)


__all__ = ["check_onnx_model", "onnx_model_problem"]

"""Is a bundle's model file the one its manifest describes? Checked before any session is made.

A model whose input shape or precision disagrees with ``manifest.json`` used
to surface as an ONNX Runtime traceback on the first frame (``Got invalid
dimensions for input``), or worse, ran and reported numbers under the wrong
precision label. :func:`check_onnx_model` reads the graph's input and op
types from the file's protobuf bytes (:mod:`edgemask.bundle.onnx_probe`, so
it works on the device runtime, which has no ``onnx`` package) and refuses a
mismatch in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List

from edgemask.bundle.onnx_probe import OnnxProbeError, elem_name, probe_onnx
from edgemask.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle.manifest import BundleManifest, ModelEntry

_FLOAT, _FLOAT16 = 1, 10


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
        facts = probe_onnx(path)
    except OnnxProbeError as e:
        return f"{rel} is not a readable ONNX model ({e.args[0]}); the file is damaged, re-export the bundle or copy it again"
    if len(facts.inputs) != 1:
        return (f"{rel} has {len(facts.inputs)} graph inputs, an edgemask model has one ({manifest.input.name!r}); "
                "it is not this bundle's model, re-export the bundle")
    name, elem, dims = facts.inputs[0]
    want = list(manifest.input.shape)
    if not _shape_matches(dims, want):
        return (f"{rel} takes input {_fmt(dims)} but the manifest says {_fmt(want)}; the model file does not belong "
                "to this bundle, re-export it")
    allowed = (_FLOAT, _FLOAT16) if entry.precision == "fp16" else (_FLOAT,)
    if elem not in allowed:
        return (f"{rel} takes {elem_name(elem)} input but a {entry.precision} edgemask model takes float32 pixels; "
                "the model file does not belong to this bundle, re-export it")
    if facts.quantized:
        held = "int8 (quantized, with QuantizeLinear/DequantizeLinear)"
    elif facts.has_float16_weights:
        held = "fp16 (float16 weights)"
    else:
        held = "fp32 (float32 weights, no quantization)"
    if held.split()[0] != entry.precision:
        return (f"{rel} holds an {held} model but the manifest lists it as {entry.precision}; the bundle's model files "
                "are mixed up, re-export it")
    return None


def check_onnx_model(path: Path, entry: "ModelEntry", manifest: "BundleManifest") -> None:
    """Raise ModelError (one line) when :func:`onnx_model_problem` finds one."""
    why = onnx_model_problem(path, entry, manifest)
    if why:
        raise ModelError(why)


__all__ = ["check_onnx_model", "onnx_model_problem"]

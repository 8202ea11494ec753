"""torch → ONNX (fp32), checked, optionally simplified, and loaded back safely.

We use the TorchScript exporter (``dynamo=False``) on purpose: torch 2.13's
default dynamo exporter wrote opset 18 plus an external ``.onnx.data`` file for
our nets, could not go down to 17, and OpenCV 4.14's importer died with SIGFPE
on its output. The TorchScript exporter writes any opset from 11 to 18 as one
self-contained file, which TensorRT's parser, ONNX Runtime and OpenCV all read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError, ExportError
from edgemask.export.config import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from edgemask.utils.io import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class OnnxExportInfo:
    """What :func:`onnx_from_torch` did; goes into the manifest's model entry."""

    path: str
    opset: int
    exporter: str = "torch.onnx (TorchScript, dynamo=False)"
    simplified_by: str | None = None  # "onnxslim 0.1.98" / "onnxsim 0.4.36" / None
    simplify_error: str | None = None  # why a simplifier that was present was not used
    nodes: int = 0
    op_types: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_opset(opset: int) -> int:
    """Validate a target opset; a ConfigError naming the supported range otherwise."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"ONNX opset {opset!r} is not supported; choose {MIN_OPSET}..{MAX_OPSET} "
            f"({DEFAULT_OPSET} by default, 13 for TensorRT 8.2 / JetPack 4.6)"
        )
    return opset


def load_onnx(path: str | Path):
    """Load and structurally check an ONNX file.

    A truncated or corrupted file fails protobuf parsing or the checker; both
    become one ExportError that says to re-export.

    Returns:
        The ``onnx.ModelProto``.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {path} does not exist; export it with 'edgemask export'")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, OSError: all mean "this file is damaged"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExportError(
            f"{path} is not a valid ONNX model ({type(e).__name__}: {first}); the file is truncated "
            "or corrupted, re-export it with 'edgemask export' or copy it again"
        ) from None
    if len(model.graph.node) == 0:
        raise ExportError(f"{path} has an empty graph; re-export it with 'edgemask export'")
    return model


def _simplify(model, enabled: bool) -> tuple[Any, str | None, str | None]:
    """Run onnxslim or onnxsim when installed; neither is a hard dependency.

    Returns:
        (model, tool-and-version or None, error or None).
    """
    if not enabled:
        return model, None, None
    try:
        import onnxslim  # type: ignore[import-not-found]
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        try:
            slim = onnxslim.slim(model)
            if slim is not None:
                return slim, f"onnxslim {getattr(onnxslim, '__version__', '?')}", None
        except Exception as e:  # a simplifier bug must not stop the export: keep the plain graph
            return model, None, f"onnxslim failed: {type(e).__name__}: {str(e)[:120]}"
    try:
        import onnxsim  # type: ignore[import-not-found]
    except ImportError:
        return model, None, None
    try:
        simplified, ok = onnxsim.simplify(model)
        if ok:
            return simplified, f"onnxsim {getattr(onnxsim, '__version__', '?')}", None
        return model, None, "onnxsim could not validate its result"
    except Exception as e:
        return model, None, f"onnxsim failed: {type(e).__name__}: {str(e)[:120]}"


def onnx_from_torch(
    model,
    path: str | Path,
    *,
    input_size: int,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    in_chans: int = 3,
    input_hw: tuple[int, int] | None = None,
    output_name: str = OUTPUT_NAME,
) -> OnnxExportInfo:
    """Export a model as a self-contained fp32 ONNX file with a dynamic batch axis.

    The graph takes ``input`` (N, C, S, S) float32 in [0, 1] and returns
    ``logits`` (N, K); normalization is inside the graph. The file is written
    to a temporary name, checked with the full ONNX checker and shape
    inference, optionally simplified, and renamed into place.

    Args:
        model: a torch module (put into eval mode here; BatchNorm is folded
            into the convolutions by the exporter in eval mode).
        path: where to write the ``.onnx`` file.
        input_size: S, the side of the square input.
        opset: target ONNX opset, 11..18.
        simplify: try onnxslim / onnxsim if installed.
        in_chans: C.
        input_hw: (H, W) of a non-square input (the face detector's); overrides ``input_size``.
        output_name: the graph output's name (``logits``; the detector's is ``head``).

    Raises:
        ConfigError: unsupported opset.
        ExportError: the exporter or the checker failed.
    """
    import onnx
    import torch

    check_opset(opset)
    path = Path(path)
    model = model.eval()
    h, w = input_hw if input_hw is not None else (input_size, input_size)
    dummy = torch.rand(2, in_chans, int(h), int(w))  # batch 2 so no dimension is specialised to 1
    with atomic_path(path, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                # The TorchScript exporter warns that it is deprecated; it is still the one that works (see above).
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[output_name],
                    dynamic_axes={INPUT_NAME: {0: "N"}, output_name: {0: "N"}},
                    do_constant_folding=True,
                )
        except Exception as e:
            raise ExportError(
                f"torch.onnx.export failed at opset {opset} ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                f"try another --opset ({MIN_OPSET}..{MAX_OPSET})"
            ) from e
        proto = onnx.load(str(tmp))
        proto, simplified_by, simplify_error = _simplify(proto, simplify)
        try:
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
            onnx.save(proto, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as e:
            raise ExportError(
                f"the exported ONNX graph failed the ONNX checker ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:200]}); try another --opset or report a bug"
            ) from e
        written_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
        if written_opset != opset:
            raise ExportError(
                f"asked for opset {opset} but the exporter wrote {written_opset}; "
                f"pick an opset in {MIN_OPSET}..{MAX_OPSET} this torch supports"
            )
        op_types: dict[str, int] = {}
        for n in proto.graph.node:
            op_types[n.op_type] = op_types.get(n.op_type, 0) + 1
    return OnnxExportInfo(
        path=str(path),
        opset=written_opset,
        simplified_by=simplified_by,
        simplify_error=simplify_error,
        nodes=len(proto.graph.node),
        op_types=op_types,
    )


def onnx_opset(model) -> int:
    """The default-domain opset of a loaded ONNX model."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def ort_logits(path: str | Path, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run an ONNX file on ONNX Runtime's CPU provider.

    Args:
        inputs: (N, C, S, S) float32 in [0, 1].

    Returns:
        (N, K) float32 logits.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # QDQ models log a warning per node otherwise
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(
            f"ONNX Runtime cannot load {path} ({type(e).__name__}: {str(e)[:200]}); "
            "re-export it, or try another --opset"
        ) from None
    name = sess.get_inputs()[0].name
    outs = [
        sess.run(None, {name: np.ascontiguousarray(inputs[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outs, axis=0).astype(np.float32)


# The OpenCV check runs in a child process: OpenCV's importer has died with
# SIGFPE on files it dislikes, and that must not take the export down with it.
_OPENCV_SCRIPT = r"""
import json, sys
import numpy as np
import cv2
model, inputs, out = sys.argv[1:4]
net = cv2.dnn.readNetFromONNX(model)
x = np.load(inputs)
logits = []
for i in range(len(x)):  # batch 1: the case camera apps run, and the one every importer supports
    net.setInput(np.ascontiguousarray(x[i:i + 1]))
    logits.append(np.asarray(net.forward(), dtype=np.float32).reshape(1, -1))
np.save(out, np.concatenate(logits, 0))
print(json.dumps({"opencv": cv2.__version__}))
"""


def opencv_check(
    path: str | Path, inputs: np.ndarray, reference: np.ndarray, timeout: float = 120.0, return_outputs: bool = False
) -> dict[str, Any]:
    """Load an ONNX file with ``cv2.dnn.readNetFromONNX`` and compare its logits.

    Many camera apps run ONNX through OpenCV's DNN module, so the fp32 export
    must load and agree there too.

    Args:
        inputs: (N, 3, S, S) float32 in [0, 1] (the blob OpenCV gets: NCHW float).
        reference: (N, K) logits (or any (N, ...) output) to compare with (ONNX Runtime or torch).
        return_outputs: also return OpenCV's outputs (``"outputs"``, not JSON-able).

    Returns:
        ``{"ok": bool, "opencv": version, "max_abs_diff", "agreement"}`` or
        ``{"ok": False, "error": ...}``; never raises for an OpenCV failure.
    """
    with tempfile.TemporaryDirectory(prefix="edgemask-cv2-") as td:
        inp, out = Path(td) / "inputs.npy", Path(td) / "out.npy"
        np.save(inp, np.asarray(inputs, dtype=np.float32))
        # OMP_NUM_THREADS is OpenMP's, not an edgemask knob (edgemask/config.py): set for the child only.
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _OPENCV_SCRIPT, str(path), str(inp), str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"OpenCV did not finish within {timeout:.0f} s"}
        if proc.returncode != 0:
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
            return {"ok": False, "error": f"OpenCV failed ({why}) {tail}".strip()}
        got = np.load(out)
        version = json.loads(proc.stdout.strip().splitlines()[-1]).get("opencv", "?")
    if got.size == reference.size and got.shape[0] == reference.shape[0]:
        got = got.reshape(reference.shape)  # each forward was flattened; a detector head is (N, 5, h, w)
    if got.shape != reference.shape:
        return {"ok": False, "opencv": version, "error": f"output shape {got.shape} != {reference.shape}"}
    out = {"ok": True, "opencv": version, "max_abs_diff": float(np.max(np.abs(got - reference)))}
    if reference.ndim == 2:  # logits: also the decisions
        out["agreement"] = float(np.mean(got.argmax(1) == reference.argmax(1)))
    if return_outputs:
        out["outputs"] = got
    return out

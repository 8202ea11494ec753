"""fp16 and int8 (QDQ) ONNX models made from the fp32 export.

int8 uses ONNX Runtime's static quantization in QDQ form with symmetric
scales everywhere: per-output-channel int8 weights and per-tensor int8
activations, all zero points 0, biases left float. That is the form TensorRT's explicit
quantization consumes, so the same ``model.int8.onnx`` runs on ONNX Runtime
here and becomes an INT8 engine on a Jetson. (ONNX Runtime's defaults leave
non-zero activation zero points, which TensorRT rejects; see DESIGN.md §8.)
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgemask.errors import ConfigError, ExportError
from edgemask.export.config import CALIBRATION_METHODS
from edgemask.export.onnx_export import INPUT_NAME, load_onnx
from edgemask.utils.io import atomic_path

#: int8 symmetric range used by ONNX Runtime and TensorRT: [-127, 127], so scale = amax / 127.
INT8_QMAX = 127

#: Where Q/DQ nodes go, per consumer of ``model.int8.onnx`` (``ExportConfig.int8_target``).
#:
#: * ``tensorrt``: Q/DQ only on the inputs of Conv/Gemm/MatMul (TensorRT's recommended placement;
#:   it fuses Conv+ReLU and carries int8 through ReLU/MaxPool itself). ONNX Runtime's CPU provider
#:   cannot fuse this into integer kernels and runs it as float ops on exactly-quantized tensors,
#:   i.e. a faithful emulation of the int8 model, but no faster than fp32.
#: * ``cpu``: ONNX Runtime's own placement (Conv/Gemm outputs quantized too), which its CPU
#:   provider fuses into QLinearConv/QGemm integer kernels. Weights use ``reduce_range`` (7 bits):
#:   x86 CPUs without VNNI multiply u8×s8 pairs into saturating int16 sums, and full 8-bit
#:   weights there flipped 1.6% of predictions on a 64×64 seed_cnn (0.3% with 7 bits).
INT8_TARGETS = ("tensorrt", "cpu")


# ---------------------------------------------------------------- fp16
def fp16_from_onnx(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Convert an fp32 ONNX model to fp16 weights and activations, float32 I/O.

    ``keep_io_types=True`` keeps the ``input``/``logits`` tensors float32 (Cast
    nodes are inserted), so every consumer feeds the same array to every
    precision.

    Returns:
        Info for the manifest's model entry (``{"converter": ..., "keep_io_types": True}``).
    """
    import onnx
    from onnxconverter_common import __version__ as occ_version
    from onnxconverter_common.float16 import convert_float_to_float16

    model = load_onnx(src)
    # The converter keeps the float32 value_info of a tensor it reroutes through a Cast around an op it
    # leaves in float32 (Resize, in the face detector's FPN), so the checker then finds an Add fed fp16
    # and "float32"; without value_info the checker infers every type afresh.
    del model.graph.value_info[:]
    try:
        # The converter warns when weights fall outside fp16's range (tiny ones become 0, huge
        # ones inf); that is worth recording in the manifest rather than printing mid-progress-bar.
        with _quiet("onnxconverter_common"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as e:
        raise ExportError(
            f"fp16 conversion of {src} failed ({type(e).__name__}: {str(e)[:200]}); "
            "export without fp16 (--precision fp32,int8)"
        ) from e
    with atomic_path(dst, suffix=".onnx") as tmp:
        onnx.save(half, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    info: dict[str, Any] = {"converter": f"onnxconverter-common {occ_version}", "keep_io_types": True}
    notes = sorted({str(w.message).strip().splitlines()[0][:160] for w in caught})
    if notes:
        info["conversion_warnings"] = notes
    return info


# ---------------------------------------------------------------- int8
@dataclass
class Int8Info:
    """What :func:`int8_from_onnx` did.

    Attributes:
        quantization: the manifest's ``ModelEntry.quantization`` dict.
        table: activation ranges, tensor name → ``{"amax", "scale", ...}``
            (what ``calibration/table.json`` stores; see ``calibration.write_table``).
    """

    quantization: dict[str, Any]
    table: dict[str, dict[str, float | str | bool]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ArrayReader:
    """A CalibrationDataReader over an in-memory (N, C, S, S) float32 array."""

    def __init__(self, images: np.ndarray, batch_size: int):
        self.images, self.batch_size, self.i = images, batch_size, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.images):
            return None
        batch = self.images[self.i : self.i + self.batch_size]
        self.i += self.batch_size
        return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return len(self.images)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence chatty library loggers (ORT's quantizer prints per-run advice)."""
    saved = [(lg, lg.level) for lg in (logging.getLogger(n) for n in ("", *loggers))]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in saved:
            lg.setLevel(lvl)


#: Histogram of the entropy (KL) calibration, as TensorRT's entropy calibrator uses it. ORT's
#: quantize_static cannot pass bin counts to its calibrator and defaults to 128/128, where the
#: search has a single candidate and "entropy" silently equals minmax; so we run it ourselves.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128


def _entropy_ranges(
    model_path: Path, images: np.ndarray, batch_size: int, workdir: Path
) -> dict[str, tuple[float, float]]:
    """Per-tensor (rmin, rmax) from KL-divergence calibration with TensorRT's histogram sizes."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    cal = create_calibrator(
        Path(model_path),
        [],
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": True},
    )
    cal.collect_data(_ArrayReader(images, batch_size))
    data = cal.compute_data()
    return {
        name: (float(np.asarray(t.range_value[0]).reshape(-1)[0]), float(np.asarray(t.range_value[1]).reshape(-1)[0]))
        for name, t in data.data.items()
    }


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    m = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }.get(method)
    if m is None:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    return m


def _initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def qdq_problems(model) -> list[str]:
    """Every Q/DQ node whose zero point is not an int8 zero (TensorRT needs symmetric int8).

    Args:
        model: an ``onnx.ModelProto`` or a path.

    Returns:
        One line per offending node; empty when all are symmetric int8.
    """
    if not hasattr(model, "graph"):
        model = load_onnx(model)
    inits = _initializers(model)
    problems = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) < 3 or not n.input[2]:
            # A missing zero point means 0 but also uint8 output for Q: not what TensorRT wants.
            problems.append(f"{n.op_type} {n.name or n.output[0]}: no zero point (defaults to uint8)")
            continue
        zp = inits.get(n.input[2])
        if zp is None:
            problems.append(f"{n.op_type} {n.name or n.output[0]}: zero point {n.input[2]!r} is not a constant")
        elif zp.dtype != np.int8:
            problems.append(f"{n.op_type} {n.name or n.output[0]}: zero point dtype {zp.dtype}, expected int8")
        elif np.any(zp != 0):
            problems.append(f"{n.op_type} {n.name or n.output[0]}: non-zero zero point {zp.flatten()[:4].tolist()}")
    return problems


def check_qdq_symmetric(model) -> int:
    """Raise unless every Q/DQ node is symmetric int8 (zero point 0).

    Returns:
        The number of Q/DQ nodes checked.

    Raises:
        ExportError: listing the first offending node.
    """
    if not hasattr(model, "graph"):
        model = load_onnx(model)
    problems = qdq_problems(model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(
            f"int8 model is not symmetric: {problems[0]}{more}; TensorRT's explicit quantization "
            "needs zero points of 0 (ActivationSymmetric/WeightSymmetric)"
        )
    return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _drop_output_qdq(model) -> int:
    """Remove Q→DQ pairs that sit directly on graph outputs; returns how many.

    ORT quantizes the final Gemm's output too. On logits that only clips them
    to the calibration range (two saturated classes then tie), and TensorRT
    would then emit int8 logits; leaving the last layer's output in float is
    what a classifier wants.
    """
    outputs = {o.name for o in model.graph.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    dropped = 0
    for out in outputs:
        dq = producer.get(out)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(q.output[0], 0) != 1:
            continue
        src = producer.get(q.input[0])
        if src is None or consumers.get(q.input[0], 0) != 1:
            continue
        for k, name in enumerate(src.output):
            if name == q.input[0]:
                src.output[k] = out
        model.graph.node.remove(q)
        model.graph.node.remove(dq)
        dropped += 1
    if dropped:  # Q/DQ scale initializers of the removed pair are now unused
        used = {i for n in model.graph.node for i in n.input}
        for init in list(model.graph.initializer):
            if init.name not in used:
                model.graph.initializer.remove(init)
    return dropped


def _output_is_quantized(model) -> bool:
    """Whether any graph output comes straight out of a DequantizeLinear."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return any(producer.get(o.name) == "DequantizeLinear" for o in model.graph.output)


def _raw_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """(rmin, rmax) per tensor from ORT's calibration cache JSON, if it parses."""

    def val(v: Any) -> float:
        if isinstance(v, dict):
            v = v.get("data")
        return float(np.asarray(v, dtype=np.float64).reshape(-1)[0])

    try:
        raw = json.loads(path.read_text())
        return {name: (val(d["lowest"]), val(d["highest"])) for name, d in raw["data"].items()}
    except Exception:  # an internal ORT format; the table works without it
        return {}


def activation_table(
    qdq_model,
    fp32_tensor_names: set[str],
    raw: dict[str, tuple[float, float]] | None = None,
    input_range: tuple[float, float] | None = (0.0, 1.0),
) -> dict[str, dict[str, Any]]:
    """Per-tensor activation ranges as the int8 model uses them.

    Read back from the QuantizeLinear scales of the QDQ model, so the table
    (and the TensorRT cache made from it) can never disagree with
    ``model.int8.onnx``: amax = scale · 127.

    Args:
        qdq_model: the quantized ``onnx.ModelProto``.
        fp32_tensor_names: tensor names of the fp32 graph; ``in_fp32_graph``
            says whether TensorRT can apply an entry to ``model.fp32.onnx``.
        raw: the calibrator's (rmin, rmax) per tensor, when known.
        input_range: range of the graph input, known from the input spec
            ([0, 1] pixels); added as an entry with ``source: "input_spec"``.

    Returns:
        tensor name → ``{"amax", "scale", "rmin"?, "rmax"?, "in_fp32_graph", "source"}``.
    """
    inits = _initializers(qdq_model)
    table: dict[str, dict[str, Any]] = {}
    if input_range is not None:
        amax = float(max(abs(input_range[0]), abs(input_range[1])))
        table[INPUT_NAME] = {
            "amax": amax,
            "scale": amax / INT8_QMAX,
            "rmin": float(input_range[0]),
            "rmax": float(input_range[1]),
            "in_fp32_graph": INPUT_NAME in fp32_tensor_names,
            "source": "input_spec",
        }
    for n in qdq_model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        name = n.input[0]
        if name not in fp32_tensor_names and name.endswith("_QuantizeLinear_Input"):
            name = name[: -len("_QuantizeLinear_Input")]  # ORT renames a quantized graph output's producer
        scale = inits.get(n.input[1])
        if scale is None or scale.size != 1:
            continue  # per-channel scales belong to weights, which TensorRT reads from the graph
        s = float(scale.reshape(-1)[0])
        entry: dict[str, Any] = {
            "amax": s * INT8_QMAX,
            "scale": s,
            "in_fp32_graph": name in fp32_tensor_names,
            "source": "qdq",
        }
        if raw and name in raw:
            entry["rmin"], entry["rmax"] = raw[name]
        table[name] = entry
    # Tensors the calibrator measured but the QDQ graph does not quantize (e.g. Conv outputs before
    # ReLU with the tensorrt placement): TensorRT's implicit quantization can still use their ranges.
    for name, (lo, hi) in (raw or {}).items():
        if name not in table:
            amax = float(max(abs(lo), abs(hi)))
            table[name] = {
                "amax": amax,
                "scale": amax / INT8_QMAX,
                "rmin": lo,
                "rmax": hi,
                "in_fp32_graph": name in fp32_tensor_names,
                "source": "calibrator",
            }
    return table


def int8_from_onnx(
    src: str | Path,
    dst: str | Path,
    calibration_images: np.ndarray,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    percentile: float = 99.999,
    quantize_output: bool = False,
    target: str = "tensorrt",
    preprocess: bool = True,
    batch_size: int = 32,
    symbolic_shapes: bool = True,
) -> Int8Info:
    """Statically quantize an fp32 ONNX model to int8 QDQ with symmetric scales.

    Args:
        src: fp32 ONNX file.
        dst: where to write the int8 QDQ ONNX file.
        calibration_images: (N, C, S, S) float32 in [0, 1], N ≥ 1.
        method: minmax | entropy | percentile.
        per_channel: per-output-channel weight scales.
        percentile: used when ``method == "percentile"``.
        quantize_output: keep ORT's Q/DQ on the graph output (off: logits stay float).
        target: Q/DQ placement, ``tensorrt`` or ``cpu`` (see :data:`INT8_TARGETS`).
        preprocess: run ``quant_pre_process`` (symbolic shape inference +
            graph optimisation) first, as ORT recommends; skipped with a note if it fails.
        batch_size: calibration batch size.
        symbolic_shapes: let ``quant_pre_process`` run ONNX Runtime's symbolic
            shape inference. Off for the face detector: it cannot finish that
            graph (Resize with a dynamic batch), and then leaves a
            ``sym_shape_infer_temp.onnx`` in the current folder; ONNX's own
            shape inference types the graph fully.

    Raises:
        ConfigError: unknown method.
        ExportError: empty calibration set, or quantization failed.
    """
    import onnx
    import onnxruntime

    ort_method = _ort_method(method)
    if target not in INT8_TARGETS:
        raise ConfigError(f"unknown int8 target {target!r}; choose one of {', '.join(INT8_TARGETS)}")
    images = np.asarray(calibration_images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ExportError(
            f"the calibration set is empty (got an array of shape {images.shape}); int8 needs "
            "calibration images: check the recipe's source and count, or export without int8"
        )
    fp32 = load_onnx(src)
    fp32_names = {INPUT_NAME} | {o for n in fp32.graph.node for o in n.output}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgemask-int8-") as td:
        model_in = _preprocessed(Path(src), Path(td), symbolic_shapes, notes) if preprocess else Path(src)
        q, raw = _quantized_qdq(
            model_in,
            images,
            Path(td),
            method=method,
            ort_method=ort_method,
            target=target,
            per_channel=per_channel,
            percentile=percentile,
            batch_size=batch_size,
        )
    if not quantize_output:  # no range for the logits either, or TensorRT's implicit mode would clip them
        raw = {k: v for k, v in raw.items() if k not in {o.name for o in fp32.graph.output}}
    if not quantize_output:
        _drop_output_qdq(q)
    n_qdq = check_qdq_symmetric(q)
    table = activation_table(q, fp32_names, raw)
    with atomic_path(dst, suffix=".onnx") as tmp:
        onnx.save(q, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    quantization = {
        "format": "QDQ",
        "target": target,
        "placement": (
            "Q/DQ on Conv/Gemm inputs" if target == "tensorrt" else "onnxruntime default (Conv/Gemm inputs and outputs)"
        ),
        "reduce_range": target == "cpu",
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
        "method": method,
        "percentile": float(percentile) if method == "percentile" else None,
        "entropy_bins": [ENTROPY_BINS, ENTROPY_QUANTIZED_BINS] if method == "entropy" else None,
        "per_channel": per_channel,
        "symmetric": True,
        "activation_type": "int8",
        "weight_type": "int8",
        "bias": "float",
        "qdq_nodes": n_qdq,
        "output_quantized": _output_is_quantized(q),
        "calibration_images": int(len(images)),
        "preprocessed": model_in != Path(src),
        "notes": notes,
    }
    return Int8Info(quantization=quantization, table=table)


def _preprocessed(src: Path, td: Path, symbolic_shapes: bool, notes: list[str]) -> Path:
    """``src`` after ORT's ``quant_pre_process`` (written under ``td``), or ``src`` itself with a note if it fails."""
    from onnxruntime.quantization import quant_pre_process

    pre = td / "pre.onnx"
    try:
        with _quiet("onnxruntime"):
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=not symbolic_shapes)
        return pre
    except Exception as e:  # pre-processing is an optimisation, not a requirement
        notes.append(f"quant_pre_process skipped: {type(e).__name__}: {str(e)[:120]}")
        return src


def _qdq_options(target: str, method: str, percentile: float) -> dict[str, Any]:
    """``extra_options`` of ``quantize_static``: symmetric int8 everywhere, Q/DQ placed for ``target``."""
    # QuantizeBias False keeps biases float: ORT would otherwise add int32 bias DequantizeLinear nodes,
    # and TensorRT's Q/DQ support is int8 only (it keeps biases float in explicit quantization).
    extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    if target == "tensorrt":
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv", "Gemm", "MatMul"]
        # Weights stay float behind a Q→DQ pair: TensorRT 8.x (JetPack 4/5) imports explicit
        # quantization only in that form; int8 weight initializers need TensorRT 10.
        extra["AddQDQPairToWeight"] = True
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    return extra


def _quantized_qdq(
    model_in: Path,
    images: np.ndarray,
    td: Path,
    *,
    method: str,
    ort_method: Any,
    target: str,
    per_channel: bool,
    percentile: float,
    batch_size: int,
) -> tuple[Any, dict[str, tuple[float, float]]]:
    """(the QDQ ``onnx.ModelProto``, the calibrator's raw (rmin, rmax) per tensor) from ``quantize_static``.

    Working files go under ``td``; ``images`` is (N, C, H, W) float32 in [0, 1].
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra = _qdq_options(target, method, percentile)
    kwargs: dict[str, Any] = {}
    cache = td / "ranges.json"
    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        kwargs["calibration_cache_path"] = str(cache)  # ORT ≥ 1.32 saves the raw ranges there
    out = td / "int8.onnx"
    entropy: dict[str, tuple[float, float]] = {}
    try:
        with _quiet("onnxruntime", "root"), contextlib.redirect_stdout(None):
            if method == "entropy":
                entropy = _entropy_ranges(model_in, images, batch_size, td)
                extra["TensorQuantOverrides"] = {
                    k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in entropy.items()
                }
                ort_method = _ort_method("minmax")  # ranges come from the overrides; minmax is the cheap pass
            quantize_static(
                str(model_in),
                str(out),
                _ArrayReader(images, batch_size),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=(target == "cpu"),
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ort_method,
                extra_options=extra,
                **kwargs,
            )
    except Exception as e:
        raise ExportError(
            f"int8 quantization failed ({type(e).__name__}: {str(e)[:200]}); "
            "try --calibration-method minmax, or export without int8"
        ) from e
    return onnx.load(str(out)), entropy or (_raw_ranges(cache) if cache.is_file() else {})

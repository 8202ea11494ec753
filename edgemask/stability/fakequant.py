"""A torch twin of a QDQ int8 ONNX graph, so DeepFool can attack the int8 model.

ONNX Runtime gives no input gradients, so the int8 model cannot be attacked
through it directly. :class:`FakeQuantTwin` reads the bundle's
``model.int8.onnx`` and executes its nodes one by one with torch ops:
QuantizeLinear rounds and clamps exactly as the integer engine does, and
DequantizeLinear scales back to float, so the forward pass reproduces the
quantized arithmetic. The rounding gets a straight-through gradient (the
derivative of ``round`` is taken as 1 and the clamp's as 0 outside its range),
the usual fake-quantization trick; without it every input gradient is zero.

The twin is a host emulation, not the engine: integer kernels accumulate in
int32 and requantize with their own rounding, while the twin computes in
float32, so an occasional value lands one quantization step away. Its logits
are checked against ONNX Runtime (:func:`twin_agreement`) and the study
reports that agreement next to every number the twin produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgemask.errors import ExportError

#: Integer range of each QuantizeLinear output type (ONNX TensorProto data type → (qmin, qmax)).
_QRANGE = {
    2: (0, 255),  # UINT8
    3: (-128, 127),  # INT8
    4: (0, 65535),  # UINT16
    5: (-32768, 32767),  # INT16
}

TWIN_MODES = ("reference", "x86-u8s8")

SUPPORTED_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "Conv",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Flatten",
    "Reshape",
    "Transpose",
    "Concat",
    "Identity",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "BatchNormalization",
    "Sigmoid",
    "Softmax",
    "ReduceMean",
    "ReduceMax",
    "ReduceSum",
    "Cast",
    "Dropout",
)


class _RoundSTE(torch.autograd.Function):
    """round() forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        # torch.round rounds half to even, as ONNX QuantizeLinear specifies.
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g


def _per_axis(v: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Reshape a per-channel scale/zero point (C,) so it broadcasts along ``axis`` of ``x``."""
    if v.ndim == 0 or v.numel() == 1:
        return v.reshape(())
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = v.numel()
    return v.reshape(shape)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads_to_torch(pads: list[int]) -> tuple[bool, list[int], list[int]]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] → (symmetric?, per-dim begin pads, F.pad list)."""
    k = len(pads) // 2
    begin, end = list(pads[:k]), list(pads[k:])
    fpad: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):  # F.pad wants the last dim first
        fpad += [b, e]
    return begin == end, begin, fpad


class FakeQuantTwin(nn.Module):
    """Executes a (QDQ) ONNX graph with torch ops; differentiable w.r.t. the input.

    Two arithmetic modes:

    * ``"reference"`` (default): the QDQ semantics of the ONNX spec, i.e. int32
      accumulation without overflow; what TensorRT's explicit quantization and
      ONNX Runtime with its QDQ fusions off compute.
    * ``"x86-u8s8"``: also reproduces how ONNX Runtime's x86 int8 kernels on
      CPUs without VNNI (AVX2, AVX-512BW) compute QLinearConv/QGemm: int8
      activations are shifted to uint8 (+128), and each pair of neighbouring
      products ``a[2j]·w[2j] + a[2j+1]·w[2j+1]`` is summed in int16 with
      saturation (``vpmaddubsw``) before the int32 sum. With full-range int8
      weights those pair sums overflow often, so the engine's logits can be
      far from the reference. Conv reduces in (kh, kw, c) order, as ORT's
      NHWC layout does. Grouped convolutions keep the reference arithmetic.

    Args:
        model_path: ONNX file (the bundle's ``model.int8.onnx``). Float graphs
            work as well; that is how the interpreter itself is tested.
        mode: ``"reference"`` or ``"x86-u8s8"``.

    Raises:
        ExportError: the file cannot be read, or it uses an op the twin does
            not implement (the message names it).

    Example:
        >>> twin = FakeQuantTwin("export/demo/model.int8.onnx").eval()   # doctest: +SKIP
        >>> logits = twin(torch.rand(4, 3, 64, 64))                      # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, mode: str = "reference"):
        super().__init__()
        if mode not in TWIN_MODES:
            raise ExportError(f"unknown twin mode {mode!r}; choose one of {', '.join(TWIN_MODES)}")
        self.mode = mode
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load(str(model_path))
        except Exception as e:  # onnx raises several types for damaged files
            raise ExportError(
                f"cannot read ONNX file {model_path} ({e.__class__.__name__}); re-export the bundle"
            ) from None
        graph = model.graph
        unsupported = sorted(
            {n.op_type for n in graph.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")}
        )
        if unsupported:
            raise ExportError(
                f"{Path(model_path).name} uses op(s) {', '.join(unsupported)} that the fake-quant twin does not "
                f"implement; it supports {', '.join(SUPPORTED_OPS)} (re-export without them, or attack the "
                "float model only with --no-int8-attack)"
            )
        self.path = str(model_path)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        inits = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ExportError(
                f"{Path(model_path).name} has {len(inputs)} inputs and {len(graph.output)} outputs; "
                "the twin expects one image input and one logits output"
            )
        self.input_name = inputs[0].name
        self.output_name = graph.output[0].name
        # Constants: initializers (numpy → torch, integers kept as int64 for exact arithmetic).
        consts: dict[str, torch.Tensor] = {}
        self._qtype: dict[str, int] = {}  # name of a zero-point tensor -> its ONNX data type
        for init in graph.initializer:
            arr = numpy_helper.to_array(init)
            consts[init.name] = self._to_torch(arr)
            self._qtype[init.name] = init.data_type
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n), n.name) for n in graph.node]
        # Fold every node whose inputs are all constants (weight DequantizeLinear,
        # Constant, shape arithmetic on constants) once, here, not per forward.
        live: list[tuple[str, list[str], list[str], dict[str, Any], str]] = []
        for node in self.nodes:
            op, ins, outs, attrs, _ = node
            if op == "Constant" or all((i == "" or i in consts) for i in ins):
                with torch.no_grad():
                    vals = self._run(node, lambda name: consts[name] if name else None)
                for o, v in zip(outs, vals):
                    consts[o] = v
                if op == "Constant" and "value" in attrs:
                    self._qtype[outs[0]] = attrs["value"].data_type
            else:
                live.append(node)
        self.live = live
        # Integer matmul sites (for mode "x86-u8s8"): Conv/Gemm fed by DQ(Q(activation)) and a DQ'd int8 weight.
        self._sites: dict[str, dict[str, Any]] = {}
        if mode == "x86-u8s8":
            self._find_sites(consts)
        # Only constants the live nodes read become buffers, so .to(device) moves them.
        needed = {i for _, ins, _, _, _ in live for i in ins if i}
        needed |= {site[k] for site in self._sites.values() for k in ("w_int", "a_zp", "a_scale", "w_scale")}
        self._buf_of: dict[str, str] = {}
        for k, name in enumerate(sorted(needed & set(consts))):
            self.register_buffer(f"c{k}", consts[name], persistent=False)
            self._buf_of[name] = f"c{k}"
        if self.output_name in consts:
            raise ExportError(f"{Path(model_path).name}: the output does not depend on the input")

    # -- x86 u8s8 emulation ----------------------------------------------------
    def _find_sites(self, consts: dict[str, torch.Tensor]) -> None:
        producer = {o: n for n in self.nodes for o in n[2]}
        live_out = {o for n in self.live for o in n[2]}
        for op, ins, outs, a, name in self.live:
            if op not in ("Conv", "Gemm") or len(ins) < 2:
                continue
            if op == "Conv" and int(a.get("group", 1)) != 1:
                continue  # depthwise/grouped kernels accumulate in int32 directly
            if op == "Gemm" and a.get("transA", 0):
                continue
            dq_a, dq_w = producer.get(ins[0]), producer.get(ins[1])
            if dq_a is None or dq_w is None or dq_a[0] != "DequantizeLinear" or dq_w[0] != "DequantizeLinear":
                continue
            q_a = producer.get(dq_a[1][0])
            if q_a is None or q_a[0] != "QuantizeLinear" or dq_a[1][0] not in live_out:
                continue
            a_zp = dq_a[1][2] if len(dq_a[1]) > 2 else ""
            a_type = self._qtype.get(a_zp, 2)
            w_int, w_zp = dq_w[1][0], (dq_w[1][2] if len(dq_w[1]) > 2 else "")
            if a_type not in (2, 3) or self._qtype.get(w_int) != 3 or w_int not in consts:
                continue
            if w_zp and bool(torch.any(consts[w_zp] != 0)):
                continue  # asymmetric weights use another kernel; keep the reference
            if not a_zp or consts.get(a_zp) is None or consts[a_zp].numel() != 1:
                continue
            w = consts[w_int]
            if op == "Gemm" and a.get("transB", 0):
                w = w.t()
            # Skip sites that cannot saturate: 255·(|w_2j| + |w_2j+1|) ≤ 32767 for every pair.
            k_first = w.reshape(w.shape[0], -1) if op == "Conv" else w.t()
            wp = k_first.abs()
            if wp.shape[1] % 2:
                wp = F.pad(wp, (0, 1))
            if int((wp[:, 0::2] + wp[:, 1::2]).max()) * 255 <= 32767:
                continue
            key = f"{w_int}__site_w"
            consts[key] = w.contiguous()
            self._qtype[key] = 3
            self._sites[outs[0]] = {
                "w_int": key,
                "a_zp": a_zp,
                "a_q": dq_a[1][0],
                "a_scale": dq_a[1][1],
                "w_scale": dq_w[1][1],
                "offset": 128.0 if a_type == 3 else 0.0,
            }

    def _saturating(self, node: tuple, site: dict[str, Any], get: Callable[[str], torch.Tensor | None]) -> torch.Tensor:
        """Conv/Gemm as ORT's x86 u8s8 kernel computes it; see the class docstring.

        The exact int32 sum is ``Σ_k (a_k − za)·w_k`` (an ordinary conv/matmul on
        the centred integers); saturation only changes pairs whose sum can leave
        int16, i.e. ``255·(|w_2j| + |w_2j+1|) > 32767``. Those few "risky" pairs
        are recomputed in the uint8 domain and their clamp error added back,
        which is far cheaper than forming every pair.
        """
        op, ins, _, a, _ = node
        q = get(site["a_q"])  # integer-valued activation (float tensor, STE)
        za = get(site["a_zp"]).float().reshape(())
        w = get(site["w_int"]).float()  # int8 weights: Conv (O,C,kh,kw), Gemm (K,M)
        sa = get(site["a_scale"]).float().reshape(())
        sw = get(site["w_scale"]).float().reshape(-1)
        zu = za + site["offset"]  # zero point once shifted to uint8
        centred = q - za
        if op == "Conv":
            if w.ndim != 4:
                raise ExportError("x86-u8s8 twin mode supports 2-D convolutions only; use mode='reference'")
            sym, begin, fpad = _pads_to_torch(list(a.get("pads", [0, 0, 0, 0])))
            if not sym:  # zero padding in the centred domain = the zero point
                centred, begin = F.pad(centred, fpad), [0, 0]
            st, dl = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
            acc = F.conv2d(centred, w, None, st, begin, dl)  # (N, O, oh, ow) exact sums
            n, o, oh, ow = acc.shape
            c, kh, kw = w.shape[1:]
            wk = w.permute(0, 2, 3, 1).reshape(o, kh * kw * c)  # NHWC kernels reduce (kh, kw, c)
            risky = self._risky_pairs(wk)
            if risky is not None:
                cols = F.unfold(centred, (kh, kw), dilation=dl, padding=begin, stride=st)  # (N, C*kh*kw, L): c, kh, kw
                cols = cols.reshape(n, c, kh * kw, -1).transpose(1, 2).reshape(n, kh * kw * c, -1) + zu
                acc = acc + self._clamp_error(cols, wk, risky, o).reshape(n, o, oh, ow)
            y = acc * (sa * sw).reshape(1, -1, 1, 1)
            if len(ins) > 2 and ins[2]:
                y = y + get(ins[2]).reshape(1, -1, 1, 1)
            return y
        # Gemm: A (N, K) @ W (K, M)
        acc = centred @ w
        wk = w.t()  # (M, K)
        risky = self._risky_pairs(wk)
        if risky is not None:
            acc = acc + self._clamp_error((centred + zu).unsqueeze(-1), wk, risky, wk.shape[0]).squeeze(-1)
        y = float(a.get("alpha", 1.0)) * acc * (sa * sw).reshape(1, -1)
        if len(ins) > 2 and ins[2]:
            y = y + float(a.get("beta", 1.0)) * get(ins[2])
        return y

    @staticmethod
    def _risky_pairs(wk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(output index, pair index) of weight pairs whose uint8 pair sum can exceed int16."""
        if wk.shape[1] % 2:
            wk = F.pad(wk, (0, 1))
        bound = 255.0 * (wk[:, 0::2].abs() + wk[:, 1::2].abs())  # (O, K/2)
        o_idx, j_idx = torch.nonzero(bound > 32767.0, as_tuple=True)
        return (o_idx, j_idx) if o_idx.numel() else None

    @staticmethod
    def _clamp_error(
        cols: torch.Tensor, wk: torch.Tensor, risky: tuple[torch.Tensor, torch.Tensor], o: int
    ) -> torch.Tensor:
        """Σ over risky pairs of (sat16(p) − p), p = u[2j]·w[o,2j] + u[2j+1]·w[o,2j+1] → (N, O, L).

        ``cols``: (N, K, L) uint8-domain activations; ``wk``: (O, K) int8 weights.
        """
        if cols.shape[1] % 2:
            cols, wk = F.pad(cols, (0, 0, 0, 1)), F.pad(wk, (0, 1))
        o_idx, j_idx = risky
        u0, u1 = cols[:, 2 * j_idx], cols[:, 2 * j_idx + 1]  # (N, R, L)
        w0, w1 = wk[o_idx, 2 * j_idx], wk[o_idx, 2 * j_idx + 1]  # (R,)
        p = u0 * w0[None, :, None] + u1 * w1[None, :, None]
        err = torch.clamp(p, -32768.0, 32767.0) - p
        out = torch.zeros(cols.shape[0], o, cols.shape[2], dtype=cols.dtype, device=cols.device)
        return out.index_add(1, o_idx.to(cols.device), err)

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def _to_torch(arr: np.ndarray) -> torch.Tensor:
        if arr.dtype.kind in "iub":
            return torch.from_numpy(arr.astype(np.int64))
        return torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32)))

    def _const(self, name: str) -> torch.Tensor:
        return getattr(self, self._buf_of[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,C,H,W) float32 in [0,1] -> (N,K) logits
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor | None:
            if not name:
                return None
            if name in env:
                return env[name]
            return self._const(name)

        for node in self.live:
            site = self._sites.get(node[2][0])
            if site is not None:
                env[node[2][0]] = self._saturating(node, site, get)
                continue
            for o, v in zip(node[2], self._run(node, get)):
                env[o] = v
        return env[self.output_name]

    # -- the interpreter -----------------------------------------------------
    def _run(self, node: tuple, get: Callable[[str], torch.Tensor | None]) -> list[torch.Tensor]:
        op, ins, outs, a, name = node
        x = [get(i) for i in ins]
        n = _Node(op, ins, outs, a, f"node {name or op} ({op})")
        handler = _OPS.get(op)
        if handler is None:
            raise ExportError(f"{n.where} is not supported by the fake-quant twin")
        return handler(self, n, x)


class _Node(NamedTuple):
    """One ONNX node as an op handler sees it."""

    op: str
    ins: list[str]
    outs: list[str]
    a: dict[str, Any]  # attributes
    where: str  # "node NAME (OP)", for error messages


# One handler per op (or family of ops): (twin, node, inputs) -> outputs. ``_OPS`` below maps names to them.
_Inputs = List[Any]  # torch.Tensor | None per node input, in order


def _quantize_linear(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    ins, a = n.ins, n.a
    scale, zp = x[1].float(), (x[2] if len(x) > 2 and x[2] is not None else None)
    qt = twin._qtype.get(ins[2], 2) if len(ins) > 2 and ins[2] else int(a.get("output_dtype", 2) or 2)
    if qt not in _QRANGE:
        raise ExportError(f"{n.where}: quantized type {qt} is not supported by the twin (int8/uint8/int16/uint16 are)")
    qmin, qmax = _QRANGE[qt]
    axis = int(a.get("axis", 1))
    s = _per_axis(scale, x[0], axis)
    z = _per_axis(zp.float(), x[0], axis) if zp is not None else 0.0
    # The integer value, kept in float: clamp(round(x/s) + z); STE through round.
    return [torch.clamp(_RoundSTE.apply(x[0] / s) + z, qmin, qmax)]


def _dequantize_linear(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    axis = int(n.a.get("axis", 1))
    q = x[0].float()
    s = _per_axis(x[1].float(), q, axis)
    z = _per_axis(x[2].float(), q, axis) if len(x) > 2 and x[2] is not None else 0.0
    return [(q - z) * s]


def _conv(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    a = n.a
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ExportError(
            f"{n.where}: auto_pad={a['auto_pad']!r} is not supported by the twin; export with explicit pads"
        )
    w = x[1]
    nd = w.ndim - 2
    sym, begin, fpad = _pads_to_torch(list(a.get("pads", [0] * (2 * nd))))
    inp = x[0] if sym else F.pad(x[0], fpad)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return [
        conv(
            inp,
            w,
            x[2] if len(x) > 2 else None,
            stride=list(a.get("strides", [1] * nd)),
            padding=begin if sym else 0,
            dilation=list(a.get("dilations", [1] * nd)),
            groups=int(a.get("group", 1)),
        )
    ]


def _clip(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    lo = x[1] if len(x) > 1 and x[1] is not None else n.a.get("min")
    hi = x[2] if len(x) > 2 and x[2] is not None else n.a.get("max")
    lo = float(lo) if lo is not None else None
    hi = float(hi) if hi is not None else None
    return [torch.clamp(x[0], lo, hi)]


def _pool(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    a = n.a
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ExportError(f"{n.where}: auto_pad is not supported by the twin; export with explicit pads")
    k = list(a["kernel_shape"])
    nd = len(k)
    strides = list(a.get("strides", [1] * nd))
    sym, begin, fpad = _pads_to_torch(list(a.get("pads", [0] * (2 * nd))))
    ceil = bool(a.get("ceil_mode", 0))
    if n.op == "MaxPool":
        inp = x[0] if sym else F.pad(x[0], fpad, value=float("-inf"))
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        return [fn(inp, k, strides, begin if sym else 0, dilation=list(a.get("dilations", [1] * nd)), ceil_mode=ceil)]
    include = bool(a.get("count_include_pad", 0))
    if not sym:
        if not include and any(fpad):
            raise ExportError(f"{n.where}: asymmetric padding without count_include_pad is not supported by the twin")
        inp, begin = F.pad(x[0], fpad), [0] * nd
    else:
        inp = x[0]
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return [fn(inp, k, strides, begin, ceil_mode=ceil, count_include_pad=include)]


def _gemm(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    a = n.a
    A, B = x[0], x[1]
    if a.get("transA", 0):
        A = A.t()
    if a.get("transB", 0):
        B = B.t()
    y = float(a.get("alpha", 1.0)) * (A @ B)
    if len(x) > 2 and x[2] is not None:
        y = y + float(a.get("beta", 1.0)) * x[2]
    return [y]


def _arithmetic(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    p, q = x[0], x[1]
    if n.op == "Div" and not p.is_floating_point() and not q.is_floating_point():
        return [torch.div(p, q, rounding_mode="trunc")]
    return [{"Add": torch.add, "Mul": torch.mul, "Sub": torch.sub, "Div": torch.div}[n.op](p, q)]


def _flatten(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    axis = int(n.a.get("axis", 1)) % max(1, x[0].ndim)
    lead = int(np.prod(x[0].shape[:axis])) if axis else 1
    return [x[0].reshape(lead, -1)]


def _reshape(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    shape = [int(v) for v in x[1].tolist()]
    if not n.a.get("allowzero", 0):
        shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [x[0].reshape(shape)]


def _transpose(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    perm = n.a.get("perm") or list(reversed(range(x[0].ndim)))
    return [x[0].permute(*perm)]


def _identity(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    # Dropout is inference-mode identity (its optional mask output: all kept).
    return [x[0]] + ([torch.ones_like(x[0], dtype=torch.bool)] if len(n.outs) > 1 else [])


def _constant(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    from onnx import numpy_helper

    a = n.a
    if "value" in a:
        return [twin._to_torch(numpy_helper.to_array(a["value"]))]
    for key in ("value_float", "value_int"):
        if key in a:
            return [torch.tensor(a[key], dtype=torch.float32 if key == "value_float" else torch.int64)]
    for key in ("value_floats", "value_ints"):
        if key in a:
            return [torch.tensor(list(a[key]), dtype=torch.float32 if key == "value_floats" else torch.int64)]
    raise ExportError(f"{n.where}: Constant with attributes {sorted(a)} is not supported by the twin")


def _shape(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    dims = list(x[0].shape)
    start, end = int(n.a.get("start", 0)), n.a.get("end")
    dims = dims[start:] if end is None else dims[start : int(end)]
    return [torch.tensor(dims, dtype=torch.int64)]


def _gather(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    idx = x[1].long()
    axis = int(n.a.get("axis", 0)) % x[0].ndim
    idx = torch.where(idx < 0, idx + x[0].shape[axis], idx).to(x[0].device)
    out = torch.index_select(x[0], axis, idx.reshape(-1))
    new_shape = list(x[0].shape[:axis]) + list(idx.shape) + list(x[0].shape[axis + 1 :])
    return [out.reshape(new_shape)]


def _squeeze_unsqueeze(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    axes = x[1].tolist() if len(x) > 1 and x[1] is not None else n.a.get("axes")
    t = x[0]
    if n.op == "Unsqueeze":
        rank = t.ndim + len(axes)
        for ax in sorted(int(v) % rank for v in axes):
            t = t.unsqueeze(ax)
        return [t]
    if axes is None:
        return [t.squeeze()]
    for ax in sorted((int(v) % t.ndim for v in axes), reverse=True):
        t = t.squeeze(ax)
    return [t]


def _batch_norm(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    xs, sc, b, mean, var = x[:5]
    shape = [1, -1] + [1] * (xs.ndim - 2)
    eps = float(n.a.get("epsilon", 1e-5))
    return [(xs - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps) * sc.reshape(shape) + b.reshape(shape)]


def _reduce(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    a = n.a
    # opset < 18 (ReduceSum < 13): axes attribute; later: optional second input.
    axes = a.get("axes") if "axes" in a else (x[1].tolist() if len(x) > 1 and x[1] is not None else None)
    keep = bool(a.get("keepdims", 1))
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return [x[0]]
        axes = list(range(x[0].ndim))
    dims = tuple(int(v) for v in axes)
    if n.op == "ReduceMax":
        return [x[0].amax(dim=dims, keepdim=keep)]
    return [x[0].mean(dim=dims, keepdim=keep) if n.op == "ReduceMean" else x[0].sum(dim=dims, keepdim=keep)]


def _cast(twin: FakeQuantTwin, n: _Node, x: _Inputs) -> list[torch.Tensor]:
    from onnx import TensorProto

    to = int(n.a["to"])
    if to in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        return [x[0].float()]
    return [x[0].long() if not x[0].is_floating_point() else torch.trunc(x[0]).long()]


_OPS: dict[str, Callable[[FakeQuantTwin, _Node, _Inputs], list[torch.Tensor]]] = {
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "Conv": _conv,
    "Relu": lambda twin, n, x: [F.relu(x[0])],
    "Clip": _clip,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": lambda twin, n, x: [x[0].mean(dim=tuple(range(2, x[0].ndim)), keepdim=True)],
    "Gemm": _gemm,
    "MatMul": lambda twin, n, x: [torch.matmul(x[0], x[1])],
    "Add": _arithmetic,
    "Mul": _arithmetic,
    "Sub": _arithmetic,
    "Div": _arithmetic,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": lambda twin, n, x: [torch.cat([t for t in x if t is not None], dim=int(n.a["axis"]))],
    "Identity": _identity,
    "Dropout": _identity,
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _squeeze_unsqueeze,
    "Squeeze": _squeeze_unsqueeze,
    "BatchNormalization": _batch_norm,
    "Sigmoid": lambda twin, n, x: [torch.sigmoid(x[0])],
    "Softmax": lambda twin, n, x: [torch.softmax(x[0], dim=int(n.a.get("axis", -1)))],
    "ReduceMean": _reduce,
    "ReduceMax": _reduce,
    "ReduceSum": _reduce,
    "Cast": _cast,
}


def twin_from_bundle(bundle: Any, precision: str = "int8") -> FakeQuantTwin:
    """The twin of the bundle's ONNX model at ``precision`` (int8 unless told), in eval mode."""
    return FakeQuantTwin(bundle.model_path(precision)).eval()


def twin_agreement(
    twin: FakeQuantTwin,
    onnx_logits: np.ndarray,
    x: np.ndarray,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """How closely the twin reproduces the engine's logits on the same inputs.

    Args:
        twin: the fake-quant module.
        onnx_logits: (N, K) logits of ONNX Runtime's int8 session on ``x``.
        x: (N, C, H, W) float32 inputs in [0, 1].

    Returns:
        ``{"n", "argmax_agreement", "max_abs_diff", "mean_abs_diff", "logit_range"}``.
    """
    tw = twin_logits(twin, x, batch_size, device)
    diff = np.abs(tw - onnx_logits)
    return {
        "n": len(x),
        "argmax_agreement": float(np.mean(tw.argmax(1) == onnx_logits.argmax(1))) if len(x) else float("nan"),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "logit_range": float(onnx_logits.max() - onnx_logits.min()) if onnx_logits.size else 0.0,
    }


@torch.no_grad()
def twin_logits(
    twin: nn.Module, x: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Batched forward of the twin on numpy inputs → (N, K) float32 logits."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(twin(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


__all__ = ["SUPPORTED_OPS", "FakeQuantTwin", "twin_agreement", "twin_from_bundle", "twin_logits"]

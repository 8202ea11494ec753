"""OnnxRuntimeRunner: one ONNX file in an ONNX Runtime session.

The CPU execution provider is the default and runs all three precisions
(the int8 QDQ model is fused into QLinearConv/QGemm kernels by the graph
optimizer). CUDA and TensorRT execution providers are used only when asked
for, and only if this onnxruntime build has them; ORT would otherwise fall
back to CPU silently, so a provider that did not load is an error here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from edgemask.backends import check_options, check_precision
from edgemask.backends.base import Runner
from edgemask.errors import BackendError, ModelError, NotAvailableError

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle

# Short names accepted by the ``providers`` option.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_PROVIDER_FIX = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (instead of onnxruntime) on a machine with a CUDA driver",
    "TensorrtExecutionProvider": "install an onnxruntime-gpu build with TensorRT and the TensorRT libraries, "
    "or use the tensorrt backend",
}


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """Full ORT provider names for ``providers`` (aliases or full names); CPU is always last as fallback."""
    if providers is None:
        providers = ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    out: list[str] = []
    for p in providers:
        p = p.strip()
        full = PROVIDER_ALIASES.get(p.lower(), p)
        if not full.endswith("ExecutionProvider"):
            raise BackendError(
                f"unknown ONNX Runtime provider {p!r}; use one of: {', '.join(sorted(PROVIDER_ALIASES))} "
                "or a full name like CUDAExecutionProvider"
            )
        if full not in out:
            out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")  # nodes a GPU provider cannot run fall back here
    return out


class OnnxRuntimeRunner(Runner):
    """An ONNX file in an ``onnxruntime.InferenceSession`` (created in :meth:`activate`)."""

    name: ClassVar[str] = "onnxrt"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")

    def __init__(
        self,
        model: str | Path,
        input_size: int,
        num_classes: int,
        precision: str = "fp32",
        providers: str | Sequence[str] | None = None,
        intra_op_num_threads: int | None = None,
        device: str | None = None,
    ):
        """Record what to load; no session exists until :meth:`activate`.

        Args:
            model: the ``.onnx`` file.
            input_size, num_classes: from the bundle's manifest.
            precision: what the file holds (``fp32``/``fp16``/``int8``); used for labels and tolerances.
            providers: e.g. ``["cuda"]`` or ``"tensorrt,cuda"``; default CPU only.
            intra_op_num_threads: default ``edgemask.config.num_threads()``.
            device: a device profile name instead of ``providers``: ONNX Runtime's
                TensorRT and CUDA providers, when this ONNX Runtime has them, with
                that device's options (precision flags, DLA, workspace, engine and
                timing caches, dynamic batch; see
                :func:`edgemask.backends.tensorrt.ort_providers.ort_execution_providers`),
                else the CPU. The choice and its warnings are in :meth:`describe`.
        """
        check_precision(type(self), precision)
        super().__init__(input_size, num_classes, precision)
        if device and providers is not None:
            raise BackendError("give the onnxrt backend either providers or a device profile, not both")
        self.model = Path(model)
        self.device = device or None
        self.providers = resolve_providers(providers)
        self.provider_warnings: list[str] = []
        self._provider_specs: list[Any] = list(self.providers)  # names, or (name, options) from a profile
        self.intra_op_num_threads = intra_op_num_threads
        self._session: Any = None
        self._input_name = "input"
        self._input_dtype: Any = np.float32

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed here; 'pip install onnxruntime' (or onnxruntime-gpu)"
        return True, ""

    @classmethod
    def from_bundle(cls, bundle: "Bundle", precision: str = "fp32", **options: Any) -> "OnnxRuntimeRunner":
        """The bundle's ``model.<precision>.onnx``."""
        check_precision(cls, precision)
        check_options(cls, options, ("providers", "intra_op_num_threads", "device"))
        r = cls(bundle.model_path(precision, "onnx"), bundle.input_size, len(bundle.class_names), precision, **options)
        return r.shaped_like(bundle)

    # -- lifecycle ---------------------------------------------------------
    def _activate_impl(self) -> None:
        import onnxruntime as ort

        from edgemask.config import num_threads

        have = ort.get_available_providers()
        if self.device:
            from edgemask.backends.tensorrt.ort_providers import ort_execution_providers

            self._provider_specs, self.provider_warnings = ort_execution_providers(
                self.device, self.precision, input_size=self.input_size, available=have
            )
            self.providers = [p if isinstance(p, str) else p[0] for p in self._provider_specs]
        for p in self.providers:
            if p not in have:
                fix = _PROVIDER_FIX.get(p, "check the provider name")
                raise NotAvailableError(
                    f"ONNX Runtime {ort.__version__} here has no {p} (it has: {', '.join(have)}); {fix}"
                )
        if not self.model.is_file():
            raise ModelError(f"{self.model} is missing; copy the whole bundle folder again or re-export it")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(self.intra_op_num_threads or num_threads())
        so.inter_op_num_threads = 1  # one small graph: parallelism lives inside the ops
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # errors only; warnings about unused initializers are noise here
        try:
            sess = ort.InferenceSession(str(self.model), sess_options=so, providers=self._provider_specs)
        except Exception as e:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...) for bad files
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(
                f"ONNX Runtime cannot load {self.model.name} ({first}); the file is damaged or not an "
                "edgemask export, re-export the bundle"
            ) from None
        used = sess.get_providers()
        missing = [p for p in self.providers if p not in used]
        if missing:
            raise NotAvailableError(
                f"ONNX Runtime could not start {', '.join(missing)} (running on {', '.join(used)}); "
                f"{_PROVIDER_FIX.get(missing[0], 'check its libraries')}"
            )
        inp = sess.get_inputs()[0]
        self._input_name = inp.name
        # fp16 exports keep float32 I/O (keep_io_types); a file with half I/O gets a cast.
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self._session = sess
        self._threads = so.intra_op_num_threads
        self._ort_version = ort.__version__

    def _deactivate_impl(self) -> None:
        self._session = None

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        if self._input_dtype is not np.float32:
            x = x.astype(self._input_dtype)
        return self._session.run(None, {self._input_name: x})[0]  # (N,K)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model=self.model.name, providers_requested=list(self.providers))
        if self.device:
            d.update(device_profile=self.device, provider_warnings=list(self.provider_warnings))
        if self._session is not None:
            d.update(
                providers=list(self._session.get_providers()),
                onnxruntime_version=self._ort_version,
                num_threads=self._threads,
                graph_optimization="all",
            )
        return d

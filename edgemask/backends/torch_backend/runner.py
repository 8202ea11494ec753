"""TorchRunner: eager PyTorch on the bundle's ``weights.safetensors``.

This is the reference every other engine is compared with: the same
weights the ONNX files were exported from, run by the framework they were
trained in. fp32 on CPU or CUDA; fp16 (weights and activations cast to
half) on CUDA only, because CPU half-precision convolutions are slow and
not what any deployment runs.

TF32 is pinned off on activate: with it on, CUDA matmuls/convs round their
inputs to 10 mantissa bits and an "fp32" reference would differ from the CPU
one by ~1e-3, which is the fp32 tolerance itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgemask.backends import check_options, check_precision
from edgemask.backends.base import Runner
from edgemask.errors import BackendError, BundleError, NotAvailableError

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle

DEVICES = ("cpu", "cuda")


class TorchRunner(Runner):
    """The float model, eager, in eval mode."""

    name: ClassVar[str] = "torch"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    def __init__(
        self,
        weights: str | Path,
        arch: str,
        arch_args: dict[str, Any],
        input_size: int,
        num_classes: int,
        precision: str = "fp32",
        device: str | None = None,
        num_threads: int | None = None,
    ):
        """Record what to load; nothing is read until :meth:`activate`.

        Args:
            weights: a ``.safetensors`` file with the model's state dict.
            arch, arch_args: what ``edgemask.models.create_model`` builds.
            input_size, num_classes: from the bundle's manifest.
            precision: ``fp32``, or ``fp16`` (CUDA only).
            device: ``cpu`` or ``cuda`` (``cuda:1`` works too); default
                ``cuda`` for fp16, ``cpu`` otherwise.
            num_threads: torch intra-op threads while active (process-wide,
                restored on deactivate); default ``EDGEMASK_NUM_THREADS`` if
                set, else torch's own default is left alone.
        """
        check_precision(type(self), precision)
        super().__init__(input_size, num_classes, precision)
        device = device or ("cuda" if precision == "fp16" else "cpu")
        if device.split(":")[0] not in DEVICES:
            raise BackendError(f"torch backend device {device!r} is not supported; use one of: {', '.join(DEVICES)}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendError(
                "torch fp16 runs on CUDA only (CPU half convolutions are not a deployment target); "
                "use device='cuda', or onnxrt:fp16 for a CPU fp16 model"
            )
        self.weights = Path(weights)
        self.arch = arch
        self.arch_args = dict(arch_args)
        self.device = device
        self.num_threads = num_threads
        self._saved_threads: int | None = None
        self._model: Any = None
        self._torch: Any = None
        self._tf32: dict[str, bool] = {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("safetensors") is None:
            return False, "PyTorch and safetensors are not installed here; 'pip install torch safetensors'"
        return True, ""

    @classmethod
    def from_bundle(cls, bundle: "Bundle", precision: str = "fp32", **options: Any) -> "TorchRunner":
        """The bundle's float weights (always the fp32 safetensors entry), at ``precision``."""
        check_precision(cls, precision)
        check_options(cls, options, ("device", "num_threads"))
        try:
            entry = bundle.model_entry("fp32", "safetensors")
        except BundleError:
            raise BundleError(
                f"bundle {bundle.manifest.name!r} has no float weights (safetensors entry), which the "
                "torch backend needs; re-export it, or compare with onnxrt:fp32 as the reference"
            ) from None
        m = bundle.manifest
        return cls(
            bundle.path(entry.file), m.arch, m.arch_args, bundle.input_size, len(m.class_names), precision, **options
        ).shaped_like(bundle)

    # -- lifecycle ---------------------------------------------------------
    def _activate_impl(self) -> None:
        import torch

        from edgemask.config import EDGEMASK_NUM_THREADS, num_threads, setting
        from edgemask.models import load_weights

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            hint = (
                "torch fp16 needs CUDA; use the onnxrt backend for fp16 on a CPU"
                if self.precision == "fp16"
                else "use the CPU (device='cpu', the default for fp32)"
            )
            raise NotAvailableError(
                f"torch device {self.device!r} asked for, but CUDA is not available here "
                f"(torch {torch.__version__}); {hint}"
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._tf32 = {
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32),
        }
        model = load_weights(
            self.arch,
            self.arch_args,
            self.weights,
            described_by="the bundle's manifest",
            fix="copy the whole bundle folder again, or re-export it",
        )
        model.eval().to(self.device)
        if self.precision == "fp16":
            model.half()
        self._model = model
        self._torch = torch
        # Last, so a failed activate leaves the process-wide setting untouched.
        threads = self.num_threads or (num_threads() if setting(EDGEMASK_NUM_THREADS) else None)
        if threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(int(threads))

    def _deactivate_impl(self) -> None:
        self._model = None
        if self._saved_threads is not None and self._torch is not None:
            self._torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        if self.device.startswith("cuda") and self._torch is not None:
            self._torch.cuda.empty_cache()

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device, dtype=dtype)  # (N,3,S,S)
            return self._model(t).float().cpu().numpy()  # (N,K); .cpu() also syncs CUDA

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(device=self.device, weights=self.weights.name, arch=self.arch)
        if self._torch is not None:
            torch = self._torch
            d.update(torch_version=torch.__version__, num_threads=torch.get_num_threads(), tf32=dict(self._tf32))
            if self.device.startswith("cuda"):
                d["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return d

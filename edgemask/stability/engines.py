"""The engines a study measures: Runners from the registry, and the int8 model's fake-quant twin."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgemask.errors import BundleError, ConfigError
from edgemask.progress import NO_PROGRESS, Progress
from edgemask.stability.config import TWIN_BACKEND, StabilityConfig, engine_key


class StudyEngine:
    """One engine of the study: a Runner, or the fake-quant twin, behind ``logits(x)``."""

    def __init__(
        self,
        key: str,
        backend: str,
        precision: str,
        target: str | None,
        source: str,
        fn: Callable[[np.ndarray], np.ndarray],
        label: dict[str, Any],
        close: Callable[[], None],
    ):
        self.key, self.backend, self.precision, self.target = key, backend, precision, target
        self.source, self._fn, self.label, self.close = source, fn, label, close

    def logits(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        out = [self._fn(np.ascontiguousarray(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def default_engines(bundle: Any) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """torch:fp32, onnxrt at every ONNX precision, opencv:int8, TensorRT engines that can run here, twin:int8.

    opencv:int8 is a second, independent int8 implementation (OpenCV's own int8
    layers, where ONNX Runtime runs the TensorRT-placed QDQ graph as float ops
    on exactly quantized tensors); OpenCV's fp32/fp16 add nothing here, as it
    widens fp16 weights to fp32.

    Returns:
        (engines, notes): notes say which engines were left out and why.
    """
    from edgemask.backends import get_backend

    notes: list[str] = []
    out: list[tuple[str, str, str | None]] = [("torch", "fp32", None)]
    onnx_precisions = bundle.manifest.precisions("onnx")
    out += [("onnxrt", p, None) for p in onnx_precisions]
    if "int8" in onnx_precisions and get_backend("opencv").available()[0]:
        out.append(("opencv", "int8", None))
    trt = [m for m in bundle.manifest.models if m.format == "tensorrt"]
    if trt:
        ok, why = get_backend("tensorrt").available()
        if ok:
            out += [("tensorrt", m.precision, None) for m in trt if ("tensorrt", m.precision, None) not in out]
        else:
            notes.append(f"TensorRT engines in the bundle were not run: {why}")
    if "int8" in onnx_precisions:
        out.append((TWIN_BACKEND, "int8", None))
    return out, notes


def check_engines(bundle: Any, specs: list[tuple[str, str, str | None]]) -> None:
    """Fail before any work on a backend name the registry does not know, or a model the bundle lacks."""
    from edgemask.backends import get_backend

    for backend, precision, _ in specs:
        if backend == TWIN_BACKEND:
            bundle.model_entry(precision, "onnx")
            continue
        cls = get_backend(backend)  # BackendError listing the valid names
        ok, why = cls.available()
        if not ok:
            from edgemask.errors import NotAvailableError

            raise NotAvailableError(f"engine {engine_key(backend, precision)} cannot run here: {why}")
        if backend in ("onnxrt", "opencv"):
            bundle.model_entry(precision, "onnx")


def open_engine(
    bundle: Any, backend: str, precision: str, target: str | None, device: str, twin_mode: str
) -> StudyEngine:
    """Activate one engine. Raises BackendError/BundleError with a fix for bad names or missing models."""
    key = engine_key(backend, precision, target)
    if backend == TWIN_BACKEND:
        from edgemask.stability.fakequant import FakeQuantTwin, twin_logits

        dev = target or device
        twin = FakeQuantTwin(bundle.model_path(precision), mode=twin_mode).eval().to(dev)
        label = {
            "backend": TWIN_BACKEND,
            "precision": precision,
            "emulated": True,
            "device": str(dev),
            "mode": twin_mode,
            "model": bundle.model_entry(precision).file,
            "what": "fake-quant torch twin executing the bundle's QDQ ONNX graph (host emulation)",
        }
        return StudyEngine(
            key,
            backend,
            precision,
            target,
            "host-emulation",
            lambda x: twin_logits(twin, x, len(x) or 1, dev),
            label,
            lambda: None,
        )
    from edgemask.backends import get_backend, runner_from_bundle

    cls = get_backend(backend)  # BackendError listing valid names for a typo
    options: dict[str, Any] = {}
    if target:
        if backend == "torch":
            options["device"] = target
        elif backend == "onnxrt":
            options["providers"] = target.split("+")
        else:
            raise ConfigError(f"engine {key!r}: only torch (device) and onnxrt (providers) take an @target")
    elif backend == "torch" and device != "cpu":
        options["device"] = device
    if backend == "tensorrt":
        from edgemask.export.engine import first_use_engine

        options["engine_loader"] = first_use_engine  # a bundle without this box's engine gets one built
    runner = runner_from_bundle(bundle, backend, precision, **options)
    runner.activate()
    label = dict(runner.describe())
    entry = None
    with contextlib.suppress(BundleError):
        entry = bundle.model_entry(precision, "onnx") if backend in ("onnxrt", "opencv") else None
    if entry is not None and entry.quantization:
        # An int8 QDQ graph placed for TensorRT runs on ORT's CPU provider as float ops on
        # exactly-quantized tensors; say so next to its numbers.
        label["quantization"] = entry.quantization
    source = "host-emulation" if getattr(cls, "emulated", False) or label.get("emulated") else "engine"
    if getattr(cls, "fake", False):
        source = "fake"
    return StudyEngine(key, backend, precision, target, source, runner.infer, label, runner.deactivate)


@dataclass
class StudySetup:
    """What every step of one study shares: the bundle, settings, where torch runs, the twin's arithmetic."""

    bundle: Any
    cfg: StabilityConfig
    device: str  # torch device of the float model and the twin
    batch_size: int  # images per engine call
    twin_mode: str = "reference"  # fake-quant arithmetic (see fakequant.TWIN_MODES)
    twin_info: dict[str, Any] | None = None  # how twin_mode was chosen, with its agreement figures
    progress: Progress = NO_PROGRESS

    def open(self, backend: str, precision: str, target: str | None = None) -> StudyEngine:
        """An activated engine of this study's bundle; ``close()`` it after use."""
        return open_engine(self.bundle, backend, precision, target, self.device, self.twin_mode)


__all__ = ["StudyEngine", "StudySetup", "check_engines", "default_engines", "open_engine"]

"""Inference backends and their registry.

Every backend is a :class:`~edgemask.backends.base.Runner` subclass in its own
subpackage. The registry maps a name to the module that defines the class and
imports that module only when :func:`get_backend` asks for it, so
``import edgemask.backends`` never pulls in onnxruntime, OpenCV, TensorRT or
pycuda; the backend modules in turn import their engine only in
``activate()``.

Typical use::

    from edgemask.backends import runner_from_bundle
    with runner_from_bundle("export/default", backend="onnxrt", precision="int8") as r:
        logits = r.infer(images_uint8_nhwc)        # (N, K) float32

Names: ``torch`` (eager, from the bundle's float weights), ``onnxrt`` (ONNX
Runtime; CPU, or CUDA/TensorRT execution providers when present), ``opencv``
(OpenCV DNN on the fp32 ONNX), ``tensorrt`` (TensorRT engines) and ``null``
(a deterministic fake for tests and pipeline timing).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemask.backends.base import Runner
from edgemask.errors import BackendError, NotAvailableError

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle

# name -> (module, class). Modules are imported on first get_backend(name).
_LAZY: dict[str, tuple[str, str]] = {
    "null": ("edgemask.backends.null.runner", "NullRunner"),
    "onnxrt": ("edgemask.backends.onnxrt.runner", "OnnxRuntimeRunner"),
    "opencv": ("edgemask.backends.opencv_dnn.runner", "OpenCVRunner"),
    "tensorrt": ("edgemask.backends.tensorrt.runner", "TensorRTRunner"),
    "torch": ("edgemask.backends.torch_backend.runner", "TorchRunner"),
}

# What to tell the user when a backend's module or its engine cannot be imported.
_INSTALL_HINT: dict[str, str] = {
    "tensorrt": "TensorRT is not installed here; on a Jetson it comes with JetPack, on x86 "
    "'pip install edgemask[tensorrt-cu12]' (or -cu13) with a CUDA driver, or use --engines onnxrt:int8 instead",
    "onnxrt": "onnxruntime is not installed here; 'pip install onnxruntime' (or onnxruntime-gpu)",
    "opencv": "OpenCV is not installed here; 'pip install opencv-python-headless'",
    "torch": "PyTorch is not installed here; 'pip install torch', or use --engines onnxrt:fp32",
}

_CLASSES: dict[str, type[Runner]] = {}


def register_backend(cls: type[Runner]) -> type[Runner]:
    """Add a Runner class to the registry under ``cls.name`` (usable as a decorator).

    Raises:
        BackendError: ``cls`` is not a Runner subclass or has no ``name``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise BackendError(f"register_backend() takes a Runner subclass, got {cls!r}")
    if not cls.name:
        raise BackendError(f"{cls.__name__} has no 'name' class attribute; set name = '<backend name>'")
    _CLASSES[cls.name] = cls
    return cls


def list_backends(available_only: bool = False) -> list[str]:
    """Registered backend names, sorted.

    Args:
        available_only: keep only the backends whose ``available()`` says they
            can run here (this imports their modules, not their engines).
    """
    names = sorted(set(_LAZY) | set(_CLASSES))
    if available_only:
        names = [n for n in names if get_backend(n).available()[0]]
    return names


def get_backend(name: str) -> type[Runner]:
    """The Runner class registered as ``name``.

    A known backend whose module or engine cannot be imported here (e.g.
    ``tensorrt`` on a laptop) still returns a class: its ``available()`` says
    why not, and constructing or activating it raises ``NotAvailableError``.

    Raises:
        BackendError: unknown name (the message lists the valid ones).
    """
    if name in _CLASSES:
        return _CLASSES[name]
    if name not in _LAZY:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(list_backends())}")
    module, attr = _LAZY[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if not _is_missing_dependency(e, module):
            raise  # a bug inside our own code: keep the traceback
        cls = _unavailable_backend(name, _INSTALL_HINT.get(name, f"{e}"))
        _CLASSES[name] = cls
        return cls
    cls = getattr(mod, attr)
    _CLASSES[name] = cls
    return cls


def runner_from_bundle(
    bundle: "str | Path | Bundle", backend: str = "onnxrt", precision: str = "fp32", **options: Any
) -> Runner:
    """A (not yet active) Runner for one model of a bundle.

    Args:
        bundle: a bundle folder, or a :class:`~edgemask.bundle.Bundle`
            already loaded (a folder is loaded with hash verification).
        backend: a name from :func:`list_backends`.
        precision: ``fp32``, ``fp16`` or ``int8``.
        **options: backend options, e.g. ``providers=["cuda"]`` for onnxrt
            or ``device="cuda"`` for torch.

    Raises:
        BackendError: unknown backend, or a precision/option it does not support.
        BundleError: the bundle is damaged or has no model at ``precision``.
    """
    return get_backend(backend).from_bundle(as_bundle(bundle), precision=precision, **options)  # type: ignore[attr-defined]


def as_bundle(bundle: "str | Path | Bundle") -> "Bundle":
    """``bundle`` itself if already loaded, else ``load_bundle(bundle)`` (verified)."""
    from edgemask.bundle import Bundle, load_bundle

    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def check_precision(cls: type[Runner], precision: str) -> None:
    """Raise a BackendError unless ``cls`` runs models at ``precision``."""
    supported = tuple(getattr(cls, "precisions", ("fp32",)))
    if precision not in supported:
        raise BackendError(
            f"backend {cls.name!r} does not run {precision!r} models (it runs: {', '.join(supported)}); "
            f"use e.g. onnxrt:{precision}"
        )


def check_options(cls: type[Runner], options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise a BackendError naming the first option ``cls`` does not take."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise BackendError(f"backend {cls.name!r} has no option {unknown[0]!r}; it takes: {takes}")


# -- helpers -----------------------------------------------------------------
# Third-party packages whose absence means "this backend is not installed here".
_OPTIONAL = {"tensorrt", "pycuda", "cuda", "onnxruntime", "cv2", "torch", "safetensors"}  # "cuda": cuda-python


def _is_missing_dependency(e: ImportError, module: str) -> bool:
    """True when ``e`` means a missing optional package or backend module, not a bug in ours."""
    missing = getattr(e, "name", None) or ""
    if not missing:
        # e.g. a native library of TensorRT that fails to load: still "not usable here".
        return module.startswith("edgemask.backends.tensorrt")
    if missing.split(".")[0] in _OPTIONAL:
        return True
    # The backend module (or its package) itself is absent, e.g. tensorrt before it is built.
    return module == missing or module.startswith(missing + ".")


def _unavailable_backend(name: str, why: str) -> type[Runner]:
    """A placeholder class for a backend that cannot be imported here."""

    def available(cls: type[Runner]) -> tuple[bool, str]:
        return False, why

    def refuse(cls: type[Runner], *args: Any, **kwargs: Any) -> Runner:
        raise NotAvailableError(f"backend {name!r} is not available here: {why}")

    def activate_impl(self: Runner) -> None:
        raise NotAvailableError(f"backend {name!r} is not available here: {why}")

    def infer_impl(self: Runner, x: Any) -> Any:  # pragma: no cover - never active
        raise NotAvailableError(f"backend {name!r} is not available here: {why}")

    ns: dict[str, Any] = {
        "name": name,
        "precisions": (),
        "__doc__": f"Placeholder: {why}",
        "available": classmethod(available),
        "from_bundle": classmethod(refuse),
        "_activate_impl": activate_impl,
        "_infer_impl": infer_impl,
    }
    return type(f"Unavailable_{name}", (Runner,), ns)


__all__ = [
    "Runner",
    "as_bundle",
    "check_options",
    "check_precision",
    "get_backend",
    "list_backends",
    "register_backend",
    "runner_from_bundle",
]

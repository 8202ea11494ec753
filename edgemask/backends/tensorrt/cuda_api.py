"""The few CUDA calls the TensorRT runner and calibrator need, over pycuda or cuda-python.

JetPack images usually have pycuda (built on the device); the TensorRT 10
samples use cuda-python. Either works; both expose the same small surface
here: device buffers, pinned host arrays, one stream, async copies. Neither
package is imported until :func:`get_cuda_api` is called.
"""

from __future__ import annotations

import abc
import ctypes
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgemask.errors import BackendError, NotAvailableError


@dataclass
class DeviceBuffer:
    """A device allocation: ``ptr`` is what TensorRT gets as a tensor address."""

    ptr: int
    nbytes: int
    handle: Any = None
    _free: Callable[[], None] | None = None

    def free(self) -> None:
        if self._free is not None:
            self._free()
            self._free = None


class CudaApi(abc.ABC):
    """Minimal CUDA surface. ``activate`` makes device 0's primary context current."""

    name = ""

    @abc.abstractmethod
    def activate(self) -> None: ...

    @abc.abstractmethod
    def deactivate(self) -> None: ...

    @abc.abstractmethod
    def device_count(self) -> int:
        """CUDA devices the driver reports; raises when the driver does not answer."""

    @abc.abstractmethod
    def compute_capability(self) -> str: ...

    @abc.abstractmethod
    def device_name(self) -> str: ...

    @abc.abstractmethod
    def alloc(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Page-locked host array (async copies need pinned memory to overlap)."""

    @abc.abstractmethod
    def free_pinned(self, arr: np.ndarray) -> None: ...

    @abc.abstractmethod
    def create_stream(self) -> Any: ...

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int: ...

    @abc.abstractmethod
    def destroy_stream(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None: ...

    @abc.abstractmethod
    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None: ...

    @abc.abstractmethod
    def synchronize(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def htod(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        """Blocking host→device copy (calibration batches)."""


class PyCudaApi(CudaApi):
    """pycuda driver API on the device's *primary* context, the one TensorRT's runtime uses."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda  # noqa: F401  (ImportError → not available)

        self._cuda = cuda
        self._ctx = None
        self._dev = None

    def _device(self) -> Any:
        if self._dev is None:
            self._cuda.init()
            self._dev = self._cuda.Device(0)
        return self._dev

    def activate(self) -> None:
        if self._ctx is None:
            self._ctx = self._device().retain_primary_context()
            self._ctx.push()

    def deactivate(self) -> None:
        if self._ctx is not None:
            self._cuda.Context.pop()
            self._ctx.detach()
            self._ctx = None

    def device_count(self) -> int:
        self._cuda.init()
        return int(self._cuda.Device.count())

    def compute_capability(self) -> str:
        major, minor = self._device().compute_capability()
        return f"{major}.{minor}"

    def device_name(self) -> str:
        return str(self._device().name())

    def alloc(self, nbytes: int) -> DeviceBuffer:
        mem = self._cuda.mem_alloc(max(int(nbytes), 1))
        return DeviceBuffer(ptr=int(mem), nbytes=int(nbytes), handle=mem, _free=mem.free)

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self._cuda.pagelocked_empty(shape, dtype)

    def free_pinned(self, arr: np.ndarray) -> None:
        base = getattr(arr, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def create_stream(self) -> Any:
        return self._cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream: Any) -> None:
        stream.synchronize()

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        self._cuda.memcpy_htod_async(dst.ptr, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(dst, src.ptr, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def htod(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        self._cuda.memcpy_htod(dst.ptr, np.ascontiguousarray(src))


def _import_cudart() -> Any:
    try:  # cuda-python >= 12.6 moved the bindings
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]
    return cudart


#: The cuda-python runtime members CudaPythonApi uses, with the number of positional arguments it passes
#: (tests/backends/test_tensorrt_conformance.py checks them against the real cuda-bindings wheel).
CUDART_USED = (
    ("cudaGetDeviceCount", 0),
    ("cudaSetDevice", 1),
    ("cudaGetDeviceProperties", 1),
    ("cudaMalloc", 1),
    ("cudaFree", 1),
    ("cudaMallocHost", 1),
    ("cudaFreeHost", 1),
    ("cudaStreamCreate", 0),
    ("cudaStreamDestroy", 1),
    ("cudaStreamSynchronize", 1),
    ("cudaMemcpyAsync", 5),
    ("cudaMemcpy", 4),
    ("cudaMemcpyKind.cudaMemcpyHostToDevice", None),
    ("cudaMemcpyKind.cudaMemcpyDeviceToHost", None),
    ("cudaError_t.cudaSuccess", None),
)


class CudaPythonApi(CudaApi):
    """cuda-python runtime API (``cudart``); every call returns ``(err, *values)``."""

    name = "cuda-python"

    def __init__(self) -> None:
        self._rt = _import_cudart()
        self._pinned: dict[int, int] = {}  # id(array) -> host pointer

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise BackendError(
                f"CUDA call failed: {getattr(err, 'name', err)}; check 'edgemask doctor' and the GPU driver"
            )
        return rest[0] if len(rest) == 1 else rest

    def activate(self) -> None:
        self._ok(self._rt.cudaSetDevice(0))

    def deactivate(self) -> None:
        pass  # the primary context lives as long as the process; TensorRT shares it

    def device_count(self) -> int:
        # Without a driver, cuda-python 12.9/13.x answers (cudaErrorInsufficientDriver, None).
        return int(self._ok(self._rt.cudaGetDeviceCount()))

    def _props(self) -> Any:
        return self._ok(self._rt.cudaGetDeviceProperties(0))

    def compute_capability(self) -> str:
        p = self._props()
        return f"{p.major}.{p.minor}"

    def device_name(self) -> str:
        name = self._props().name
        return name.decode("utf-8", "replace").rstrip("\x00") if isinstance(name, bytes) else str(name)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._ok(self._rt.cudaMalloc(max(int(nbytes), 1)))
        return DeviceBuffer(
            ptr=int(ptr), nbytes=int(nbytes), handle=ptr, _free=lambda: self._ok(self._rt.cudaFree(ptr))
        )

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = int(self._ok(self._rt.cudaMallocHost(max(nbytes, 1))))
        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        arr = np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        self._pinned[id(arr)] = ptr
        return arr

    def free_pinned(self, arr: np.ndarray) -> None:
        ptr = self._pinned.pop(id(arr), None)
        if ptr is not None:
            self._ok(self._rt.cudaFreeHost(ptr))

    def create_stream(self) -> Any:
        return self._ok(self._rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def destroy_stream(self, stream: Any) -> None:
        self._ok(self._rt.cudaStreamDestroy(stream))

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self._rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream))

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self._rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self._ok(self._rt.cudaStreamSynchronize(stream))

    def htod(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self._rt.cudaMemcpy(dst.ptr, src.ctypes.data, src.nbytes, kind))


_APIS: dict[str, type[CudaApi]] = {"pycuda": PyCudaApi, "cuda-python": CudaPythonApi}


def get_cuda_api(prefer: str | None = None) -> CudaApi:
    """The first CUDA binding that imports (pycuda, then cuda-python).

    Raises:
        NotAvailableError: neither imports; the message has the install hint.
    """
    order = [prefer] if prefer else list(_APIS)
    why = []
    for name in order:
        if name not in _APIS:
            raise BackendError(f"CUDA binding {name!r} is unknown; use one of {', '.join(_APIS)}")
        try:
            return _APIS[name]()
        except ImportError as e:
            why.append(f"{name}: {e}")
    raise NotAvailableError(
        "no CUDA Python binding importable (" + "; ".join(why) + "); install pycuda "
        "(JetPack: pip install pycuda) or cuda-python (pip install cuda-python)"
    )


def cuda_device_problem(binding_only: bool = False) -> str | None:
    """Why no CUDA device answers here (one line), or None when one does or nothing here can tell.

    Asks the first CUDA binding that imports for its device count. With no
    binding, a machine without an NVIDIA driver (no ``/proc/driver/nvidia``,
    not a Tegra) has no device either, unless ``binding_only`` (then None:
    the caller asks TensorRT itself).
    """
    try:
        api = get_cuda_api()
    except NotAvailableError:
        if binding_only:
            return None
        from edgemask.devices.profiles import has_nvidia_gpu

        return None if has_nvidia_gpu() else "no NVIDIA driver loaded: /proc/driver/nvidia/version is missing"
    try:
        n = api.device_count()
    except Exception as e:  # BackendError from an error code, or the binding's own RuntimeError
        text = str(e).strip()
        return f"{api.name}: {text.splitlines()[0] if text else type(e).__name__}"
    return None if n > 0 else f"{api.name} reports 0 CUDA devices"


def cuda_binding_versions() -> dict[str, str | None]:
    """Installed version of each binding, None where it does not import."""
    out: dict[str, str | None] = {}
    try:
        import pycuda

        out["pycuda"] = str(getattr(pycuda, "VERSION_TEXT", getattr(pycuda, "__version__", "unknown")))
    except ImportError:
        out["pycuda"] = None
    try:
        _import_cudart()
        try:
            from importlib.metadata import version

            out["cuda-python"] = version("cuda-python")
        except Exception:
            out["cuda-python"] = "unknown"
    except ImportError:
        out["cuda-python"] = None
    return out


__all__ = [
    "CUDART_USED",
    "CudaApi",
    "CudaPythonApi",
    "DeviceBuffer",
    "PyCudaApi",
    "cuda_binding_versions",
    "cuda_device_problem",
    "get_cuda_api",
]

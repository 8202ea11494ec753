"""TensorRTRunner: runs a bundle's TensorRT engine with one CUDA stream and pinned buffers.

Life cycle (see ``edgemask.backends.base.Runner``): the constructor only
stores paths; :meth:`activate` checks that the engine was built for this
TensorRT version, GPU and device (and refuses it otherwise, with the rebuild
command), deserializes it, allocates pinned host and device buffers for the
largest batch of the engine's optimisation profile and creates one stream.
:meth:`infer` splits a batch into chunks the profile accepts, pads a chunk
smaller than the profile's minimum (static DLA engines), copies H2D, enqueues,
copies D2H and synchronises once per chunk.

Two TensorRT APIs are handled: the name-based tensor API
(``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``;
TensorRT 8.5 and later, the only one in 10) and, for TensorRT 8.2 on a
Jetson Nano, the binding-index API (``set_binding_shape`` /
``execute_async_v2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Tuple

import numpy as np

from edgemask.backends.base import Runner
from edgemask.errors import BackendError

#: builds or fetches an engine a bundle lacks: (bundle, device, precision, dla_core) -> (path, ModelEntry)
EngineLoader = Callable[[Any, str, str, Any], Tuple[Path, Any]]


class _IOTensor:
    def __init__(self, name: str, index: int, is_input: bool, dtype: Any, shape: tuple[int, ...]):
        self.name, self.index, self.is_input, self.dtype, self.shape = name, index, is_input, dtype, shape


def engine_io(trt: Any, engine: Any) -> list[_IOTensor]:
    """Inputs and outputs of a deserialized engine, whichever API this TensorRT has."""
    out = []
    if hasattr(engine, "num_io_tensors"):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_in = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            out.append(
                _IOTensor(
                    name,
                    i,
                    is_in,
                    np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                    tuple(engine.get_tensor_shape(name)),
                )
            )
    else:
        for i in range(engine.num_bindings):
            out.append(
                _IOTensor(
                    engine.get_binding_name(i),
                    i,
                    bool(engine.binding_is_input(i)),
                    np.dtype(trt.nptype(engine.get_binding_dtype(i))),
                    tuple(engine.get_binding_shape(i)),
                )
            )
    return out


def profile_batch_range(engine: Any, tensor: _IOTensor) -> tuple[int, int, int]:
    """(min, opt, max) batch of optimisation profile 0 for the image input."""
    if tensor.shape and tensor.shape[0] != -1:
        return (tensor.shape[0],) * 3
    if hasattr(engine, "get_tensor_profile_shape"):
        mn, opt, mx = engine.get_tensor_profile_shape(tensor.name, 0)
    else:
        mn, opt, mx = engine.get_profile_shape(0, tensor.index)
    return int(mn[0]), int(opt[0]), int(mx[0])


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine (``.engine``) from a bundle.

    Args:
        engine_path: the engine file.
        input_size, num_classes, precision: from the bundle manifest.
        entry: the engine's manifest ``ModelEntry``; its TensorRT version,
            compute capability and device are checked at activation. Without
            one, the file name (``model.<device>.<precision>.trt<ver>.engine``)
            is checked instead.
        device: this machine's profile name (refuses engines of other devices).
        cuda_binding: "pycuda" or "cuda-python"; default the first that imports.
        _trt, _cuda: stand-ins for the ``tensorrt`` module and the CUDA
            binding, for tests on machines without TensorRT.
    """

    name = "tensorrt"
    emulated = False
    #: precisions an engine can be built at (a device may lower them; see plan_precision)
    precisions = ("fp32", "fp16", "int8")

    def __init__(
        self,
        engine_path: str | Path,
        input_size: int,
        num_classes: int,
        precision: str = "fp16",
        *,
        entry: Any = None,
        device: str | None = None,
        bundle_root: str | Path | None = None,
        input_name: str | None = None,
        requested_precision: str | None = None,
        cuda_binding: str | None = None,
        _trt: Any = None,
        _cuda: Any = None,
    ):
        super().__init__(input_size, num_classes, precision)
        self.engine_path = Path(engine_path)
        self.entry = entry
        self.device = device
        self.bundle_root = Path(bundle_root) if bundle_root else self.engine_path.parent
        self.input_name = input_name
        self.requested_precision = requested_precision or precision
        self.cuda_binding = cuda_binding
        self._trt_override, self._cuda_override = _trt, _cuda
        self._trt = self._cuda = self._runtime = self._engine = self._context = self._stream = None
        self._in = self._out = None
        self._bufs: list[Any] = []
        self._host_in = self._host_out = None
        self.batch_range = (1, 1, 1)
        self.tensorrt_version: str | None = None

    # -- availability ----------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except Exception as e:  # ImportError, or OSError from a broken install
            return False, (
                f"TensorRT is not installed here ({type(e).__name__}: {e}); it ships with JetPack, "
                "on x86 pip install 'edgemask[tensorrt]' with a CUDA driver"
            )
        try:
            from edgemask.backends.tensorrt.cuda_api import cuda_device_problem, get_cuda_api

            get_cuda_api()
        except Exception as e:
            return False, str(e).splitlines()[0]
        problem = cuda_device_problem()  # TensorRT and a binding, but no GPU: say so before any work
        if problem is not None:
            return False, f"TensorRT is installed but no CUDA device answers ({problem})"
        return True, ""

    def activate(self) -> "TensorRTRunner":
        if self._trt_override is not None and not self.active:  # tests inject fakes; skip the import probe
            self._activate_impl()
            self.active = True
            return self
        return super().activate()  # type: ignore[return-value]

    # -- construction from a bundle ---------------------------------------
    @classmethod
    def from_bundle(
        cls,
        bundle: Any,
        precision: str = "fp16",
        device: str | None = None,
        *,
        engine_loader: EngineLoader | None = None,
        dla_core: int | None = None,
        cuda_binding: str | None = None,
    ) -> "TensorRTRunner":
        """The runner for the bundle's engine for ``device`` (default: this machine's profile).

        The engine is looked for in the bundle, then among the engines built
        on first use in :func:`~edgemask.bundle.engines.engine_cache_dir`
        for this TensorRT version; only then is ``engine_loader`` asked.

        Args:
            precision: wanted precision; an engine built for that request
                at a lower precision (int8 → fp16 on a Nano) is accepted.
            engine_loader: ``(bundle, device, precision, dla_core) -> (path,
                ModelEntry)``, called when no engine is found, e.g.
                :func:`edgemask.export.engine.first_use_engine`, which builds
                one into the engine cache (the bundle stays untouched, so
                signed/read-only bundles work).
            dla_core: prefer the engine built for this DLA core.
            cuda_binding: "pycuda" or "cuda-python" (default: the first that imports).

        Raises:
            BundleError: no such engine and no ``engine_loader`` (the message
                has the build command).
        """
        from edgemask.bundle import Bundle, load_bundle
        from edgemask.bundle.engines import engine_entries, find_cached_engine, rebuild_command
        from edgemask.devices.profiles import PRECISIONS, detect_profile_name
        from edgemask.errors import BundleError

        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        bnd = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        device = device or detect_profile_name()
        entries = engine_entries(bnd.manifest, device, precision)
        if dla_core is not None:
            entries = [e for e in entries if (e.extra or {}).get("dla_core") == dla_core] or entries
        common = dict(
            input_name=bnd.manifest.input.name,
            requested_precision=precision,
            device=device,
            bundle_root=bnd.root,
            cuda_binding=cuda_binding,
        )
        if entries:
            e = entries[0]
            return cls(
                bnd.path(e.file), bnd.input_size, len(bnd.class_names), e.precision, entry=e, **common
            ).shaped_like(bnd)
        from edgemask.backends.tensorrt.builder import import_tensorrt

        # No engine in the bundle: only this machine's TensorRT can make or pick one (NotAvailableError here).
        trt_version = str(import_tensorrt().__version__)
        found = find_cached_engine(bnd, device, precision, dla_core, trt_version)
        if found is None and engine_loader is not None:
            found = engine_loader(bnd, device, precision, dla_core)
        if found is not None:
            path, entry = found
            return cls(path, bnd.input_size, len(bnd.class_names), entry.precision, entry=entry, **common).shaped_like(
                bnd
            )
        have = ", ".join(f"{m.device}:{m.precision}" for m in bnd.manifest.models if m.format == "tensorrt") or "none"
        what = "detector TensorRT" if getattr(bnd, "part", "classifier") == "detector" else "TensorRT"
        raise BundleError(
            f"bundle {bnd.manifest.name!r} has no {what} engine for device {device!r} at precision "
            f"{precision} (engines: {have}); build it on this device: "
            f"{rebuild_command(bnd.root, device, precision, dla_core)}"
        )

    # -- lifecycle ---------------------------------------------------------
    def _activate_impl(self) -> None:
        from edgemask.bundle.engines import check_engine_compatible, parse_engine_file_name

        trt, cuda = self._load_trt_and_cuda()
        if not self.engine_path.is_file():
            raise BackendError(f"engine {self.engine_path} not found; build it with 'edgemask engine build'")
        entry = self.entry
        meta = parse_engine_file_name(self.engine_path)
        if entry is None:  # a bare engine file: its name is all we know about it
            self._check_engine_name(meta)
        cuda.activate()
        try:
            if entry is not None:
                check_engine_compatible(
                    entry,
                    self.tensorrt_version,
                    compute_capability=_safe(cuda.compute_capability),
                    device=self.device,
                    bundle_dir=self.bundle_root,
                )
            extra = (entry.get("extra") if isinstance(entry, dict) else getattr(entry, "extra", None)) or {}
            dla = extra.get("dla_core") if entry is not None else (meta or {}).get("dla_core")
            engine = self._deserialize(trt, dla)
            self._engine = engine
            self._context = engine.create_execution_context()
            if self._context is None:
                raise BackendError(
                    f"TensorRT could not create an execution context for {self.engine_path.name} "
                    "(out of GPU memory?); close other GPU programs or rebuild with a smaller --batch"
                )
            io = engine_io(trt, engine)
            self._pick_image_io(io)
            self._allocate_and_bind(cuda, engine, io)
        except BaseException:
            self._release()
            raise

    def _load_trt_and_cuda(self) -> tuple[Any, Any]:
        """The tensorrt module and the CUDA wrapper (or the test's stand-ins); records this TensorRT's version."""
        trt = self._trt_override
        if trt is None:
            import tensorrt as trt
        if self._cuda_override is not None:
            cuda = self._cuda_override
        else:
            from edgemask.backends.tensorrt.cuda_api import get_cuda_api

            cuda = get_cuda_api(self.cuda_binding)
        self._trt, self._cuda = trt, cuda
        self.tensorrt_version = str(trt.__version__)
        return trt, cuda

    def _check_engine_name(self, meta: dict[str, Any] | None) -> None:
        """Refuse a bare engine file (no manifest entry) whose name says another TensorRT or device."""
        from edgemask.bundle.engines import check_engine_compatible
        from edgemask.devices.profiles import tensorrt_version_matches

        if meta is None:
            raise BackendError(
                f"{self.engine_path.name} is not named model.<device>.<precision>.trt<ver>.engine "
                "and has no manifest entry, so its TensorRT version is unknown; load it from its bundle"
            )
        named = {
            "file": self.engine_path.name,
            "device": meta["device"],
            "precision": meta["precision"],
            "tensorrt_version": meta["tensorrt"],
            "extra": {"dla_core": meta["dla_core"]},
        }
        # The name holds only major.minor, so the exact-version check of the manifest path cannot apply.
        if not tensorrt_version_matches(meta["tensorrt"], self.tensorrt_version):
            check_engine_compatible(named, self.tensorrt_version, bundle_dir=self.bundle_root)
        check_engine_compatible(named, None, device=self.device, bundle_dir=self.bundle_root)

    def _deserialize(self, trt: Any, dla: Any) -> Any:
        """The engine deserialized by a new runtime (on DLA core ``dla`` when not None); one-line errors."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if dla is not None:
            # A DLA engine runs on the core the runtime names (IRuntime.DLA_core, default -1):
            # it must be set before deserializing.
            cores = getattr(self._runtime, "num_DLA_cores", None)
            if cores is not None and int(dla) >= int(cores):
                raise BackendError(
                    f"{self.engine_path.name} was built for DLA core {dla} but TensorRT sees "
                    f"{cores} DLA core(s) here; rebuild it for this device with "
                    "'edgemask engine build' (without --dla-core on a device with no DLA)"
                )
            self._runtime.DLA_core = int(dla)
        try:
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        except (RuntimeError, TypeError, ValueError) as e:  # some builds raise instead of returning None
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(
                f"TensorRT {self.tensorrt_version} could not deserialize {self.engine_path.name} "
                f"({first}); rebuild it with 'edgemask engine build'"
            ) from None
        if engine is None:
            raise BackendError(
                f"TensorRT {self.tensorrt_version} could not deserialize {self.engine_path.name} "
                "(built by another TensorRT version or damaged); rebuild it with 'edgemask engine build'"
            )
        return engine

    def _pick_image_io(self, io: list[_IOTensor]) -> None:
        """Set ``_in`` and ``_out`` (image input, first output), checked against the bundle's name and shapes."""
        inputs = [t for t in io if t.is_input]
        outputs = [t for t in io if not t.is_input]
        if len(inputs) != 1 or not outputs:
            raise BackendError(
                f"{self.engine_path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "expected one image input and a logits output"
            )
        self._in, self._out = inputs[0], outputs[0]
        if self.input_name and self._in.name != self.input_name:
            raise BackendError(
                f"{self.engine_path.name} input is {self._in.name!r}, the bundle says "
                f"{self.input_name!r}; the engine belongs to another model"
            )
        h, w = self.input_hw
        if tuple(self._in.shape[1:]) != (3, h, w):
            raise BackendError(f"{self.engine_path.name} takes {self._in.shape}, the bundle needs (N, 3, {h}, {w})")
        if tuple(self._out.shape[1:]) != self.output_tail:
            has = (
                f"has {self.num_classes} classes"
                if self.output_tail == (self.num_classes,)
                else f"model gives (N, {', '.join(map(str, self.output_tail))})"
            )
            raise BackendError(
                f"{self.engine_path.name} outputs {self._out.shape}, the bundle {has}; "
                "the engine belongs to another model"
            )

    def _allocate_and_bind(self, cuda: Any, engine: Any, io: list[_IOTensor]) -> None:
        """Pinned host and device buffers for the profile's largest batch, one stream, and their addresses bound."""
        h, w = self.input_hw
        self.batch_range = profile_batch_range(engine, self._in)
        bmax = self.batch_range[2]
        self._stream = cuda.create_stream()
        self._host_in = cuda.pinned_empty((bmax, 3, h, w), self._in.dtype)
        self._host_out = cuda.pinned_empty((bmax,) + self.output_tail, self._out.dtype)
        self._dev_in = cuda.alloc(self._host_in.nbytes)
        self._dev_out = cuda.alloc(self._host_out.nbytes)
        self._bufs = [self._dev_in, self._dev_out]
        self._tensor_api = hasattr(self._context, "execute_async_v3")
        if self._tensor_api:
            self._context.set_tensor_address(self._in.name, self._dev_in.ptr)
            self._context.set_tensor_address(self._out.name, self._dev_out.ptr)
        else:
            ptrs = [0] * (max(t.index for t in io) + 1)
            ptrs[self._in.index], ptrs[self._out.index] = self._dev_in.ptr, self._dev_out.ptr
            self._bindings = ptrs

    def _release(self) -> None:
        cuda = self._cuda
        if cuda is None:
            return
        if self._stream is not None:
            _safe(lambda: cuda.synchronize(self._stream))
        for b in self._bufs:
            _safe(b.free)
        self._bufs = []
        for arr in (self._host_in, self._host_out):
            if arr is not None:
                _safe(lambda a=arr: cuda.free_pinned(a))
        self._host_in = self._host_out = None
        if self._stream is not None:
            _safe(lambda: cuda.destroy_stream(self._stream))
            self._stream = None
        # TensorRT objects hold device memory: drop them before leaving the context.
        self._context = self._engine = self._runtime = None
        _safe(cuda.deactivate)

    def _deactivate_impl(self) -> None:
        self._release()

    # -- inference ---------------------------------------------------------
    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        bmin = self.batch_range[0]
        m = max(n, bmin)  # static (e.g. DLA) engines: pad with zeros, drop the extra rows
        host_in = self._host_in[:m]
        host_in[:n] = x
        if m > n:
            host_in[n:] = 0
        shape = (m, 3) + self.input_hw
        ctx = self._context
        if self._tensor_api:
            if not ctx.set_input_shape(self._in.name, shape):
                raise BackendError(f"engine rejected input shape {shape} (profile batch {self.batch_range})")
        else:
            if not ctx.set_binding_shape(self._in.index, shape):
                raise BackendError(f"engine rejected input shape {shape} (profile batch {self.batch_range})")
        cuda, stream = self._cuda, self._stream
        cuda.htod_async(self._dev_in, host_in, stream)
        if self._tensor_api:
            ok = ctx.execute_async_v3(cuda.stream_handle(stream))
        else:
            ok = ctx.execute_async_v2(bindings=self._bindings, stream_handle=cuda.stream_handle(stream))
        if not ok:
            raise BackendError(f"TensorRT failed to enqueue {self.engine_path.name}; see the TensorRT log above")
        host_out = self._host_out[:m]
        cuda.dtoh_async(host_out, self._dev_out, stream)
        cuda.synchronize(stream)
        return np.array(host_out[:n], dtype=np.float32)  # copy: the pinned buffer is reused

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(self._in.dtype, copy=False)
        bmax = self.batch_range[2]
        return np.concatenate([self._run_chunk(x[i : i + bmax]) for i in range(0, x.shape[0], bmax)], axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        extra = (self.entry.extra if hasattr(self.entry, "extra") else (self.entry or {}).get("extra")) or {}
        d.update(
            requested_precision=self.requested_precision,
            device=self.device,
            engine=self.engine_path.name,
            tensorrt_version=self.tensorrt_version,
            dla_core=extra.get("dla_core"),
            batch_range=list(self.batch_range),
        )
        return d


def _safe(fn: Any) -> Any:
    """Call ``fn`` and swallow errors: used while tearing down after another error."""
    try:
        return fn()
    except Exception:
        return None


__all__ = ["EngineLoader", "TensorRTRunner", "engine_io", "profile_batch_range"]

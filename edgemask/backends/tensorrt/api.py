"""Every member of TensorRT's Python API that edgemask calls, per version branch, in one table.

TensorRT's Python API moves between majors (8.x, 10.x, 11.x): 10 dropped
implicit batch and the binding-index runtime API, 11 dropped the precision
builder flags, the INT8 calibrators and ``IBuilderConfig.int8_calibrator``.
The builder, calibrator and runner choose a path with the predicates below;
:data:`TRT_API` lists what each path touches, and how it is called.
``tests/backends/test_tensorrt_conformance.py`` checks the table against the
real bindings wheels of several releases, and checks that the code touches
nothing the table does not list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple


def strongly_typed(major: int) -> bool:
    """TensorRT 11: every network is strongly typed; precision comes from the ONNX types (fp16 ONNX, QDQ int8)."""
    return major >= 11


def weakly_typed(major: int) -> bool:
    """TensorRT 8.x/10.x: fp16/int8 kernels are enabled with BuilderFlag.FP16 / BuilderFlag.INT8."""
    return major < 11


def legacy_calibration(major: int) -> bool:
    """The IInt8 calibrators and ``config.int8_calibrator`` (implicit INT8): 8.x and 10.x (deprecated in 10.1)."""
    return major < 11


def explicit_batch_flag(major: int) -> bool:
    """Before 10 the ONNX parser needs NetworkDefinitionCreationFlag.EXPLICIT_BATCH (10 removed implicit batch)."""
    return major < 10


def tensor_api(major: int) -> bool:
    """The name-based runtime API (set_input_shape / set_tensor_address / execute_async_v3): 8.5 and later."""
    return True


def binding_api(major: int) -> bool:
    """The binding-index runtime API, used only for engines without ``num_io_tensors`` (TensorRT 8.2 on a Nano)."""
    return major < 10


def before_8_4(major: int) -> bool:
    """``max_workspace_size`` instead of memory pools: TensorRT 8.2 (JetPack 4.6), told apart by hasattr.

    No bindings wheel of 8.2 exists to check these rows against, so no checked major takes this path.
    """
    return False


def always(major: int) -> bool:
    return True


BRANCHES: Dict[str, Callable[[int], bool]] = {
    "always": always,
    "strongly_typed": strongly_typed,
    "weakly_typed": weakly_typed,
    "legacy_calibration": legacy_calibration,
    "explicit_batch_flag": explicit_batch_flag,
    "tensor_api": tensor_api,
    "binding_api": binding_api,
    "before_8_4": before_8_4,
}


@dataclass(frozen=True)
class Use:
    """One member of the ``tensorrt`` module edgemask uses.

    Attributes:
        path: ``"Class.member"`` or ``"name"`` under the ``tensorrt`` module.
        kind: "class" (constructed or subclassed, ``args`` = constructor
            arguments), "method" (called with ``args`` positionally and
            ``keywords`` by name), "property" (read; ``settable`` when
            assigned), "enum" (a member of an enum class), "function",
            "attribute" (a module attribute such as ``__version__``).
        branch: the key in :data:`BRANCHES` of the code path that uses it.
        where: the edgemask function that calls it.
    """

    path: str
    kind: str
    branch: str = "always"
    args: Tuple[str, ...] = ()
    keywords: Tuple[str, ...] = ()
    settable: bool = False
    where: str = ""


_B, _C, _R = "builder.engine_from_onnx", "calibrator.make_calibrator", "runner.TensorRTRunner"

TRT_API: Tuple[Use, ...] = (
    Use("__version__", "attribute", where="everywhere"),
    # logging and the builder
    Use("Logger", "class", args=("min_severity",), where=_B),
    Use("Logger.WARNING", "enum", where=_B),
    Use("Logger.VERBOSE", "enum", where=_B),
    Use("Builder", "class", args=("logger",), where=_B),
    Use("Builder.create_network", "method", args=("flags",), where=_B),
    Use("Builder.create_builder_config", "method", where=_B),
    Use("Builder.create_optimization_profile", "method", where=_B),
    Use("Builder.build_serialized_network", "method", args=("network", "config"), where=_B),
    Use("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "enum", "explicit_batch_flag", where=_B),
    Use("NetworkDefinitionCreationFlag.STRONGLY_TYPED", "enum", "strongly_typed", where=_B),
    Use("INetworkDefinition.num_inputs", "property", where=_B),
    Use("INetworkDefinition.get_input", "method", args=("index",), where=_B),
    Use("ITensor.name", "property", where=_B),
    # the ONNX parser
    Use("OnnxParser", "class", args=("network", "logger"), where=_B),
    Use("OnnxParser.parse_from_file", "method", args=("model",), where=_B),
    Use("OnnxParser.parse", "method", args=("model",), where=_B),  # only where parse_from_file is missing
    Use("OnnxParser.num_errors", "property", where=_B),
    Use("OnnxParser.get_error", "method", args=("index",), where=_B),
    # the builder config
    Use("IBuilderConfig.set_memory_pool_limit", "method", args=("pool", "pool_size"), where=_B),
    Use("MemoryPoolType.WORKSPACE", "enum", where=_B),
    Use("IBuilderConfig.max_workspace_size", "property", "before_8_4", settable=True, where=_B),
    Use("IBuilderConfig.set_flag", "method", args=("flag",), where=_B),
    Use("BuilderFlag.FP16", "enum", "weakly_typed", where=_B),
    Use("BuilderFlag.INT8", "enum", "weakly_typed", where=_B),
    Use("BuilderFlag.GPU_FALLBACK", "enum", where=_B),
    Use("IBuilderConfig.add_optimization_profile", "method", args=("profile",), where=_B),
    Use("IOptimizationProfile.set_shape", "method", args=("input", "min", "opt", "max"), where=_B),
    Use("IBuilderConfig.default_device_type", "property", settable=True, where=_B),
    Use("IBuilderConfig.DLA_core", "property", settable=True, where=_B),
    Use("DeviceType.DLA", "enum", where=_B),
    Use("IBuilderConfig.create_timing_cache", "method", args=("serialized_timing_cache",), where=_B),
    Use("IBuilderConfig.set_timing_cache", "method", args=("cache", "ignore_mismatch"), where=_B),
    Use("ITimingCache.serialize", "method", where=_B),
    # implicit INT8 (the legacy calibrator)
    Use("IBuilderConfig.int8_calibrator", "property", "legacy_calibration", settable=True, where=_B),
    Use("IBuilderConfig.set_calibration_profile", "method", "legacy_calibration", args=("profile",), where=_B),
    Use("IInt8EntropyCalibrator2", "class", "legacy_calibration", where=_C),
    Use("IInt8EntropyCalibrator", "class", "legacy_calibration", where=_C),
    Use("IInt8MinMaxCalibrator", "class", "legacy_calibration", where=_C),
    Use("IInt8LegacyCalibrator", "class", "legacy_calibration", where=_C),
    # what TensorRT calls on our calibrator: the methods the subclass overrides
    Use("IInt8EntropyCalibrator2.get_batch_size", "method", "legacy_calibration", where=_C),
    Use("IInt8EntropyCalibrator2.get_batch", "method", "legacy_calibration", args=("names",), where=_C),
    Use("IInt8EntropyCalibrator2.read_calibration_cache", "method", "legacy_calibration", where=_C),
    Use("IInt8EntropyCalibrator2.write_calibration_cache", "method", "legacy_calibration", args=("cache",), where=_C),
    # the runtime
    Use("Runtime", "class", args=("logger",), where=_R),
    Use("Runtime.deserialize_cuda_engine", "method", args=("serialized_engine",), where=_R),
    Use("Runtime.DLA_core", "property", settable=True, where=_R),
    Use("Runtime.num_DLA_cores", "property", where=_R),
    Use("ICudaEngine.create_execution_context", "method", where=_R),
    Use("ICudaEngine.num_io_tensors", "property", "tensor_api", where=_R),
    Use("ICudaEngine.get_tensor_name", "method", "tensor_api", args=("index",), where=_R),
    Use("ICudaEngine.get_tensor_mode", "method", "tensor_api", args=("name",), where=_R),
    Use("ICudaEngine.get_tensor_dtype", "method", "tensor_api", args=("name",), where=_R),
    Use("ICudaEngine.get_tensor_shape", "method", "tensor_api", args=("name",), where=_R),
    Use("ICudaEngine.get_tensor_profile_shape", "method", "tensor_api", args=("name", "profile_index"), where=_R),
    Use("TensorIOMode.INPUT", "enum", "tensor_api", where=_R),
    Use("nptype", "function", args=("trt_type",), where=_R),
    Use("IExecutionContext.set_input_shape", "method", "tensor_api", args=("name", "shape"), where=_R),
    Use("IExecutionContext.set_tensor_address", "method", "tensor_api", args=("name", "memory"), where=_R),
    Use("IExecutionContext.execute_async_v3", "method", "tensor_api", args=("stream_handle",), where=_R),
    Use("ICudaEngine.num_bindings", "property", "binding_api", where=_R),
    Use("ICudaEngine.get_binding_name", "method", "binding_api", args=("index",), where=_R),
    Use("ICudaEngine.binding_is_input", "method", "binding_api", args=("index",), where=_R),
    Use("ICudaEngine.get_binding_dtype", "method", "binding_api", args=("index",), where=_R),
    Use("ICudaEngine.get_binding_shape", "method", "binding_api", args=("index",), where=_R),
    Use("ICudaEngine.get_profile_shape", "method", "binding_api", args=("profile_index", "binding"), where=_R),
    Use("IExecutionContext.set_binding_shape", "method", "binding_api", args=("binding", "shape"), where=_R),
    Use(
        "IExecutionContext.execute_async_v2", "method", "binding_api", keywords=("bindings", "stream_handle"), where=_R
    ),
)


def uses_for(major: int) -> Tuple[Use, ...]:
    """The table rows on the code paths a TensorRT of this major takes."""
    return tuple(u for u in TRT_API if BRANCHES[u.branch](major))


__all__ = [
    "BRANCHES",
    "TRT_API",
    "Use",
    "binding_api",
    "explicit_batch_flag",
    "legacy_calibration",
    "strongly_typed",
    "tensor_api",
    "uses_for",
    "weakly_typed",
]

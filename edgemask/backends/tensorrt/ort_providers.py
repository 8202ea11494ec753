"""ONNX Runtime's TensorRT and CUDA execution providers, configured from a device profile.

Pass the list from :func:`ort_execution_providers` to
``onnxruntime.InferenceSession(model, providers=...)``. ONNX Runtime then
builds TensorRT engines itself; with the engine and timing caches on, the
first session on a box pays the build once and later sessions load the cache
(both kept per device under ``engine_cache_dir()/ort/<device>``; ONNX Runtime
writes the timing cache to the working directory unless told otherwise).
Where ONNX Runtime has the TensorRT/CUDA providers but no CUDA device answers
(a GPU build of onnxruntime on a machine without a GPU), the list is the CPU
provider alone, with a one-line warning, before any session is made. The onnxrt
backend uses them with its ``device`` option
(``runner_from_bundle(bundle, "onnxrt", "fp16", device="jetson-orin-nano")``);
its ``providers`` option takes names only and runs ONNX Runtime's defaults.

INT8: ONNX Runtime's TensorRT provider uses the QDQ nodes of an int8 model
(explicit quantization); it must not be given a calibration table then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edgemask.devices.profiles import (
    DeviceProfile,
    load_profile,
    plan_dla,
    plan_precision,
)

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def ort_execution_providers(
    device: str | DeviceProfile,
    precision: str = "fp16",
    *,
    input_name: str = "input",
    input_size: int = 64,
    batch: Sequence[int] = (1, 8, 32),
    dla_core: int | None = None,
    cache_dir: str | Path | None = None,
    available: Sequence[str] | None = None,
    device_id: int = 0,
    gpu_problem: Callable[[], str | None] | None = None,
) -> tuple[list[Any], list[str]]:
    """Provider list (best first) for ``onnxruntime.InferenceSession`` and planning warnings.

    Args:
        device: profile name or profile; its precisions/DLA decide the flags.
        precision: precision of the ONNX model being run (fp32 model + fp16
            flag gives TensorRT fp16 kernels; the int8 model is QDQ).
        input_name, input_size, batch: the dynamic-batch profile TensorRT builds.
        available: ``onnxruntime.get_available_providers()``; providers not in
            it are left out (default: ask onnxruntime).
        gpu_problem: returns why no CUDA device answers, or None; default
            :func:`~edgemask.backends.tensorrt.cuda_api.cuda_device_problem`.

    Returns:
        (providers, warnings): providers are names or ``(name, options)``.
    """
    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    warnings: list[str] = []
    providers: list[Any] = []
    if profile.has_tensorrt and (TRT_EP in available or CUDA_EP in available):
        if gpu_problem is None:
            from edgemask.backends.tensorrt.cuda_api import cuda_device_problem as gpu_problem
        problem = gpu_problem()
        if problem is not None:
            gpu = [p for p in (TRT_EP, CUDA_EP) if p in available]
            warnings.append(
                f"onnxruntime has {' and '.join(gpu)} but no CUDA device answers ({problem}); running on {CPU_EP}"
            )
            return [CPU_EP], warnings
    if TRT_EP in available and profile.has_tensorrt:
        from edgemask.bundle.engines import engine_cache_dir

        prec, w = plan_precision(profile, precision)
        warnings += w
        dla, prec, w = plan_dla(profile, dla_core, prec)
        warnings += w
        cache = Path(cache_dir) if cache_dir else engine_cache_dir() / "ort" / profile.name
        s = int(input_size)

        def shape(n: int) -> str:
            return f"{input_name}:{int(n)}x3x{s}x{s}"

        opts: dict[str, Any] = {
            "device_id": device_id,
            "trt_max_workspace_size": int(profile.workspace_mib) << 20,
            "trt_fp16_enable": prec in ("fp16", "int8") and "fp16" in profile.fast_precisions,
            "trt_int8_enable": prec == "int8",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),  # else ONNX Runtime writes it to the working directory
            "trt_profile_min_shapes": shape(batch[0]),
            "trt_profile_opt_shapes": shape(batch[1]),
            "trt_profile_max_shapes": shape(batch[2]),
        }
        if dla is not None:
            opts.update(trt_dla_enable=True, trt_dla_core=int(dla))
        providers.append((TRT_EP, opts))
    elif profile.has_tensorrt and TRT_EP not in available:
        warnings.append(
            f"onnxruntime here has no {TRT_EP}; install the GPU build (onnxruntime-gpu, or the "
            "Jetson Zoo wheel on JetPack) for TensorRT through ONNX Runtime"
        )
    if CUDA_EP in available and profile.has_tensorrt:
        providers.append((CUDA_EP, {"device_id": device_id}))
    providers.append(CPU_EP)
    return providers, warnings


__all__ = ["CPU_EP", "CUDA_EP", "TRT_EP", "ort_execution_providers"]

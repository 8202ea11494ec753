"""Provenance of a study: library versions, host, TF32 state, and the device torch runs on."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError


def library_versions() -> dict[str, str | None]:
    """Versions of everything that can change the numbers."""
    import importlib.metadata as md

    import edgemask

    out: dict[str, str | None] = {"edgemask": edgemask.__version__, "python": platform.python_version()}
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "numpy", "onnx", "tensorrt", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            if dist in ("torch", "onnxruntime", "numpy", "onnx"):
                out[dist] = None
    return out


def host_info() -> dict[str, Any]:
    """CPU/GPU description; int8 kernels on x86 depend on whether the CPU has VNNI."""
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system()}
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), None)
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info.update(
            cpu=model,
            avx2="avx2" in flags,
            avx512bw="avx512bw" in flags,
            vnni=("avx512_vnni" in flags) or ("avx_vnni" in flags),
        )
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except Exception:
        pass
    return info


@contextlib.contextmanager
def tf32_pinned_off() -> Any:
    """Turn TF32 off for the study and restore it after; yields the state before."""
    import torch

    before = {
        "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before["cuda.matmul.allow_tf32"]
        torch.backends.cudnn.allow_tf32 = before["cudnn.allow_tf32"]


def resolve_device(device: str) -> str:
    """ "auto" → cuda when torch sees a GPU, else cpu; a CUDA device asked for without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    return device


__all__ = ["host_info", "library_versions", "resolve_device", "tf32_pinned_off"]

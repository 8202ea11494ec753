"""``ExportConfig.device`` / ``.engine``: what ``export_bundle`` does for one target device.

A device profile changes an export in three ways:

* the ONNX opset: the profile's TensorRT parser has a highest opset it reads
  (13 for TensorRT 8.2 on JetPack 4.6), so the default opset is lowered to it
  and a higher ``--opset`` is refused before anything is exported;
* warnings: a precision the device does not run fast (INT8 on a Jetson Nano)
  is said up front, with what an engine for it will use instead;
* with ``engine=True``, TensorRT engines are built from the finished bundle
  (on the device itself, or any machine with TensorRT and the same GPU
  family) by :func:`edgemask.export.engine.build_engines_for_bundle`
  (called by ``export_bundle`` after the bundle is written).
  TensorRT is imported *before* the export starts, so a machine without it
  fails at once with a one-line error, not after minutes of calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError
from edgemask.export.config import DEFAULT_OPSET


def device_opset(profile: Any, opset: int | None) -> int:
    """The opset to export for ``profile``: its maximum by default; a higher request is an error."""
    limit = min(DEFAULT_OPSET, profile.max_onnx_opset)
    if opset is None:
        return limit
    if opset > profile.max_onnx_opset:
        reader = f"TensorRT {profile.tensorrt}" if profile.has_tensorrt else "its runtime"
        raise ConfigError(
            f"--opset {opset} is above what {reader} on {profile.name} reads "
            f"(at most {profile.max_onnx_opset}); use --opset {profile.max_onnx_opset} or leave it out"
        )
    return opset


def precision_warnings(profile: Any, precisions: Sequence[str]) -> list[str]:
    """One warning per requested precision the device does not run fast, saying what it gets instead."""
    from edgemask.devices.profiles import plan_precision

    out: list[str] = []
    for p in precisions:
        for w in plan_precision(profile, p)[1]:
            if w not in out:
                out.append(w)
    return out


def prepare_device_export(cfg: Any, warn: Callable[[str], None]) -> tuple[Any, int]:
    """Everything ``export_bundle`` does for ``cfg.device`` before exporting: (profile, opset to use).

    Says each precision warning through ``warn``, and with ``cfg.engine``
    checks TensorRT and the GPU now, not after minutes of calibration.

    Raises:
        ConfigError: unknown device (the known ones are listed), opset too high, engine for a device without TensorRT.
        NotAvailableError: ``cfg.engine`` on a machine without TensorRT or a GPU.
    """
    from edgemask.devices.profiles import load_profile

    profile = load_profile(cfg.device)
    if cfg.engine and not profile.has_tensorrt:
        raise ConfigError(
            f"{profile.name} has no TensorRT; --engine is for TensorRT targets (see 'edgemask devices list')"
        )
    opset = device_opset(profile, cfg.opset)
    for w in precision_warnings(profile, cfg.precisions):
        warn(w if cfg.engine else f"{w} when its engine is built (the bundle still ships the ONNX models asked for)")
    if cfg.engine:
        from edgemask.backends.tensorrt.builder import require_build_gpu

        require_build_gpu()  # no TensorRT, or no GPU: fail now, not after the export and calibration
    return profile, opset


def export_for_device(
    run_dir: str | Path,
    out: str | Path,
    device: str,
    *,
    engine: bool = False,
    on_warning: Callable[[str], None] | None = None,
    engine_options: dict[str, Any] | None = None,
    **export_options: Any,
) -> Any:
    """The keyword form of ``export_bundle(run_dir, out, ExportConfig(device=device, engine=engine))``.

    Kept for callers written before ``ExportConfig.device``; returns the same
    :class:`~edgemask.export.bundle_writer.ExportResult` (``bundle``,
    ``device``, ``opset``, ``warnings``, ``engines``).
    """
    from edgemask.export import export_bundle  # the public name: no file cycle with bundle_writer, which calls us

    return export_bundle(
        run_dir,
        out,
        on_warning=on_warning,
        device=device,
        engine=engine,
        engine_options=dict(engine_options or {}),
        **export_options,
    )


__all__ = ["device_opset", "export_for_device", "precision_warnings", "prepare_device_export"]

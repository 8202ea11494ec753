"""``edgemask export --device NAME [--engine]``: a bundle made for one target device.

A device profile changes an export in three ways:

* the ONNX opset: the profile's TensorRT parser has a highest opset it reads
  (13 for TensorRT 8.2 on JetPack 4.6), so the default opset is lowered to it
  and a higher ``--opset`` is refused before anything is exported;
* warnings: a precision the device does not run fast (INT8 on a Jetson Nano)
  is said up front, with what an engine for it will use instead;
* with ``engine=True``, TensorRT engines are built from the finished bundle
  (on the device itself, or any machine with TensorRT and the same GPU
  family) by :func:`edgemask.export.engine.build_engines_for_bundle`.
  TensorRT is imported *before* the export starts, so a machine without it
  fails at once with a one-line error, not after minutes of calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

#: The exporter's default opset when neither the user nor a profile lowers it.
DEFAULT_OPSET = 17


@dataclass
class DeviceExport:
    """What a device export did: the bundle, the opset used, warnings and engines built."""

    bundle: Path
    device: str
    opset: int
    warnings: list[str] = field(default_factory=list)
    engines: list[Any] = field(default_factory=list)  # EngineResult per engine built


def device_opset(profile: Any, opset: int | None) -> int:
    """The opset to export for ``profile``: its maximum by default; a higher request is an error."""
    limit = min(DEFAULT_OPSET, profile.max_onnx_opset)
    if opset is None:
        return limit
    if opset > profile.max_onnx_opset:
        reader = f"TensorRT {profile.tensorrt}" if profile.has_tensorrt else "its runtime"
        raise ConfigError(f"--opset {opset} is above what {reader} on {profile.name} reads "
                          f"(at most {profile.max_onnx_opset}); use --opset {profile.max_onnx_opset} or leave it out")
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


def export_for_device(run_dir: str | Path, out: str | Path, device: str, *,
                      precisions: str | Sequence[str] = ("fp32", "fp16", "int8"), opset: int | None = None,
                      engine: bool = False, on_warning: Callable[[str], None] | None = None,
                      engine_options: dict[str, Any] | None = None, **export_options: Any) -> DeviceExport:
    """Export ``run_dir`` as a bundle for ``device``, and optionally build its TensorRT engines.

    Args:
        run_dir, out: as for :func:`edgemask.export.export_bundle`.
        device: a device profile name (``edgemask devices list``).
        precisions: the ONNX precisions to ship; with ``engine``, also the
            engines to build (each lowered to what the device runs fast).
        opset: target opset; default the lower of 17 and the profile's maximum.
        engine: build TensorRT engines into the bundle after exporting it.
        on_warning: called with each warning as soon as it is known.
        engine_options: passed to ``build_engines_for_bundle`` (dla_core,
            int8_mode, batch, workspace_mib, ...).
        **export_options: any other ``export_bundle`` keyword (calibration,
            method, name, overwrite, progress, golden_count, ...).

    Raises:
        ConfigError: unknown device (the known ones are listed), opset too high.
        NotAvailableError: ``engine`` on a machine without TensorRT (before exporting).
    """
    from edgemask.devices.profiles import load_profile
    from edgemask.export.bundle_writer import export_bundle, parse_precisions

    profile = load_profile(device)
    if engine and not profile.has_tensorrt:
        raise ConfigError(f"{profile.name} has no TensorRT; --engine is for TensorRT targets "
                          "(see 'edgemask devices list')")
    wanted = parse_precisions(precisions)
    used_opset = device_opset(profile, opset)
    from edgemask.utils.warn import once_each

    warnings: list[str] = []
    warn = once_each(on_warning, warnings)

    for w in precision_warnings(profile, wanted):
        warn(w if engine else f"{w} when its engine is built (the bundle still ships the ONNX models asked for)")
    if engine:
        from edgemask.backends.tensorrt.builder import require_build_gpu

        require_build_gpu()  # no TensorRT, or no GPU: fail now, not after the export and calibration
    path = export_bundle(run_dir, out, precisions=wanted, opset=used_opset, **export_options)
    result = DeviceExport(bundle=Path(path), device=profile.name, opset=used_opset, warnings=warnings)
    if engine:
        from edgemask.export.engine import build_engines_for_bundle

        result.engines = build_engines_for_bundle(path, profile.name, wanted, on_warning=warn,
                                                  **(engine_options or {}))
    return result


__all__ = ["DEFAULT_OPSET", "DeviceExport", "device_opset", "export_for_device", "precision_warnings"]

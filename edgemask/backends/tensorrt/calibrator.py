"""TensorRT's legacy (implicit) INT8 calibration: the cache file and the calibrator object.

Implicit INT8 needs per-tensor scales, which edgemask ships in the bundle as a
TensorRT calibration cache (``TRT-<code>-<Algorithm>`` then ``tensor: <hex
fp32 scale>`` lines). :class:`CalibratorLogic` is what a calibrator does,
without TensorRT, so it is testable anywhere; :func:`make_calibrator` wraps it
in the ``IInt8*Calibrator`` class TensorRT wants.

The calibrator API exists in TensorRT 8.x and 10.x (deprecated since 10.1)
and is gone in 11, where INT8 comes only from the QDQ model
(see :mod:`edgemask.backends.tensorrt.builder`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemask.errors import ExportError
from edgemask.utils.io import atomic_write_bytes


@dataclass
class CalibrationCache:
    """A TensorRT calibration cache: header ``TRT-<code>-<Algorithm>``, then ``tensor: <hex fp32 scale>``."""

    version_code: int
    algorithm: str
    scales: dict[str, float]
    raw: bytes
    path: str = ""


_CALIB_ALGOS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")


def read_calibration_cache(path: str | Path) -> CalibrationCache:
    """Parse and validate a TensorRT calibration cache.

    Raises:
        ExportError: missing file, unknown header, or a line that is not
            ``name: 8-hex-digit float32`` with a positive, finite value.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"calibration cache {path} not found; re-export the bundle with int8, or use --int8-mode qdq")
    raw = path.read_bytes()
    lines = raw.decode("ascii", "replace").splitlines()
    if not lines:
        raise ExportError(f"calibration cache {path} is empty; re-export the bundle")
    m = re.match(r"^TRT-(\d+)-(\w+)$", lines[0].strip())
    if not m or m.group(2) not in _CALIB_ALGOS:
        raise ExportError(
            f"calibration cache {path} starts with {lines[0][:40]!r}, expected a header like "
            "'TRT-8502-EntropyCalibration2'; re-export the bundle"
        )
    scales: dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, hexval = line.rpartition(":")
        hexval = hexval.strip()
        if not sep or not name.strip() or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval):
            raise ExportError(f"calibration cache {path} line {n} is {line[:60]!r}, expected 'tensor: 3c010a14'")
        value = struct.unpack(">f", bytes.fromhex(hexval))[0]
        if not np.isfinite(value) or value < 0:  # 0 is legal: a tensor that was always 0 in calibration
            raise ExportError(
                f"calibration cache {path} line {n}: scale {value} of {name.strip()!r} is negative "
                "or not finite; re-calibrate"
            )
        scales[name.strip()] = float(value)
    if not scales:
        raise ExportError(f"calibration cache {path} has a header but no tensor scales; re-export the bundle")
    return CalibrationCache(int(m.group(1)), m.group(2), scales, raw, str(path))


class CalibratorLogic:
    """What a TensorRT calibrator does, without TensorRT (so it is testable anywhere).

    Implicit INT8 (TensorRT without the QDQ path) needs per-tensor scales.
    They come from the bundle's calibration cache; TensorRT asks for batches
    only when the cache does not fit the network, and then ``batches``
    (float32 NCHW) are fed, if given.
    """

    def __init__(
        self,
        cache: CalibrationCache | None,
        batches: np.ndarray | None = None,
        batch_size: int = 8,
        write_path: str | Path | None = None,
        header_code: int | None = None,
    ):
        self.cache = cache
        # The bundle's cache holds scales edgemask computed from ONNX tensor ranges; its header
        # version is whatever the export was told (--trt-cache-version). It is presented to
        # TensorRT under the running TensorRT's own code so the version in the header is never
        # the reason TensorRT ignores it and asks for calibration data instead.
        self.header_code = header_code
        self.batch_size = int(batch_size)
        self.batches = None if batches is None else np.ascontiguousarray(batches, dtype=np.float32)
        self.write_path = Path(write_path) if write_path else None
        self._pos = 0
        self.cache_reads = 0
        self.batches_served = 0

    @property
    def algorithm(self) -> str:
        return self.cache.algorithm if self.cache else "EntropyCalibration2"

    def read(self) -> bytes | None:
        self.cache_reads += 1
        if self.cache is None:
            return None
        if self.header_code is None or self.header_code == self.cache.version_code:
            return self.cache.raw
        _, sep, rest = self.cache.raw.partition(b"\n")
        return f"TRT-{self.header_code}-{self.cache.algorithm}".encode() + sep + rest

    def write(self, data: bytes) -> None:
        if self.write_path is not None:
            atomic_write_bytes(self.write_path, bytes(data))

    def next_batch(self) -> np.ndarray | None:
        """The next full batch (N = batch_size), or None when done."""
        if self.batches is None or self._pos + self.batch_size > len(self.batches):
            return None
        b = self.batches[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        self.batches_served += 1
        return b


_CALIBRATOR_BASES = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "LegacyCalibration": "IInt8LegacyCalibrator",
}


def make_calibrator(trt: Any, logic: CalibratorLogic, cuda: Any = None) -> Any:
    """A TensorRT calibrator object whose class matches the cache's algorithm.

    TensorRT ignores a cache written by a different algorithm, so the base
    class is chosen from the header (``EntropyCalibration2`` →
    ``IInt8EntropyCalibrator2``, the default).
    """
    base = getattr(trt, _CALIBRATOR_BASES[logic.algorithm])
    state: dict[str, Any] = {"buf": None}

    def __init__(self: Any) -> None:
        base.__init__(self)  # pybind11 trampolines must have their base constructor called

    def get_batch_size(self: Any) -> int:
        # 1, not logic.batch_size: edgemask networks are explicit-batch, so the batch of each
        # calibration tensor comes from the calibration profile (its opt shape = logic.batch_size
        # rows); TensorRT uses this number only for implicit-batch networks (deprecated in 10.0).
        return 1

    def get_batch(self: Any, names: Sequence[str], *args: Any) -> list[int] | None:
        # names: the network inputs TensorRT wants, in order; edgemask engines have exactly one.
        batch = logic.next_batch() if cuda is not None else None
        if batch is None:  # None tells TensorRT there is no more data
            if state["buf"] is not None:
                state["buf"].free()
                state["buf"] = None
            return None
        if state["buf"] is None:
            state["buf"] = cuda.alloc(batch.nbytes)
        cuda.htod(state["buf"], batch)
        return [int(state["buf"].ptr)]

    def read_calibration_cache(self: Any, *args: Any) -> bytes | None:
        return logic.read()

    def write_calibration_cache(self: Any, cache: Any, *args: Any) -> None:
        logic.write(bytes(cache))

    cls = type(
        "EdgemaskCacheCalibrator",
        (base,),
        {
            "__init__": __init__,
            "get_batch_size": get_batch_size,
            "get_batch": get_batch,
            "read_calibration_cache": read_calibration_cache,
            "write_calibration_cache": write_calibration_cache,
        },
    )
    return cls()


def has_legacy_calibration(trt: Any) -> bool:
    """True when this TensorRT still has the IInt8 calibrators and ``config.int8_calibrator`` (8.x, 10.x)."""
    return all(hasattr(trt, n) for n in _CALIBRATOR_BASES.values()) and hasattr(
        getattr(trt, "BuilderFlag", None), "INT8"
    )


__all__ = ["CalibrationCache", "CalibratorLogic", "has_legacy_calibration", "make_calibrator", "read_calibration_cache"]

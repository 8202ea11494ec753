"""What every face detector is: :class:`FaceDetector` returning :class:`Detection` boxes.

Its own module so that detectors living elsewhere (the bundle's learned one,
:mod:`edgemask.vision.bundle_detector`) and the factory in
:mod:`edgemask.vision.detectors` import it without importing each other.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1) in frame pixels, a score, and which detector found it."""

    box: tuple[float, float, float, float]
    score: float = 1.0
    source: str = ""


class FaceDetector(abc.ABC):
    """Base class: ``detect(bgr) -> list[Detection]``.

    A detector made of several independent passes (the Haar fusion) has
    ``phases > 1`` and runs only pass ``phase`` when given one: the run loop
    spreads the passes over consecutive frames so that no single frame pays
    for all of them (a flat per-frame cost keeps the p99 latency low).
    """

    name: ClassVar[str] = ""
    phases: int = 1

    @abc.abstractmethod
    def detect(self, bgr: np.ndarray, phase: int | None = None) -> list[Detection]:
        """Faces in a BGR uint8 (H, W, 3) frame (all passes, or only pass ``phase``)."""

    def describe(self) -> dict[str, Any]:
        return {"detector": self.name}


__all__ = ["Detection", "FaceDetector"]

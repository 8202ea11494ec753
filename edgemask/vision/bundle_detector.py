"""The bundle's learned face detector as a :class:`~edgemask.vision.detectors.FaceDetector`.

Device runtime code: Python 3.8, no torch. A frame goes through the same
steps whichever runner holds the detector's model (ONNX Runtime, OpenCV DNN,
TensorRT, torch): letterbox to the input the manifest names (plus the
coarse pass's canvas for faces close to the camera), one ``Runner.infer`` on
the uint8 canvases, then decode + NMS in numpy
(:mod:`edgemask.vision.facedet_decode`) with the manifest's decode
parameters, boxes scaled back to frame pixels.

:func:`check_detector_golden` is the on-device self-test: a runner's heads on
the bundle's golden scenes against the stored torch heads, within the
manifest's per-precision tolerances.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from edgemask.errors import ConfigError
from edgemask.vision.face_detector import Detection, FaceDetector
from edgemask.vision.facedet_decode import DecodeParams, compare_heads, merge_passes, pass_canvases, within_tolerance

#: backends a bundle detector can run on; ``null`` (a fake classifier) maps to onnxrt for the detector
DETECTOR_BACKENDS = ("onnxrt", "opencv", "tensorrt", "torch")


class BundleFaceDetector(FaceDetector):
    """Faces from the bundle's learned detector, run by any Runner.

    Args:
        runner: a Runner made from ``bundle.detector_view()`` (activated here if it is not).
        entry: the manifest's ``DetectorEntry``.
        min_face: drop faces whose longer side is under this many frame pixels (0 = keep all).
    """

    name = "bundle"

    def __init__(self, runner: Any, entry: Any, min_face: int = 0):
        self.runner = runner
        self.entry = entry
        self.params = DecodeParams.from_dict(entry.decode)
        self.width, self.height = int(entry.width), int(entry.height)
        self.min_face = int(min_face)
        if not runner.active:
            runner.activate()

    def describe(self) -> Dict[str, Any]:
        d = self.runner.describe()
        return {
            "detector": "bundle",
            "backend": d.get("backend"),
            "precision": d.get("precision"),
            "input": [self.width, self.height],
            "decode": self.params.to_dict(),
            "min_face": self.min_face,
            "smallest_face_640": self.smallest_face(640),
        }

    def smallest_face(self, frame_width: int, frame_height: Optional[int] = None) -> int:
        """Smallest face side (frame pixels) it returns: decode's ``min_side`` at the letterbox scale, or min_face."""
        h = frame_height if frame_height else frame_width * 3 // 4
        scale = min(self.width / float(frame_width), self.height / float(h))
        return int(np.ceil(max(float(self.min_face), self.params.min_side, 2.0 * self.params.stride / scale)))

    def heads(self, bgr: np.ndarray) -> tuple:
        """(heads (P, 5, h, w), scales) of one BGR frame's P passes (see ``pass_canvases``), one ``infer``."""
        canvases, scales = pass_canvases(bgr, self.width, self.height, self.params)  # per channel: BGR works too
        return self.runner.infer(np.stack([c[:, :, ::-1] for c in canvases])), scales  # RGB, as trained

    def detect(self, bgr: np.ndarray, phase: Optional[int] = None) -> List[Detection]:
        h, w = bgr.shape[:2]
        heads, scales = self.heads(bgr)
        boxes, scores = merge_passes(heads, scales, self.params, (w, h))
        out = []
        for b, s in zip(boxes, scores):
            if self.min_face and max(b[2] - b[0], b[3] - b[1]) < self.min_face:
                continue
            out.append(Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s), "bundle"))
        return out

    def close(self) -> None:
        self.runner.deactivate()


def detector_backend(backend: str) -> str:
    """The backend that runs the detector when the classifier runs on ``backend``."""
    return "onnxrt" if backend == "null" else backend


def detector_from_bundle(
    bundle: Any, backend: str = "onnxrt", precision: str = "fp32", min_face: int = 0, **options: Any
) -> BundleFaceDetector:
    """The bundle's face detector on ``backend`` at ``precision``, active.

    Args:
        bundle: a bundle folder or a loaded :class:`~edgemask.bundle.Bundle` (a folder is verified).
        backend, precision: which of the detector's models runs, and where.
        **options: backend options (``intra_op_num_threads``, ``device`` for tensorrt, ...).

    Raises:
        BundleError: no detector in the bundle, or none at that precision (one line, with the fix).
        ConfigError: a backend the detector cannot run on.
    """
    from edgemask.backends import as_bundle, get_backend

    backend = detector_backend(backend)
    if backend not in DETECTOR_BACKENDS:
        raise ConfigError(
            f"the bundle's detector cannot run on backend {backend!r}; use one of {', '.join(DETECTOR_BACKENDS)}"
        )
    b = as_bundle(bundle)
    view = b.detector_view()
    runner = get_backend(backend).from_bundle(view, precision=precision, **options)
    try:
        runner.activate()
        det = BundleFaceDetector(runner, (b.full_manifest or b.manifest).detector, min_face=min_face)
        det.detect(np.zeros((480, 640, 3), np.uint8))  # warm-up outside the frame loop
        runner.latencies_ms.clear()
    except BaseException:
        runner.deactivate()
        raise
    return det


def check_detector_golden(
    bundle: Any, backend: str = "onnxrt", precision: str = "fp32", **options: Any
) -> Dict[str, Any]:
    """Run the detector's golden scenes on a runner and compare with the stored torch heads.

    Returns:
        ``{"ok", "problems", "tolerance", **compare_heads(...)}``; ``ok`` is False
        when the heatmap or the decoded boxes are outside the manifest's
        tolerance for ``precision``.
    """
    from edgemask.backends import as_bundle, get_backend

    b = as_bundle(bundle)
    view = b.detector_view()
    det = (b.full_manifest or b.manifest).detector
    g = det.golden or {}
    if not g.get("inputs") or not g.get("outputs"):
        raise ConfigError(f"bundle {b.manifest.name!r} has no golden scenes for its detector; re-export it")
    x = np.load(b.path(g["inputs"]), allow_pickle=False)
    ref = np.load(b.path(g["outputs"]), allow_pickle=False)
    with get_backend(detector_backend(backend)).from_bundle(view, precision=precision, **options) as r:
        got = r.infer(x)
    parity = compare_heads(ref, got, DecodeParams.from_dict(det.decode))
    tol = (g.get("tolerance") or {}).get(precision)
    problems = within_tolerance(parity, tol)
    return {
        "ok": not problems,
        "problems": problems,
        "tolerance": tol,
        "backend": backend,
        "precision": precision,
        **parity,
    }


__all__ = [
    "DETECTOR_BACKENDS",
    "BundleFaceDetector",
    "check_detector_golden",
    "detector_backend",
    "detector_from_bundle",
]

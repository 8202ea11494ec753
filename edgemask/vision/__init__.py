"""Camera and video sources, face detectors, the tracker and the overlay.

Typical use::

    from edgemask.vision import FrameSource, parse_source, create_detector
    src = FrameSource(parse_source("street.mp4"))
    det = create_detector("haar-fusion")
    with src:
        frame = src.read()
        faces = det.detect(frame.image)

Importing this package is cheap; OpenCV is imported by the functions that
use it.
"""

from __future__ import annotations

from edgemask.utils.lazy import lazy_exports

_LAZY = {
    "FrameSource": "edgemask.vision.sources",
    "SourceSpec": "edgemask.vision.sources",
    "Frame": "edgemask.vision.sources",
    "END_OF_STREAM": "edgemask.vision.sources",
    "parse_source": "edgemask.vision.sources",
    "list_cameras": "edgemask.vision.sources",
    "open_capture": "edgemask.vision.sources",
    "Detection": "edgemask.vision.detectors",
    "FaceDetector": "edgemask.vision.detectors",
    "HaarDetector": "edgemask.vision.detectors",
    "YuNetDetector": "edgemask.vision.detectors",
    "FixedRegionDetector": "edgemask.vision.detectors",
    "create_detector": "edgemask.vision.detectors",
    "IoUTracker": "edgemask.vision.tracker",
    "Track": "edgemask.vision.tracker",
    "draw_overlay": "edgemask.vision.overlay",
    "VideoRecorder": "edgemask.vision.overlay",
    "face_crops": "edgemask.vision.crops",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "END_OF_STREAM",
    "Detection",
    "FaceDetector",
    "FixedRegionDetector",
    "Frame",
    "FrameSource",
    "HaarDetector",
    "IoUTracker",
    "SourceSpec",
    "Track",
    "VideoRecorder",
    "YuNetDetector",
    "create_detector",
    "draw_overlay",
    "face_crops",
    "list_cameras",
    "open_capture",
    "parse_source",
]

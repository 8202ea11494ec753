"""One frame through the models: detect (or follow) → classify all faces in one batch → vote.

:class:`FramePipeline` owns the detector schedule (every ``detect_every``-th
frame, one pass of a multi-pass detector per detect frame, or a detector
thread beside the loop: :class:`AsyncDetector`), the tracker and the
classifier; :meth:`FramePipeline.step` turns a frame into a
:class:`FrameResult`. It writes nothing: events, snapshots, alerts and the
window are :mod:`edgemask.service.outputs`' job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemask.config import CROP_MARGIN

log = logging.getLogger("edgemask.service")


# --------------------------------------------------------------------------- classifier


class FaceClassifier:
    """All faces of a frame through the Runner in one batch.

    Args:
        runner: an *active* Runner.
        class_names: the bundle's class names, in logit order.
        margin: crop margin (see :func:`edgemask.vision.crops.face_crops`).
    """

    def __init__(self, runner: Any, class_names: list[str], margin: float = CROP_MARGIN):
        self.runner = runner
        self.class_names = list(class_names)
        self.size = int(runner.input_size)
        self.margin = float(margin)

    def classify(self, bgr: np.ndarray, boxes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(class indices (N,), confidences (N,)) for ``boxes`` in ``bgr``."""
        from edgemask.vision.crops import face_crops

        if not boxes:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        crops = face_crops(bgr, boxes, self.size, self.margin)  # (N, S, S, 3) uint8 RGB
        logits = np.asarray(self.runner.infer(crops), np.float64)  # (N, K)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        idx = p.argmax(axis=1)
        return idx, p[np.arange(len(idx)), idx].astype(np.float32)


# --------------------------------------------------------------------------- detection


class AsyncDetector:
    """Runs detector passes on a thread beside the frame loop (``--detect-mode async``).

    The loop hands the newest frame over whenever the thread is idle and
    collects finished passes on later frames; frames in between are
    classified on tracked boxes. Frame latency then no longer contains the
    detector (a Haar pass costs 15–40 ms on one of two cores), only
    crop + classify + track + output. The detector sees fewer frames when the
    CPU is short, so this suits live cameras; files default to the
    reproducible synchronous mode. OpenCV's cascades and DNN release the GIL,
    so the thread runs truly in parallel.
    """

    def __init__(self, detector: Any):
        self.detector = detector
        self.phases = max(1, int(getattr(detector, "phases", 1)))
        self._job: tuple[int, np.ndarray, int | None] | None = None
        self._done: list[tuple[int, int | None, list, float]] = []
        self._cv = threading.Condition()
        self._busy = False
        self._stop = False
        self.pass_ms: list[float] = []
        self._thread = threading.Thread(target=self._run, name="edgemask-detector", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        with self._cv:
            return not self._busy

    def submit(self, frame_index: int, img: np.ndarray, phase: int | None) -> bool:
        """Start a pass on ``img`` unless one is running; True if started."""
        with self._cv:
            if self._busy:
                return False
            self._busy = True
            self._job = (frame_index, img, phase)
            self._cv.notify()
            return True

    def poll(self) -> list[tuple[int, int | None, list, float]]:
        """Finished passes as (frame index, phase, detections, ms), oldest first."""
        with self._cv:
            out, self._done = self._done, []
        return out

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job, self._job = self._job, None
            assert job is not None
            fi, img, phase = job
            t0 = time.perf_counter()
            try:
                dets = self.detector.detect(img, phase=phase) if phase is not None else self.detector.detect(img)
            except Exception:
                log.exception("face detector failed on frame %d", fi)
                dets = []
            ms = (time.perf_counter() - t0) * 1e3
            with self._cv:
                self._done.append((fi, phase, dets, ms))
                self.pass_ms.append(ms)
                if len(self.pass_ms) > 10000:
                    del self.pass_ms[:5000]
                self._busy = False

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=5.0)


# --------------------------------------------------------------------------- one frame


@dataclass
class FrameResult:
    """What the models made of one frame.

    Attributes:
        faces: one record per tracked face, as the events file and the overlay take
            them: ``track``, ``box``, ``class`` (voted, None until decided),
            ``frame_class``, ``confidence``, ``voted_confidence``, ``detected``, ``alert``.
        alerts: ``(track, class name, voted confidence)`` for each face that alerts now.
        stage_ms: ``detect``, ``classify`` and ``track`` time of this frame (ms).
        time: wall-clock time of the vote (``time.time()``; the face events' ``time``).
    """

    faces: list[dict[str, Any]]
    alerts: list[tuple[Any, str, float]]
    stage_ms: dict[str, float]
    time: float


def use_async_detection(detect_mode: str, live: bool, scenes: bool) -> bool:
    """``--detect-mode``: async on request or, with ``auto``, for live sources; never for photos."""
    return (detect_mode == "async" or (detect_mode == "auto" and live)) and not scenes


class FramePipeline:
    """Detect (or follow), classify and vote, one frame at a time.

    Args:
        detector: a FaceDetector (``phases`` > 1: one pass of a multi-pass
            detector per detect frame).
        classifier: the :class:`FaceClassifier` of the bundle's model.
        tracker_options: keyword arguments of the tracker
            (:meth:`~edgemask.service.config.RunConfig.tracker_options`).
        detect_every: run the detector on every k-th frame; follow tracks between.
        use_async: detect on a thread beside the loop (:class:`AsyncDetector`).
        scenes: each frame is an independent photo: a fresh tracker per frame,
            and every pass of a multi-pass detector on it.
        tracker_cls: the tracker class (default :class:`~edgemask.vision.tracker.IoUTracker`).
    """

    def __init__(
        self,
        detector: Any,
        classifier: FaceClassifier,
        tracker_options: dict[str, Any],
        *,
        detect_every: int = 1,
        use_async: bool = False,
        scenes: bool = False,
        tracker_cls: Any = None,
    ):
        if tracker_cls is None:
            from edgemask.vision.tracker import IoUTracker

            tracker_cls = IoUTracker
        self.detector = detector
        self.classifier = classifier
        self.names = classifier.class_names
        self.tracker_cls = tracker_cls
        self.tracker_options = dict(tracker_options)
        self.tracker = tracker_cls(**self.tracker_options)
        self.detect_every = int(detect_every)
        self.scenes = bool(scenes)
        self.phases = max(1, int(getattr(detector, "phases", 1)))
        self.mode = "async" if use_async else "sync"
        self.detector_runs = 0
        self.ages: list[int] = []  # async: frames between a detected frame and the one its boxes reach
        self._async = AsyncDetector(detector) if use_async else None
        self._since_detect = self.detect_every  # detect on the first frame
        self._cycle_pos = 0
        self._steps = 0

    def step(self, frame: Any) -> FrameResult:
        """Detect or follow the faces of ``frame``, classify them in one batch and vote."""
        t0 = time.perf_counter()
        img = frame.image
        h, w = img.shape[:2]
        if self._steps == 0 and hasattr(self.detector, "smallest_face"):
            log.info(
                "smallest findable face in %dx%d frames: %d px (--min-face, --detect-width)",
                w,
                h,
                self.detector.smallest_face(w),
            )
        self._steps += 1
        if self.scenes:
            self.tracker = self._scene_tracker()
            self._since_detect = self.detect_every
        self._since_detect += 1
        if self._async is not None:
            tracks, t1 = self._follow_async(frame, w, h)
        elif self._since_detect >= self.detect_every:
            tracks, t1 = self._detect(frame, w, h)
        else:
            t1 = time.perf_counter()
            tracks = self.tracker.predict(frame.index, w, h)
        t2 = time.perf_counter()
        idx, conf = self.classifier.classify(img, [t.box for t in tracks])
        t3 = time.perf_counter()
        faces, alerts, now = self._vote(tracks, idx, conf)
        t4 = time.perf_counter()
        stage_ms = {"detect": (t1 - t0) * 1e3, "track": ((t2 - t1) + (t4 - t3)) * 1e3, "classify": (t3 - t2) * 1e3}
        return FrameResult(faces, alerts, stage_ms, now)

    def _follow_async(self, frame: Any, w: int, h: int) -> tuple[list[Any], float]:
        """Apply passes finished since the last frame, then hand this frame over if the thread is free."""
        assert self._async is not None
        tracker, phases = self.tracker, self.phases
        fresh: set[int] = set()
        for fi, phase, dets, _ms in self._async.poll():
            end_of_cycle = phases == 1 or phase == phases - 1
            fresh.update(
                t.id for t in tracker.update(dets, fi, cycle_end=end_of_cycle, width=w, height=h) if t.detected
            )
            self.detector_runs += 1
            self.ages.append(frame.index - fi)
        if self._since_detect >= self.detect_every and self._async.submit(
            frame.index, frame.image, self._cycle_pos if phases > 1 else None
        ):
            self._since_detect = 0
            self._cycle_pos = (self._cycle_pos + 1) % phases
        t1 = time.perf_counter()
        tracks = tracker.predict(frame.index, w, h)
        for t in tracks:
            t.detected = t.id in fresh
        return tracks, t1

    def _detect(self, frame: Any, w: int, h: int) -> tuple[list[Any], float]:
        """A detect frame in sync mode: one detector pass (every pass for a photo), then the tracker update."""
        img, phases, det = frame.image, self.phases, self.detector
        self._since_detect = 0
        if phases > 1 and self.scenes:  # a photo gets every pass of the cycle at once
            for ph in range(phases - 1):
                self.tracker.update(det.detect(img, phase=ph), frame.index, cycle_end=False, width=w, height=h)
            self.detector_runs += phases - 1
            dets, self._cycle_pos = det.detect(img, phase=phases - 1), 0
        elif phases > 1:  # one pass of a multi-pass detector per detect frame
            dets = det.detect(img, phase=self._cycle_pos)
            self._cycle_pos = (self._cycle_pos + 1) % phases
        else:
            dets = det.detect(img)
        self.detector_runs += 1
        t1 = time.perf_counter()
        return self.tracker.update(dets, frame.index, cycle_end=self._cycle_pos == 0, width=w, height=h), t1

    def _vote(
        self, tracks: list[Any], idx: np.ndarray, conf: np.ndarray
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, str, float]], float]:
        names, tracker = self.names, self.tracker
        faces: list[dict[str, Any]] = []
        alerts: list[tuple[Any, str, float]] = []
        now = time.time()
        for t, c, pc in zip(tracks, idx, conf):
            voted = tracker.vote(t, int(c), float(pc))
            decision = tracker.should_alert(t, time.monotonic())
            faces.append(
                {
                    "track": t.id,
                    "box": t.box_int,
                    "class": names[voted] if voted is not None else None,
                    "frame_class": names[int(c)],
                    "confidence": round(float(pc), 4),
                    "voted_confidence": round(t.voted_confidence, 4),
                    "detected": t.detected,
                    "alert": decision is not None,
                }
            )
            if decision is not None:
                alerts.append((t, names[decision.class_index], decision.confidence))
        return faces, alerts, now

    def _scene_tracker(self) -> Any:
        """A fresh tracker for one photo: no track, vote or debounce carries over from the last one.

        The vote window is 1 (a photo is classified on its own, once); track ids
        keep counting, so an id never names faces in two photos.
        """
        t = self.tracker_cls(**{**self.tracker_options, "vote_window": 1})
        t._next_id = getattr(self.tracker, "_next_id", 1)
        return t

    # -- the async detector's figures, for the run summary ------------------------------
    @property
    def detector_pass_ms(self) -> dict[str, float]:
        """Async mode: one detector pass on its thread (mean, p50, p99, max); {} otherwise."""
        if self._async is None or not self._async.pass_ms:
            return {}
        a = np.asarray(self._async.pass_ms)
        return {
            "mean": round(float(a.mean()), 3),
            "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3),
        }

    @property
    def detection_age_frames(self) -> float:
        """Async mode: mean frames between a detected frame and the one its boxes reach; 0 otherwise."""
        return round(float(np.mean(self.ages)), 2) if self.ages else 0.0

    def close(self) -> None:
        """Stop the detector thread (async mode); safe to call twice."""
        if self._async is not None:
            self._async.close()


__all__ = [
    "AsyncDetector",
    "FaceClassifier",
    "FramePipeline",
    "FrameResult",
    "use_async_detection",
]

"""A small IoU tracker with a per-track class vote and alert debounce.

Why: a classifier looking at one frame flickers (motion blur, a hand in
front of the face, a head turning), and an alert per flicker would make the
service useless. Each track keeps its last K per-frame classifications; its
*voted* class is the class with a strict majority of the K-frame window
among the frames whose confidence reached ``min_confidence``. A track
raises an alert when its voted class is an alert class, at most once per
``debounce_s`` seconds.

Matching is greedy by IoU (highest first), which for the 1–10 faces of a
camera frame is as good as the Hungarian method and needs no SciPy. Between
detector passes (``--detect-every k``) tracks move by their last velocity.
A detector may split one run into a cycle of passes over consecutive frames
(the Haar fusion runs one view per frame, so no frame pays for all three);
a track counts as missed only when a whole cycle did not find it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgemask.vision.detectors import Detection, _containment, iou


@dataclass
class Track:
    """One face followed over frames.

    Attributes:
        id: unique, increasing from 1.
        box: current (x0, y0, x1, y1) in frame pixels.
        velocity: box change per frame, from the last two detector matches.
        history: last K (class index, confidence) of this track.
        voted: voted class index, or None while no class has a majority.
        missed: consecutive detector runs without a match.
        detected: whether the box of the current frame came from the detector.
        last_alert_t: time of the last alert (None = never).
    """

    id: int
    box: np.ndarray
    vote_window: int
    det_box: np.ndarray | None = None  # box of the last detector match
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    history: deque = field(default_factory=deque)
    voted: int | None = None
    voted_confidence: float = 0.0
    missed: int = 0
    hits: int = 1
    age: int = 0
    detected: bool = True
    last_detect_frame: int = 0
    last_alert_t: float | None = None
    alerts: int = 0
    matched_in_cycle: bool = False

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.vote_window)
        if self.det_box is None:
            self.det_box = np.asarray(self.box, dtype=np.float64).copy()

    def predicted(self, frame: int) -> np.ndarray:
        """Box at ``frame``, extrapolated from the last detector match."""
        assert self.det_box is not None
        return self.det_box + self.velocity * max(0, frame - self.last_detect_frame)

    @property
    def box_int(self) -> list[int]:
        return [int(round(v)) for v in self.box]


@dataclass(frozen=True)
class AlertDecision:
    """A track whose voted class just triggered an alert."""

    track_id: int
    class_index: int
    confidence: float


class IoUTracker:
    """Greedy IoU tracker (see the module docstring).

    Args:
        iou_threshold: minimum IoU between a track's predicted box and a detection.
        max_missed: detector runs a track survives without a match.
        vote_window: K frames in the vote.
        min_confidence: frames below this confidence do not vote.
        alert_classes: class indices that raise alerts.
        debounce_s: per-track minimum time between two alerts.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 5,
        vote_window: int = 5,
        min_confidence: float = 0.5,
        alert_classes: Iterable[int] = (),
        debounce_s: float = 30.0,
    ):
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.vote_window = int(vote_window)
        self.min_confidence = float(min_confidence)
        self.alert_classes = frozenset(int(c) for c in alert_classes)
        self.debounce_s = float(debounce_s)
        self.tracks: list[Track] = []
        self._next_id = 1
        self.frame = 0

    # -- geometry ----------------------------------------------------------
    def update(
        self,
        detections: list[Detection],
        frame: int,
        cycle_end: bool = True,
        width: int | None = None,
        height: int | None = None,
    ) -> list[Track]:
        """Match one detector pass to the tracks; return the tracks to report for this frame.

        A detector may spread its work over several frames (a *cycle*, e.g.
        one Haar view per frame); a track is missed only when a whole cycle
        found no match for it. Unmatched detections start tracks; a track
        missed ``max_missed`` cycles in a row is dropped. Returned: tracks
        matched now (detector box) and live tracks not matched in this pass
        of the cycle (extrapolated box); a track missed in the last full
        cycle is kept for re-matching but not reported, so a face that left
        is neither classified nor written out.
        """
        self.frame = frame
        boxes = [np.asarray(d.box, dtype=np.float64) for d in detections]
        pairs = []
        for ti, t in enumerate(self.tracks):
            pred = t.predicted(frame)
            for di, b in enumerate(boxes):
                v = iou(pred, b)
                if v >= self.iou_threshold:
                    pairs.append((v, ti, di))
        pairs.sort(key=lambda p: -p[0])
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t = self.tracks[ti]
            gap = max(1, frame - t.last_detect_frame)
            new = boxes[di]
            # Smoothed velocity per frame; a detector box jitters by a few pixels.
            assert t.det_box is not None
            t.velocity = 0.5 * t.velocity + 0.5 * (new - t.det_box) / gap
            t.box = new
            t.det_box = new.copy()
            t.missed = 0
            t.hits += 1
            t.detected = True
            t.matched_in_cycle = True
            t.last_detect_frame = frame
        live = [t.box for t in self.tracks if t.missed == 0]
        for di, b in enumerate(boxes):
            if di not in used_d:
                if any(_containment(b, lb) >= 0.7 for lb in live):
                    continue  # a second box on a face already tracked (another detector view), not a new face
                t = Track(id=self._next_id, box=b, vote_window=self.vote_window, last_detect_frame=frame)
                t.matched_in_cycle = True
                self._next_id += 1
                self.tracks.append(t)
                used_t.add(len(self.tracks) - 1)
        out = []
        for ti, t in enumerate(self.tracks):
            t.age += 1
            if ti not in used_t:
                t.detected = False
                if t.missed == 0:
                    self._move(t, frame, width, height)
                    out.append(t)
            else:
                out.append(t)
        if cycle_end:
            for t in self.tracks:
                if not t.matched_in_cycle:
                    t.missed += 1
                t.matched_in_cycle = False
            self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
            out = [t for t in out if t.missed == 0]
        return out

    def predict(self, frame: int, width: int | None = None, height: int | None = None) -> list[Track]:
        """Frames without a detector pass: move live tracks by their velocity.

        Only tracks not missed in the last full cycle are returned (a face
        the detector lost is not followed blindly).
        """
        self.frame = frame
        out = []
        for t in self.tracks:
            t.detected = False
            if t.missed:
                continue
            self._move(t, frame, width, height)
            out.append(t)
        return out

    @staticmethod
    def _move(t: Track, frame: int, width: int | None, height: int | None) -> None:
        b = t.predicted(frame)
        if width is not None and height is not None:
            b = np.clip(b, [0, 0, 0, 0], [width, height, width, height])
        if b[2] - b[0] >= 4 and b[3] - b[1] >= 4:
            t.box = b

    # -- classes and alerts ------------------------------------------------
    def vote(self, track: Track, class_index: int, confidence: float) -> int | None:
        """Add one frame's classification to ``track``; return its voted class (or None)."""
        track.history.append((int(class_index), float(confidence)))
        sure = [c for c, p in track.history if p >= self.min_confidence]
        need = self.vote_window // 2 + 1  # strict majority of the full window, not of what we have so far
        track.voted = None
        track.voted_confidence = 0.0
        if sure:
            c, n = Counter(sure).most_common(1)[0]
            if n >= need:
                track.voted = c
                track.voted_confidence = float(np.mean([p for k, p in track.history if k == c]))
        return track.voted

    def should_alert(self, track: Track, now: float) -> AlertDecision | None:
        """An alert for ``track`` if its voted class alerts and it is out of debounce."""
        if track.voted is None or track.voted not in self.alert_classes:
            return None
        if track.last_alert_t is not None and now - track.last_alert_t < self.debounce_s:
            return None
        track.last_alert_t = now
        track.alerts += 1
        return AlertDecision(track.id, track.voted, track.voted_confidence)


__all__ = ["AlertDecision", "IoUTracker", "Track"]

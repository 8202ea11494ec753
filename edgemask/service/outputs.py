"""Where a processed frame goes: the events file, snapshots, the alert outbox, the recording and the window.

:class:`Outputs` owns them for one run; :meth:`Outputs.emit` writes one
frame's :class:`~edgemask.service.pipeline.FrameResult`, and an alert reaches
the durable outbox (:class:`AlertQueue`) before anything else can fail on it
(recording, window). :class:`EventWriter` is the JSON Lines file, which
survives a full disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

log = logging.getLogger("edgemask.service")


# --------------------------------------------------------------------------- events


class EventWriter:
    """JSON Lines: one ``face`` record per face per frame, one ``alert`` record per alert.

    Lines are flushed per frame (``tail -f`` works) and fsynced on close;
    the outbox, not this file, is what guarantees alerts survive a crash.
    A write that fails later (a full SD card) does not stop the service: the
    file is closed, records are dropped and counted (:attr:`dropped`), and it
    is reopened every ``retry_s`` seconds, starting on a fresh line.
    """

    def __init__(self, path: str | os.PathLike, retry_s: float = 5.0):
        self.path = Path(path)
        self.retry_s = float(retry_s)
        self.dropped = 0
        self._pending = 0  # records written since the last successful flush
        self._retry_at = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: Any = open(self.path, "a", encoding="utf-8", buffering=1 << 16)
        except OSError as e:
            raise ConfigError(f"cannot write --events {self.path}: {e.strerror or e}; choose a writable path") from None

    def write(self, record: dict[str, Any]) -> None:
        if self._f is None and not self._reopen():
            self.dropped += 1
            return
        try:
            self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._pending += 1
        except OSError as e:
            self.dropped += 1
            self._failed(e)

    def flush(self) -> None:
        if self._f is None:
            return
        try:
            self._f.flush()
            self._pending = 0
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.dropped += self._pending
        self._pending = 0
        log.error(
            "writing --events %s failed (%s); events are dropped until it works again, retried every %g s "
            "(alerts are safe in the outbox)",
            self.path,
            e.strerror or e,
            self.retry_s,
        )
        f, self._f = self._f, None
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.close()  # flushes again, fails again: the buffered lines are gone either way
        self._retry_at = time.monotonic() + self.retry_s

    def _reopen(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        try:
            f = open(self.path, "a", encoding="utf-8", buffering=1 << 16)
            if f.tell() > 0:
                with open(self.path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        f.write("\n")  # end the line a failed write cut off
            self._f = f
        except OSError:
            self._retry_at = time.monotonic() + self.retry_s
            return False
        log.warning("writing --events %s again; %d event records were dropped", self.path, self.dropped)
        return True

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError:
                self.dropped += self._pending
            with contextlib.suppress(OSError):
                self._f.close()
        self._pending = 0
        self._f = None


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Fail early when ``path`` (a file, or with ``folder`` a folder, made later) cannot be written.

    Creates nothing: a start-up that fails on a later check leaves no empty
    files or folders behind. The nearest existing ancestor must be a folder
    we may write to (the missing folders below it are made when the run starts).

    Raises:
        ConfigError: one line naming the path and the fix.
    """
    p = Path(path)  # as it will be opened: no ~ expansion here that the writer would not do
    kind = "folder" if folder else "path"
    if p.exists():
        if folder and not p.is_dir():
            raise ConfigError(f"{what} {p} exists and is not a folder; choose a folder")
        if not folder and p.is_dir():
            raise ConfigError(f"{what} {p} is a folder; give a file name")
        if not os.access(p, os.W_OK) or (folder and not os.access(p, os.X_OK)):
            raise ConfigError(f"cannot write {what} {p}: permission denied; choose a writable {kind}")
        return
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {what} {p}: {parent} is not a folder; choose a writable {kind}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what} {p}: {parent} is not writable; choose a writable {kind}")


# --------------------------------------------------------------------------- alerts


def alert_payload(frame_index: int, track: Any, cls: str, conf: float, source: str) -> dict[str, Any]:
    """An alert as the outbox stores it and the sinks send it (a fresh ``alert_id`` each call)."""
    now = time.time()
    return {
        "alert_id": uuid.uuid4().hex,
        "time": round(now, 3),
        "time_iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
        "frame": frame_index,
        "track": track.id,
        "class": cls,
        "confidence": round(float(conf), 4),
        "box": track.box_int,
        "source": source,
        "host": socket.gethostname(),
    }


class AlertQueue:
    """Hands alerts to the durable outbox, wakes the dispatcher and counts them per class.

    Args:
        outbox: the :class:`~edgemask.service.outbox.Outbox` (durable first, then delivered).
        dispatcher: the :class:`~edgemask.service.alerts.AlertDispatcher` to notify.
        metrics: the run's :class:`~edgemask.service.metrics.ServiceMetrics`.
    """

    def __init__(self, outbox: Any, dispatcher: Any, metrics: Any):
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.counts: dict[str, int] = {}  # alerts per class name, in the order the classes first alerted

    def enqueue(self, payload: dict[str, Any]) -> None:
        cls = payload["class"]
        self.outbox.put(payload)
        self.dispatcher.notify()
        self.metrics.alert(cls)
        self.counts[cls] = self.counts.get(cls, 0) + 1

    def settled(self) -> None:
        """After a frame's alerts: publish the outbox depth."""
        self.metrics.outbox_depth(self.outbox.depth())


# --------------------------------------------------------------------------- outputs


class Outputs:
    """The events file, snapshot folder, MP4 recording and window of one run.

    Args:
        source_spec: the source's :class:`~edgemask.vision.sources.SourceSpec`
            (named in alerts; a file's frame rate paces the recording).
        events: the events file, or None.
        snapshots: folder for one annotated JPEG per alert ("" = none).
        record: annotated MP4 to write ("" = none); opened on the first frame.
        record_fps: its frame rate (0 = the file's own, else 30).
        headless: never open a window.
        alerts: where alerts go; set once the outbox and dispatcher are open.
    """

    def __init__(
        self,
        source_spec: Any,
        *,
        events: EventWriter | None = None,
        snapshots: str = "",
        record: str = "",
        record_fps: float = 0.0,
        headless: bool = True,
        alerts: AlertQueue | None = None,
    ):
        self.source_spec = source_spec
        self.source = source_spec.describe()
        self.events = events
        self.snapshots = snapshots
        self.record = record
        self.record_fps = float(record_fps)
        self.headless = bool(headless)
        self.alerts = alerts
        self.display: Any = None
        self.recorder: Any = None
        self.recorded: Path | None = None  # the finished recording, once closed

    def start(self) -> None:
        """Open the window (when there is a display and the run is not headless)."""
        if self.headless:
            return
        from edgemask.vision.overlay import Display, has_display

        if has_display():
            self.display = Display()
        else:
            log.info("no display here; running headless (--headless silences this)")

    def emit(self, frame: Any, result: Any, fps: float) -> bool:
        """Write one frame's faces and alerts everywhere; False when the user closed the window.

        Order matters: each alert is in the outbox (with its snapshot) before
        its event line, and all alerts before the recording and the window.
        """
        annotated = None
        if self.display is not None or self.record or (result.alerts and self.snapshots):
            from edgemask.vision.overlay import draw_overlay

            annotated = draw_overlay(frame.image, result.faces, fps=fps)
        for track, cls, conf in result.alerts:
            self._alert(frame, track, cls, conf, annotated)
        if result.alerts:
            assert self.alerts is not None
            self.alerts.settled()
        if self.events is not None:
            self._face_events(frame, result)
        if self.record and annotated is not None:
            if self.recorder is None:
                from edgemask.vision.overlay import VideoRecorder

                h, w = frame.image.shape[:2]
                fps_rec = self.record_fps or _source_fps(self.source_spec) or 30.0
                self.recorder = VideoRecorder(self.record, fps_rec, (w, h))
            self.recorder.write(annotated)
        return not (self.display is not None and annotated is not None and not self.display.show(annotated))

    def _alert(self, frame: Any, track: Any, cls: str, conf: float, annotated: Any) -> None:
        assert self.alerts is not None, "Outputs.alerts is set by prepare_run"
        payload = alert_payload(frame.index, track, cls, conf, self.source)
        if frame.item is not None:
            payload["item"] = frame.item
        if self.snapshots and annotated is not None:
            from edgemask.service.alerts import write_snapshot

            try:
                payload["snapshot"] = str(write_snapshot(self.snapshots, payload["alert_id"], annotated))
            except OSError as e:  # a full disk must not cost the alert itself
                log.error("snapshot for alert %s failed: %s", payload["alert_id"], e)
        self.alerts.enqueue(payload)
        if self.events is not None:
            self.events.write({"type": "alert", **payload})

    def _face_events(self, frame: Any, result: Any) -> None:
        assert self.events is not None
        ts = round(result.time, 3)
        item = frame.item
        for f in result.faces:
            self.events.write(
                {
                    "type": "face",
                    "time": ts,
                    "frame": frame.index,
                    "track": f["track"],
                    "box": f["box"],
                    "class": f["frame_class"],
                    "confidence": f["confidence"],
                    "voted": f["class"],
                    "detected": f["detected"],
                    **({"item": item} if item is not None else {}),
                }
            )
        self.events.flush()

    def close(self) -> None:
        """Finish the recording (renamed into place), close the window and the events file. Safe to call twice."""
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            self.recorded = rec.close()
        if self.display is not None:
            disp, self.display = self.display, None
            disp.close()
        if self.events is not None:
            self.events.close()


def _source_fps(spec: Any) -> float:
    """The frame rate a file declares (for the recording), or 0."""
    if spec.kind != "file":
        return 0.0
    import cv2

    cap = cv2.VideoCapture(str(spec.target))
    try:
        v = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return v if 1.0 <= v <= 240.0 else 0.0


__all__ = [
    "AlertQueue",
    "EventWriter",
    "Outputs",
    "alert_payload",
    "check_writable",
]

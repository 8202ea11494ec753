"""The run loop: frames → faces → classes → tracks → events and alerts.

::

    FrameSource (reader thread: decode)                     AlertDispatcher (1 thread per sink)
         │ Frame                                                  ▲ outbox.next_for / ack
         ▼                                                        │
    detect (one pass every k-th frame, downscaled)  ──►  IoUTracker.update / predict
         ▼
    face_crops → Runner.infer (all faces of the frame in one batch) → softmax
         ▼
    IoUTracker.vote → should_alert ──► snapshot + Outbox.put (durable) ──► notify
         ▼
    events JSONL, overlay (window / MP4), metrics, sd_notify watchdog

Where each part lives: :func:`~edgemask.service.prepare.prepare_run` does every
check a user can fail (options, URLs, paths, bundle/backend/precision,
detector, the source itself) before any long work starts, raising one-line
:class:`~edgemask.errors.EdgemaskError` s; :class:`~edgemask.service.pipeline.FramePipeline`
takes a frame from detection to the vote; :class:`~edgemask.service.outputs.Outputs`
writes the result (events, snapshots, outbox, recording, window).
:func:`run_service` loops until ``--max-frames`` / ``--duration``, the end of
a file, SIGTERM/SIGINT, or ``q`` in the window, and returns a
:class:`RunSummary`. Nothing that happens to the camera or to an alert
sink after start-up ends the loop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.service.config import RunConfig, Secrets
from edgemask.service.outputs import EventWriter, check_writable
from edgemask.service.pipeline import FaceClassifier, FramePipeline, use_async_detection
from edgemask.service.prepare import PreparedRun, build_sinks, make_bundle_detector, make_runner, prepare_run
from edgemask.vision.sources import END_OF_STREAM, Frame, FrameSourceLike

log = logging.getLogger("edgemask.service")

#: Per-frame stages timed by the loop (``queue`` = wait between decode and processing).
LOOP_STAGES = ("decode", "queue", "detect", "classify", "track", "output")
_RING = 65536  # latency samples kept for percentiles (~2 MB); a week-long run keeps the latest


# --------------------------------------------------------------------------- summary


@dataclass
class RunSummary:
    """What a run did; ``to_dict()`` is JSON-ready.

    Latency keys: every stage of :data:`LOOP_STAGES`, ``total`` (decode +
    detect + classify + track + output: the work one frame costs) and
    ``e2e`` (capture to output, queue wait included: what a live camera sees).
    """

    frames: int = 0
    faces: int = 0
    detector_runs: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    reconnects: int = 0
    corrupt_frames: int = 0
    events_dropped: int = 0  # event records lost to a failing --events file (e.g. a full disk)
    alerts_not_durable: int = 0  # alerts the outbox could not write to disk (full disk): held in memory
    alerts_lost: int = 0  # of those, still undelivered when the run ended: gone with the process
    dropped_frames: int = 0
    outbox_pending: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    detect_mode: str = ""
    detector_pass_ms: dict[str, float] = field(default_factory=dict)  # async mode: one detector pass, on its thread
    detection_age_frames: float = 0.0  # async mode: frames between a detected frame and the one its boxes reach
    source: str = ""
    detector: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def alerts_total(self) -> int:
        return sum(self.alerts.values())

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["alerts_total"] = self.alerts_total
        return d


class _LatencyRing:
    """Per-stage latency samples (ms) in a fixed-size ring for percentiles."""

    def __init__(self, stages: tuple[str, ...], size: int = _RING):
        self.stages = stages
        self.buf = np.zeros((size, len(stages)), np.float32)
        self.n = 0

    def add(self, values: dict[str, float]) -> None:
        self.buf[self.n % len(self.buf)] = [values.get(s, 0.0) for s in self.stages]
        self.n += 1

    def stats(self) -> dict[str, dict[str, float]]:
        k = min(self.n, len(self.buf))
        if k == 0:
            return {}
        a = self.buf[:k].astype(np.float64)
        out = {}
        for i, s in enumerate(self.stages):
            col = a[:, i]
            out[s] = {
                "mean": round(float(col.mean()), 3),
                "p50": round(float(np.percentile(col, 50)), 3),
                "p95": round(float(np.percentile(col, 95)), 3),
                "p99": round(float(np.percentile(col, 99)), 3),
                "max": round(float(col.max()), 3),
            }
        return out


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _signals_to(stop: threading.Event, enabled: bool):
    """SIGTERM / SIGINT set ``stop`` (main thread only); previous handlers come back after."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping after this frame", signal.Signals(signum).name)
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_service(
    cfg: RunConfig,
    *,
    secrets: Secrets | None = None,
    runner: Any = None,
    class_names: list[str] | None = None,
    detector: Any = None,
    source: FrameSourceLike | None = None,
    stop_event: threading.Event | None = None,
    install_signal_handlers: bool = True,
    notifier: Any = None,
    metrics: Any = None,
    on_frame: Callable[[int, list[dict[str, Any]]], None] | None = None,
    on_ready: Callable[[PreparedRun], None] | None = None,
) -> RunSummary:
    """Run the detection service until a stop condition; return what it did.

    Args:
        cfg: options (see :class:`RunConfig`).
        secrets, runner, class_names, detector, source, metrics: see :func:`prepare_run`.
        stop_event: set it to stop (signals set it too).
        install_signal_handlers: SIGTERM/SIGINT stop the loop cleanly
            (only when called from the main thread).
        notifier: an :class:`~edgemask.service.systemd.SdNotifier` (default: from the environment).
        on_frame: called after each frame with its index and face records (tests, demos).
        on_ready: called once everything is open, before the first frame.

    Raises:
        EdgemaskError: a start-up check failed (nothing long has run yet).
    """
    from edgemask.service.systemd import SdNotifier
    from edgemask.utils.io import atomic_write_json

    stop = stop_event or threading.Event()
    notifier = notifier or SdNotifier()
    p = prepare_run(
        cfg,
        secrets=secrets,
        runner=runner,
        class_names=class_names,
        detector=detector,
        source=source,
        metrics=metrics,
        notifier=notifier,
    )
    summary = RunSummary(source=p.source.spec.describe())
    try:
        summary.detector = p.detector.describe()
        summary.runner = p.runner.describe()
        with contextlib.suppress(OSError):
            atomic_write_json(
                Path(cfg.state_dir) / "run_config.json",
                {
                    "config": _redacted(cfg.to_dict()),
                    "detector": summary.detector,
                    "runner": summary.runner,
                    "source": summary.source,
                },
            )
        p.dispatcher.start()
        if p.metrics_server is not None:
            p.metrics_server.start()
            summary.outputs["metrics"] = f"http://{p.metrics_server.host}:{p.metrics_server.port}/metrics"
        p.metrics.outbox_depth(p.outbox.depth())
        with _signals_to(stop, install_signal_handlers):
            if on_ready is not None:
                on_ready(p)
            # One line in the journal that says what this run is (a restarted box is diagnosed from it).
            log.info(
                "running on %s: detector %s, classifier %s:%s (%s), alerts on %s via %s",
                summary.source,
                summary.detector.get("detector"),
                summary.runner.get("backend"),
                summary.runner.get("precision"),
                ", ".join(p.class_names),
                ", ".join(cfg.alert_on) or "nothing",
                ", ".join(s.name for s in p.dispatcher.sinks) or "no sink",
            )
            notifier.ready(f"running on {summary.source}")
            _loop(p, summary, stop, notifier, on_frame)
    finally:
        notifier.stopping()
        if p.metrics is not None:
            p.metrics.stopped()
        p.close()  # the outputs too: the recording is renamed into place
        if p.outputs is not None and p.outputs.recorded is not None:
            summary.outputs["record"] = str(p.outputs.recorded)
        summary.outbox_pending = dict(p.final_pending)
        summary.alerts_not_durable = int(p.final_outbox.get("not_durable", 0))
        summary.alerts_lost = int(p.final_outbox.get("lost", 0))
        if p.dispatcher is not None:
            summary.delivered = dict(p.dispatcher.delivered)
        if cfg.events:
            summary.outputs["events"] = cfg.events
        if p.outputs is not None and p.outputs.events is not None:
            summary.events_dropped = p.outputs.events.dropped
    return summary


def _loop(
    p: PreparedRun,
    summary: RunSummary,
    stop: threading.Event,
    notifier: Any,
    on_frame: Callable[[int, list[dict[str, Any]]], None] | None,
) -> None:
    cfg, src, metrics, outputs = p.cfg, p.source, p.metrics, p.outputs
    assert outputs is not None and outputs.alerts is not None, "prepare_run opens the outputs"
    pipeline = _pipeline_for(p)
    summary.detect_mode = pipeline.mode
    outputs.start()
    health = _SourceHealth(src, metrics)
    clock = _FrameClock()
    try:
        while True:
            reason = _stop_reason(cfg, stop, clock.t_start, summary.frames)
            if reason:
                summary.stop_reason = reason
                break
            notifier.watchdog()
            frame = src.read(timeout=0.25)
            health.update()
            if frame is END_OF_STREAM:
                summary.stop_reason = "end_of_stream"
                break
            if frame is None:
                continue
            times = clock.start(frame)
            result = pipeline.step(frame)  # detect or follow, classify, vote
            if result.faces:
                metrics.inferences += 1  # all faces of the frame went through the classifier in one batch
            t_out = time.perf_counter()
            window_closed = not outputs.emit(frame, result, clock.fps)  # alerts reach the outbox first
            times.update(result.stage_ms, output=(time.perf_counter() - t_out) * 1e3)
            clock.done(frame, times)
            summary.frames += 1
            summary.faces += len(result.faces)
            metrics.frame_done({k: times[k] / 1e3 for k in _METRIC_STAGES}, len(result.faces))
            if on_frame is not None:
                on_frame(frame.index, result.faces)
            if window_closed:  # the user's own stop, not a signal: say so
                summary.stop_reason = "window closed"
                stop.set()
                break
    finally:
        pipeline.close()
        summary.detector_runs = pipeline.detector_runs
        summary.detector_pass_ms = pipeline.detector_pass_ms
        summary.detection_age_frames = pipeline.detection_age_frames
    summary.alerts = dict(outputs.alerts.counts)
    clock.summarise(summary)
    summary.reconnects = src.stats.reconnects
    summary.corrupt_frames = src.stats.corrupt_frames
    summary.dropped_frames = src.stats.dropped_frames


_METRIC_STAGES = ("decode", "detect", "classify", "track", "output", "total")  # what ServiceMetrics exports


def _pipeline_for(p: PreparedRun) -> FramePipeline:
    cfg, spec = p.cfg, p.source.spec
    # Photos (an image folder or one image) are independent scenes: a fresh tracker per photo.
    return FramePipeline(
        p.detector,
        FaceClassifier(p.runner, p.class_names, cfg.crop_margin),
        cfg.tracker_options(p.alert_classes),
        detect_every=cfg.detect_every,
        use_async=use_async_detection(cfg.detect_mode, spec.live, spec.scenes),
        scenes=spec.scenes,
    )


def _stop_reason(cfg: RunConfig, stop: threading.Event, t_start: float, frames: int) -> str:
    """Why the loop should stop before reading another frame ("" = go on)."""
    if stop.is_set():
        return "signal"
    if cfg.duration_s and time.monotonic() - t_start >= cfg.duration_s:
        return "duration"
    if cfg.max_frames and frames >= cfg.max_frames:
        return "max_frames"
    return ""


class _SourceHealth:
    """The source's counters and state into the metrics, each reconnect and corrupt frame counted once."""

    def __init__(self, src: FrameSourceLike, metrics: Any):
        self.src, self.metrics = src, metrics
        self.reconnects = self.corrupt = 0

    def update(self) -> None:
        st, m = self.src.stats, self.metrics
        if st.reconnects > self.reconnects:
            m.reconnect(st.reconnects - self.reconnects)
            self.reconnects = st.reconnects
        if st.corrupt_frames > self.corrupt:
            m.corrupt(st.corrupt_frames - self.corrupt)
            self.corrupt = st.corrupt_frames
        m.source_connected = bool(self.src.connected)
        m.source_changed_t = self.src.last_change_t  # a frozen camera is not healthy


class _FrameClock:
    """Stage times per frame into the latency ring, and the run's frame rate (first capture to last output)."""

    def __init__(self) -> None:
        self.ring = _LatencyRing((*LOOP_STAGES, "total", "e2e"))
        self.t_start = time.monotonic()
        self.t_first: float | None = None
        self.t_last = self.t_start
        self.frames = 0
        self._t0 = 0.0

    def start(self, frame: Frame) -> dict[str, float]:
        """The frame's processing starts now: its decode and queue times (ms)."""
        self._t0 = time.perf_counter()
        tm = time.monotonic()
        if self.t_first is None:
            self.t_first = tm - frame.decode_ms / 1e3
        return {"decode": frame.decode_ms, "queue": max(0.0, (tm - frame.t_capture) * 1e3)}

    def done(self, frame: Frame, times: dict[str, float]) -> None:
        """Add ``total`` (decode + the work of this frame) and ``e2e`` (capture to output), record them."""
        times["total"] = times["decode"] + (time.perf_counter() - self._t0) * 1e3
        times["e2e"] = times["decode"] + (time.monotonic() - frame.t_capture) * 1e3
        self.ring.add(times)
        self.frames += 1
        self.t_last = time.monotonic()

    @property
    def fps(self) -> float:
        span = self.t_last - (self.t_first or self.t_last)
        return self.frames / span if span > 0 else 0.0

    def summarise(self, summary: RunSummary) -> None:
        summary.duration_s = round(time.monotonic() - self.t_start, 3)
        summary.fps = round(self.fps, 2)
        summary.latency_ms = self.ring.stats()


def _redacted(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict with every URL's password and token hidden (it is saved to disk)."""
    from edgemask.utils.redact import redact

    return {k: redact(v) if isinstance(v, str) else v for k, v in d.items()}


__all__ = [
    "LOOP_STAGES",
    "EventWriter",
    "FaceClassifier",
    "PreparedRun",
    "RunSummary",
    "build_sinks",
    "check_writable",
    "make_bundle_detector",
    "make_runner",
    "prepare_run",
    "run_service",
]

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

:func:`prepare_run` does every check a user can fail (options, URLs, paths,
bundle/backend/precision, detector, the source itself) before any long work
starts, raising one-line :class:`~edgemask.errors.EdgemaskError` s;
:func:`run_service` then loops until ``--max-frames`` / ``--duration``,
the end of a file, SIGTERM/SIGINT, or ``q`` in the window, and returns a
:class:`RunSummary`. Nothing that happens to the camera or to an alert
sink after start-up ends the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError
from edgemask.service.config import RunConfig, Secrets, load_secrets, parse_roi

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
            out[s] = {"mean": round(float(col.mean()), 3), "p50": round(float(np.percentile(col, 50)), 3),
                      "p95": round(float(np.percentile(col, 95)), 3), "p99": round(float(np.percentile(col, 99)), 3),
                      "max": round(float(col.max()), 3)}
        return out


# --------------------------------------------------------------------------- classifier


class FaceClassifier:
    """All faces of a frame through the Runner in one batch.

    Args:
        runner: an *active* Runner.
        class_names: the bundle's class names, in logit order.
        margin: crop margin (see :func:`edgemask.vision.crops.face_crops`).
    """

    def __init__(self, runner: Any, class_names: list[str], margin: float = 0.15):
        self.runner = runner
        self.class_names = list(class_names)
        self.size = int(runner.input_size)
        self.margin = float(margin)

    def classify(self, bgr: np.ndarray, boxes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(class indices (N,), confidences (N,)) for ``boxes`` in ``bgr``."""
        from edgemask.vision.crops import face_crops

        if not boxes:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        crops = face_crops(bgr, boxes, self.size, self.margin)       # (N, S, S, 3) uint8 RGB
        logits = np.asarray(self.runner.infer(crops), np.float64)     # (N, K)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        idx = p.argmax(axis=1)
        return idx, p[np.arange(len(idx)), idx].astype(np.float32)


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
        self._pending = 0          # records written since the last successful flush
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
        log.error("writing --events %s failed (%s); events are dropped until it works again, retried every %g s "
                  "(alerts are safe in the outbox)", self.path, e.strerror or e, self.retry_s)
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


# --------------------------------------------------------------------------- preparation


@dataclass
class PreparedRun:
    """Everything :func:`run_service` loops over, opened and checked."""

    cfg: RunConfig
    source: Any
    detector: Any
    runner: Any
    class_names: list[str]
    alert_classes: tuple[int, ...]
    events: EventWriter | None = None
    outbox: Any = None
    dispatcher: Any = None
    metrics: Any = None
    metrics_server: Any = None
    owns_runner: bool = True
    owns_detector: bool = True
    final_pending: dict[str, int] = field(default_factory=dict)
    final_outbox: dict[str, Any] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)  # outputs made by prepare_run, removed if the start fails

    def close(self) -> None:
        """Release everything, in the order that keeps alerts safe."""
        with contextlib.suppress(Exception):
            self.source.close()
        if self.events is not None:
            self.events.close()
        if self.dispatcher is not None:
            self.dispatcher.drain(min(2.0, self.cfg.sink_timeout_s))  # a last chance to deliver; the rest stays queued
            self.dispatcher.stop()
        if self.outbox is not None:
            self.outbox.close()
            self.final_pending = dict(self.outbox.pending_at_close)
            self.final_outbox = self.outbox.status()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.owns_runner and self.runner is not None:
            with contextlib.suppress(Exception):
                self.runner.deactivate()
        if self.owns_detector and hasattr(self.detector, "close"):
            with contextlib.suppress(Exception):
                self.detector.close()  # the bundle detector's runner


# The backends whose intra-op thread count concerns only the classifier. (OpenCV DNN's is
# process-wide and would slow the Haar detector too; TensorRT runs on the GPU.)
_THREADS_OPTION = {"torch": "num_threads", "onnxrt": "intra_op_num_threads"}


def _ort_has_gpu_providers() -> bool:
    import onnxruntime

    return bool({"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(onnxruntime.get_available_providers()))


def make_runner(cfg: RunConfig, bundle: Any = None) -> tuple[Any, list[str]]:
    """The active Runner and class names for ``cfg`` (bundle verified first, unless ``bundle`` is given loaded).

    Raises:
        BundleError / BackendError / ConfigError: a damaged bundle, a backend
            or precision it cannot run, or a missing option.
    """
    from edgemask.backends import get_backend, runner_from_bundle

    if cfg.backend == "null" and not cfg.bundle:
        from edgemask.data.labels import CLASS_NAMES

        runner = get_backend("null")(input_size=64, num_classes=len(CLASS_NAMES), precision=cfg.precision)
        names = list(CLASS_NAMES)
    else:
        from edgemask.bundle import load_bundle

        bundle = bundle if bundle is not None else load_bundle(cfg.bundle)
        option = _THREADS_OPTION.get(cfg.backend)
        opts: dict[str, Any] = {option: cfg.classify_threads} if option and cfg.classify_threads else {}
        if cfg.backend == "onnxrt" and _ort_has_gpu_providers():
            # A GPU build of ONNX Runtime (Jetson Zoo wheel, onnxruntime-gpu): run its TensorRT/CUDA
            # providers with the device profile's options (precision flags, DLA, engine cache).
            opts["device"] = cfg.device_profile
        if cfg.backend == "tensorrt":
            # No engine for this box in the bundle: build one on first use into the engine cache.
            from edgemask.export.engine import first_use_engine

            opts["engine_loader"] = first_use_engine
        runner = runner_from_bundle(bundle, cfg.backend, cfg.precision, **opts)
        names = bundle.class_names
    runner.activate()
    runner.infer(np.zeros((1, runner.input_size, runner.input_size, 3), np.uint8))  # warm-up outside the loop
    runner.latencies_ms.clear()
    return runner, names


def make_bundle_detector(cfg: RunConfig, bundle: Any) -> Any:
    """The bundle's learned detector for ``cfg``: on ``cfg.backend`` (onnxrt for null), at
    ``cfg.detector_precision`` or ``cfg.precision``; active and warmed up."""
    from edgemask.vision.bundle_detector import detector_backend, detector_from_bundle

    backend = detector_backend(cfg.backend)
    opts: dict[str, Any] = {}
    if backend == "onnxrt" and _ort_has_gpu_providers():
        opts["device"] = cfg.device_profile
    if backend == "tensorrt":
        # as for the classifier: no detector engine in the bundle -> built on first use into the engine cache
        from edgemask.export.engine import first_use_engine

        opts["engine_loader"] = first_use_engine
    return detector_from_bundle(bundle, backend, cfg.detector_precision or cfg.precision, min_face=cfg.min_face,
                                **opts)


def build_sinks(cfg: RunConfig, secrets: Secrets) -> list[Any]:
    """The configured alert sinks (not started)."""
    from edgemask.service.alerts import LogSink, MqttSink, WebhookSink

    sinks: list[Any] = []
    if cfg.log_alerts:
        sinks.append(LogSink())
    if cfg.webhook:
        sinks.append(WebhookSink(cfg.webhook, token=secrets.webhook_token, timeout_s=cfg.sink_timeout_s))
    if cfg.mqtt:
        sinks.append(MqttSink(cfg.mqtt, password=secrets.mqtt_password, qos=cfg.mqtt_qos, timeout_s=cfg.sink_timeout_s))
    return sinks


def prepare_run(cfg: RunConfig, *, secrets: Secrets | None = None, runner: Any = None,
                class_names: list[str] | None = None, detector: Any = None, source: Any = None,
                metrics: Any = None, notifier: Any = None) -> PreparedRun:
    """Check everything and open all parts; raise a one-line EdgemaskError on the first problem.

    Cheap checks come first (options, URLs, secrets, whether the camera
    exists, output paths), then the detector, the bundle and backend, the
    metrics port, and last the source (opening a camera or an RTSP stream can
    take ``open_timeout_s``). The events file, snapshot folder and outbox are
    created only once all of that passed, so a failed start writes nothing.

    Args:
        cfg: the options.
        secrets: default: :func:`load_secrets` (environment, then config file).
        runner, class_names: an active Runner to use instead of the bundle's (tests).
        detector: a FaceDetector to use instead of ``cfg.detector`` (tests).
        source: a FrameSource to use instead of opening ``cfg.source`` (tests);
            it is opened here if it is not yet.
        metrics: a ServiceMetrics to record into (default: a new one).
        notifier: an SdNotifier told about start-up retries of the source (systemd's start timeout is extended).
    """
    from edgemask.service.alerts import AlertDispatcher, check_http_url, parse_mqtt_url
    from edgemask.service.metrics import MetricsServer, ServiceMetrics
    from edgemask.service.outbox import Outbox
    from edgemask.vision.detectors import create_detector
    from edgemask.vision.sources import FrameSource, check_source, parse_source, url_with_password

    cfg.validate()
    if cfg.mqtt:
        parse_mqtt_url(cfg.mqtt)
    if cfg.webhook:
        check_http_url(cfg.webhook)
    if secrets is None:
        secrets = load_secrets(cfg.config_file)
    spec = None
    if source is None:
        spec = parse_source(cfg.source or None, cfg.camera, width=cfg.width, height=cfg.height, fps=cfg.fps,
                            loop=cfg.loop, device_profile=cfg.device_profile, as_video=cfg.as_video)
        if spec.kind == "url" and secrets.source_password:
            spec = dataclasses.replace(spec, target=url_with_password(str(spec.target), secrets.source_password))
        check_source(spec)  # a missing camera is known now, not after the model has loaded
    for path, what, folder in ((cfg.events, "--events", False), (cfg.record, "--record", False),
                               (cfg.snapshots, "--snapshots", True), (cfg.state_dir, "--state-dir", True)):
        if path:
            check_writable(path, what, folder)

    # Nothing is written before every check has passed (the source open, last, is the slowest),
    # so a start-up that fails leaves no empty events file or outbox behind.
    prepared = PreparedRun(cfg=cfg, source=None, detector=None, runner=None, class_names=[], alert_classes=())
    try:
        # the bundle, verified once for the classifier and its detector
        bundle_obj = None
        if cfg.bundle and (runner is None or (detector is None and cfg.detector in ("auto", "bundle"))):
            from edgemask.bundle import load_bundle

            bundle_obj = load_bundle(cfg.bundle)
        # detector: Haar/YuNet now (cheap; a bad model file fails before the classifier loads), the bundle's below
        from edgemask.vision.detectors import resolve_detector

        kind, yunet_model = resolve_detector(cfg.detector, cfg.face_model,
                                             bundle_obj.has_detector if bundle_obj is not None else False)
        if kind == "bundle" and detector is None and bundle_obj is not None and not bundle_obj.has_detector:
            bundle_obj.detector_view()  # BundleError: this bundle has no detector (one line, with the fix)
        roi = parse_roi(cfg.roi) if cfg.roi else None
        if detector is not None:
            prepared.detector, prepared.owns_detector = detector, False
        elif kind != "bundle":
            name = f"yunet:{yunet_model}" if cfg.detector.startswith("yunet:") else kind
            prepared.detector = create_detector(name, face_model=cfg.face_model, detect_width=cfg.detect_width,
                                                min_face=cfg.min_face, roi=roi)
        # model
        if runner is None:
            runner, class_names = make_runner(cfg, bundle_obj)
        else:
            prepared.owns_runner = False
            if not runner.active:
                runner.activate()
            class_names = list(class_names or [])
            if not class_names:
                raise ConfigError("prepare_run(runner=...) needs class_names too")
        prepared.runner, prepared.class_names = runner, list(class_names)
        if prepared.detector is None:
            prepared.detector = make_bundle_detector(cfg, bundle_obj)
        missing = [c for c in cfg.alert_on if c not in class_names]
        if missing:
            raise ConfigError(f"--alert-on names {', '.join(missing)}, which the model does not know; "
                              f"its classes are: {', '.join(class_names)}")
        prepared.alert_classes = tuple(class_names.index(c) for c in cfg.alert_on)
        # alerts and metrics (bound now: a port in use fails before the source is waited for)
        sinks = build_sinks(cfg, secrets)
        prepared.metrics = metrics or ServiceMetrics()
        m = prepared.metrics
        if cfg.metrics_port:
            prepared.metrics_server = MetricsServer(
                m, cfg.metrics_host, cfg.metrics_port, cfg.health_stale_s,
                extra_health=lambda: {"outbox_depth": prepared.outbox.depth() if prepared.outbox is not None else 0,
                                      "source": prepared.source.spec.describe()
                                      if hasattr(prepared.source, "spec") else ""})
        # source, last of the checks: it may wait for a camera or a stream
        if source is None:
            assert spec is not None
            source = FrameSource(spec, stall_timeout_s=cfg.stall_timeout_s, freeze_timeout_s=cfg.freeze_timeout_s,
                                 open_timeout_s=cfg.open_timeout_s, reconnect_min_s=cfg.reconnect_min_s,
                                 reconnect_max_s=cfg.reconnect_max_s, start_timeout_s=cfg.start_timeout_s,
                                 on_start_retry=_start_retry_notice(notifier, cfg))
        prepared.source = source
        if not getattr(source, "opened", False):
            source.open()
        # everything checked: create the outputs
        if cfg.snapshots:
            prepared.created.extend(_missing_paths(Path(cfg.snapshots)))
            try:
                Path(cfg.snapshots).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create --snapshots {cfg.snapshots}: {e.strerror}; "
                                  "choose a writable folder") from None
        if cfg.events:
            prepared.created.extend(_missing_paths(Path(cfg.events)))
            prepared.events = EventWriter(cfg.events)
        # (it removes what it made itself if it fails; the events file and folders are removed below)
        prepared.outbox = Outbox(Path(cfg.state_dir) / "outbox.sqlite3", [s.name for s in sinks],
                                 on_state=m.outbox_state)
        m.outbox_state(prepared.outbox.status())
        stale = {k: v for k, v in prepared.outbox.pending_by_sink().items() if k not in {s.name for s in sinks}}
        for k, v in stale.items():
            log.warning("%d alert(s) in the outbox wait for sink %r, which this run does not use; they stay queued "
                        "until a run with that sink delivers them", v, k)
        prepared.dispatcher = AlertDispatcher(prepared.outbox, sinks, cfg.retry_min_s, cfg.retry_max_s,
                                              on_result=lambda s, o: (m.delivery(s, o),
                                                                      m.outbox_depth(prepared.outbox.depth())))
        return prepared
    except BaseException:
        prepared.close()
        for path in reversed(prepared.created):  # a failed start leaves no empty file or folder behind
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                elif path.stat().st_size == 0:
                    path.unlink()
        raise


def _start_retry_notice(notifier: Any, cfg: RunConfig) -> Callable[[str], None] | None:
    """Under systemd, each start-up retry of the source extends the unit's start timeout and sets its status."""
    if notifier is None:
        return None
    extend_us = int((cfg.reconnect_max_s + cfg.open_timeout_s * 1.5 + 1.0 + 30.0) * 1e6)

    def notice(why: str) -> None:
        from edgemask.utils.redact import redact

        notifier.notify(f"EXTEND_TIMEOUT_USEC={extend_us}\nSTATUS=waiting for the video source: {redact(why)}")

    return notice


def _missing_paths(path: Path) -> list[Path]:
    """``path`` and its missing parent folders, outermost first (what creating it would make)."""
    out = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out[::-1]


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


# --------------------------------------------------------------------------- the loop


def _scene_tracker(tracker_cls: Any, cfg: RunConfig, alert_classes: Any, prev: Any) -> Any:
    """A fresh tracker for one photo: no track, vote or debounce carries over from the last one.

    The vote window is 1 (a photo is classified on its own, once); track ids
    keep counting, so an id never names faces in two photos.
    """
    t = tracker_cls(cfg.iou_threshold, cfg.max_missed, 1, cfg.min_confidence, alert_classes, cfg.debounce_s)
    t._next_id = getattr(prev, "_next_id", 1)
    return t


def _alert_payload(cfg: RunConfig, frame_index: int, track: Any, cls: str, conf: float, source: str) -> dict[str, Any]:
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


def run_service(cfg: RunConfig, *, secrets: Secrets | None = None, runner: Any = None,
                class_names: list[str] | None = None, detector: Any = None, source: Any = None,
                stop_event: threading.Event | None = None, install_signal_handlers: bool = True,
                notifier: Any = None, metrics: Any = None,
                on_frame: Callable[[int, list[dict[str, Any]]], None] | None = None,
                on_ready: Callable[[PreparedRun], None] | None = None) -> RunSummary:
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
    from edgemask.vision.sources import END_OF_STREAM
    from edgemask.vision.tracker import IoUTracker

    stop = stop_event or threading.Event()
    notifier = notifier or SdNotifier()
    p = prepare_run(cfg, secrets=secrets, runner=runner, class_names=class_names, detector=detector, source=source,
                    metrics=metrics, notifier=notifier)
    summary = RunSummary(source=p.source.spec.describe() if hasattr(p.source, "spec") else str(p.source))
    try:
        summary.detector = p.detector.describe()
        summary.runner = p.runner.describe()
        with contextlib.suppress(OSError):
            atomic_write_json(Path(cfg.state_dir) / "run_config.json",
                              {"config": _redacted(cfg.to_dict()), "detector": summary.detector, "runner": summary.runner,
                               "source": summary.source})
        p.dispatcher.start()
        if p.metrics_server is not None:
            p.metrics_server.start()
            summary.outputs["metrics"] = f"http://{p.metrics_server.host}:{p.metrics_server.port}/metrics"
        p.metrics.outbox_depth(p.outbox.depth())
        with _signals_to(stop, install_signal_handlers):
            if on_ready is not None:
                on_ready(p)
            # One line in the journal that says what this run is (a restarted box is diagnosed from it).
            log.info("running on %s: detector %s, classifier %s:%s (%s), alerts on %s via %s", summary.source,
                     summary.detector.get("detector"), summary.runner.get("backend"), summary.runner.get("precision"),
                     ", ".join(p.class_names), ", ".join(cfg.alert_on) or "nothing",
                     ", ".join(s.name for s in p.dispatcher.sinks) or "no sink")
            notifier.ready(f"running on {summary.source}")
            _loop(p, summary, stop, notifier, on_frame, IoUTracker, END_OF_STREAM)
    finally:
        notifier.stopping()
        if p.metrics is not None:
            p.metrics.stopped()
        recorder = getattr(p, "_recorder", None)
        if recorder is not None:
            out = recorder.close()
            if out is not None:
                summary.outputs["record"] = str(out)
        display = getattr(p, "_display", None)
        if display is not None:
            display.close()
        p.close()
        summary.outbox_pending = dict(p.final_pending)
        summary.alerts_not_durable = int(p.final_outbox.get("not_durable", 0))
        summary.alerts_lost = int(p.final_outbox.get("lost", 0))
        if p.dispatcher is not None:
            summary.delivered = dict(p.dispatcher.delivered)
        if cfg.events:
            summary.outputs["events"] = cfg.events
        if p.events is not None:
            summary.events_dropped = p.events.dropped
    return summary


def _loop(p: PreparedRun, summary: RunSummary, stop: threading.Event, notifier: Any,
          on_frame: Callable[[int, list[dict[str, Any]]], None] | None, tracker_cls: Any, eos: Any) -> None:
    cfg = p.cfg
    src = p.source
    tracker = tracker_cls(cfg.iou_threshold, cfg.max_missed, cfg.vote_window, cfg.min_confidence, p.alert_classes,
                          cfg.debounce_s)
    classifier = FaceClassifier(p.runner, p.class_names, cfg.crop_margin)
    names = p.class_names
    ring = _LatencyRing((*LOOP_STAGES, "total", "e2e"))
    display = None
    if not cfg.headless:
        from edgemask.vision.overlay import Display, has_display

        if has_display():
            display = p._display = Display()  # type: ignore[attr-defined]
        else:
            log.info("no display here; running headless (--headless silences this)")
    recorder = None
    reported_reconnects = reported_corrupt = 0
    t_start = time.monotonic()
    t_first: float | None = None
    t_last = t_start
    since_detect = cfg.detect_every  # detect on the first frame
    phases = max(1, int(getattr(p.detector, "phases", 1)))
    cycle_pos = 0
    live = bool(getattr(getattr(src, "spec", None), "live", False))
    # Photos (an image folder or one image) are independent scenes: see _scene_tracker.
    scenes = bool(getattr(getattr(src, "spec", None), "scenes", False))
    use_async = (cfg.detect_mode == "async" or (cfg.detect_mode == "auto" and live)) and not scenes
    summary.detect_mode = "async" if use_async else "sync"
    async_det = AsyncDetector(p.detector) if use_async else None
    ages: list[int] = []
    fps_est = 0.0
    try:
        while True:
            # -- stop conditions -------------------------------------------------
            if stop.is_set():
                summary.stop_reason = "signal"
                break
            if cfg.duration_s and time.monotonic() - t_start >= cfg.duration_s:
                summary.stop_reason = "duration"
                break
            if cfg.max_frames and summary.frames >= cfg.max_frames:
                summary.stop_reason = "max_frames"
                break
            notifier.watchdog()
            frame = src.read(timeout=0.25)
            st = getattr(src, "stats", None)
            if st is not None:
                if st.reconnects > reported_reconnects:
                    p.metrics.reconnect(st.reconnects - reported_reconnects)
                    reported_reconnects = st.reconnects
                if st.corrupt_frames > reported_corrupt:
                    p.metrics.corrupt(st.corrupt_frames - reported_corrupt)
                    reported_corrupt = st.corrupt_frames
                p.metrics.source_connected = bool(getattr(src, "connected", True))
                p.metrics.source_changed_t = getattr(src, "last_change_t", None)  # a frozen camera is not healthy
            if frame is eos:
                summary.stop_reason = "end_of_stream"
                break
            if frame is None:
                continue
            t0 = time.perf_counter()
            tm = time.monotonic()
            if t_first is None:
                t_first = tm - frame.decode_ms / 1e3
            times = {"decode": frame.decode_ms, "queue": max(0.0, (tm - frame.t_capture) * 1e3)}
            img = frame.image
            h, w = img.shape[:2]
            item = getattr(frame, "item", None)
            if summary.frames == 0 and hasattr(p.detector, "smallest_face"):
                log.info("smallest findable face in %dx%d frames: %d px (--min-face, --detect-width)",
                         w, h, p.detector.smallest_face(w))
            if scenes:
                tracker = _scene_tracker(tracker_cls, cfg, p.alert_classes, tracker)
                since_detect = cfg.detect_every

            # -- detect (or follow) --------------------------------------------------
            since_detect += 1
            if async_det is not None:
                # Apply passes finished since the last frame, then hand this frame over if the thread is free.
                fresh: set[int] = set()
                for fi, phase, dets, _ms in async_det.poll():
                    end_of_cycle = phases == 1 or phase == phases - 1
                    fresh.update(t.id for t in tracker.update(dets, fi, cycle_end=end_of_cycle, width=w, height=h)
                                 if t.detected)
                    summary.detector_runs += 1
                    ages.append(frame.index - fi)
                if since_detect >= cfg.detect_every and async_det.submit(frame.index, img,
                                                                         cycle_pos if phases > 1 else None):
                    since_detect = 0
                    cycle_pos = (cycle_pos + 1) % phases
                t1 = time.perf_counter()
                tracks = tracker.predict(frame.index, w, h)
                for t in tracks:
                    t.detected = t.id in fresh
            elif since_detect >= cfg.detect_every:
                since_detect = 0
                if phases > 1 and scenes:  # a photo gets every pass of the cycle at once
                    for ph in range(phases - 1):
                        tracker.update(p.detector.detect(img, phase=ph), frame.index, cycle_end=False, width=w, height=h)
                    summary.detector_runs += phases - 1
                    dets, cycle_pos = p.detector.detect(img, phase=phases - 1), 0
                elif phases > 1:  # one pass of a multi-pass detector per detect frame
                    dets = p.detector.detect(img, phase=cycle_pos)
                    cycle_pos = (cycle_pos + 1) % phases
                else:
                    dets = p.detector.detect(img)
                summary.detector_runs += 1
                t1 = time.perf_counter()
                tracks = tracker.update(dets, frame.index, cycle_end=cycle_pos == 0, width=w, height=h)
            else:
                t1 = time.perf_counter()
                tracks = tracker.predict(frame.index, w, h)
            t2 = time.perf_counter()

            # -- classify all faces in one batch -----------------------------------------
            idx, conf = classifier.classify(img, [t.box for t in tracks])
            t3 = time.perf_counter()

            # -- vote, alerts -------------------------------------------------------------
            faces: list[dict[str, Any]] = []
            alerts = []
            now = time.time()
            for t, c, pc in zip(tracks, idx, conf):
                voted = tracker.vote(t, int(c), float(pc))
                decision = tracker.should_alert(t, time.monotonic())
                faces.append({"track": t.id, "box": t.box_int, "class": names[voted] if voted is not None else None,
                              "frame_class": names[int(c)], "confidence": round(float(pc), 4),
                              "voted_confidence": round(t.voted_confidence, 4), "detected": t.detected,
                              "alert": decision is not None})
                if decision is not None:
                    alerts.append((t, decision))
            t4 = time.perf_counter()

            # -- outputs -----------------------------------------------------------
            annotated = None
            if display is not None or cfg.record or (alerts and cfg.snapshots):
                from edgemask.vision.overlay import draw_overlay

                annotated = draw_overlay(img, faces, fps=fps_est)
            for t, d in alerts:
                cls = names[d.class_index]
                payload = _alert_payload(cfg, frame.index, t, cls, d.confidence, summary.source)
                if item is not None:
                    payload["item"] = item
                if cfg.snapshots and annotated is not None:
                    from edgemask.service.alerts import write_snapshot

                    try:
                        payload["snapshot"] = str(write_snapshot(cfg.snapshots, payload["alert_id"], annotated))
                    except OSError as e:  # a full disk must not cost the alert itself
                        log.error("snapshot for alert %s failed: %s", payload["alert_id"], e)
                p.outbox.put(payload)
                p.dispatcher.notify()
                p.metrics.alert(cls)
                summary.alerts[cls] = summary.alerts.get(cls, 0) + 1
                if p.events is not None:
                    p.events.write({"type": "alert", **payload})
            if alerts:
                p.metrics.outbox_depth(p.outbox.depth())
            if p.events is not None:
                ts = round(now, 3)
                for f in faces:
                    p.events.write({"type": "face", "time": ts, "frame": frame.index, "track": f["track"], "box": f["box"],
                                    "class": f["frame_class"], "confidence": f["confidence"], "voted": f["class"],
                                    "detected": f["detected"], **({"item": item} if item is not None else {})})
                p.events.flush()
            if cfg.record and annotated is not None:
                if recorder is None:
                    from edgemask.vision.overlay import VideoRecorder

                    rec_fps = cfg.fps or _source_fps(src) or 30.0
                    recorder = p._recorder = VideoRecorder(cfg.record, rec_fps, (w, h))  # type: ignore[attr-defined]
                recorder.write(annotated)
            if display is not None and annotated is not None and not display.show(annotated):
                summary.stop_reason = "window closed"
                stop.set()
            t5 = time.perf_counter()

            # -- bookkeeping ---------------------------------------------------------
            times.update(detect=(t1 - t0) * 1e3, track=((t2 - t1) + (t4 - t3)) * 1e3, classify=(t3 - t2) * 1e3,
                         output=(t5 - t4) * 1e3)
            times["total"] = times["decode"] + (t5 - t0) * 1e3
            times["e2e"] = times["decode"] + (time.monotonic() - frame.t_capture) * 1e3
            ring.add(times)
            summary.frames += 1
            summary.faces += len(faces)
            t_last = time.monotonic()
            p.metrics.frame_done({k: times[k] / 1e3 for k in ("decode", "detect", "classify", "track", "output", "total")},
                                 len(faces))
            span = t_last - (t_first or t_last)
            fps_est = summary.frames / span if span > 0 else 0.0
            if on_frame is not None:
                on_frame(frame.index, faces)
    finally:
        if async_det is not None:
            async_det.close()
            if async_det.pass_ms:
                a = np.asarray(async_det.pass_ms)
                summary.detector_pass_ms = {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
                                            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}
            if ages:
                summary.detection_age_frames = round(float(np.mean(ages)), 2)
    summary.duration_s = round(time.monotonic() - t_start, 3)
    span = t_last - (t_first or t_last)
    summary.fps = round(summary.frames / span, 2) if span > 0 else 0.0
    summary.latency_ms = ring.stats()
    st = getattr(src, "stats", None)
    if st is not None:
        summary.reconnects = st.reconnects
        summary.corrupt_frames = st.corrupt_frames
        summary.dropped_frames = st.dropped_frames


def _redacted(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict with every URL's password and token hidden (it is saved to disk)."""
    from edgemask.utils.redact import redact

    return {k: redact(v) if isinstance(v, str) else v for k, v in d.items()}


def _source_fps(src: Any) -> float:
    """The frame rate a file declares (for the recording), or 0."""
    spec = getattr(src, "spec", None)
    if spec is None or spec.kind != "file":
        return 0.0
    import cv2

    cap = cv2.VideoCapture(str(spec.target))
    try:
        v = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return v if 1.0 <= v <= 240.0 else 0.0


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


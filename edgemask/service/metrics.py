"""Prometheus metrics and a health endpoint for the run loop.

``/metrics`` serves the Prometheus text format: through ``prometheus_client``
when it is installed (its own registry, not the global one, so two services
in one process do not collide), else through a small built-in exposition of
the same metric names. ``/healthz`` answers 200 while frames flow and 503
when none was processed for ``health_stale_s`` (camera gone, loop hung).
Both are served by a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 by default:
metrics reveal what a camera sees (face counts), so exposing them is the
operator's explicit choice (``--metrics-host 0.0.0.0``). A live camera
whose picture has not changed for ``health_stale_s`` (frozen: it repeats
the same frame) is stale too, even while its frames keep arriving. A
degraded outbox (full disk) answers 200 with ``"status": "degraded"``:
frames flow and alerts are delivered from memory; a restart would lose them.

Metric names (all prefixed ``edgemask_``):

=============================== ========= =======================================
frames_total                    counter   frames processed
fps                             gauge     frames per second over the last ~2 s
stage_latency_seconds{stage}    histogram decode, detect, classify, track, output, total
faces_total                     counter   faces classified
faces_current                   gauge     faces in the last frame
alerts_total{class}             counter   alerts raised, by class
source_reconnects_total         counter   times the source was reopened
corrupt_frames_total            counter   frames skipped as unusable
outbox_depth                    gauge     (alert, sink) deliveries waiting
outbox_degraded                 gauge     1 while the outbox cannot write to disk (full disk)
outbox_memory_alerts            gauge     alerts held only in memory meanwhile
alerts_not_durable_total        counter   alerts the outbox could not make durable
alert_deliveries_total{sink,outcome} counter delivered | retry | dead
up                              gauge     1 while the loop runs
=============================== ========= =======================================
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgemask.errors import ConfigError

log = logging.getLogger("edgemask.service.metrics")

STAGES = ("decode", "detect", "classify", "track", "output", "total")
# Seconds; dense around a 33 ms frame budget.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class _Builtin:
    """Minimal text exposition: counters, gauges and histograms with labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self.values: dict[tuple[str, tuple], float] = {}
        self.hist: dict[tuple[str, tuple], list[float]] = {}  # per-bucket counts + [sum, count]

    def declare(self, name: str, kind: str, doc: str) -> None:
        self.help[name] = (kind, doc)

    def inc(self, name: str, labels: tuple = (), v: float = 1.0) -> None:
        with self._lock:
            self.values[(name, labels)] = self.values.get((name, labels), 0.0) + v

    def set(self, name: str, v: float, labels: tuple = ()) -> None:
        with self._lock:
            self.values[(name, labels)] = float(v)

    def observe(self, name: str, labels: tuple, v: float) -> None:
        with self._lock:
            h = self.hist.setdefault((name, labels), [0.0] * (len(BUCKETS) + 2))
            for i, b in enumerate(BUCKETS):
                if v <= b:
                    h[i] += 1
            h[-2] += v
            h[-1] += 1

    @staticmethod
    def _lbl(labels: tuple, extra: tuple = ()) -> str:
        items = list(labels) + list(extra)
        if not items:
            return ""
        return "{" + ",".join(f'{k}="{v!s}"' for k, v in items) + "}"

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            for name, (kind, doc) in sorted(self.help.items()):
                out.append(f"# HELP {name} {doc}")
                out.append(f"# TYPE {name} {kind}")
                if kind == "histogram":
                    for (n, labels), h in sorted(self.hist.items()):
                        if n != name:
                            continue
                        for i, b in enumerate(BUCKETS):
                            out.append(f"{name}_bucket{self._lbl(labels, (('le', repr(b)),))} {h[i]:g}")
                        out.append(f"{name}_bucket{self._lbl(labels, (('le', '+Inf'),))} {h[-1]:g}")
                        out.append(f"{name}_sum{self._lbl(labels)} {h[-2]:.6g}")
                        out.append(f"{name}_count{self._lbl(labels)} {h[-1]:g}")
                else:
                    suffix = "_total" if kind == "counter" else ""
                    for (n, labels), v in sorted(self.values.items()):
                        if n == name:
                            out.append(f"{name}{suffix}{self._lbl(labels)} {v:g}")
        return "\n".join(out) + "\n"


class ServiceMetrics:
    """The run loop's metrics (see the module docstring for the names).

    Args:
        use_prometheus: force (True) or avoid (False) ``prometheus_client``;
            None = use it when installed.
    """

    def __init__(self, use_prometheus: bool | None = None):
        if use_prometheus is None:
            use_prometheus = prometheus_available()
        self.backend = "prometheus_client" if use_prometheus else "builtin"
        self.last_frame_t: float | None = None  # monotonic
        self.started_t = time.monotonic()
        self.frames = 0
        self.inferences = 0  # runner calls (the start-up warm-up included)
        self.model: dict[str, Any] = {}  # manifest_identity of the bundle served: name, version, manifest_sha256
        self.source_connected = False
        self.source_changed_t: float | None = None  # monotonic time a live source's picture last changed
        self.outbox: dict[str, Any] = {}  # the outbox's last status(): degraded, reason, in_memory, not_durable
        self._not_durable_seen = 0
        self._fps_window: list[float] = []
        self._lock = threading.Lock()
        if use_prometheus:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

            r = self.registry = CollectorRegistry()
            self._p = {
                "frames": Counter("edgemask_frames", "Frames processed", registry=r),
                "fps": Gauge("edgemask_fps", "Frames per second over the last ~2 s", registry=r),
                "stage": Histogram(
                    "edgemask_stage_latency_seconds",
                    "Per-frame latency of each pipeline stage",
                    ["stage"],
                    buckets=BUCKETS,
                    registry=r,
                ),
                "faces_total": Counter("edgemask_faces", "Faces classified", registry=r),
                "faces": Gauge("edgemask_faces_current", "Faces in the last frame", registry=r),
                "alerts": Counter("edgemask_alerts", "Alerts raised, by class", ["class"], registry=r),
                "reconnects": Counter("edgemask_source_reconnects", "Times the video source was reopened", registry=r),
                "corrupt": Counter("edgemask_corrupt_frames", "Frames skipped as unusable", registry=r),
                "outbox": Gauge("edgemask_outbox_depth", "Alert deliveries waiting in the outbox", registry=r),
                "deliveries": Counter(
                    "edgemask_alert_deliveries",
                    "Alert delivery attempts by sink and outcome",
                    ["sink", "outcome"],
                    registry=r,
                ),
                "up": Gauge("edgemask_up", "1 while the run loop runs", registry=r),
                "degraded": Gauge(
                    "edgemask_outbox_degraded", "1 while the alert outbox cannot write to disk", registry=r
                ),
                "memory": Gauge(
                    "edgemask_outbox_memory_alerts", "Alerts held only in memory (outbox not writable)", registry=r
                ),
                "not_durable": Counter(
                    "edgemask_alerts_not_durable", "Alerts the outbox could not make durable (full disk)", registry=r
                ),
            }
            self._p["up"].set(1)
        else:
            b = self._b = _Builtin()
            for name, kind, doc in (
                ("edgemask_frames", "counter", "Frames processed"),
                ("edgemask_fps", "gauge", "Frames per second over the last ~2 s"),
                ("edgemask_stage_latency_seconds", "histogram", "Per-frame latency of each pipeline stage"),
                ("edgemask_faces", "counter", "Faces classified"),
                ("edgemask_faces_current", "gauge", "Faces in the last frame"),
                ("edgemask_alerts", "counter", "Alerts raised, by class"),
                ("edgemask_source_reconnects", "counter", "Times the video source was reopened"),
                ("edgemask_corrupt_frames", "counter", "Frames skipped as unusable"),
                ("edgemask_outbox_depth", "gauge", "Alert deliveries waiting in the outbox"),
                ("edgemask_alert_deliveries", "counter", "Alert delivery attempts by sink and outcome"),
                ("edgemask_up", "gauge", "1 while the run loop runs"),
                ("edgemask_outbox_degraded", "gauge", "1 while the alert outbox cannot write to disk"),
                ("edgemask_outbox_memory_alerts", "gauge", "Alerts held only in memory (outbox not writable)"),
                ("edgemask_alerts_not_durable", "counter", "Alerts the outbox could not make durable (full disk)"),
            ):
                b.declare(name, kind, doc)
            for name in (
                "edgemask_frames",
                "edgemask_faces",
                "edgemask_source_reconnects",
                "edgemask_corrupt_frames",
                "edgemask_alerts_not_durable",
            ):
                b.inc(name, (), 0.0)
            b.set("edgemask_up", 1)
            b.set("edgemask_outbox_depth", 0)
            b.set("edgemask_outbox_degraded", 0)
            b.set("edgemask_outbox_memory_alerts", 0)

    # -- recording -------------------------------------------------------
    def frame_done(self, stage_s: dict[str, float], faces: int) -> None:
        """One processed frame with its stage latencies (seconds) and face count."""
        now = time.monotonic()
        with self._lock:
            self.last_frame_t = now
            self.frames += 1
            self._fps_window.append(now)
            while self._fps_window and now - self._fps_window[0] > 2.0:
                self._fps_window.pop(0)
            span = now - self._fps_window[0] if len(self._fps_window) > 1 else 0.0
            fps = (len(self._fps_window) - 1) / span if span > 0 else 0.0
        if self.backend == "prometheus_client":
            self._p["frames"].inc()
            self._p["fps"].set(fps)
            for k, v in stage_s.items():
                self._p["stage"].labels(stage=k).observe(v)
            self._p["faces_total"].inc(faces)
            self._p["faces"].set(faces)
        else:
            b = self._b
            b.inc("edgemask_frames")
            b.set("edgemask_fps", fps)
            for k, v in stage_s.items():
                b.observe("edgemask_stage_latency_seconds", (("stage", k),), v)
            b.inc("edgemask_faces", (), faces)
            b.set("edgemask_faces_current", faces)

    def alert(self, cls: str) -> None:
        if self.backend == "prometheus_client":
            self._p["alerts"].labels(**{"class": cls}).inc()
        else:
            self._b.inc("edgemask_alerts", (("class", cls),))

    def reconnect(self, n: int = 1) -> None:
        if self.backend == "prometheus_client":
            self._p["reconnects"].inc(n)
        else:
            self._b.inc("edgemask_source_reconnects", (), n)

    def corrupt(self, n: int = 1) -> None:
        if self.backend == "prometheus_client":
            self._p["corrupt"].inc(n)
        else:
            self._b.inc("edgemask_corrupt_frames", (), n)

    def outbox_depth(self, n: int) -> None:
        if self.backend == "prometheus_client":
            self._p["outbox"].set(n)
        else:
            self._b.set("edgemask_outbox_depth", n)

    def outbox_state(self, status: dict[str, Any]) -> None:
        """The outbox's :meth:`~edgemask.service.outbox.Outbox.status` (degraded, in_memory, not_durable)."""
        with self._lock:
            self.outbox = dict(status)
            new = max(0, int(status.get("not_durable", 0)) - self._not_durable_seen)
            self._not_durable_seen += new
        degraded, memory = float(bool(status.get("degraded"))), float(status.get("in_memory", 0))
        if self.backend == "prometheus_client":
            self._p["degraded"].set(degraded)
            self._p["memory"].set(memory)
            if new:
                self._p["not_durable"].inc(new)
        else:
            self._b.set("edgemask_outbox_degraded", degraded)
            self._b.set("edgemask_outbox_memory_alerts", memory)
            if new:
                self._b.inc("edgemask_alerts_not_durable", (), new)

    def delivery(self, sink: str, outcome: str) -> None:
        if self.backend == "prometheus_client":
            self._p["deliveries"].labels(sink=sink, outcome=outcome).inc()
        else:
            self._b.inc("edgemask_alert_deliveries", (("sink", sink), ("outcome", outcome)))

    def stopped(self) -> None:
        if self.backend == "prometheus_client":
            self._p["up"].set(0)
        else:
            self._b.set("edgemask_up", 0)

    # -- exposition --------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text exposition of all metrics."""
        if self.backend == "prometheus_client":
            from prometheus_client import generate_latest

            return generate_latest(self.registry)
        return self._b.render().encode()

    def health(self, stale_s: float) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while a frame was processed within ``stale_s``."""
        now = time.monotonic()
        age = None if self.last_frame_t is None else now - self.last_frame_t
        ok = age is not None and age <= stale_s
        status = "ok" if ok else ("starting" if age is None and now - self.started_t < stale_s else "stale")
        changed = self.source_changed_t
        frozen_s = None if changed is None else now - changed
        if ok and frozen_s is not None and frozen_s > stale_s:
            # Frames still arrive, but the same picture for this long: a frozen camera sees nothing.
            ok, status = False, "stale"
        with self._lock:
            outbox = dict(self.outbox)
        if ok and outbox.get("degraded"):
            # Still 200: frames flow and alerts are delivered from memory; a restart would lose those.
            status = "degraded"
        info = {
            "status": status,
            "frames": self.frames,
            "last_frame_age_s": None if age is None else round(age, 3),
            "source_connected": self.source_connected,
            "uptime_s": round(now - self.started_t, 1),
            "inferences": self.inferences,
        }
        if self.model:
            info["model"] = dict(self.model)
        if frozen_s is not None:
            info["picture_unchanged_s"] = round(frozen_s, 3)
        if outbox.get("degraded"):
            info.update(
                outbox_degraded=True,
                outbox_error=outbox.get("reason", ""),
                alerts_in_memory=int(outbox.get("in_memory", 0)),
            )
        if outbox.get("not_durable"):
            info["alerts_not_durable"] = int(outbox["not_durable"])
        return ok, info


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a background ``ThreadingHTTPServer``.

    Args:
        metrics: what to serve.
        host, port: bind address (port 0 = any free port; see :attr:`port`).
        stale_s: ``/healthz`` staleness limit.
        extra_health: returns more fields for ``/healthz`` (e.g. outbox depth).

    Raises:
        ConfigError: the port cannot be bound (in use, or privileged).
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        host: str = "127.0.0.1",
        port: int = 9108,
        stale_s: float = 15.0,
        extra_health: Callable[[], dict[str, Any]] | None = None,
    ):
        m, stale, extra = metrics, float(stale_s), extra_health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, m.render(), CONTENT_TYPE)
                elif path in ("/healthz", "/health"):
                    ok, info = m.health(stale)
                    if extra is not None:
                        try:
                            info.update(extra())
                        except Exception as e:  # noqa: BLE001 - health must answer
                            info["extra_error"] = str(e)
                    self._send(200 if ok else 503, (json.dumps(info) + "\n").encode(), "application/json")
                else:
                    self._send(404, b"not found: use /metrics or /healthz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:  # scrapes every 15 s would flood the journal
                log.debug("%s " + fmt, self.address_string(), *args)

        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {e.strerror}; choose another --metrics-port "
                "(or 0 to turn metrics off)"
            ) from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="edgemask-metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and free the port; also for a server that was bound but never started."""
        if self._thread.is_alive():
            self.httpd.shutdown()  # waits for serve_forever to return: never call it when that never ran
            self._thread.join(timeout=2.0)
        self.httpd.server_close()


__all__ = ["BUCKETS", "STAGES", "MetricsServer", "ServiceMetrics", "prometheus_available"]

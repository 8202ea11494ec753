"""Alert sinks (log, webhook, MQTT), snapshots, and the dispatcher that feeds them from the outbox.

Every alert is first made durable in the :class:`~edgemask.service.outbox.Outbox`;
one dispatcher thread per sink then delivers that sink's queue in order,
retrying with exponential backoff (with jitter, capped) until the sink
accepts, so a dead broker or webhook costs latency, never alerts. See the
outbox module for the at-least-once contract.

A sink's :meth:`Sink.send` returns when the alert is accepted, raises
:class:`RetryableError` for a transient failure (network down, HTTP 5xx/429,
no PUBACK yet) and :class:`PermanentError` for an alert the sink will never
take (HTTP 400: the alert moves to the outbox's ``dead`` table).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError
from edgemask.service.outbox import Outbox
from edgemask.utils.redact import redact, url_has_password

log = logging.getLogger("edgemask.service.alerts")
alert_log = logging.getLogger("edgemask.alerts")


class RetryableError(Exception):
    """The sink could not take the alert now; try again later.

    Attributes:
        retry_after: seconds the sink asked us to wait (HTTP Retry-After), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """The sink will never accept this alert (e.g. HTTP 400/401/404)."""


class Sink:
    """Base class of the alert sinks."""

    name = "sink"

    def start(self) -> None:
        """Open connections (called once, before the first send)."""

    def send(self, alert: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


# --------------------------------------------------------------------------- log


class LogSink(Sink):
    """Alerts as WARNING lines of the ``edgemask.alerts`` logger (journald picks them up)."""

    name = "log"

    def send(self, alert: dict[str, Any]) -> None:
        alert_log.warning(
            "ALERT %s track %s %s (%.0f%%) %s",
            alert.get("class"),
            alert.get("track"),
            alert.get("box"),
            100 * float(alert.get("confidence", 0.0)),
            alert.get("alert_id"),
        )


# --------------------------------------------------------------------------- webhook


def check_http_url(url: str, what: str = "--webhook") -> str:
    """Validate an http(s) URL without credentials in it; return it unchanged."""
    if url_has_password(url):  # first: a password with '/' in it would otherwise be parsed (and echoed) as a port
        raise ConfigError(
            f"{what} URL contains a password; command lines are visible to every user: put the "
            f"token in $EDGEMASK_WEBHOOK_TOKEN or in the secrets table of the --config file"
        )
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(
            f"{what} {redact(repr(url))} is not a valid URL ({redact(e)}); write e.g. https://host:8443/alerts"
        ) from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"{what} {redact(repr(url))} must be an http:// or https:// URL with a host, e.g. https://host/alerts"
        )
    if u.password:
        raise ConfigError(
            f"{what} URL contains a password; command lines are visible to every user: put the "
            f"token in $EDGEMASK_WEBHOOK_TOKEN or in the secrets table of the --config file"
        )
    return url


class WebhookSink(Sink):
    """HTTP POST of the alert as JSON.

    Headers: ``Authorization: Bearer <token>`` when a token is set,
    ``Idempotency-Key: <alert_id>`` so a receiver can drop the duplicates
    at-least-once delivery may produce.
    """

    name = "webhook"

    def __init__(self, url: str, token: str = "", timeout_s: float = 5.0):
        self.url = check_http_url(url)
        self.token = token
        self.timeout_s = float(timeout_s)

    def send(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(alert.get("alert_id", "")),
            "User-Agent": "edgemask-run",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
            if status in (408, 425, 429) or status >= 500:
                raise RetryableError(f"HTTP {status}", retry_after) from None
            raise PermanentError(f"HTTP {status} (the receiver refuses this alert)") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise RetryableError(f"{type(reason).__name__}: {reason}") from None
        if not 200 <= status < 300:
            raise RetryableError(f"HTTP {status}")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- MQTT


@dataclass(frozen=True)
class MqttTarget:
    """A parsed ``mqtt://user@host:port/topic`` URL."""

    host: str
    port: int
    topic: str
    username: str = ""
    tls: bool = False


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse and check an MQTT URL.

    Raises:
        ConfigError: malformed URL, a password in it (secrets never go on the
            command line), or a topic with wildcards.
    """
    fix = "write it as mqtt://user@host:port/topic (user and port optional; mqtts:// for TLS)"
    shown = redact(repr(url))  # never echo a password, whatever characters it holds
    if url_has_password(url):
        raise ConfigError(
            "--mqtt URL contains a password; command lines are visible to every user: put it in "
            "$EDGEMASK_MQTT_PASSWORD or in the secrets table of the --config file"
        )
    if "#" in url:  # urlsplit would take it for a fragment and quietly cut the topic short
        raise ConfigError(
            f"--mqtt {shown} contains '#', an MQTT wildcard (or a URL fragment); alerts need a concrete "
            "topic, e.g. mqtt://broker.local/site/cam1/alerts"
        )
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except ValueError as e:
        raise ConfigError(f"--mqtt {shown} is malformed ({redact(e)}); {fix}") from None
    if u.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--mqtt {shown} must start with mqtt:// or mqtts://; {fix}")
    if not u.hostname:
        raise ConfigError(f"--mqtt {shown} has no host; {fix}")
    if u.password is not None:
        raise ConfigError(
            "--mqtt URL contains a password; command lines are visible to every user: put it in "
            "$EDGEMASK_MQTT_PASSWORD or in the secrets table of the --config file"
        )
    topic = urllib.parse.unquote(u.path.lstrip("/"))
    if not topic:
        raise ConfigError(f"--mqtt {shown} has no topic; {fix}, e.g. mqtt://broker.local/site/cam1/alerts")
    if "+" in topic or "#" in topic:
        raise ConfigError(f"--mqtt topic {topic!r} contains a wildcard (+ or #); alerts need a concrete topic")
    if u.query or u.fragment:
        raise ConfigError(f"--mqtt {shown} has a query or fragment; {fix}")
    tls = u.scheme == "mqtts"
    return MqttTarget(
        host=u.hostname,
        port=port or (8883 if tls else 1883),
        topic=topic,
        username=urllib.parse.unquote(u.username or ""),
        tls=tls,
    )


class MqttSink(Sink):
    """Publish alerts to an MQTT broker with paho-mqtt (imported on start).

    One persistent connection; paho reconnects in its network thread. An
    alert counts as delivered when the broker's PUBACK (QoS 1) arrives. If it
    does not arrive within the timeout, paho keeps the message and resends
    it (with the DUP flag) after reconnecting, and the next attempt for that
    alert waits for *that* message rather than publishing a second copy.
    Duplicates are therefore only possible across a process restart or when
    the broker received a message whose PUBACK was lost.
    """

    name = "mqtt"

    def __init__(self, url: str, password: str = "", qos: int = 1, timeout_s: float = 5.0, client_id: str = ""):
        self.target = parse_mqtt_url(url)
        import importlib.util

        if importlib.util.find_spec("paho") is None:  # known at start-up, not after the camera has opened
            raise ConfigError("--mqtt needs paho-mqtt: pip install 'paho-mqtt>=2' (or edgemask[mqtt])")
        self.password = password
        self.qos = int(qos)
        self.timeout_s = float(timeout_s)
        self.client_id = client_id or f"edgemask-{socket.gethostname()}-{os.getpid()}"
        self._client: Any = None
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        self._mid_of: dict[str, int] = {}
        self._connected = False

    def start(self) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError("--mqtt needs paho-mqtt: pip install 'paho-mqtt>=2' (or edgemask[mqtt])") from None
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        if self.target.username:
            c.username_pw_set(self.target.username, self.password or None)
        elif self.password:
            log.warning("an MQTT password is set but --mqtt has no user (mqtt://USER@host/topic); not sending it")
        if self.target.tls:
            c.tls_set()
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_queued_messages_set(0)  # unbounded: the outbox bounds what is in flight anyway
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.connect_async(self.target.host, self.target.port, keepalive=30)
        c.loop_start()
        self._client = c

    # paho callbacks run in paho's network thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        ok = not getattr(reason_code, "is_failure", False)
        with self._cond:
            self._connected = ok
            self._cond.notify_all()
        if ok:
            log.info("connected to MQTT broker %s:%d", self.target.host, self.target.port)
        else:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.target.host, self.target.port, reason_code)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        with self._cond:
            self._connected = False
        log.warning("disconnected from MQTT broker %s:%d (%s)", self.target.host, self.target.port, reason_code)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any = None, properties: Any = None
    ) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def send(self, alert: dict[str, Any]) -> None:
        if self._client is None:
            self.start()
        aid = str(alert["alert_id"])
        with self._cond:
            mid = self._mid_of.get(aid)
            if mid is None:
                if not self._connected:
                    # wait a little for a (re)connection, then report a retryable failure
                    self._cond.wait_for(lambda: self._connected, timeout=min(1.0, self.timeout_s))
                if not self._connected:
                    raise RetryableError(f"not connected to MQTT broker {self.target.host}:{self.target.port}")
        if mid is None:
            info = self._client.publish(self.target.topic, json.dumps(alert, sort_keys=True), qos=self.qos)
            if int(info.rc) not in (0, 4):  # 0 = sent, 4 = NO_CONN: queued by paho, resent on reconnect
                raise RetryableError(f"MQTT publish failed (rc {int(info.rc)})")
            mid = int(info.mid)
            with self._cond:
                self._mid_of[aid] = mid
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acked, timeout=self.timeout_s):
                raise RetryableError(
                    f"no PUBACK from {self.target.host}:{self.target.port} within {self.timeout_s:g} s"
                )
            self._acked.discard(mid)
            self._mid_of.pop(aid, None)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
                self._client.loop_stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            self._client = None


# --------------------------------------------------------------------------- snapshots


def write_snapshot(folder: str | Path, alert_id: str, bgr: np.ndarray, quality: int = 90) -> Path:
    """One JPEG per alert, written atomically as ``<folder>/<alert_id>.jpg``."""
    import cv2

    from edgemask.utils.io import atomic_write_bytes

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return atomic_write_bytes(Path(folder) / f"{alert_id}.jpg", buf.tobytes())


# --------------------------------------------------------------------------- dispatcher


class AlertDispatcher:
    """Delivers the outbox to every sink: one thread per sink, in order, with backoff.

    Args:
        outbox: the durable queue (already created with these sinks' names).
        sinks: the sinks; their ``name`` must match the outbox's sink names.
        retry_min_s, retry_max_s: backoff bounds; doubles per consecutive failure.
        on_result: ``on_result(sink_name, outcome)`` with outcome
            ``"delivered" | "retry" | "dead"`` (metrics hook).
    """

    def __init__(
        self,
        outbox: Outbox,
        sinks: list[Sink],
        retry_min_s: float = 0.5,
        retry_max_s: float = 60.0,
        on_result: Callable[[str, str], None] | None = None,
    ):
        self.outbox = outbox
        self.sinks = list(sinks)
        self.retry_min_s = float(retry_min_s)
        self.retry_max_s = float(retry_max_s)
        self.on_result = on_result
        self._stop = threading.Event()
        self._wake = {s.name: threading.Event() for s in self.sinks}
        self._threads: list[threading.Thread] = []
        self.delivered: dict[str, int] = {s.name: 0 for s in self.sinks}
        self.failures: dict[str, int] = {s.name: 0 for s in self.sinks}

    def start(self) -> None:
        for s in self.sinks:
            s.start()
            t = threading.Thread(target=self._run, args=(s,), name=f"edgemask-sink-{s.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        """A new alert is in the outbox: wake the sink threads."""
        for e in self._wake.values():
            e.set()

    def _run(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        failures = 0
        while not self._stop.is_set():
            item = self.outbox.next_for(sink.name)
            if item is None:
                wake.wait(1.0)
                wake.clear()
                continue
            try:
                sink.send(item.payload)
            except RetryableError as e:
                failures += 1
                self.failures[sink.name] += 1
                self.outbox.fail(item.seq, sink.name, str(e))
                delay = min(self.retry_max_s, self.retry_min_s * 2 ** min(failures - 1, 20))
                delay = max(
                    delay * random.uniform(0.8, 1.2), e.retry_after or 0.0
                )  # jitter: sites do not retry in lockstep
                log.warning(
                    "%s: delivering alert %s failed (%s); retry %d in %.1f s",
                    sink.name,
                    item.alert_id,
                    e,
                    item.attempts + 1,
                    delay,
                )
                self._emit(sink.name, "retry")
                self._stop.wait(delay)
                continue
            except PermanentError as e:
                log.error(
                    "%s refused alert %s for good (%s); kept in the outbox's dead table", sink.name, item.alert_id, e
                )
                self.outbox.kill(item.seq, sink.name, str(e))
                self._emit(sink.name, "dead")
                continue
            except Exception as e:
                failures += 1
                self.failures[sink.name] += 1
                self.outbox.fail(item.seq, sink.name, f"{type(e).__name__}: {e}")
                log.exception("%s: unexpected error delivering alert %s", sink.name, item.alert_id)
                self._emit(sink.name, "retry")
                self._stop.wait(min(self.retry_max_s, self.retry_min_s * 2 ** min(failures - 1, 20)))
                continue
            failures = 0
            self.outbox.ack(item.seq, sink.name)
            self.delivered[sink.name] += 1
            self._emit(sink.name, "delivered")

    def _emit(self, sink: str, outcome: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(sink, outcome)
            except Exception:
                log.exception("metrics hook failed")

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the configured sinks to catch up; True if they did."""
        end = time.monotonic() + timeout_s
        names = [s.name for s in self.sinks]
        while time.monotonic() < end:
            if all(self.outbox.depth(n) == 0 for n in names):
                return True
            self.notify()
            time.sleep(0.05)
        return all(self.outbox.depth(n) == 0 for n in names)

    def stop(self) -> None:
        """Stop the sink threads (undelivered alerts stay in the outbox) and close the sinks."""
        self._stop.set()
        self.notify()
        for t in self._threads:
            t.join(timeout=10.0)
        for s in self.sinks:
            try:
                s.close()
            except Exception:
                log.exception("closing sink %s failed", s.name)


__all__ = [
    "AlertDispatcher",
    "LogSink",
    "MqttSink",
    "MqttTarget",
    "PermanentError",
    "RetryableError",
    "Sink",
    "WebhookSink",
    "check_http_url",
    "parse_mqtt_url",
    "write_snapshot",
]

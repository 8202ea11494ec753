"""Prometheus exposition (prometheus_client and the built-in one) and the /metrics, /healthz server."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from edgemask.errors import ConfigError
from edgemask.service.metrics import MetricsServer, ServiceMetrics, prometheus_available

BACKENDS = [False] + ([True] if prometheus_available() else [])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _record(m: ServiceMetrics) -> None:
    for _ in range(3):
        m.frame_done(
            {"decode": 0.002, "detect": 0.012, "classify": 0.003, "track": 0.0002, "output": 0.001, "total": 0.02},
            faces=2,
        )
    m.alert("no_mask")
    m.alert("no_mask")
    m.alert("mask_incorrect")
    m.reconnect()
    m.corrupt(2)
    m.outbox_depth(4)
    m.delivery("mqtt", "retry")


def _value(text: str, line_start: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    assert lines, f"{line_start!r} missing in:\n{text}"
    return float(lines[0].rsplit(" ", 1)[1])


@pytest.mark.parametrize("use_prom", BACKENDS)
def test_exposition_has_every_metric(use_prom):
    m = ServiceMetrics(use_prometheus=use_prom)
    _record(m)
    text = m.render().decode()
    assert _value(text, "edgemask_frames_total") == 3
    assert _value(text, "edgemask_faces_total") == 6
    assert _value(text, 'edgemask_alerts_total{class="no_mask"}') == 2
    assert _value(text, 'edgemask_alerts_total{class="mask_incorrect"}') == 1
    assert _value(text, "edgemask_source_reconnects_total") == 1
    assert _value(text, "edgemask_corrupt_frames_total") == 2
    assert _value(text, "edgemask_outbox_depth") == 4
    assert _value(text, 'edgemask_stage_latency_seconds_count{stage="detect"}') == 3
    assert (
        _value(
            text,
            'edgemask_stage_latency_seconds_bucket{le="0.02",stage="detect"}'
            if use_prom
            else 'edgemask_stage_latency_seconds_bucket{stage="detect",le="0.02"}',
        )
        == 3
    )
    assert (
        _value(
            text,
            'edgemask_alert_deliveries_total{outcome="retry",sink="mqtt"}'
            if use_prom
            else 'edgemask_alert_deliveries_total{sink="mqtt",outcome="retry"}',
        )
        == 1
    )
    assert _value(text, "edgemask_up") == 1
    assert "# TYPE edgemask_stage_latency_seconds histogram" in text


def test_server_serves_metrics_and_health():
    m = ServiceMetrics(use_prometheus=False)
    srv = MetricsServer(m, "127.0.0.1", 0, stale_s=0.5, extra_health=lambda: {"outbox_depth": 7}).start()
    try:
        base = f"http://127.0.0.1:{srv.port}"
        code, body = _get(base + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "starting"
        _record(m)
        code, body = _get(base + "/healthz")
        info = json.loads(body)
        assert code == 200 and info["status"] == "ok" and info["frames"] == 3 and info["outbox_depth"] == 7
        code, body = _get(base + "/metrics")
        assert code == 200 and "edgemask_frames_total 3" in body
        time.sleep(0.6)
        code, body = _get(base + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "stale"  # frames stopped: unhealthy
        assert _get(base + "/nope")[0] == 404
    finally:
        srv.stop()


def test_port_in_use_is_a_config_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics on 127.0.0.1"):
            MetricsServer(ServiceMetrics(use_prometheus=False), "127.0.0.1", s.getsockname()[1])
    finally:
        s.close()


def test_a_server_that_never_started_stops_and_frees_its_port():
    # A start-up that fails after the port was bound (an unreachable camera) closes it unstarted;
    # socketserver's shutdown() would wait forever for a serve_forever() that never ran.
    import threading

    srv = MetricsServer(ServiceMetrics(use_prometheus=False), "127.0.0.1", 0)
    port = srv.port
    t = threading.Thread(target=srv.stop, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again

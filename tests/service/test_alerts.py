"""Alert sinks against a real local HTTP server, the dispatcher's retries, MQTT URL parsing, snapshots."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from service_fakes import WebhookServer, free_port

from edgemask.errors import ConfigError
from edgemask.service.alerts import (
    AlertDispatcher,
    LogSink,
    MqttTarget,
    PermanentError,
    RetryableError,
    WebhookSink,
    check_http_url,
    parse_mqtt_url,
    write_snapshot,
)
from edgemask.service.outbox import Outbox


def alert(i: int) -> dict:
    return {"alert_id": f"id-{i}", "class": "no_mask", "confidence": 0.9, "track": i, "box": [1, 2, 3, 4]}


# --------------------------------------------------------------------------- URLs


def test_parse_mqtt_url():
    assert parse_mqtt_url("mqtt://edge@broker.local:1884/site/cam%201/alerts") == MqttTarget(
        "broker.local", 1884, "site/cam 1/alerts", "edge", False
    )
    assert parse_mqtt_url("mqtts://broker/a").port == 8883 and parse_mqtt_url("mqtt://broker/a").port == 1883


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://broker/a", "must start with mqtt://"),
        ("mqtt:///a", "no host"),
        ("mqtt://broker", "no topic"),
        ("mqtt://broker:notaport/a", "malformed"),
        ("mqtt://broker:70000/a", "malformed"),
        ("mqtt://u:pw@broker/a", "contains a password"),
        ("mqtt://broker/site/+/alerts", "wildcard"),
        ("mqtt://broker/site/#", "wildcard"),
        ("mqtt://broker/site/%23", "wildcard"),
        ("mqtt://broker/a?x=1", "query"),
    ],
)
def test_malformed_mqtt_urls(url, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("+", r"\+")) as e:
        parse_mqtt_url(url)
    assert "\n" not in str(e.value) and "pw" not in str(e.value)


def test_webhook_url_checks():
    assert check_http_url("https://h/x") == "https://h/x"
    for bad in ("ftp://h/x", "https://", "https://u:tok@h/x"):
        with pytest.raises(ConfigError):
            check_http_url(bad)


# --------------------------------------------------------------------------- webhook


def test_webhook_posts_json_with_token_and_idempotency_key(webhook):
    WebhookSink(webhook.url, token="s3cret").send(alert(1))
    (req,) = webhook.requests
    assert req["json"] == alert(1)
    assert req["headers"]["Authorization"] == "Bearer s3cret" and req["headers"]["Idempotency-Key"] == "id-1"


@pytest.mark.parametrize(
    "code, error", [(503, RetryableError), (429, RetryableError), (400, PermanentError), (401, PermanentError)]
)
def test_webhook_status_codes(code, error):
    s = WebhookServer([code])
    try:
        with pytest.raises(error):
            WebhookSink(s.url).send(alert(1))
    finally:
        s.close()


def test_webhook_unreachable_is_retryable():
    with pytest.raises(RetryableError):
        WebhookSink(f"http://127.0.0.1:{free_port()}/x", timeout_s=2).send(alert(1))


# --------------------------------------------------------------------------- dispatcher


def _dispatch(tmp_path, sinks, n, **kw):
    ob = Outbox(tmp_path / "o.sqlite3", [s.name for s in sinks])
    for i in range(n):
        ob.put(alert(i))
    outcomes = []
    d = AlertDispatcher(
        ob, sinks, retry_min_s=0.05, retry_max_s=0.2, on_result=lambda s, o: outcomes.append((s, o)), **kw
    )
    d.start()
    return ob, d, outcomes


def test_dispatcher_retries_until_the_webhook_accepts(tmp_path):
    s = WebhookServer([503, 503, 429])
    try:
        ob, d, outcomes = _dispatch(tmp_path, [WebhookSink(s.url)], 3)
        assert d.drain(10)
        d.stop()
    finally:
        s.close()
    assert s.accepted_ids() == ["id-0", "id-1", "id-2"]  # in order, each once
    assert [o for _, o in outcomes].count("retry") == 3 and ob.depth() == 0


def test_dispatcher_delivers_after_the_receiver_comes_up(tmp_path):
    port = free_port()
    ob, d, _ = _dispatch(tmp_path, [WebhookSink(f"http://127.0.0.1:{port}/alerts", timeout_s=1)], 4)
    time.sleep(0.5)
    assert ob.depth() == 4  # receiver down: nothing lost, nothing acked
    s = WebhookServer(port=port)
    try:
        assert d.drain(10)
        d.stop()
    finally:
        s.close()
    assert s.accepted_ids() == [f"id-{i}" for i in range(4)]


def test_refused_alert_does_not_block_the_queue(tmp_path):
    s = WebhookServer([400])
    try:
        ob, d, outcomes = _dispatch(tmp_path, [WebhookSink(s.url)], 2)
        assert d.drain(10)
        d.stop()
    finally:
        s.close()
    assert s.accepted_ids() == ["id-1"] and ob.dead_count() == 1 and ("webhook", "dead") in outcomes


def test_log_sink_and_fan_out(tmp_path, webhook, caplog):
    caplog.set_level("WARNING", logger="edgemask.alerts")
    ob, d, _ = _dispatch(tmp_path, [LogSink(), WebhookSink(webhook.url)], 2)
    assert d.drain(10)
    d.stop()
    assert webhook.accepted_ids() == ["id-0", "id-1"]
    assert sum("ALERT no_mask" in r.message for r in caplog.records) == 2 and ob.depth() == 0


def test_undelivered_alerts_stay_after_stop(tmp_path):
    port = free_port()
    ob, d, _ = _dispatch(tmp_path, [WebhookSink(f"http://127.0.0.1:{port}/x", timeout_s=0.5)], 3)
    assert not d.drain(0.5)
    d.stop()
    ob.close()
    assert Outbox(tmp_path / "o.sqlite3", ["webhook"]).depth() == 3


def test_snapshot_is_a_real_jpeg(tmp_path):
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :, 2] = 200
    p = write_snapshot(tmp_path / "snaps", "abc", img)
    back = cv2.imread(str(p))
    assert p.name == "abc.jpg" and back.shape == (60, 80, 3) and abs(int(back[..., 2].mean()) - 200) < 5


def test_mqtt_without_paho_is_a_start_up_error(monkeypatch):
    import sys

    from edgemask.service.alerts import MqttSink

    monkeypatch.setitem(sys.modules, "paho", None)  # as if paho-mqtt were not installed
    with pytest.raises(ConfigError, match="pip install 'paho-mqtt>=2'"):
        MqttSink("mqtt://broker.local/site/cam1")

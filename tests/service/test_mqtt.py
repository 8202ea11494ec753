"""MQTT alerts through a real mosquitto broker on loopback, including a broker that dies mid-run.

Delivery contract under test (see ``edgemask/service/outbox.py``): at least
once. No alert is lost while the broker is down or the service restarts;
an alert may arrive twice (paho resends an unacknowledged PUBLISH with DUP
after reconnecting, and a restart resends alerts whose PUBACK came after
the last outbox commit). Receivers deduplicate on ``alert_id``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from service_fakes import (
    CLASS_NAMES,
    BoxDetector,
    Mosquitto,
    ScriptedRunner,
    Subscriber,
    mosquitto_binary,
    wait_for,
)

from edgemask.service.alerts import MqttSink, RetryableError
from edgemask.service.config import RunConfig
from edgemask.service.loop import run_service

pytestmark = pytest.mark.network
pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install paho-mqtt)")

TOPIC = "site/cam1/alerts"


def alert(i: int) -> dict:
    return {"alert_id": f"m-{i}", "class": "no_mask"}


def test_mqtt_sink_publishes_to_a_real_broker(broker):
    sub = Subscriber(broker.port, TOPIC)
    sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", timeout_s=5)
    try:
        for i in range(3):
            sink.send(alert(i))  # returns after the broker's PUBACK
        assert wait_for(lambda: len(sub.ids()) == 3, 5)
    finally:
        sink.close()
        sub.close()
    assert sub.ids() == ["m-0", "m-1", "m-2"] and sub.messages[0] == alert(0)


def test_password_authentication(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    b = Mosquitto(tmp_path / "auth", users={"edge": "pa55"}).start()
    try:
        sub = Subscriber(b.port, TOPIC, username="edge", password="pa55")
        good = MqttSink(f"mqtt://edge@127.0.0.1:{b.port}/{TOPIC}", password="pa55", timeout_s=5)
        bad = MqttSink(f"mqtt://edge@127.0.0.1:{b.port}/{TOPIC}", password="wrong", timeout_s=1)
        try:
            good.send(alert(1))
            with pytest.raises(RetryableError, match="not connected"):
                bad.send(alert(2))
            assert wait_for(lambda: sub.ids() == ["m-1"], 5)
        finally:
            good.close()
            bad.close()
            sub.close()
    finally:
        b.stop()


def test_unreachable_broker_is_a_retryable_failure():
    from service_fakes import free_port

    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}/{TOPIC}", timeout_s=0.5)
    try:
        with pytest.raises(RetryableError):
            sink.send(alert(0))
    finally:
        sink.close()


def _alert_ids_in(events_path) -> list[str]:
    import json

    return [r["alert_id"] for r in map(json.loads, open(events_path)) if r["type"] == "alert"]


def _cfg(tmp_path, broker_port, video, **kw) -> RunConfig:
    base = dict(
        source=str(video),
        backend="null",
        headless=True,
        loop=True,
        fps=30,
        state_dir=str(tmp_path / "state"),
        events=str(tmp_path / "events.jsonl"),
        mqtt=f"mqtt://127.0.0.1:{broker_port}/{TOPIC}",
        log_alerts=False,
        vote_window=1,
        debounce_s=0.1,
        retry_min_s=0.1,
        retry_max_s=0.5,
        sink_timeout_s=1.0,
    )
    base.update(kw)
    return RunConfig(**base)


def test_broker_killed_and_restarted_during_a_run_loses_no_alert(tmp_path, broker, video):
    sub = Subscriber(broker.port, TOPIC)  # persistent session: its queue survives the broker restart
    cfg = _cfg(tmp_path, broker.port, video, duration_s=7.0)
    events = {}

    def chaos():
        time.sleep(1.5)
        broker.kill()
        events["killed"] = time.monotonic()
        time.sleep(1.5)
        broker.start()
        events["restarted"] = time.monotonic()

    t = threading.Thread(target=chaos, daemon=True)
    t.start()
    try:
        summary = run_service(
            cfg,
            runner=ScriptedRunner(lambda i: 1),
            class_names=CLASS_NAMES,
            detector=BoxDetector([(40, 60, 120, 150)]),
            install_signal_handlers=False,
        )
        t.join(10)
        made = _alert_ids_in(cfg.events)
        assert wait_for(lambda: set(sub.ids()) >= set(made), 15)
    finally:
        sub.close()
    got = Counter(sub.ids())
    assert "killed" in events and "restarted" in events
    assert summary.alerts_total == len(made) >= 30  # alerts kept coming while the broker was down
    assert set(made) <= set(got)  # none lost
    assert set(got) <= set(made)  # nothing invented
    dups = sum(n - 1 for n in got.values())
    assert dups <= 3, f"{dups} duplicates"  # at-least-once: a few resends around the kill at most
    assert summary.outbox_pending.get("mqtt", 0) == 0


def test_alerts_queued_while_broker_is_down_are_delivered_after_a_restart(tmp_path, video):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    b = Mosquitto(tmp_path / "b")  # not started yet: the first run cannot deliver
    cfg = _cfg(tmp_path, b.port, video, max_frames=20, loop=False, fps=0)
    run = dict(
        runner=ScriptedRunner(lambda i: 1),
        class_names=CLASS_NAMES,
        detector=BoxDetector([(40, 60, 120, 150)]),
        install_signal_handlers=False,
    )
    first = run_service(cfg, **run)
    made = _alert_ids_in(cfg.events)
    assert first.alerts_total == len(made) > 0 and first.outbox_pending == {"mqtt": len(made)}
    b.start()
    try:
        sub = Subscriber(b.port, TOPIC)
        second = run_service(RunConfig(**{**cfg.to_dict(), "alert_on": ("mask",), "max_frames": 40}), **run)
        assert wait_for(lambda: set(sub.ids()) >= set(made), 10)  # the first run's alerts, from the outbox
        sub.close()
    finally:
        b.stop()
    assert second.alerts_total == 0 and second.outbox_pending == {"mqtt": 0} or second.outbox_pending == {}

"""The SQLite outbox: order, per-sink acks, dead letters, and surviving a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edgemask.errors import ConfigError
from edgemask.service.outbox import Outbox


def alert(i: int) -> dict:
    return {"alert_id": f"a{i:04d}", "class": "no_mask", "n": i}


def test_fifo_per_sink_and_ack(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite3", ["webhook", "mqtt"])
    for i in range(3):
        ob.put(alert(i))
    assert ob.depth() == 6 and ob.pending_by_sink() == {"webhook": 3, "mqtt": 3}
    item = ob.next_for("webhook")
    assert item.payload == alert(0) and item.attempts == 0
    ob.fail(item.seq, "webhook", "HTTP 503")
    assert ob.next_for("webhook").attempts == 1  # still first in line
    ob.ack(item.seq, "webhook")
    assert ob.next_for("webhook").alert_id == "a0001"
    assert ob.next_for("mqtt").alert_id == "a0000"  # mqtt has not taken it yet
    ob.ack(item.seq, "mqtt")
    assert ob.depth() == 4
    ob.close()


def test_same_alert_id_is_stored_once(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite3", ["log"])
    assert ob.put(alert(1)) == ob.put(alert(1)) and ob.depth() == 1


def test_refused_alert_moves_to_dead_table(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite3", ["webhook"])
    ob.put(alert(0))
    ob.put(alert(1))
    ob.kill(ob.next_for("webhook").seq, "webhook", "HTTP 400")
    assert ob.dead_count() == 1 and ob.next_for("webhook").alert_id == "a0001"


def test_pending_alerts_survive_restart(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite3", ["webhook"])
    for i in range(5):
        ob.put(alert(i))
    ob.ack(ob.next_for("webhook").seq, "webhook")
    ob.close()
    again = Outbox(tmp_path / "o.sqlite3", ["webhook", "mqtt"])  # a sink added since: old alerts are not re-fanned
    assert again.pending_by_sink() == {"webhook": 4}
    assert [again.next_for("webhook").alert_id] == ["a0001"]


def test_alerts_put_before_a_sigkill_are_kept(tmp_path):
    db = tmp_path / "o.sqlite3"
    code = textwrap.dedent(f"""
        import os, signal, sys
        from edgemask.service.outbox import Outbox
        ob = Outbox({str(db)!r}, ["mqtt"])
        for i in range(50):
            ob.put({{"alert_id": f"k{{i}}"}})
        sys.stdout.write("done\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)   # no close(), no checkpoint
    """)
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert p.returncode == -signal.SIGKILL and p.stdout == "done\n"
    assert Outbox(db, ["mqtt"]).depth("mqtt") == 50


def test_unusable_outbox_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="cannot open the alert outbox"):
        Outbox(tmp_path / "f" / "o.sqlite3", ["log"])

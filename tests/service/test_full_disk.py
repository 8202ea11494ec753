"""A full disk under the state folder: the service keeps running, every accepted alert is delivered or counted.

Two ways to fill the disk: a real 2 MB tmpfs filled to the last byte
(needs root for ``mount``; skipped otherwise), and a wrapper around the
SQLite connection that fails every write with SQLite's own "database or
disk is full" (runs everywhere). A corrupt database and a start on a full
disk are refused in one line with nothing left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from service_fakes import CLASS_NAMES, BoxDetector, ScriptedRunner, WebhookServer, free_port

from edgemask.errors import ConfigError
from edgemask.service.config import RunConfig, Secrets
from edgemask.service.loop import run_service
from edgemask.service.metrics import ServiceMetrics
from edgemask.service.outbox import Outbox

NO_MASK = 1


# --------------------------------------------------------------------------- full disks


class SmallDisk:
    """A real tmpfs of ``size`` that :meth:`fill` fills to the last byte."""

    def __init__(self, root: Path, size: str = "2m"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True, text=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip() or r.returncode}")
        self.filler = root / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 16, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> None:
        self.free()
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    d = SmallDisk(tmp_path / "disk")
    yield d
    d.unmount()


class _FullCursor:
    def __init__(self, owner: FullDb, cur: sqlite3.Cursor):
        self.owner, self.cur = owner, cur

    def execute(self, sql, *args):
        self.owner.check(sql)
        self.cur.execute(sql, *args)
        return self

    def executemany(self, sql, rows):
        self.owner.check(sql)
        self.cur.executemany(sql, rows)
        return self

    def fetchone(self):
        return self.cur.fetchone()

    def fetchall(self):
        return self.cur.fetchall()

    def __iter__(self):
        return iter(self.cur)

    @property
    def lastrowid(self):
        return self.cur.lastrowid


class FullDb:
    """Wraps an outbox's connection: while ``full``, every write fails as SQLite fails it on a full disk.

    Like SQLite on SQLITE_FULL, the failing statement rolls the transaction back itself, so a
    later ROLLBACK finds no transaction (what killed the service before: "cannot rollback").
    """

    WRITES = ("INSERT", "UPDATE", "DELETE", "COMMIT")

    def __init__(self, db: sqlite3.Connection):
        self.db, self.full, self.failed = db, False, 0

    def check(self, sql: str) -> None:
        if self.full and sql.lstrip().upper().startswith(self.WRITES):
            self.failed += 1
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        self.check(sql)
        return self.db.execute(sql, *args)

    def cursor(self):
        return _FullCursor(self, self.db.cursor())

    @property
    def in_transaction(self):
        return self.db.in_transaction

    def close(self):
        self.db.close()


def full_outbox(path, sinks) -> tuple[Outbox, FullDb]:
    ob = Outbox(path, sinks, retry_s=0.0)
    ob._db = wrapper = FullDb(ob._db)
    return ob, wrapper


def alert(i: int) -> dict:
    return {"alert_id": f"a{i:04d}", "class": "no_mask", "n": i}


def drain(ob: Outbox, sink: str, limit: int = 1000) -> list[str]:
    got = []
    for _ in range(limit):
        item = ob.next_for(sink)
        if item is None:
            break
        got.append(item.alert_id)
        ob.ack(item.seq, sink)
    return got


# --------------------------------------------------------------------------- the outbox alone


def test_put_on_a_full_disk_keeps_the_alert_in_memory_and_delivers_it(tmp_path, caplog):
    ob, db = full_outbox(tmp_path / "o.sqlite3", ["webhook", "mqtt"])
    states = []
    ob.on_state = states.append
    ob.put(alert(0))
    db.full = True
    seqs = [ob.put(alert(i)) for i in range(1, 4)]  # before the fix: OperationalError "cannot rollback"
    assert all(s < 0 for s in seqs) and ob.degraded and ob.not_durable == 3
    assert ob.depth() == 8 and ob.pending_by_sink() == {"webhook": 4, "mqtt": 4}
    assert drain(ob, "webhook") == ["a0000", "a0001", "a0002", "a0003"]  # in order, the durable one first
    assert drain(ob, "webhook") == []  # its ack could not be written: no resend
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot be written (database or disk is full" in errors[0]
    assert states[-1]["degraded"] and states[-1]["not_durable"] == 3
    db.full = False  # space again: memory goes to disk, mqtt still owed
    assert drain(ob, "mqtt") == ["a0000", "a0001", "a0002", "a0003"]
    assert not ob.degraded and ob.depth() == 0
    ob.close()
    assert ob.lost == 0 and Outbox(tmp_path / "o.sqlite3", ["webhook", "mqtt"]).depth() == 0


def test_what_memory_holds_survives_a_restart_once_written(tmp_path):
    ob, db = full_outbox(tmp_path / "o.sqlite3", ["webhook"])
    db.full = True
    for i in range(3):
        ob.put(alert(i))
    db.full = False
    ob.put(alert(3))  # the next put writes memory first, in order
    assert not ob.degraded and ob.status()["in_memory"] == 0
    ob.close()
    assert drain(Outbox(tmp_path / "o.sqlite3", ["webhook"]), "webhook") == ["a0000", "a0001", "a0002", "a0003"]


def test_alerts_still_in_memory_at_close_are_counted_and_named(tmp_path, caplog):
    ob, db = full_outbox(tmp_path / "o.sqlite3", ["webhook"])
    db.full = True
    ob.put(alert(0))
    ob.put(alert(1))
    ob.ack(ob.next_for("webhook").seq, "webhook")  # one delivered from memory
    ob.close()
    assert ob.lost == 1 and ob.not_durable == 2
    (line,) = [r.getMessage() for r in caplog.records if "they are lost" in r.getMessage()]
    assert "1 alert(s) could not be made durable" in line and "a0001" in line


def test_refused_alert_in_memory_reaches_the_dead_table(tmp_path):
    ob, db = full_outbox(tmp_path / "o.sqlite3", ["webhook"])
    db.full = True
    ob.put(alert(0))
    ob.kill(ob.next_for("webhook").seq, "webhook", "HTTP 400")
    assert ob.dead_count() == 1 and ob.depth() == 0
    db.full = False
    ob.put(alert(1))
    assert ob.dead_count() == 1 and not ob.degraded


def test_real_full_disk_outbox(small_disk):
    ob = Outbox(small_disk.root / "state" / "outbox.sqlite3", ["webhook"], retry_s=0.0)
    for i in range(5):
        ob.put(alert(i))
    small_disk.fill()
    for i in range(5, 40):
        ob.put({**alert(i), "pad": "x" * 2000})
    assert ob.degraded and ob.not_durable > 0 and "full" in ob.degraded_reason
    got = drain(ob, "webhook", limit=20)
    small_disk.free()
    got += drain(ob, "webhook")
    assert got == [f"a{i:04d}" for i in range(40)]  # all accepted, in order, none twice
    ob.close()
    assert ob.lost == 0


def test_corrupt_outbox_is_named_with_how_to_recover(tmp_path):
    db = tmp_path / "outbox.sqlite3"
    db.write_bytes(b"this is not a database, it was overwritten" * 200)
    with pytest.raises(ConfigError) as e:
        Outbox(db, ["log"])
    msg = str(e.value)
    assert f"the alert outbox {db} is corrupt" in msg and f"mv {db} {db}.corrupt" in msg and ".recover" in msg
    assert "\n" not in msg and db.read_bytes().startswith(b"this is not")  # left as it was for recovery


def test_damaged_pages_are_found_at_start(tmp_path):
    db = tmp_path / "outbox.sqlite3"
    ob = Outbox(db, ["log"])
    for i in range(300):
        ob.put({**alert(i), "pad": "x" * 500})
    ob.close()
    data = bytearray(db.read_bytes())
    data[8192 : 8192 + 4096] = os.urandom(4096)  # one page of alerts overwritten
    db.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="is corrupt .*malformed.*mv ") as e:
        Outbox(db, ["log"])
    assert "\n" not in str(e.value)


def test_outbox_that_cannot_be_created_leaves_nothing(small_disk):
    small_disk.fill()
    state = small_disk.root / "state" / "deeper"
    with pytest.raises(ConfigError, match="cannot open the alert outbox .*free space under --state-dir"):
        Outbox(state / "outbox.sqlite3", ["log"])
    assert sorted(p.name for p in small_disk.root.iterdir()) == ["filler"]  # no 0-byte files, no folders


# --------------------------------------------------------------------------- the service


def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read().decode()
            code = r.status
    except urllib.error.HTTPError as e:
        body, code = e.read().decode(), e.code
    with contextlib.suppress(ValueError):
        return code, json.loads(body)
    return code, body


def _service_under_full_disk(
    tmp_path, state, disk_fill, disk_free, *, free_at: int | None, frames: int = 90, webhook_up: bool = True
):
    """Run the service on a looping clip, 3 faces alerting every few frames; fill the disk at frame 15."""
    from service_fakes import write_video

    video = write_video(tmp_path / "clip.mp4", 30)
    hook = WebhookServer(responses=[] if webhook_up else [503] * 100000)
    port = free_port()
    seen: dict = {}

    def on_frame(i, faces):
        if i == 15:
            disk_fill()
        if i == 40:
            seen["health"] = _get(f"http://127.0.0.1:{port}/healthz")
            seen["metrics"] = _get(f"http://127.0.0.1:{port}/metrics")[1]
        if free_at is not None and i == free_at:
            disk_free()

    cfg = RunConfig(
        source=str(video),
        loop=True,
        backend="null",
        headless=True,
        state_dir=str(state),
        log_alerts=False,
        webhook=hook.url,
        max_frames=frames,
        debounce_s=0.0,
        max_missed=0,
        metrics_port=port,
        events=str(tmp_path / "events.jsonl"),
        retry_min_s=0.05,
        retry_max_s=0.2,
    )
    det = BoxDetector([(10, 10, 60, 60), (100, 20, 160, 90), (200, 100, 260, 170)])
    try:
        s = run_service(
            cfg,
            runner=ScriptedRunner(lambda i: NO_MASK),
            class_names=CLASS_NAMES,
            detector=det,
            install_signal_handlers=False,
            secrets=Secrets(),
            on_frame=on_frame,
        )
        accepted = [
            json.loads(ln)["alert_id"] for ln in open(tmp_path / "events.jsonl") if json.loads(ln)["type"] == "alert"
        ]
        return s, accepted, hook.accepted_ids(), seen
    finally:
        hook.close()


def test_service_keeps_running_on_a_full_disk_and_delivers_every_alert(tmp_path, small_disk):
    s, accepted, delivered, seen = _service_under_full_disk(
        tmp_path, small_disk.root / "state", small_disk.fill, small_disk.free, free_at=70
    )
    assert s.frames == 90 and s.stop_reason == "max_frames"
    assert s.alerts_total == len(accepted) > 20 and s.alerts_not_durable > 0 and s.alerts_lost == 0
    assert sorted(delivered) == sorted(accepted) and len(set(delivered)) == len(delivered)  # all, none twice
    code, health = seen["health"]
    assert code == 200 and health["status"] == "degraded" and health["outbox_degraded"] is True
    assert "full" in health["outbox_error"]
    assert "edgemask_outbox_degraded 1" in seen["metrics"].replace("1.0", "1")
    assert s.outbox_pending == {}


def test_disk_that_stays_full_still_delivers_from_memory(tmp_path):
    # The same run with the injected full disk (no root needed): never freed, the webhook takes everything.
    holder = {}

    def fill():
        ob = holder["ob"]
        ob._db = holder["db"] = FullDb(ob._db)
        holder["db"].full = True

    orig = Outbox.__init__

    def spy(self, *a, **kw):
        orig(self, *a, **kw)
        holder["ob"] = self

    Outbox.__init__ = spy
    try:
        s, accepted, delivered, seen = _service_under_full_disk(
            tmp_path, tmp_path / "state", fill, lambda: None, free_at=None
        )
    finally:
        Outbox.__init__ = orig
    assert s.frames == 90 and s.alerts_not_durable > 0 and s.alerts_lost == 0
    assert sorted(delivered) == sorted(accepted) and len(set(delivered)) == len(delivered)
    assert seen["health"][1]["status"] == "degraded"
    assert "edgemask_alerts_not_durable_total" in seen["metrics"]


def test_undeliverable_alerts_on_a_full_disk_are_counted_as_lost(tmp_path, small_disk):
    s, accepted, delivered, _ = _service_under_full_disk(
        tmp_path, small_disk.root / "state", small_disk.fill, small_disk.free, free_at=None, frames=40, webhook_up=False
    )
    assert delivered == [] and s.alerts_lost == s.alerts_not_durable > 0  # counted, not silent
    assert s.outbox_pending["webhook"] == s.alerts_total - s.alerts_lost  # the durable ones stay queued


def test_a_start_on_a_full_disk_is_one_line_and_leaves_no_files(tmp_path, small_disk):
    from service_fakes import write_video

    video = write_video(tmp_path / "clip.mp4", 5)
    small_disk.fill()
    state, events = small_disk.root / "state", small_disk.root / "out" / "events.jsonl"
    exe = Path(sys.executable).with_name("edgemask")
    r = subprocess.run(
        [
            str(exe),
            "run",
            "--source",
            str(video),
            "--backend",
            "null",
            "--headless",
            "--state-dir",
            str(state),
            "--events",
            str(events),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1].startswith("error: cannot open the alert outbox") and "free space" in lines[-1]
    assert sorted(p.name for p in small_disk.root.iterdir()) == ["filler"]  # no 0-byte outbox or events file


def test_corrupt_outbox_through_the_cli(tmp_path):
    from service_fakes import write_video

    video = write_video(tmp_path / "clip.mp4", 5)
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"\x00garbage" * 1000)
    exe = Path(sys.executable).with_name("edgemask")
    r = subprocess.run(
        [str(exe), "run", "--source", str(video), "--backend", "null", "--headless", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 1 and len(err) == 1 and "Traceback" not in r.stderr
    assert "outbox.sqlite3 is corrupt" in err[0] and "mv " in err[0]


def test_metrics_show_the_degraded_outbox():
    m = ServiceMetrics(use_prometheus=False)
    m.frame_done({"total": 0.01}, 0)
    m.outbox_state({"degraded": True, "reason": "database or disk is full", "in_memory": 2, "not_durable": 2})
    ok, info = m.health(15.0)
    assert ok and info["status"] == "degraded" and info["alerts_in_memory"] == 2
    text = m.render().decode()
    assert "edgemask_outbox_degraded 1" in text and "edgemask_alerts_not_durable_total 2" in text
    m.outbox_state({"degraded": False, "in_memory": 0, "not_durable": 3})
    assert m.health(15.0)[1]["status"] == "ok" and "edgemask_alerts_not_durable_total 3" in m.render().decode()

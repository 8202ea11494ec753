"""The on-disk alert outbox: nothing is forgotten until a sink has taken it.

Storage choice: SQLite in WAL mode, ``synchronous=FULL``, rather than one
JSON file per alert. Why:

* one alert goes to several sinks (webhook *and* MQTT), each acknowledging
  on its own schedule. SQLite stores the alert once plus one ``pending`` row
  per sink, and an insert of all of them is one atomic, fsynced
  transaction; with files that is N files and N renames, and a crash in
  between leaves a half-fanned-out alert.
* delivery must be in order and survive restarts: an ``INTEGER PRIMARY KEY``
  gives a total order for free; file names would need a crash-safe counter.
* the Prometheus ``outbox_depth`` gauge is a ``COUNT(*)`` on an index, not a
  directory listing of thousands of files on an SD card.
* WAL lets the sink threads read while the run loop writes, and a
  power cut loses at most transactions not yet committed — never a committed
  alert (``synchronous=FULL`` fsyncs the WAL on every commit; alerts are
  rare, debounced per track, so one fsync each is cheap).

Semantics: **at least once, per sink.** :meth:`Outbox.put` returns only
after the alert is durable. A sink's row is deleted (:meth:`Outbox.ack`)
only after the sink confirmed it (webhook: a 2xx answer; MQTT: the
broker's PUBACK). A crash between the sink's confirmation and the delete
re-sends that alert after the restart, so receivers may see an alert twice;
every alert carries a unique ``alert_id`` to deduplicate on. An alert a sink
refuses for good (e.g. HTTP 400) moves to the ``dead`` table, so one bad
alert cannot block the queue, and stays on disk for inspection.

A full disk (or an I/O error) under the state folder does not stop the
service. The outbox turns **degraded**: it logs one line, keeps alerts it
cannot store in memory (in order, still delivered by the sinks), counts
them (:attr:`Outbox.not_durable`), and tries again every ``retry_s``
seconds (and on every new alert). Acks it cannot write are remembered, so
a delivered alert is not sent twice. Once a write succeeds, the alerts held
in memory are written to disk (those every sink already took are not) and
it logs one more line. Only alerts still in memory when the process ends
are lost; :meth:`Outbox.close` counts and names them (:attr:`Outbox.lost`).
A corrupt database is refused at start-up with how to recover.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

log = logging.getLogger("edgemask.service.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    created  REAL NOT NULL,
    payload  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    seq        INTEGER NOT NULL REFERENCES alerts(seq),
    sink       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (sink, seq)
);
CREATE TABLE IF NOT EXISTS dead (
    seq      INTEGER NOT NULL,
    sink     TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    payload  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    died     REAL NOT NULL,
    PRIMARY KEY (sink, seq)
);
CREATE TABLE IF NOT EXISTS probe (k INTEGER PRIMARY KEY, t REAL NOT NULL);
"""

#: What SQLite raises when the file system fails it (full, read-only, I/O error, corrupt page).
_STORAGE_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)
_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class OutboxItem:
    """One alert waiting for one sink (``seq`` < 0: held in memory, not yet durable)."""

    seq: int
    alert_id: str
    payload: dict[str, Any]
    attempts: int


@dataclass
class _MemAlert:
    """An alert the disk could not take: kept here until it can, or until every sink has it."""

    alert_id: str
    created: float
    payload: str
    pending: dict[str, int] = field(default_factory=dict)  # sink -> attempts
    dead: dict[str, str] = field(default_factory=dict)  # sink -> reason (refused for good)


def _is_corrupt(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    )


class Outbox:
    """SQLite-backed outbox shared by the run loop (writer) and the sink threads.

    Args:
        path: database file (created with its folder).
        sinks: names of the sinks every new alert is queued for.
        retry_s: while degraded, how often the disk is tried again.
        on_state: called with :meth:`status` whenever the degraded state or
            the count of alerts held in memory changes (metrics hook).

    Raises:
        ConfigError: the file cannot be created, is not an outbox database,
            or is corrupt (the message says how to recover). Files and
            folders this call created are removed again.
    """

    def __init__(
        self,
        path: str | Path,
        sinks: Iterable[str],
        retry_s: float = 2.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.path = Path(path)
        self.sinks = tuple(sinks)
        self.retry_s = float(retry_s)
        self.on_state = on_state
        self._lock = threading.Lock()
        self._mem: dict[int, _MemAlert] = {}  # negative seq -> alert, oldest first
        self._next_mem = -1
        self._moved: dict[int, int] = {}  # memory seq -> disk seq, once written
        self._done: dict[tuple[int, str], str] = {}  # (disk seq, sink) delivered ("") or dead (reason), not yet deleted
        self._retry_at = 0.0
        self.degraded = False
        self.degraded_reason = ""
        self.not_durable = 0  # alerts accepted while the disk could not store them (total)
        self.lost = 0  # alerts still only in memory at close(): lost
        self.pending_at_close: dict[str, int] = {}  # deliveries left on disk by close()
        self._db: Any = None
        self._open()

    def _open(self) -> None:
        created_dirs = []
        parent = self.path.absolute().parent
        while not parent.exists():
            created_dirs.append(parent)
            parent = parent.parent
        existed = {suffix: Path(str(self.path) + suffix).exists() for suffix in ("", *_SIDE_FILES)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, guarded by a lock: simple, and the load is tiny.
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if existed[""]:
                bad = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall() if r[0] != "ok"]
                if bad:
                    detail = " ".join(bad[0].replace("*** in database main ***", "").split())
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
            # A failed start leaves nothing behind: no 0-byte database, no -wal/-shm, no empty folders.
            for suffix, was in existed.items():
                if not was:
                    with contextlib.suppress(OSError):
                        os.unlink(str(self.path) + suffix)
            for d in created_dirs:  # deepest first
                with contextlib.suppress(OSError):
                    d.rmdir()
            p = self.path
            if existed[""] and _is_corrupt(e):
                raise ConfigError(
                    f"the alert outbox {p} is corrupt ({e}); to start with an empty outbox move it aside: "
                    f"mv {p} {p}.corrupt (with any {p.name}-wal/-shm beside it); to get its alerts back: "
                    f"sqlite3 {p}.corrupt .recover | sqlite3 {p.name}.recovered"
                ) from None
            reason = getattr(e, "strerror", None) or str(e)
            raise ConfigError(
                f"cannot open the alert outbox {p}: {reason}; free space under --state-dir "
                "or choose a writable --state-dir"
            ) from None

    # -- degraded mode -------------------------------------------------------
    def _degrade(self, e: BaseException, what: str) -> None:
        """Lock held. A write failed: remember why; one log line per episode."""
        with contextlib.suppress(sqlite3.Error):
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")  # SQLite may have rolled back itself (SQLITE_FULL): guarded
        reason = getattr(e, "strerror", None) or str(e)
        self._retry_at = time.monotonic() + self.retry_s
        if not self.degraded:
            self.degraded, self.degraded_reason = True, reason
            log.error(
                "the alert outbox %s cannot be written (%s while %s): running degraded, new alerts are kept "
                "in memory and delivered, and the disk is tried again every %g s; free space under "
                "--state-dir (a restart now would lose the alerts held in memory)",
                self.path,
                reason,
                what,
                self.retry_s,
            )

    def _recover(self) -> None:
        """Lock held. Write what memory holds (alerts, acks) to disk; leave degraded mode if that works."""
        self._retry_at = time.monotonic() + self.retry_s
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            moved: dict[int, int] = {}
            for mseq, a in self._mem.items():
                if not a.pending and not a.dead:
                    continue
                row = cur.execute("SELECT seq FROM alerts WHERE alert_id=?", (a.alert_id,)).fetchone()
                if row is None:
                    cur.execute(
                        "INSERT INTO alerts(alert_id, created, payload) VALUES (?,?,?)",
                        (a.alert_id, a.created, a.payload),
                    )
                    row = (cur.lastrowid,)
                seq = int(row[0])
                moved[mseq] = seq
                cur.executemany(
                    "INSERT OR IGNORE INTO pending(seq, sink, attempts) VALUES (?,?,?)",
                    [(seq, s, n) for s, n in a.pending.items()],
                )
                cur.executemany(
                    "INSERT OR REPLACE INTO dead(seq, sink, alert_id, payload, reason, died) VALUES (?,?,?,?,?,?)",
                    [(seq, s, a.alert_id, a.payload, r, time.time()) for s, r in a.dead.items()],
                )
                self._gc(cur, seq)
            for (seq, sink), reason in self._done.items():
                if reason:
                    cur.execute(
                        "INSERT OR REPLACE INTO dead(seq, sink, alert_id, payload, reason, died) "
                        "SELECT a.seq, ?, a.alert_id, a.payload, ?, ? FROM alerts a WHERE a.seq=?",
                        (sink, reason, time.time(), seq),
                    )
                cur.execute("DELETE FROM pending WHERE seq=? AND sink=?", (seq, sink))
                self._gc(cur, seq)
            # Nothing to write: prove the disk takes a write before calling the outbox healthy again.
            cur.execute("INSERT OR REPLACE INTO probe(k, t) VALUES (1, ?)", (time.time(),))
            cur.execute("COMMIT")
        except _STORAGE_ERRORS as e:
            self._degrade(e, "retrying")
            return
        n = sum(1 for mseq in self._mem if mseq in moved)
        self._moved.update(moved)
        self._mem.clear()
        self._done.clear()
        self.degraded, self.degraded_reason = False, ""
        log.warning(
            "the alert outbox %s is writable again; %d alert(s) held in memory are now on disk "
            "(%d accepted while it was not writable)",
            self.path,
            n,
            self.not_durable,
        )

    def _maybe_recover(self) -> None:
        if self.degraded and time.monotonic() >= self._retry_at:
            self._recover()

    def status(self) -> dict[str, Any]:
        """``{"degraded", "reason", "in_memory", "not_durable", "lost"}`` for /healthz, metrics and the summary."""
        return {
            "degraded": self.degraded,
            "reason": self.degraded_reason,
            "in_memory": len(self._mem),
            "not_durable": self.not_durable,
            "lost": self.lost,
        }

    def _changed(self, before: tuple) -> None:
        """Lock *not* held: tell the metrics hook when the state moved."""
        if self.on_state is not None and before != (self.degraded, len(self._mem), self.not_durable):
            try:
                self.on_state(self.status())
            except Exception:  # noqa: BLE001 - a metrics hook must not cost an alert
                log.exception("outbox state hook failed")

    def _key(self) -> tuple:
        return (self.degraded, len(self._mem), self.not_durable)

    # -- writer --------------------------------------------------------------
    def put(self, alert: dict[str, Any]) -> int:
        """Store ``alert`` (must carry a unique ``alert_id``) for every sink.

        Durable on return unless the disk fails: then the alert is held in
        memory (a negative sequence number is returned), counted in
        :attr:`not_durable`, delivered all the same, and written to disk as
        soon as the disk takes it. Never raises for a full or failing disk.

        Returns:
            its sequence number. Putting the same ``alert_id`` twice is a no-op.
        """
        payload = json.dumps(alert, sort_keys=True, default=str)
        aid = alert["alert_id"]
        with self._lock:
            before = self._key()
            seq = self._put_locked(aid, payload)
        self._changed(before)
        return seq

    def _put_locked(self, aid: str, payload: str) -> int:
        for mseq, a in self._mem.items():
            if a.alert_id == aid:
                return mseq
        if self._mem or self._done:
            self._recover()  # in order: what memory holds goes to disk before this one
        if not self._mem:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                row = cur.execute("SELECT seq FROM alerts WHERE alert_id=?", (aid,)).fetchone()
                if row is not None:
                    cur.execute("COMMIT")
                    return int(row[0])
                cur.execute(
                    "INSERT INTO alerts(alert_id, created, payload) VALUES (?,?,?)", (aid, time.time(), payload)
                )
                seq = int(cur.lastrowid)
                cur.executemany("INSERT INTO pending(seq, sink) VALUES (?,?)", [(seq, s) for s in self.sinks])
                cur.execute("COMMIT")
                if self.degraded and not self._done:
                    self.degraded, self.degraded_reason = False, ""
                    log.warning("the alert outbox %s is writable again", self.path)
                return seq
            except _STORAGE_ERRORS as e:
                self._degrade(e, "storing an alert")
        seq = self._next_mem
        self._next_mem -= 1
        self._mem[seq] = _MemAlert(aid, time.time(), payload, {s: 0 for s in self.sinks})
        self.not_durable += 1
        return seq

    # -- sink side -----------------------------------------------------------
    def next_for(self, sink: str) -> OutboxItem | None:
        """The oldest alert not yet accepted by ``sink`` (None when it is up to date)."""
        with self._lock:
            before = self._key()
            item = self._next_locked(sink)
        self._changed(before)
        return item

    def _next_locked(self, sink: str) -> OutboxItem | None:
        self._maybe_recover()
        skip = {seq for (seq, s) in self._done if s == sink}
        try:
            rows = self._db.execute(
                "SELECT p.seq, a.alert_id, a.payload, p.attempts FROM pending p JOIN alerts a ON a.seq=p.seq "
                "WHERE p.sink=? ORDER BY p.seq LIMIT ?",
                (sink, len(skip) + 1),
            ).fetchall()
        except _STORAGE_ERRORS as e:
            self._degrade(e, "reading")
            rows = []
        for row in rows:
            if int(row[0]) not in skip:
                return OutboxItem(seq=int(row[0]), alert_id=row[1], payload=json.loads(row[2]), attempts=int(row[3]))
        for mseq, a in self._mem.items():
            if sink in a.pending:
                return OutboxItem(
                    seq=mseq, alert_id=a.alert_id, payload=json.loads(a.payload), attempts=a.pending[sink]
                )
        return None

    def ack(self, seq: int, sink: str) -> None:
        """``sink`` accepted alert ``seq``: forget it for that sink (and entirely once all sinks have it)."""
        self._finish(seq, sink, "")

    def kill(self, seq: int, sink: str, reason: str) -> None:
        """``sink`` refused the alert for good: move it to the ``dead`` table for that sink."""
        self._finish(seq, sink, reason[:500] or "refused")

    def _finish(self, seq: int, sink: str, reason: str) -> None:
        with self._lock:
            before = self._key()
            seq = self._moved.get(seq, seq)
            if seq < 0:
                a = self._mem.get(seq)
                if a is not None:
                    a.pending.pop(sink, None)
                    if reason:
                        a.dead[sink] = reason
                    if not a.pending and not a.dead:
                        del self._mem[seq]  # every sink has it: nothing left to make durable
            else:
                cur = self._db.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    if reason:
                        cur.execute(
                            "INSERT OR REPLACE INTO dead(seq, sink, alert_id, payload, reason, died) "
                            "SELECT a.seq, ?, a.alert_id, a.payload, ?, ? FROM alerts a WHERE a.seq=?",
                            (sink, reason, time.time(), seq),
                        )
                    cur.execute("DELETE FROM pending WHERE seq=? AND sink=?", (seq, sink))
                    self._gc(cur, seq)
                    cur.execute("COMMIT")
                except _STORAGE_ERRORS as e:
                    # Remembered, so the alert is not sent again; written when the disk takes it.
                    self._done[(seq, sink)] = reason
                    self._degrade(e, "recording a delivery")
        self._changed(before)

    def fail(self, seq: int, sink: str, error: str) -> None:
        """Record a failed attempt (the alert stays queued)."""
        with self._lock:
            seq = self._moved.get(seq, seq)
            if seq < 0:
                a = self._mem.get(seq)
                if a is not None and sink in a.pending:
                    a.pending[sink] += 1
                return
            try:
                self._db.execute(
                    "UPDATE pending SET attempts=attempts+1, last_error=? WHERE seq=? AND sink=?",
                    (error[:500], seq, sink),
                )
            except _STORAGE_ERRORS:
                pass  # only a counter; the alert itself is safe

    @staticmethod
    def _gc(cur: sqlite3.Cursor, seq: int) -> None:
        if cur.execute("SELECT 1 FROM pending WHERE seq=? LIMIT 1", (seq,)).fetchone() is None:
            cur.execute("DELETE FROM alerts WHERE seq=?", (seq,))

    # -- inspection ------------------------------------------------------------
    def depth(self, sink: str | None = None) -> int:
        """Pending (alert, sink) deliveries, for one sink or all (those held in memory included)."""
        return sum(n for s, n in self.pending_by_sink().items() if sink is None or s == sink)

    def pending_by_sink(self) -> dict[str, int]:
        """Pending deliveries per sink (those held in memory included)."""
        with self._lock:
            return self._pending_locked()

    def _pending_locked(self) -> dict[str, int]:
        try:
            out = {s: int(n) for s, n in self._db.execute("SELECT sink, COUNT(*) FROM pending GROUP BY sink")}
        except _STORAGE_ERRORS:
            out = {}
        for _seq, s in self._done:
            if s in out:
                out[s] -= 1
        for a in self._mem.values():
            for s in a.pending:
                out[s] = out.get(s, 0) + 1
        return {s: n for s, n in out.items() if n > 0}

    def dead_count(self) -> int:
        with self._lock:
            try:
                n = int(self._db.execute("SELECT COUNT(*) FROM dead").fetchone()[0])
            except _STORAGE_ERRORS:
                n = 0
            return n + sum(len(a.dead) for a in self._mem.values()) + sum(1 for r in self._done.values() if r)

    def close(self) -> None:
        """Write what memory holds if the disk takes it now, checkpoint the WAL and close.

        Alerts that are still only in memory are lost with the process:
        counted in :attr:`lost` and named in one error line.
        """
        with self._lock:
            if self._db is None:
                return
            if self._mem or self._done:
                self._recover()
            left = [a for a in self._mem.values() if a.pending]
            if left:
                self.lost = len(left)
                sinks = sorted({s for a in left for s in a.pending})
                log.error(
                    "%d alert(s) could not be made durable (the disk under %s stayed unwritable) and were not "
                    "delivered to %s before the service stopped; they are lost: %s",
                    len(left),
                    self.path.parent,
                    ", ".join(sinks),
                    ", ".join(a.alert_id for a in left[:20])
                    + (f" and {len(left) - 20} more" if len(left) > 20 else ""),
                )
            mem, self._mem = self._mem, {}
            self.pending_at_close = self._pending_locked()  # what stays on disk for the next run
            self._mem = mem
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # a reader elsewhere, or a full disk; the WAL is durable anyway
            self._db.close()
            self._db = None


__all__ = ["Outbox", "OutboxItem"]

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
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

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
"""


@dataclass(frozen=True)
class OutboxItem:
    """One alert waiting for one sink."""

    seq: int
    alert_id: str
    payload: dict[str, Any]
    attempts: int


class Outbox:
    """SQLite-backed outbox shared by the run loop (writer) and the sink threads.

    Args:
        path: database file (created with its folder).
        sinks: names of the sinks every new alert is queued for.

    Raises:
        ConfigError: the file cannot be created or is not an outbox database.
    """

    def __init__(self, path: str | Path, sinks: Iterable[str]):
        self.path = Path(path)
        self.sinks = tuple(sinks)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, guarded by a lock: simple, and the load is tiny.
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the alert outbox {self.path}: {e}; choose a writable --state-dir") from None

    # -- writer --------------------------------------------------------------
    def put(self, alert: dict[str, Any]) -> int:
        """Store ``alert`` (must carry a unique ``alert_id``) for every sink; durable on return.

        Returns:
            its sequence number. Putting the same ``alert_id`` twice is a no-op.
        """
        payload = json.dumps(alert, sort_keys=True, default=str)
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute("SELECT seq FROM alerts WHERE alert_id=?", (alert["alert_id"],)).fetchone()
                if row is not None:
                    cur.execute("COMMIT")
                    return int(row[0])
                cur.execute("INSERT INTO alerts(alert_id, created, payload) VALUES (?,?,?)",
                            (alert["alert_id"], time.time(), payload))
                seq = int(cur.lastrowid)
                cur.executemany("INSERT INTO pending(seq, sink) VALUES (?,?)", [(seq, s) for s in self.sinks])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return seq

    # -- sink side -----------------------------------------------------------
    def next_for(self, sink: str) -> OutboxItem | None:
        """The oldest alert not yet accepted by ``sink`` (None when it is up to date)."""
        with self._lock:
            row = self._db.execute(
                "SELECT p.seq, a.alert_id, a.payload, p.attempts FROM pending p JOIN alerts a ON a.seq=p.seq "
                "WHERE p.sink=? ORDER BY p.seq LIMIT 1", (sink,)).fetchone()
        if row is None:
            return None
        return OutboxItem(seq=int(row[0]), alert_id=row[1], payload=json.loads(row[2]), attempts=int(row[3]))

    def ack(self, seq: int, sink: str) -> None:
        """``sink`` accepted alert ``seq``: forget it for that sink (and entirely once all sinks have it)."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM pending WHERE seq=? AND sink=?", (seq, sink))
                self._gc(cur, seq)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def fail(self, seq: int, sink: str, error: str) -> None:
        """Record a failed attempt (the alert stays queued)."""
        with self._lock:
            self._db.execute("UPDATE pending SET attempts=attempts+1, last_error=? WHERE seq=? AND sink=?",
                             (error[:500], seq, sink))

    def kill(self, seq: int, sink: str, reason: str) -> None:
        """``sink`` refused the alert for good: move it to the ``dead`` table for that sink."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT OR REPLACE INTO dead(seq, sink, alert_id, payload, reason, died) "
                            "SELECT a.seq, ?, a.alert_id, a.payload, ?, ? FROM alerts a WHERE a.seq=?",
                            (sink, reason[:500], time.time(), seq))
                cur.execute("DELETE FROM pending WHERE seq=? AND sink=?", (seq, sink))
                self._gc(cur, seq)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    @staticmethod
    def _gc(cur: sqlite3.Cursor, seq: int) -> None:
        if cur.execute("SELECT 1 FROM pending WHERE seq=? LIMIT 1", (seq,)).fetchone() is None:
            cur.execute("DELETE FROM alerts WHERE seq=?", (seq,))

    # -- inspection ------------------------------------------------------------
    def depth(self, sink: str | None = None) -> int:
        """Pending (alert, sink) deliveries, for one sink or all."""
        with self._lock:
            if sink is None:
                return int(self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM pending WHERE sink=?", (sink,)).fetchone()[0])

    def pending_by_sink(self) -> dict[str, int]:
        with self._lock:
            return {s: int(n) for s, n in self._db.execute("SELECT sink, COUNT(*) FROM pending GROUP BY sink")}

    def dead_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (clean shutdown)."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # a reader elsewhere; the WAL is durable anyway
            self._db.close()
            self._db = None  # type: ignore[assignment]


__all__ = ["Outbox", "OutboxItem"]

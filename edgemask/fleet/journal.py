"""The controller's append-only journal: one JSON object per line, fsynced as written.

A deploy writes ``plan`` (the package and the waves), then for each box
``start`` and ``done`` (ok or not, and the agent's result), ``halt`` when a
wave's failures pass the threshold, and ``finished``. ``--resume`` replays
it: boxes with an ok ``done`` are never attempted again; a box with
``start`` and no ``done`` (the controller died) is attempted again, which the
agent makes harmless (an install of the committed release does nothing).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgemask.errors import ConfigError


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, event: str, **data: Any) -> None:
        rec = {"t": round(time.time(), 3), "event": event, **data}
        line = json.dumps(rec, sort_keys=True, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> List[Dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:  # a line cut by the controller's death: ignore it
                    break
                raise ConfigError(
                    f"journal {self.path} line {i + 1} is not JSON; it is append-only, so something "
                    "else changed it: start over with another --journal"
                ) from None
        return out


@dataclass
class Replay:
    plan: Optional[Dict[str, Any]] = None
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # host -> its last 'done' record
    started: List[str] = field(default_factory=list)  # started, never done
    halted: Optional[Dict[str, Any]] = None
    finished: bool = False


def replay(journal: Journal) -> Replay:
    r = Replay()
    open_hosts: Dict[str, bool] = {}
    for rec in journal.records():
        ev = rec.get("event")
        if ev == "plan":
            r.plan = rec
        elif ev == "start":
            open_hosts[rec["host"]] = True
        elif ev == "done":
            r.results[rec["host"]] = rec
            open_hosts.pop(rec["host"], None)
        elif ev == "halt":
            r.halted = rec
        elif ev == "resume":
            r.halted = None
        elif ev == "finished":
            r.finished = True
    r.started = [h for h in open_hosts]
    return r


__all__ = ["Journal", "Replay", "replay"]

"""The agent's state file, ``<root>/state.json``, always written atomically.

``current`` is the committed release; ``pending`` is set *before* ``current``
is switched to a new release and cleared when it is committed or rolled back,
so a crash anywhere in between leaves a pending entry that ``boot-check``
rolls back. ``history`` is an append-only record of what happened (bounded).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from edgemask.errors import ConfigError
from edgemask.fleet.layout import Layout
from edgemask.utils.io import atomic_write_text

HISTORY_KEEP = 50


@dataclass
class AgentState:
    current: Optional[str] = None  # committed release id
    current_version: Optional[int] = None
    previous: Optional[str] = None  # the release committed before it (rollback target)
    pending: Optional[Dict[str, Any]] = None  # {"release", "version", "from", "step", "t"}
    last_selftest: Optional[Dict[str, Any]] = None
    last_error: Optional[str] = None
    history: List[Dict[str, Any]] = field(default_factory=list)

    def record(self, event: str, **info: Any) -> None:
        self.history.append({"t": round(time.time(), 3), "event": event, **info})
        del self.history[:-HISTORY_KEEP]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def load_state(layout: Layout) -> AgentState:
    p = layout.state
    if not p.exists():
        return AgentState()
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        known = set(AgentState.__dataclass_fields__)
        return AgentState(**{k: v for k, v in d.items() if k in known})
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{p} is damaged ({e.__class__.__name__}); it is written atomically, so something else "
            "changed it: restore it or remove it and reinstall"
        ) from None


def save_state(layout: Layout, state: AgentState) -> None:
    atomic_write_text(layout.state, json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")


__all__ = ["AgentState", "load_state", "save_state"]

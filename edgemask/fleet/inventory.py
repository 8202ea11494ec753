"""The fleet inventory (``devices/fleet.toml``): which boxes exist and how to reach them.

::

    [defaults]                       # every key may be set per box too
    user = "edgemask"
    ssh_port = 22
    install_dir = "/opt/edgemask"    # the agent's --root on the box
    edgemask = "edgemask"            # the agent's command on the box (e.g. /opt/edgemask/venv/bin/edgemask)
    known_hosts = "~/.ssh/known_hosts"   # host keys are checked against this file, never accepted blindly
    identity = "~/.ssh/id_ed25519"   # client key (default: ssh-agent / the usual files)

    [rollout]
    canary = 1                       # boxes in the first wave
    waves = [10, 50, 100]            # then cumulative percentages of the fleet
    max_fail_percent = 10            # halt when failures / boxes attempted exceeds this
    concurrency = 8                  # boxes worked on at once
    deadline_s = 900                 # per box; silence past it is a failure

    [[box]]
    name = "entrance-nano"
    host = "192.0.2.10"
    device = "jetson-nano"
    host_key = "SHA256:..."          # optional pin, checked on top of known_hosts

Values are only ever used as data (argv elements quoted with shlex.quote,
SFTP paths, connect() arguments); nothing is pasted into a shell string.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional

from edgemask.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_BOX_KEYS = {
    "name",
    "host",
    "user",
    "ssh_port",
    "install_dir",
    "edgemask",
    "known_hosts",
    "identity",
    "device",
    "camera",
    "host_key",
    "deadline_s",
}
_ROLLOUT_KEYS = {"canary", "waves", "max_fail_percent", "concurrency", "deadline_s"}


@dataclass(frozen=True)
class Box:
    name: str
    host: str
    user: str = "edgemask"
    ssh_port: int = 22
    install_dir: str = "/opt/edgemask"
    edgemask: str = "edgemask"
    known_hosts: str = "~/.ssh/known_hosts"
    identity: Optional[str] = None
    device: Optional[str] = None
    camera: Optional[str] = None
    host_key: Optional[str] = None
    deadline_s: Optional[float] = None


@dataclass(frozen=True)
class Rollout:
    canary: int = 1
    waves: List[float] = field(default_factory=lambda: [10.0, 50.0, 100.0])
    max_fail_percent: float = 10.0
    concurrency: int = 8
    deadline_s: float = 900.0


@dataclass(frozen=True)
class Inventory:
    path: Path
    boxes: List[Box]
    rollout: Rollout

    def box(self, name: str) -> Box:
        for b in self.boxes:
            if b.name == name:
                return b
        raise ConfigError(f"{self.path} has no box {name!r}; its boxes: {', '.join(b.name for b in self.boxes)}")


def _toml(text: str) -> Dict[str, Any]:
    from edgemask.utils.toml_compat import tomllib

    return tomllib.loads(text)


def _bad(path: Path, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {msg}")


def _check_box(path: Path, i: int, d: Dict[str, Any]) -> Box:
    where = f"box #{i + 1}" + (f" ({d['name']})" if isinstance(d.get("name"), str) else "")
    unknown = sorted(set(d) - _BOX_KEYS)
    if unknown:
        raise _bad(path, where, f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_BOX_KEYS))}")
    for k in ("name", "host"):
        if not isinstance(d.get(k), str) or not d[k].strip():
            raise _bad(path, where, f"'{k}' is missing or not a string")
    if not _NAME.match(d["name"]):
        raise _bad(path, where, f"name {d['name']!r} must be letters, digits, '.', '_', '-' (up to 63)")
    for k in ("user", "install_dir", "edgemask", "known_hosts", "identity", "device", "camera", "host_key"):
        if k in d and (not isinstance(d[k], str) or "\x00" in d[k] or "\n" in d[k]):
            raise _bad(path, where, f"'{k}' must be a one-line string")
    port = d.get("ssh_port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise _bad(path, where, f"ssh_port {port!r} must be an integer 1..65535")
    inst = d.get("install_dir", "/opt/edgemask")
    if not PurePosixPath(inst).is_absolute() or ".." in PurePosixPath(inst).parts:
        raise _bad(path, where, f"install_dir {inst!r} must be an absolute path without '..'")
    if d.get("host", "").startswith("-") or d.get("user", "").startswith("-"):
        raise _bad(path, where, "host and user must not start with '-'")
    if "deadline_s" in d and (not isinstance(d["deadline_s"], (int, float)) or d["deadline_s"] <= 0):
        raise _bad(path, where, "deadline_s must be a number > 0")
    return Box(**d)


def load_inventory(path: str | os.PathLike) -> Inventory:
    """Read and check an inventory; a ConfigError names the file, the box and the key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"inventory {p} not found; copy devices/fleet.example.toml to {p} and edit it")
    try:
        d = _toml(p.read_text(encoding="utf-8"))
    except Exception as e:  # TOMLDecodeError, UnicodeDecodeError
        raise ConfigError(f"inventory {p} is not valid TOML ({e}); fix it (see devices/fleet.example.toml)") from None
    unknown = sorted(set(d) - {"defaults", "rollout", "box"})
    if unknown:
        raise ConfigError(f"{p}: unknown table(s) {', '.join(unknown)}; expected [defaults], [rollout], [[box]]")
    defaults = d.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{p}: [defaults] must be a table")
    bad_defaults = sorted(set(defaults) - (_BOX_KEYS - {"name", "host"}))
    if bad_defaults:
        raise ConfigError(f"{p}: [defaults] has unknown key(s) {', '.join(bad_defaults)}")
    raw_boxes = d.get("box", [])
    if not isinstance(raw_boxes, list) or not raw_boxes:
        raise ConfigError(f"{p}: no [[box]] entries; add one per camera box")
    boxes: List[Box] = []
    for i, b in enumerate(raw_boxes):
        if not isinstance(b, dict):
            raise ConfigError(f"{p}: box #{i + 1} must be a [[box]] table")
        boxes.append(_check_box(p, i, {**defaults, **b}))
    names = [b.name for b in boxes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{p}: box name(s) {', '.join(dup)} appear more than once; names must be unique")
    r = d.get("rollout", {})
    if not isinstance(r, dict) or set(r) - _ROLLOUT_KEYS:
        raise ConfigError(f"{p}: [rollout] keys are {', '.join(sorted(_ROLLOUT_KEYS))}")
    try:
        rollout = Rollout(**r)
        check_rollout(rollout)
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{p}: [rollout]: {e}") from None
    return Inventory(p, boxes, rollout)


def check_rollout(r: Rollout) -> Rollout:
    if not isinstance(r.canary, int) or r.canary < 0:
        raise ConfigError(f"canary {r.canary!r} must be an integer >= 0")
    if not isinstance(r.waves, list) or not all(isinstance(w, (int, float)) and 0 < w <= 100 for w in r.waves):
        raise ConfigError(f"waves {r.waves!r} must be percentages in (0, 100], e.g. [10, 50, 100]")
    if list(r.waves) != sorted(r.waves):
        raise ConfigError(f"waves {r.waves!r} must go up (they are cumulative)")
    if not 0 <= float(r.max_fail_percent) <= 100:
        raise ConfigError(f"max_fail_percent {r.max_fail_percent!r} must be in 0..100")
    if not isinstance(r.concurrency, int) or r.concurrency < 1:
        raise ConfigError(f"concurrency {r.concurrency!r} must be an integer >= 1")
    if float(r.deadline_s) <= 0:
        raise ConfigError(f"deadline_s {r.deadline_s!r} must be > 0")
    return r


__all__ = ["Box", "Inventory", "Rollout", "check_rollout", "load_inventory"]

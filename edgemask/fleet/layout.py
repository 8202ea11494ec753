"""The folders of one install root on a box.

::

    <root>/
      agent.toml            the agent's settings (device, backend, restart command, health URL)
      trusted/*.pub         keys whose bundles this box accepts
      incoming/<sha>.part   an upload in progress, named by the package's SHA-256
      incoming/<sha>.embundle  a complete upload (hash checked)
      releases/<version>-<manifest sha[:12]>/   one unpacked, verified bundle each
      current -> releases/<id>   what the service runs (one symlink, switched atomically)
      state.json            committed / previous / pending release, last self-test
      selftest/<id>.json    self-test results of each release
      .lock                 one agent at a time
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgemask.errors import ConfigError


def release_id(version: int, manifest_sha256: str) -> str:
    """``<version>-<first 12 hex digits of the manifest's SHA-256>``."""
    return f"{int(version)}-{manifest_sha256[:12]}"


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, root: "str | os.PathLike[str]") -> "Layout":
        r = Path(root).expanduser()
        if not r.is_absolute():
            r = Path.cwd() / r
        return cls(r)

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def selftests(self) -> Path:
        return self.root / "selftest"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def release(self, rid: str) -> Path:
        return self.releases / rid

    def partial(self, sha256: str) -> Path:
        return self.incoming / f"{check_sha256(sha256)}.part"

    def package(self, sha256: str) -> Path:
        return self.incoming / f"{check_sha256(sha256)}.embundle"

    def current_release(self) -> Optional[str]:
        """The release id ``current`` points at, or None (no symlink / dangling)."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        name = Path(target).name
        return name if (self.releases / name).is_dir() else None

    def ensure(self) -> None:
        for d in (self.root, self.incoming, self.releases, self.selftests):
            d.mkdir(parents=True, exist_ok=True)


def check_sha256(sha256: str) -> str:
    s = str(sha256).lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ConfigError(f"{sha256!r} is not a SHA-256 (64 hex digits); pass the package's hash (sha256sum FILE)")
    return s


__all__ = ["Layout", "check_sha256", "release_id"]

"""``<root>/agent.toml``: what the box is and how its service is restarted and checked.

Example::

    device = "jetson-orin-nano"      # a profile of 'edgemask devices list'
    backend = "onnxrt"               # the runner the service uses (tensorrt on a Jetson)
    precision = "fp16"
    restart = ["systemctl", "restart", "edgemask"]   # argv, run without a shell
    health_url = "http://127.0.0.1:9108/healthz"
    health_timeout_s = 60
    keep = 3                         # releases kept on disk
    min_free_mib = 64                # beyond the bundle's own size

Every key is optional; the defaults are the dataclass's below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from edgemask.errors import ConfigError
from edgemask.fleet.layout import Layout


@dataclass
class AgentConfig:
    device: str = "x86-cpu"
    backend: str = "onnxrt"
    precision: str = "fp32"
    restart: List[str] = field(default_factory=list)  # empty: no service to restart (health not checked)
    restart_timeout_s: float = 60.0
    health_url: str = ""  # empty: no health check
    health_timeout_s: float = 60.0
    health_poll_s: float = 0.5
    keep: int = 3
    min_free_mib: int = 64
    allow_downgrade: bool = False

    def validate(self, where: str = "agent.toml") -> "AgentConfig":
        if not isinstance(self.restart, list) or not all(isinstance(a, str) for a in self.restart):
            raise ConfigError(
                f"{where}: restart must be a list of strings (argv, no shell), e.g. "
                'restart = ["systemctl", "restart", "edgemask"]'
            )
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ConfigError(f"{where}: precision {self.precision!r} is not fp32, fp16 or int8")
        if not isinstance(self.keep, int) or self.keep < 2:
            raise ConfigError(f"{where}: keep = {self.keep!r}; keep at least 2 releases (the new and the old)")
        if self.health_url and not self.health_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: health_url {self.health_url!r} must be an http:// URL")
        for k in ("restart_timeout_s", "health_timeout_s", "health_poll_s"):
            if float(getattr(self, k)) <= 0:
                raise ConfigError(f"{where}: {k} must be > 0")
        return self


def _toml(text: str) -> Dict[str, Any]:
    from edgemask.utils.toml_compat import tomllib

    return tomllib.loads(text)


def load_agent_config(layout: Layout, overrides: Optional[Dict[str, Any]] = None) -> AgentConfig:
    """``agent.toml`` (if present) with ``overrides`` (non-None values) on top."""
    d: Dict[str, Any] = {}
    p = layout.config
    if p.is_file():
        try:
            d = _toml(p.read_text(encoding="utf-8"))
        except Exception as e:  # tomllib.TOMLDecodeError or UnicodeDecodeError
            raise ConfigError(f"{p} is not valid TOML ({e}); fix it (see 'edgemask device init --help')") from None
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for k, v in (overrides or {}).items():
        if v is not None:
            d[k] = v
    try:
        return AgentConfig(**d).validate(str(p))
    except TypeError as e:
        raise ConfigError(f"{p}: {e}") from None


def config_toml(cfg: AgentConfig) -> str:
    """``cfg`` as the text of an agent.toml."""
    import json

    lines = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, bool):
            lines.append(f"{f.name} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{f.name} = {v!r}")
        else:  # JSON strings and lists of strings are valid TOML
            lines.append(f"{f.name} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


__all__ = ["AgentConfig", "config_toml", "load_agent_config"]

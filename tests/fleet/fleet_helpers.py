"""Helpers of the fleet tests: the installed console script, free ports, install roots with a service."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "health_service.py"


def edgemask_exe() -> str:
    """The installed console script of this environment (what a box runs)."""
    exe = Path(sys.executable).parent / "edgemask"
    assert exe.is_file(), f"{exe} missing: install edgemask into this environment (pip install -e .)"
    return str(exe)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_box(path: Path, trusted: Path, *, port: int | None = None, service: bool = True, keep: int = 3) -> dict:
    """An install root with agent.toml, trusted keys and (optionally) a restartable service on ``port``."""
    from edgemask.fleet.agent_config import AgentConfig, config_toml

    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trusted, path / "trusted", dirs_exist_ok=True)
    port = port or free_port()
    cfg = AgentConfig(device="x86-cpu", backend="onnxrt", precision="fp32", keep=keep, health_timeout_s=4.0,
                      health_poll_s=0.1, restart_timeout_s=20.0,
                      restart=[sys.executable, str(SERVICE), "restart", str(path), str(port)] if service else [],
                      health_url=f"http://127.0.0.1:{port}/healthz" if service else "")
    (path / "agent.toml").write_text(config_toml(cfg))
    return {"root": path, "port": port}


def stop_service(root: Path) -> None:
    subprocess.run([sys.executable, str(SERVICE), "stop", str(root)], check=False)



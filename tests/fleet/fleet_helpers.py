"""Helpers of the fleet tests: the installed console script, free ports, install roots with a service."""

from __future__ import annotations

import json
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
    cfg = AgentConfig(
        device="x86-cpu",
        backend="onnxrt",
        precision="fp32",
        keep=keep,
        health_timeout_s=4.0,
        health_poll_s=0.1,
        restart_timeout_s=20.0,
        restart=[sys.executable, str(SERVICE), "restart", str(path), str(port)] if service else [],
        health_url=f"http://127.0.0.1:{port}/healthz" if service else "",
    )
    (path / "agent.toml").write_text(config_toml(cfg))
    return {"root": path, "port": port}


def stop_service(root: Path) -> None:
    subprocess.run([sys.executable, str(SERVICE), "stop", str(root)], check=False)


def write_inventory(path: Path, boxes, rollout=None) -> Path:
    """boxes: [(name, sshd, root, {overrides})]."""
    lines = ["[defaults]", f'edgemask = "{edgemask_exe()}"', ""]
    r = {
        "canary": 1,
        "waves": [50, 100],
        "max_fail_percent": 50,
        "concurrency": 4,
        "deadline_s": 120,
        **(rollout or {}),
    }
    lines += ["[rollout]"] + [f"{k} = {json.dumps(v)}" for k, v in r.items()] + [""]
    for name, s, root, extra in boxes:
        kv = {
            "name": name,
            "host": "127.0.0.1",
            "ssh_port": s.port,
            "user": s.user,
            "install_dir": str(root),
            "known_hosts": str(s.known_hosts),
            "identity": str(s.identity),
            **extra,
        }
        lines += ["[[box]]"] + [f"{k} = {json.dumps(v)}" for k, v in kv.items()] + [""]
    path.write_text("\n".join(lines))
    return path

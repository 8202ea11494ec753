"""export-ansible: the playbook drives the same agent; run by ansible-core against the loopback sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_helpers import make_box, stop_service, write_inventory
from sshd import Sshd, sshd_available

from edgemask.fleet.ansible import export_ansible
from edgemask.fleet.inventory import load_inventory
from edgemask.fleet.layout import Layout
from edgemask.fleet.state import load_state

PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def test_export_writes_waves_as_serial_and_argv_commands(tmp_path, fleet):
    boxes = [
        (f"b{i}", type("S", (), {"port": 22, "user": "u", "known_hosts": "/k", "identity": "/i"})(), f"/opt/r{i}", {})
        for i in range(10)
    ]
    inv = load_inventory(
        write_inventory(tmp_path / "fleet.toml", boxes, {"canary": 1, "waves": [10, 50, 100], "max_fail_percent": 10})
    )
    a, b = export_ansible(inv, fleet["packages"][1], tmp_path / "ans")
    play = json.loads(b.read_text())[0]
    assert play["serial"] == [1, 4, 5] and play["max_fail_percentage"] == 10.0
    cmd = next(t for t in play["tasks"] if "ansible.builtin.command" in t)["ansible.builtin.command"]
    assert "argv" in cmd and cmd["argv"][1:3] == ["device", "install"]
    hosts = json.loads(a.read_text())["all"]["children"]["edgemask_boxes"]["hosts"]
    assert hosts["b3"]["edgemask_root"] == "/opt/r3"
    assert "StrictHostKeyChecking=yes" in hosts["b3"]["ansible_ssh_common_args"]


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(not sshd_available() or not PLAYBOOK.is_file(), reason="needs sshd and ansible-core")
def test_ansible_playbook_installs_on_boxes_behind_sshd(tmp_path, fleet):
    s = Sshd(tmp_path / "sshd")
    made = [make_box(tmp_path / f"box{i}", fleet["trusted"]) for i in range(2)]
    try:
        inv = load_inventory(
            write_inventory(tmp_path / "fleet.toml", [(f"box{i}", s, m["root"], {}) for i, m in enumerate(made)])
        )
        a, b = export_ansible(inv, fleet["packages"][1], tmp_path / "ans")
        env = {
            **os.environ,
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote-tmp"),
        }
        r = subprocess.run([str(PLAYBOOK), "-i", str(a), str(b)], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-2000:])
        for m in made:
            st = load_state(Layout.at(m["root"]))
            assert st.current_version == 1 and st.last_selftest["ok"]
    finally:
        for m in made:
            stop_service(m["root"])
        s.stop()

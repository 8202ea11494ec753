"""``edgemask fleet export-ansible``: the same rollout as an Ansible inventory + playbook.

For fleets beyond one controller process (thousands of boxes, AWX/Tower,
bastion hosts, an inventory from a CMDB), Ansible becomes the engine and the
device agent stays the same: the playbook uploads the package as
``incoming/<sha>.part`` and runs ``edgemask device install --root DIR --sha256
SHA --json`` as an argv list (the ``command`` module's ``argv``: no shell).

The waves become ``serial`` (the batch sizes of the built-in plan, so both
roll out the same boxes in the same order) and the threshold
``max_fail_percentage``, which Ansible applies per batch rather than over all
boxes attempted; a failed canary (a batch of one) passes any threshold
below 100 % and stops the play. Host keys: the inventory
sets ``StrictHostKeyChecking=yes`` with the box's known_hosts file.

Both files are JSON, which is valid YAML, so no value from the inventory is
ever interpreted as YAML syntax.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

from edgemask.fleet.inventory import Inventory
from edgemask.fleet.waves import plan_waves
from edgemask.utils.io import atomic_write_text

GROUP = "edgemask_boxes"


def ansible_inventory(inv: Inventory) -> Dict[str, Any]:
    hosts: Dict[str, Any] = {}
    for b in inv.boxes:
        h: Dict[str, Any] = {
            "ansible_host": b.host,
            "ansible_port": b.ssh_port,
            "ansible_user": b.user,
            "edgemask_root": b.install_dir,
            "edgemask_agent": b.edgemask,
            # host keys are checked, never added: the same known_hosts the built-in controller uses
            "ansible_ssh_common_args": " ".join(
                [
                    "-o",
                    "StrictHostKeyChecking=yes",
                    "-o",
                    "UserKnownHostsFile=" + os.path.expanduser(b.known_hosts).replace(" ", "\\ "),
                ]
            ),
        }
        if b.identity:
            h["ansible_ssh_private_key_file"] = os.path.expanduser(b.identity)
        if b.device:
            h["edgemask_device"] = b.device
        hosts[b.name] = h
    return {"all": {"children": {GROUP: {"hosts": hosts}}}}


def ansible_playbook(inv: Inventory, package: str, package_sha256: str) -> List[Dict[str, Any]]:
    waves = plan_waves([b.name for b in inv.boxes], inv.rollout)
    r = inv.rollout
    part = "{{ edgemask_root }}/incoming/" + package_sha256 + ".part"
    return [
        {
            "name": "edgemask: install a signed bundle on every box, canary first, then in waves",
            "hosts": GROUP,
            "gather_facts": False,
            "serial": [len(w) for w in waves],
            "max_fail_percentage": float(r.max_fail_percent),
            "vars": {"edgemask_package": str(Path(package).resolve()), "edgemask_package_sha256": package_sha256},
            "tasks": [
                {
                    "name": "incoming folder",
                    "ansible.builtin.file": {
                        "path": "{{ edgemask_root }}/incoming",
                        "state": "directory",
                        "mode": "0755",
                    },
                },
                {
                    "name": "upload the package, named by its SHA-256",
                    "ansible.builtin.copy": {"src": "{{ edgemask_package }}", "dest": part, "mode": "0644"},
                },
                {
                    "name": "verify, self-test, switch, health-check, commit (or roll back) on the box",
                    "ansible.builtin.command": {
                        "argv": [
                            "{{ edgemask_agent }}",
                            "device",
                            "install",
                            "--root",
                            "{{ edgemask_root }}",
                            "--sha256",
                            "{{ edgemask_package_sha256 }}",
                            "--json",
                        ]
                    },
                    "register": "edgemask_install",
                    "changed_when": "(edgemask_install.stdout_lines | last | from_json).action == 'installed'",
                    "timeout": int(r.deadline_s),
                },
                {
                    "name": "result",
                    "ansible.builtin.debug": {
                        "msg": "{{ (edgemask_install.stdout_lines | last | from_json) | dict2items "
                        "| selectattr('key', 'in', ['action', 'release', 'version']) | items2dict }}"
                    },
                },
            ],
        }
    ]


def export_ansible(inv: Inventory, package: str | os.PathLike, out_dir: str | os.PathLike) -> List[Path]:
    """Write ``inventory.yml`` and ``deploy.yml`` into ``out_dir``; returns their paths."""
    from edgemask.bundle.pack import read_packed_manifest
    from edgemask.errors import ConfigError
    from edgemask.utils.io import sha256_file

    pkg = Path(package)
    if not pkg.is_file():
        raise ConfigError(f"package {pkg} not found; make it with 'edgemask bundle pack BUNDLE --out {pkg}'")
    read_packed_manifest(pkg)  # refuse what is not a package before writing anything
    sha = sha256_file(pkg)
    out = Path(out_dir)
    play = ansible_playbook(inv, str(pkg), sha)
    a = atomic_write_text(out / "inventory.yml", json.dumps(ansible_inventory(inv), indent=2) + "\n")
    b = atomic_write_text(out / "deploy.yml", json.dumps(play, indent=2) + "\n")
    return [a, b]


__all__ = ["ansible_inventory", "ansible_playbook", "export_ansible"]

"""The controller against real OpenSSH servers on loopback, several install roots behind each."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from fleet_helpers import edgemask_exe, make_box, stop_service, write_inventory
from sshd import Sshd, sshd_available

pytest.importorskip("asyncssh")
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not sshd_available(), reason="needs OpenSSH's sshd (apt-get install openssh-server)"),
]

from edgemask.errors import ConfigError  # noqa: E402
from edgemask.fleet.controller import CUT_ENV, deploy, fleet_rollback, fleet_status  # noqa: E402
from edgemask.fleet.inventory import load_inventory  # noqa: E402
from edgemask.fleet.layout import Layout  # noqa: E402
from edgemask.fleet.state import load_state  # noqa: E402


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    a = Sshd(d / "a")
    b = Sshd(d / "b", client_key=a.identity)
    yield [a, b]
    a.stop()
    b.stop()


@pytest.fixture()
def boxes(tmp_path, fleet, sites):
    made = []

    def make(n, prefix="box"):
        out = []
        for i in range(n):
            b = make_box(tmp_path / f"{prefix}{i}", fleet["trusted"])
            made.append(b)
            out.append((f"{prefix}{i}", sites[i % len(sites)], b["root"], {}))
        return out

    yield make
    for b in made:
        stop_service(b["root"])


def _committed(root) -> str | None:
    return load_state(Layout.at(root)).current


@pytest.mark.slow
def test_deploy_to_boxes_behind_two_sshd_then_status_and_rollback(tmp_path, fleet, boxes):
    bx = boxes(3)
    inv = load_inventory(write_inventory(tmp_path / "fleet.toml", bx))
    rep = deploy(inv, fleet["packages"][1], journal=str(tmp_path / "j1.jsonl"))
    assert rep.ok and sorted(rep.results) == ["box0", "box1", "box2"], rep.to_dict()
    assert rep.waves == [["box0"], ["box1"], ["box2"]]
    rep2 = deploy(inv, fleet["packages"][2], journal=str(tmp_path / "j2.jsonl"))
    assert rep2.ok and all(r["version"] == 2 for r in rep2.results.values())
    st = fleet_status(inv)
    assert all(s["version"] == 2 and s["last_selftest"]["ok"] for s in st.values()), st
    assert all(s["last_selftest"]["probe_flip_rate"] is not None for s in st.values())
    rb = fleet_rollback(inv, hosts=["box1"])
    assert rb["box1"]["ok"] and load_state(Layout.at(bx[1][2])).current_version == 1
    # the same journal again without --resume is refused; with --resume nothing is done twice
    with pytest.raises(ConfigError, match="--resume"):
        deploy(inv, fleet["packages"][2], journal=str(tmp_path / "j2.jsonl"))
    rep3 = deploy(inv, fleet["packages"][2], journal=str(tmp_path / "j2.jsonl"), resume=True)
    assert sorted(rep3.skipped) == ["box0", "box1", "box2"] and rep3.ok


def test_cut_transfer_is_resumed_from_where_it_stopped(tmp_path, fleet, boxes, monkeypatch):
    bx = boxes(1)
    inv = load_inventory(write_inventory(tmp_path / "fleet.toml", bx, {"canary": 0}))
    pkg = fleet["packages"][1]
    cut = pkg.stat().st_size // 3
    monkeypatch.setenv(CUT_ENV, str(cut))
    rep = deploy(inv, pkg, journal=str(tmp_path / "j.jsonl"))
    assert not rep.ok and "cut" in rep.results["box0"]["error"]
    parts = list((bx[0][2] / "incoming").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == cut
    monkeypatch.delenv(CUT_ENV)
    rep = deploy(inv, pkg, journal=str(tmp_path / "j.jsonl"), resume=True, retry_failed=True)
    r = rep.results["box0"]
    assert rep.ok and r["resumed_from"] == cut and r["uploaded_bytes"] == pkg.stat().st_size - cut


def test_per_host_errors_are_clear_and_do_not_stop_the_others(tmp_path, fleet, boxes, sites):
    good = boxes(2)
    wrong_kh = tmp_path / "wrong_known_hosts"
    other = sites[1].known_hosts.read_text().split()
    wrong_kh.write_text(f"[127.0.0.1]:{sites[0].port} {other[1]} {other[2]}\n")  # site b's key for site a
    (tmp_path / "empty-trust").mkdir()
    untrusting = make_box(tmp_path / "untrusting", tmp_path / "empty-trust")
    bad = [
        ("unknown", sites[0], tmp_path / "u", {"host": "no-such-box.invalid"}),
        ("unreachable", sites[0], tmp_path / "r", {"ssh_port": 1}),
        ("wrongkey", sites[0], tmp_path / "w", {"known_hosts": str(wrong_kh)}),
        ("notrust", sites[0], untrusting["root"], {}),
        ("pinned", sites[0], tmp_path / "p", {"host_key": "SHA256:notthisone"}),
    ]
    inv = load_inventory(
        write_inventory(tmp_path / "fleet.toml", bad + good, {"canary": 0, "waves": [100], "max_fail_percent": 100})
    )
    try:
        rep = deploy(inv, fleet["packages"][1], journal=str(tmp_path / "j.jsonl"))
    finally:
        stop_service(untrusting["root"])
    e = {h: r.get("error", "") for h, r in rep.results.items()}
    assert "unknown host" in e["unknown"]
    assert "unreachable" in e["unreachable"]
    assert "host key" in e["wrongkey"] and "not verified" in e["wrongkey"]
    assert "trusted" in e["notrust"]
    assert "pins" in e["pinned"]
    assert rep.results["box0"]["ok"] and rep.results["box1"]["ok"] and not rep.ok
    assert not (tmp_path / "w").exists()  # nothing reached the box whose key did not match


def test_waves_halt_past_the_threshold(tmp_path, fleet, boxes):
    bx = boxes(5)
    for _, _, root, _ in bx[1:3]:
        (root / "service.mode").write_text("fail-restart")
    inv = load_inventory(
        write_inventory(tmp_path / "fleet.toml", bx, {"canary": 1, "waves": [40, 100], "max_fail_percent": 20})
    )
    rep = deploy(inv, fleet["packages"][1], journal=str(tmp_path / "j.jsonl"))
    assert rep.halted == {"wave": 1, "failed": 1, "attempted": 2, "max_fail_percent": 20, "canary": False}
    assert rep.not_attempted == ["box2", "box3", "box4"]
    assert "rolled back" in rep.results["box1"]["error"]
    assert _committed(bx[2][2]) is None  # never touched


@pytest.mark.slow
def test_resume_after_the_controller_is_killed_does_no_box_twice(tmp_path, fleet, boxes):
    bx = boxes(4)
    inv = write_inventory(tmp_path / "fleet.toml", bx, {"canary": 0, "waves": [100], "concurrency": 1})
    j = tmp_path / "j.jsonl"
    args = [edgemask_exe(), "fleet", "deploy", str(fleet["packages"][1]), "--inventory", str(inv), "--journal", str(j)]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not j.exists() or '"event": "done"' not in j.read_text()):
        time.sleep(0.1)
    p.kill()
    p.wait()
    first = [json.loads(x)["host"] for x in j.read_text().splitlines() if json.loads(x)["event"] == "done"]
    assert first, "the controller finished no box before it was killed"
    r = subprocess.run(args + ["--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(first) <= set(rep["skipped"])
    for _, _, root, _ in bx:
        commits = [h for h in load_state(Layout.at(root)).history if h["event"] == "committed"]
        assert len(commits) == 1, (root, commits)


def test_malformed_inventory_is_one_line(tmp_path):
    p = tmp_path / "fleet.toml"
    p.write_text('[[box]]\nname = "a"\nhost = "h"\nssh_port = "22"\n')
    r = subprocess.run(
        [edgemask_exe(), "fleet", "deploy", "x.embundle", "--inventory", str(p), "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "ssh_port" in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1

"""The device agent on real install roots: install, self-test, switch, health, rollback, refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from fleet_helpers import edgemask_exe, make_box, stop_service

from edgemask.bundle import verify_bundle
from edgemask.fleet import agent
from edgemask.fleet.agent import STEPS, AgentError
from edgemask.fleet.layout import Layout
from edgemask.fleet.state import load_state


def _on(box) -> str | None:
    return Layout.at(box["root"]).current_release()


def _installed(box, fleet, v: int) -> dict:
    return agent.install(box["root"], package=str(fleet["packages"][v]))


def test_install_then_upgrade_commits_and_records_the_probe(box, fleet):
    r1 = _installed(box, fleet, 1)
    assert r1["action"] == "installed" and r1["steps"] == list(STEPS)
    r2 = _installed(box, fleet, 2)
    assert r2["action"] == "installed" and r2["from"] == r1["release"]
    assert _on(box) == r2["release"]
    st = load_state(Layout.at(box["root"]))
    assert (st.current, st.previous, st.pending, st.current_version) == (r2["release"], r1["release"], None, 2)
    s = r2["selftest"]
    assert s["ok"] and s["golden_max_abs_diff"] < 1e-4 and s["probe_count"] >= 1
    # fp32 ONNX Runtime vs torch fp32: near-boundary probes rarely flip (the margin is ~1e-4 logits)
    assert 0.0 <= s["probe_flip_rate"] <= 0.25
    assert agent.install(box["root"], package=str(fleet["packages"][2]))["action"] == "already_installed"
    health = json.loads(__import__("urllib.request").request.urlopen(f"http://127.0.0.1:{box['port']}/healthz").read())
    assert health["model"]["version"] == 2


@pytest.mark.parametrize("kind", ["unsigned", "wrong_key", "flipped_byte", "truncated", "forged_manifest"])
def test_bad_packages_are_refused_and_the_box_stays(box, fleet, kind):
    r1 = _installed(box, fleet, 1)
    with pytest.raises((AgentError, Exception)) as e:
        agent.install(box["root"], package=str(fleet["bad"][kind]))
    assert "Traceback" not in str(e.value)
    assert _on(box) == r1["release"] and load_state(Layout.at(box["root"])).pending is None
    assert sorted(os.listdir(Layout.at(box["root"]).releases)) == [r1["release"]]


def test_downgrade_is_refused_unless_allowed(box, fleet):
    _installed(box, fleet, 2)
    with pytest.raises(AgentError, match="downgrade"):
        _installed(box, fleet, 1)
    r = agent.install(box["root"], package=str(fleet["packages"][1]), overrides={"allow_downgrade": True})
    assert r["action"] == "installed" and r["version"] == 1


def test_failing_selftest_is_refused_before_switching(box, fleet):
    r1 = _installed(box, fleet, 1)
    with pytest.raises(AgentError, match="self-test") as e:
        agent.install(box["root"], package=str(fleet["selftest_fail"]))
    assert "pending" not in e.value.result["steps"]
    assert _on(box) == r1["release"]


@pytest.mark.parametrize("mode", ["down", "wrong-model", "fail-restart"])
def test_failing_health_or_restart_rolls_back(box, fleet, mode):
    r1 = _installed(box, fleet, 1)
    (box["root"] / "service.mode").write_text(mode)
    with pytest.raises(AgentError, match="rolled back") as e:
        _installed(box, fleet, 2)
    assert e.value.result["action"] == "rolled_back"
    st = load_state(Layout.at(box["root"]))
    assert _on(box) == r1["release"] == st.current and st.pending is None
    (box["root"] / "service.mode").write_text("ok")
    assert _installed(box, fleet, 2)["action"] == "installed"


def test_no_commit_then_boot_check_rolls_back_and_commit_commits(box, fleet):
    r1 = _installed(box, fleet, 1)
    r2 = agent.install(box["root"], package=str(fleet["packages"][2]), commit=False)
    assert r2["action"] == "pending" and _on(box) == r2["release"]
    assert agent.boot_check(box["root"])["action"] == "rolled_back"
    assert _on(box) == r1["release"]
    agent.install(box["root"], package=str(fleet["packages"][2]), commit=False)
    assert agent.commit(box["root"])["action"] == "committed"
    assert agent.boot_check(box["root"])["action"] == "ok" and _on(box) == r2["release"]
    r = agent.rollback(box["root"])
    assert r["to"] == r1["release"] and _on(box) == r1["release"]


def test_keep_n_releases(tmp_path, fleet):
    box = make_box(tmp_path / "k", fleet["trusted"], service=False, keep=2)
    rels = [agent.install(box["root"], package=str(fleet["packages"][v]))["release"] for v in (1, 2, 3)]
    assert sorted(os.listdir(Layout.at(box["root"]).releases)) == sorted(rels[1:])
    assert os.listdir(Layout.at(box["root"]).incoming) == []


def test_resumed_upload_named_by_its_hash(tmp_path, fleet):
    from edgemask.utils.io import sha256_file

    box = make_box(tmp_path / "u", fleet["trusted"], service=False)
    pkg = fleet["packages"][1]
    sha = sha256_file(pkg)
    lay = Layout.at(box["root"])
    lay.ensure()
    data = pkg.read_bytes()
    lay.partial(sha).write_bytes(data[: len(data) // 2])  # the transfer was cut here
    with pytest.raises(Exception, match="incomplete"):
        agent.install(box["root"], sha256=sha)
    with open(lay.partial(sha), "ab") as f:  # resumed from the size already there
        f.write(data[lay.partial(sha).stat().st_size :])
    assert agent.install(box["root"], sha256=sha)["action"] == "installed"


def _run_agent(args, env=None):
    return subprocess.run(
        [edgemask_exe(), "device", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.slow
def test_killed_after_every_step_the_box_is_on_the_old_or_the_new_release(tmp_path, fleet):
    """SIGKILL after each step in turn; after 'reboot' (boot-check) and a re-run the box is consistent."""
    template = make_box(tmp_path / "template", fleet["trusted"], service=False)
    r1 = agent.install(template["root"], package=str(fleet["packages"][1]))["release"]
    pkg2 = str(fleet["packages"][2])
    neither = 0
    for step in STEPS:
        root = tmp_path / f"box-{step}"
        shutil.copytree(template["root"], root, symlinks=True)
        make_box(root, fleet["trusted"])  # with a service on its own port
        try:
            from edgemask.fleet.agent_config import load_agent_config

            subprocess.run(load_agent_config(Layout.at(root)).restart, check=True)
            r = _run_agent(["install", "--root", str(root), "--package", pkg2], {agent.DIE_ENV: step})
            assert r.returncode == -9, (step, r.returncode, r.stderr[-500:])
            lay = Layout.at(root)
            on = lay.current_release()
            ok = on is not None and not verify_bundle(lay.release(on))
            new = sorted(p for p in os.listdir(lay.releases) if not p.startswith(".") and p != r1)
            if not ok or on not in [r1] + new:
                neither += 1
            agent.boot_check(root)  # what the boot-check unit runs at the next start
            st = load_state(lay)
            committed = STEPS.index(step) >= STEPS.index("committed")
            assert st.pending is None
            assert lay.current_release() == st.current
            assert (st.current != r1) == committed, (step, st.current)
            res = agent.install(root, package=pkg2)
            assert res["action"] == ("already_installed" if committed else "installed")
            assert lay.current_release() == res["release"] != r1
        finally:
            stop_service(root)
    assert neither == 0


@pytest.mark.parametrize("kind", ["unsigned", "wrong_key", "flipped_byte", "truncated"])
def test_a_bad_copy_of_the_committed_release_is_refused_not_reported_installed(tmp_path, fleet, kind):
    box = make_box(tmp_path / "b", fleet["trusted"], service=False)
    r2 = _installed(box, fleet, 2)
    with pytest.raises(AgentError):
        agent.install(box["root"], package=str(fleet["bad"][kind]))
    st = load_state(Layout.at(box["root"]))
    assert st.current == r2["release"] == _on(box) and st.history[-1]["event"] == "refused"
    assert _installed(box, fleet, 2)["action"] == "already_installed"


def test_boot_check_unit_runs_before_the_service():
    from edgemask.service.systemd import boot_check_unit_text

    text = boot_check_unit_text("/opt/edge mask", service="edgemask.service", exec_start=["/venv/bin/edgemask"])
    assert "Before=edgemask.service" in text and "Type=oneshot" in text and "RequiredBy=edgemask.service" in text
    assert 'ExecStart=/venv/bin/edgemask device boot-check --root "/opt/edge mask"' in text

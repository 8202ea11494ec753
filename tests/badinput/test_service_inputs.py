"""Bad input to ``edgemask run`` / ``edgemask service install``: config files, URLs, option values.

Every case runs the installed console script in a subprocess, as a user
would, and asserts: exit code 1, exactly one ``error:`` line that names the
fix, no traceback, no secret echoed, and nothing written (no state folder,
no events file; a corrupt outbox is left exactly as it was). The table in
README.md beside this file lists the cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

EXE = Path(sys.executable).with_name("edgemask")
SECRET = "zq/xv9@k"  # a password with '/' and '@': URL parsers cut it apart and used to print the rest


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("clip") / "clip.mp4"
    vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    for i in range(5):
        vw.write(np.full((120, 160, 3), 40 * i, np.uint8))
    vw.release()
    return p


# id: (extra run args, config file text or None, fragment the one line must contain)
RUN_CASES = {
    "config-debounce-not-a-number": ([], '[run]\ndebounce_s = "soon"\n', "debounce_s = 'soon' must be a number"),
    "config-headless-string": ([], '[run]\nheadless = "no"\n', "headless = 'no' must be true or false"),
    "config-int-as-float": ([], "[run]\nvote_window = 2.5\n", "vote_window = 2.5 must be a whole number"),
    "config-unknown-key": ([], "[run]\ndebounse = 3\n", "did you mean debounce?); valid ones: "),
    "config-key-twice": ([], "[run]\ndebounce = 3\ndebounce_s = 4\n", "sets debounce_s twice"),
    "config-not-toml": ([], "this is [not toml\n", "is not valid TOML"),
    "config-unknown-table": ([], "[cameras]\nx = 1\n", "use only the tables run and secrets"),
    "config-run-not-a-table": ([], "run = 5\n", "'run' must be a table"),
    "config-not-utf8": ([], b'[run]\nsource = "\xff\xfe"\n', "is not UTF-8 text"),
    "config-missing": (["--config", "{tmp}/nope.toml"], None, "does not exist; pass an existing TOML file"),
    "config-secret-not-string": ([], "[secrets]\nmqtt_password = 1234\n", "must be a string in quotes"),
    "config-secrets-world-readable": ([], '[secrets]\nmqtt_password = "pw123"\n', "chmod 600"),
    "source-url-password-with-slash": (
        ["--source", f"rtsp://admin:{SECRET}@cam.local/live"],
        None,
        "EDGEMASK_SOURCE_PASSWORD",
    ),
    "mqtt-password-with-slash": (
        ["--mqtt", f"mqtt://edge:{SECRET}@broker:1883/site/a"],
        None,
        "EDGEMASK_MQTT_PASSWORD",
    ),
    "webhook-password-with-slash": (["--webhook", f"https://u:{SECRET}@hooks.local/a"], None, "EDGEMASK_WEBHOOK_TOKEN"),
    "mqtt-wildcard-topic": (["--mqtt", "mqtt://broker.local/site/+/alerts"], None, "contains a wildcard"),
    "webhook-not-http": (["--webhook", "ftp://hooks.local/a"], None, "must be an http:// or https:// URL"),
    "mqtt-qos-3": (["--mqtt", "mqtt://broker.local/a", "--mqtt-qos", "3"], None, "--mqtt-qos must be 0, 1 or 2"),
    "metrics-port-too-big": (["--metrics-port", "70000"], None, "--metrics-port must be 1..65535"),
    "start-timeout-negative": (["--start-timeout", "-1"], None, "--start-timeout must be >= 0"),
    "csi-without-number": (["--source", "csi://front"], None, "write a CSI camera as csi://N"),
    "source-looks-like-camera": (["--source", "3"], None, "use --camera 3"),
    "roi-three-numbers": (["--detector", "none", "--roi", "1,2,3"], None, "is not 'x,y,w,h'"),
}


def _one_line(r: subprocess.CompletedProcess) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_bad_run_input(case, clip, tmp_path):
    extra, config, fragment = RUN_CASES[case]
    out = tmp_path / "out"
    args = [
        str(EXE),
        "run",
        "--backend",
        "null",
        "--headless",
        "--state-dir",
        str(out / "state"),
        "--events",
        str(out / "events.jsonl"),
        "--max-frames",
        "3",
    ]
    if "--source" not in extra:
        args += ["--source", str(clip)]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if config is not None:
        f = tmp_path / "edgemask.toml"
        f.write_bytes(config if isinstance(config, bytes) else config.encode())
        os.chmod(f, 0o644 if "world-readable" in case else 0o600)
        args += ["--config", str(f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMASK_")}
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    line = _one_line(r)
    assert fragment in line, line
    assert SECRET not in r.stdout + r.stderr and "xv9" not in r.stdout + r.stderr
    assert not out.exists()  # nothing half-written: no state folder, no events file


def test_corrupt_outbox_is_left_untouched(clip, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    junk = b"\x00not an outbox\x00" * 500
    (state / "outbox.sqlite3").write_bytes(junk)
    r = subprocess.run(
        [str(EXE), "run", "--backend", "null", "--headless", "--source", str(clip), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _one_line(r)
    assert "is corrupt" in line and "mv " in line and ".recover" in line
    assert (
        sorted(p.name for p in state.iterdir()) == ["outbox.sqlite3"]
        and (state / "outbox.sqlite3").read_bytes() == junk
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--", "--source", f"rtsp://admin:{SECRET}@cam/live"], "has a password in its URL"),
        (["--", "--source", "clip.mp4", "--mqtt-qos", "5"], "--mqtt-qos must be 0, 1 or 2"),
    ],
)
def test_bad_service_install_input(tmp_path, args, fragment):
    unit = tmp_path / "edgemask.service"
    r = subprocess.run(
        [str(EXE), "service", "install", "--output", str(unit), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    line = _one_line(r)
    assert fragment in line and SECRET not in r.stdout + r.stderr and not unit.exists()

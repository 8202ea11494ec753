"""The systemd unit text, and sd_notify over a real unix datagram socket."""

from __future__ import annotations

import os
import socket

import pytest

from edgemask.errors import ConfigError
from edgemask.service.systemd import SdNotifier, install_unit, unit_text


def test_unit_is_notify_with_watchdog_and_restart():
    text = unit_text(
        ["--camera", "0", "--bundle", "/opt/edgemask/bundle"], watchdog_s=20, exec_start=["/opt/venv/bin/edgemask"]
    )
    lines = text.splitlines()
    for want in (
        "Type=notify",
        "WatchdogSec=20",
        "Restart=always",
        "NotifyAccess=main",
        "User=edgemask",
        "SupplementaryGroups=video",
        "StateDirectory=edgemask",
        "EnvironmentFile=-/etc/edgemask/edgemask.env",
        "WantedBy=multi-user.target",
    ):
        assert want in lines, want
    # A service waits for a camera or network that comes up after it (--start-timeout 0 = keep retrying).
    assert (
        "ExecStart=/opt/venv/bin/edgemask run --camera 0 --bundle /opt/edgemask/bundle --headless --start-timeout 0"
        in lines
    )


@pytest.mark.parametrize("args", [["--mqtt-password", "x"], ["--webhook", "https://u:tok@h/x"]])
def test_secrets_are_refused_in_the_unit(args):
    with pytest.raises(ConfigError, match="edgemask.env"):
        unit_text(["--camera", "0", *args])


def test_install_unit_is_atomic_and_does_not_overwrite(tmp_path):
    p = install_unit(tmp_path / "edgemask.service", "x\n")
    assert p.read_text() == "x\n"
    with pytest.raises(ConfigError, match="--overwrite"):
        install_unit(p, "y\n")
    install_unit(p, "y\n", overwrite=True)
    assert p.read_text() == "y\n"


def _listener(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s


def test_sd_notify_over_a_real_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = _listener(path)
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "8000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_s == 8.0
    assert n.ready("running")
    assert s.recv(256) == b"READY=1\nSTATUS=running"
    assert n.watchdog() and s.recv(64) == b"WATCHDOG=1"
    assert not n.watchdog()  # rate limited to WatchdogSec/4
    assert n.stopping() and s.recv(64) == b"STOPPING=1"
    n.close()
    s.close()


def test_sd_notify_abstract_namespace():
    name = f"edgemask-test-{os.getpid()}"
    s = _listener("\0" + name)
    n = SdNotifier({"NOTIFY_SOCKET": "@" + name})
    assert n.notify("STATUS=hi") and s.recv(64) == b"STATUS=hi"
    s.close()


def test_sd_notify_is_a_noop_outside_systemd():
    n = SdNotifier({})
    assert not n.enabled and not n.ready() and not n.watchdog()
    other = SdNotifier({"NOTIFY_SOCKET": "/nonexistent/sock", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None and not other.notify(
        "READY=1"
    )  # watchdog meant for another pid; send fails quietly


def test_exec_start_stays_inside_the_virtualenv(tmp_path):
    # A venv's bin/python is a symlink to the base interpreter, which cannot import edgemask.
    import sys

    from edgemask.service.systemd import default_exec_start

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    assert default_exec_start(str(venv_bin / "python"))[0] == str(venv_bin / "python")
    script = venv_bin / "edgemask"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert default_exec_start(str(venv_bin / "python")) == [str(script)]


def test_exec_start_fallback_really_runs_the_cli(tmp_path):
    import subprocess

    from edgemask.service.systemd import default_exec_start

    lone = tmp_path / "bin"
    lone.mkdir()
    (lone / "python").symlink_to(os.path.realpath(__import__("sys").executable))
    prog = default_exec_start(str(lone / "python"))
    assert prog[0] == str(lone / "python")
    # with the interpreter of these tests (which has edgemask), the fallback must reach 'edgemask run'
    r = subprocess.run(
        [__import__("sys").executable, *prog[1:], "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0 and "--camera" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "arg, quoted",
    [
        ("mqtt://edge@b/site/cam%201/alerts", "mqtt://edge@b/site/cam%%201/alerts"),
        ("/srv/my videos/hall.mp4", '"/srv/my videos/hall.mp4"'),
        ("a$HOME", '"a$$HOME"'),
        ('say "hi"', '"say \\"hi\\""'),
    ],
)
def test_exec_start_is_quoted_for_systemd(arg, quoted):
    from edgemask.service.systemd import exec_quote

    assert exec_quote(arg) == quoted


def test_unit_with_awkward_arguments_passes_systemd_analyze(tmp_path):
    import shutil
    import sys

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    import subprocess

    text = unit_text(
        ["--source", "/srv/my videos/hall.mp4", "--mqtt", "mqtt://edge@b/site/cam%201/alerts"],
        exec_start=[sys.executable, "-c", "pass"],
        working_dir="/var/lib/edgemask",
    )
    unit = tmp_path / "edgemask.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.service"  # the same unit with the URL as the shell would quote it does not load
    bad.write_text(text.replace("cam%%201", "cam%201"))
    assert subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, timeout=60).returncode != 0


def test_relative_working_dir_is_refused():
    with pytest.raises(ConfigError, match="absolute path"):
        unit_text(["--camera", "0"], working_dir="state")

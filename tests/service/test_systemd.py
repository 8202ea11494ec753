"""The systemd unit text, and sd_notify over a real unix datagram socket."""

from __future__ import annotations

import os
import socket

import pytest

from edgemask.errors import ConfigError
from edgemask.service.systemd import SdNotifier, install_unit, unit_text


def test_unit_is_notify_with_watchdog_and_restart():
    text = unit_text(["--camera", "0", "--bundle", "/opt/edgemask/bundle"], watchdog_s=20,
                     exec_start=["/opt/venv/bin/edgemask"])
    lines = text.splitlines()
    for want in ("Type=notify", "WatchdogSec=20", "Restart=always", "NotifyAccess=main", "User=edgemask",
                 "SupplementaryGroups=video", "StateDirectory=edgemask", "EnvironmentFile=-/etc/edgemask/edgemask.env",
                 "WantedBy=multi-user.target"):
        assert want in lines, want
    assert "ExecStart=/opt/venv/bin/edgemask run --camera 0 --bundle /opt/edgemask/bundle --headless" in lines


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
    assert other.watchdog_s is None and not other.notify("READY=1")  # watchdog meant for another pid; send fails quietly

"""systemd integration: the unit file, and sd_notify without libsystemd.

The unit is ``Type=notify``: systemd considers the service started only when
it sends ``READY=1`` (after the bundle verified, the model loaded and the
first frame arrived), and ``WatchdogSec`` makes systemd kill and restart it
when the run loop stops sending ``WATCHDOG=1`` — a hang that no exception
would ever report. ``Restart=always`` brings it back after crashes and
after exit 1 (e.g. a camera unplugged at boot), with ``RestartSec`` between tries.

sd_notify is a datagram on the unix socket named by ``$NOTIFY_SOCKET``
(a leading ``@`` means the Linux abstract namespace); no library needed.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgemask.errors import ConfigError
from edgemask.utils.redact import redact, url_has_password

#: Options whose values are secrets; refused in ExecStart.
_SECRET_HINTS = ("password", "token", "secret")


class SdNotifier:
    """Sends sd_notify messages; every method is a no-op outside systemd.

    Args:
        environ: where to read ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC`` (default os.environ).
    """

    def __init__(self, environ: dict[str, str] | None = None):
        # systemd's variables, not edgemask knobs (edgemask/config.py): read where they are used.
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if addr:
            self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one message (e.g. ``"READY=1"``); False when not under systemd or on error."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self.address)
            return True
        except OSError:
            return False  # systemd gone (shutdown) or socket unreachable: nothing to do

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self, force: bool = False) -> bool:
        """Ping the watchdog, at most every WatchdogSec/4 (the run loop calls this per frame)."""
        if self.address is None:
            return False
        now = time.monotonic()
        interval = (self.watchdog_s / 4) if self.watchdog_s else 1.0
        if not force and now - self._last_ping < interval:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def default_exec_start(executable: str | None = None) -> list[str]:
    """How to start edgemask from a unit: the console script beside the interpreter, else ``python -c``.

    The interpreter's path is made absolute but *not* resolved: a virtualenv's
    ``bin/python`` is a symlink to the base interpreter, which cannot import
    edgemask, so following it would write a unit that fails at boot.
    """
    exe = Path(os.path.abspath(executable or sys.executable))
    script = exe.parent / "edgemask"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    # edgemask.cli.main has no __main__ guard, so 'python -m edgemask.cli.main' would exit 0 doing nothing.
    return [str(exe), "-c", "import sys; from edgemask.cli.main import main; sys.exit(main())"]


_PLAIN_ARG = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def exec_quote(arg: str) -> str:
    """Quote one ExecStart argument the way systemd parses it (not the shell's way).

    systemd expands ``%`` specifiers and ``$VAR`` in ExecStart, so they are
    doubled (a URL with ``%20`` otherwise makes the unit fail to load); an
    argument with other characters is wrapped in double quotes with C-style
    escapes (systemd does not join adjacent quoted pieces as a shell does).
    """
    s = arg.replace("%", "%%").replace("$", "$$")
    if s and _PLAIN_ARG.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(
    run_args: Sequence[str],
    *,
    description: str = "edgemask face-mask detection service",
    user: str = "edgemask",
    working_dir: str = "/var/lib/edgemask",
    watchdog_s: int = 30,
    restart_s: int = 5,
    env_file: str = "/etc/edgemask/edgemask.env",
    exec_start: Sequence[str] | None = None,
) -> str:
    """The text of a systemd unit that runs ``edgemask run <run_args>``.

    Args:
        run_args: arguments after ``edgemask run`` (no secrets: refused).
        user: account the service runs as (add it to the ``video`` group for cameras).
        working_dir: state folder (outbox, events); systemd creates it.
        watchdog_s: ``WatchdogSec``; the loop pings every quarter of it.
        restart_s: ``RestartSec``.
        env_file: optional ``EnvironmentFile`` (``-`` prefix: may be absent)
            holding ``EDGEMASK_MQTT_PASSWORD=...`` / ``EDGEMASK_WEBHOOK_TOKEN=...`` /
            ``EDGEMASK_SOURCE_PASSWORD=...``; chmod 600.
        exec_start: the program (default: :func:`default_exec_start`).

    Raises:
        ConfigError: a secret in ``run_args``, or an invalid value.
    """
    args = list(run_args)
    for a in args:
        low = a.lower()
        if any(h in low for h in _SECRET_HINTS) and low.startswith("--"):
            raise ConfigError(
                f"'{a}' looks like a secret on the command line; put secrets in {env_file} "
                "(EDGEMASK_MQTT_PASSWORD=..., EDGEMASK_WEBHOOK_TOKEN=..., EDGEMASK_SOURCE_PASSWORD=...) "
                "instead"
            )
        if "://" in a and url_has_password(a[a.find("=") + 1 :] if a.startswith("--") else a):
            shown = redact(a)
            raise ConfigError(
                f"'{shown}' has a password in its URL; keep only the user in the URL and put the password "
                f"in {env_file} (EDGEMASK_SOURCE_PASSWORD for a camera, EDGEMASK_MQTT_PASSWORD for MQTT)"
            )
    if watchdog_s < 5:
        raise ConfigError(f"--watchdog must be at least 5 seconds, got {watchdog_s}")
    for opt, path in (("--working-dir", working_dir), ("--env-file", env_file)):
        if not path.startswith("/") or "\n" in path:
            raise ConfigError(
                f"{opt} {path!r} must be an absolute path (systemd runs the unit from /), e.g. /var/lib/edgemask"
            )
    if "--headless" not in args:
        args.append("--headless")  # a service has no display
    if not any(a == "--start-timeout" or a.startswith("--start-timeout=") for a in args):
        args += ["--start-timeout", "0"]  # a box may boot before its camera or network: wait for them
    prog = list(exec_start) if exec_start else default_exec_start()
    cmd = " ".join(exec_quote(x) for x in [*prog, "run", *args])
    wd = working_dir.replace("%", "%%")
    # StateDirectory= makes systemd create /var/lib/<name> owned by User=.
    state = f"StateDirectory={working_dir[len('/var/lib/') :]}\n" if working_dir.startswith("/var/lib/") else ""
    return f"""# Written by 'edgemask service install'. Enable with:
#   sudo cp edgemask.service /etc/systemd/system/ && sudo systemctl daemon-reload
#   sudo systemctl enable --now edgemask.service
# Logs: journalctl -u edgemask -f      Secrets: {env_file} (chmod 600)
[Unit]
Description={description}
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={cmd}
WorkingDirectory={wd}
{state}EnvironmentFile=-{env_file}
Environment=PYTHONUNBUFFERED=1
User={user}
SupplementaryGroups=video
Restart=always
RestartSec={int(restart_s)}
WatchdogSec={int(watchdog_s)}
TimeoutStartSec=120
TimeoutStopSec=30
KillSignal=SIGTERM
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=read-only

[Install]
WantedBy=multi-user.target
"""


def boot_check_unit_text(
    root: str, *, service: str = "edgemask.service", exec_start: Sequence[str] | None = None
) -> str:
    """A oneshot unit that runs ``edgemask device boot-check --root ROOT`` before ``service`` starts.

    A release switched in but never committed (power cut, crash, a health
    check that never finished) is rolled back here, so the service always
    starts on a committed release.
    """
    argv = list(exec_start or default_exec_start()) + ["device", "boot-check", "--root", root]
    return "\n".join(
        [
            "[Unit]",
            "Description=edgemask: roll back an uncommitted model release before the service starts",
            "DefaultDependencies=yes",
            f"Before={service}",
            "After=local-fs.target",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=" + " ".join(exec_quote(a) for a in argv),
            "",
            "[Install]",
            f"RequiredBy={service}",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def install_unit(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write the unit atomically.

    Raises:
        ConfigError: the file exists (without ``overwrite``) or cannot be written.
    """
    from edgemask.utils.io import atomic_write_text

    p = Path(path)
    if p.exists() and not overwrite:
        raise ConfigError(f"{p} exists; pass --overwrite to replace it")
    try:
        atomic_write_text(p, text)
    except PermissionError:
        raise ConfigError(f"no permission to write {p}; run with sudo or write it elsewhere with --output") from None
    except OSError as e:
        raise ConfigError(f"cannot write {p}: {e.strerror}") from None
    return p


__all__ = ["SdNotifier", "default_exec_start", "exec_quote", "install_unit", "unit_text"]

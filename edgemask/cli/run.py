"""``edgemask run`` (the detection service) and ``edgemask service install`` (its systemd unit)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from edgemask.cli._common import console, err_console, run_cli
from edgemask.cli.options import comma_list, config_from_params, from_field
from edgemask.service.config import RunConfig


def _opt(name: str, *param_decls: str, **kw):
    """The ``run`` option of RunConfig field ``name``: its default and its help."""
    return from_field(RunConfig, name, *param_decls, **kw)


# One line per option: default and --help text are the RunConfig field's. A parameter is
# named like its field, so the parsed values become the config in _config_of.
def run_cmd(
    ctx: typer.Context,
    camera: Optional[int] = _opt("camera", "--camera", "-c"),
    source: str = _opt("source", "--source", "-s"),
    width: int = _opt("width"),
    height: int = _opt("height"),
    fps: float = _opt("fps"),
    loop: bool = _opt("loop", "--loop"),
    as_video: bool = _opt("as_video", "--as-video"),
    device_profile: str = _opt("device_profile", "--device"),
    bundle: str = _opt("bundle", "--bundle", "-b"),
    backend: str = _opt("backend"),
    precision: str = _opt("precision"),
    classify_threads: int = _opt("classify_threads"),
    detector: str = _opt("detector"),
    face_model: str = _opt("face_model"),
    detector_precision: str = _opt("detector_precision"),
    detect_width: int = _opt("detect_width"),
    detect_every: int = _opt("detect_every"),
    detect_mode: str = _opt("detect_mode"),
    min_face: int = _opt("min_face"),
    roi: str = _opt("roi"),
    crop_margin: Optional[float] = _opt("crop_margin"),
    alert_on: str = _opt("alert_on", default=",".join(RunConfig().alert_on)),
    vote_window: int = _opt("vote_window"),
    min_confidence: float = _opt("min_confidence"),
    iou_threshold: float = _opt("iou_threshold"),
    max_missed: int = _opt("max_missed"),
    debounce_s: float = _opt("debounce_s", "--debounce"),
    headless: bool = _opt("headless", "--headless"),
    record: str = _opt("record"),
    events: str = _opt("events"),
    snapshots: str = _opt("snapshots"),
    log_alerts: bool = _opt("log_alerts"),
    webhook: str = _opt("webhook"),
    mqtt: str = _opt("mqtt"),
    mqtt_qos: int = _opt("mqtt_qos"),
    state_dir: str = _opt("state_dir"),
    sink_timeout_s: float = _opt("sink_timeout_s", "--sink-timeout"),
    metrics_port: int = _opt("metrics_port"),
    metrics_host: str = _opt("metrics_host"),
    health_stale_s: float = _opt("health_stale_s", "--health-stale"),
    max_frames: int = _opt("max_frames"),
    duration_s: float = _opt("duration_s", "--duration"),
    stall_timeout_s: float = _opt("stall_timeout_s", "--stall-timeout"),
    freeze_timeout_s: float = _opt("freeze_timeout_s", "--freeze-timeout"),
    open_timeout_s: float = _opt("open_timeout_s", "--open-timeout"),
    start_timeout_s: float = _opt("start_timeout_s", "--start-timeout"),
    config_file: str = _opt("config_file", "--config"),
    log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON instead of a table."),
) -> None:
    """Run the detection service: camera → faces → mask classes → events and alerts.

    Runs until --max-frames / --duration, the end of a file, SIGTERM or Ctrl-C.
    Camera failures and unreachable alert sinks are survived (reopen, retry
    from the on-disk outbox); bad options fail at once with exit code 1.
    """
    _setup_logging(log_level)
    with run_cli():
        from edgemask.service.loop import run_service

        summary = run_service(_config_of(ctx))
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    else:
        console.print(summary_table(summary))


def _config_of(ctx: typer.Context) -> RunConfig:
    """The RunConfig of a parsed ``run`` command line, merged with its --config file."""
    from edgemask.service.config import config_with_file

    # By name: typer >= 0.20 ships its own copy of click, so the enum class differs.
    explicit = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", None) == "COMMANDLINE"}
    cfg = config_from_params(RunConfig, ctx.params, alert_on=comma_list(ctx.params["alert_on"]))
    return config_with_file(cfg, explicit)


def summary_table(summary):
    """A rich table of a RunSummary: throughput, per-stage latency, alerts."""
    from rich.table import Table

    t = Table(
        title=f"{summary.frames} frames in {summary.duration_s:.1f} s: {summary.fps:.1f} FPS "
        f"({summary.stop_reason or 'stopped'})"
    )
    t.add_column("stage")
    for c in ("mean ms", "p50 ms", "p99 ms", "max ms"):
        t.add_column(c, justify="right")
    for stage, s in summary.latency_ms.items():
        t.add_row(stage, f"{s['mean']:.2f}", f"{s['p50']:.2f}", f"{s['p99']:.2f}", f"{s['max']:.2f}")
    alerts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.alerts.items())) or "none"
    pending = ", ".join(f"{k}: {v}" for k, v in sorted(summary.outbox_pending.items()) if v) or "none"
    t.caption = (
        f"faces {summary.faces}, detector runs {summary.detector_runs}; alerts {alerts}; "
        f"reconnects {summary.reconnects}, corrupt frames {summary.corrupt_frames}; outbox pending {pending}"
    )
    if summary.alerts_not_durable:
        t.caption += (
            f"; {summary.alerts_not_durable} alert(s) could not be written to the outbox (full disk?), "
            f"{summary.alerts_lost} of them lost undelivered"
        )
    return t


def _setup_logging(level: str) -> None:
    lvl = getattr(logging, level.upper(), None)
    if not isinstance(lvl, int) or level.lower() not in ("debug", "info", "warning", "error"):
        err_console.print(f"[bold red]error:[/] --log-level {level!r} is not one of debug, info, warning, error")
        raise typer.Exit(1)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edgemask.utils.redact import install_log_redaction

    install_log_redaction()  # every line in the journal goes through the one redaction helper
    if lvl > logging.DEBUG:
        _quiet_native_logs()


def _quiet_native_logs() -> None:
    """Keep OpenCV's and FFmpeg's own stderr lines out of the service's output (--log-level debug keeps them).

    They bypass Python logging: an unreachable RTSP URL printed FFmpeg's
    "[tcp @ 0x...] Connection refused" and OpenCV's "[ WARN:0] ... can't be
    used to capture by name" above our one-line error, and a flaky stream
    repeats such lines for weeks in the journal. What they say is reported by
    the service itself (the error, the reconnect reason, corrupt-frame counts).
    A variable the user has set wins.
    """
    # Read once, when OpenCV first uses FFmpeg: must be set before the source opens. -8 = AV_LOG_QUIET.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"
        if "cv2" in sys.modules:  # already imported: its level was read; set it directly
            cv2 = sys.modules["cv2"]
            with contextlib.suppress(AttributeError):
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# --------------------------------------------------------------------------- service install

service_app = typer.Typer(help="Install the detection service on a box (systemd).", no_args_is_help=True)


@service_app.command("install", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def install_cmd(
    ctx: typer.Context,
    output: str = typer.Option("edgemask.service", "--output", "-o", help="Where to write the unit file."),
    system: bool = typer.Option(False, "--system", help="Write /etc/systemd/system/edgemask.service (needs root)."),
    user: str = typer.Option("edgemask", help="Account the service runs as (needs the 'video' group for cameras)."),
    working_dir: str = typer.Option("/var/lib/edgemask", help="State folder of the service (outbox, events)."),
    watchdog: int = typer.Option(30, help="WatchdogSec: systemd restarts the service if the loop stalls this long."),
    restart_sec: int = typer.Option(5, help="RestartSec: pause before systemd restarts it."),
    env_file: str = typer.Option(
        "/etc/edgemask/edgemask.env",
        help="EnvironmentFile with EDGEMASK_MQTT_PASSWORD / EDGEMASK_WEBHOOK_TOKEN / EDGEMASK_SOURCE_PASSWORD.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing unit file."),
) -> None:
    """Write a systemd unit (Type=notify, watchdog, Restart=always) for 'edgemask run'.

    Put the run options after '--', e.g.:
    edgemask service install -- --camera 0 --bundle /opt/edgemask/bundle --mqtt mqtt://edge@broker/site/cam1
    """
    from edgemask.errors import ConfigError
    from edgemask.service.systemd import install_unit, unit_text

    run_args = list(ctx.args)
    with run_cli():
        if not run_args:
            raise ConfigError(
                "give the run options after '--', e.g. edgemask service install -- --camera 0 "
                "--bundle /opt/edgemask/bundle"
            )
        # unit_text first: it refuses secrets, which must be named before any other complaint
        text = unit_text(
            run_args, user=user, working_dir=working_dir, watchdog_s=watchdog, restart_s=restart_sec, env_file=env_file
        )
        _check_run_args(run_args)
        path = install_unit("/etc/systemd/system/edgemask.service" if system else output, text, overwrite=overwrite)
    console.print(f"wrote {path}", soft_wrap=True)
    if system:
        console.print(
            "enable it with:\n  sudo systemctl daemon-reload && sudo systemctl enable --now edgemask.service",
            soft_wrap=True,
        )
    else:
        console.print(
            f"install and enable it with:\n  sudo cp {path} /etc/systemd/system/edgemask.service\n"
            "  sudo systemctl daemon-reload && sudo systemctl enable --now edgemask.service",
            soft_wrap=True,
        )
    # soft_wrap: commands meant to be copied must not be broken across lines
    console.print(f"secrets go in {env_file} (chmod 600); logs: journalctl -u edgemask -f", soft_wrap=True)


def _check_run_args(args: list[str]) -> None:
    """Parse ``args`` with the run command's own parser so a typo fails now, not at boot."""
    from edgemask.errors import ConfigError

    probe = typer.Typer()
    probe.command("run")(run_cmd)
    probe.command("noop", hidden=True)(lambda: None)  # keeps 'run' a sub-command
    cmd = typer.main.get_command(probe)
    run = cmd.get_command(cmd.context_class(cmd), "run")  # type: ignore[attr-defined]
    try:
        ctx = run.make_context("run", list(args), resilient_parsing=False)
    except Exception as e:
        # Matched by class name: typer may use its own vendored click.
        names = {c.__name__ for c in type(e).__mro__}
        if "UsageError" in names:
            raise ConfigError(f"the run options after '--' are not valid: {e.format_message()}") from None
        if "Exit" not in names:
            raise
        return  # --help
    # The checks that need no I/O, so a unit without a source (say) fails now, not at every boot.
    # Files (bundle, --config) may not exist yet on the machine that writes the unit.
    if ctx.params.get("config_file") and not Path(ctx.params["config_file"]).is_file():
        return
    try:
        _config_of(ctx).validate()
    except ConfigError as e:
        raise ConfigError(f"the run options after '--' are not valid: {e}") from None


def register(app: typer.Typer) -> None:
    """Add ``run`` and the ``service`` sub-app to the root app."""
    app.command("run")(run_cmd)
    app.add_typer(service_app, name="service")

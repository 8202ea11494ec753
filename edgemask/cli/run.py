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
from edgemask.service.config import (
    DETECTORS,
    ENV_MQTT_PASSWORD,
    ENV_SOURCE_PASSWORD,
    ENV_WEBHOOK_TOKEN,
    RunConfig,
)

_D = RunConfig()

# CLI parameter name -> RunConfig field, where they differ.
_FIELD_OF = {
    "duration": "duration_s",
    "debounce": "debounce_s",
    "stall_timeout": "stall_timeout_s",
    "freeze_timeout": "freeze_timeout_s",
    "open_timeout": "open_timeout_s",
    "sink_timeout": "sink_timeout_s",
    "start_timeout": "start_timeout_s",
    "health_stale": "health_stale_s",
    "loop_video": "loop",
    "config": "config_file",
}


def run_cmd(
    ctx: typer.Context,
    camera: Optional[int] = typer.Option(None, "--camera", "-c", help="V4L2 camera index (/dev/videoN)."),
    source: str = typer.Option(
        "",
        "--source",
        "-s",
        help=f"Video file, image folder, rtsp:// or http:// URL (rtsp://USER@host/...; password: ${ENV_SOURCE_PASSWORD} or --config), a GStreamer pipeline ending in appsink, or csi://N (CSI sensor N via the device profile).",
    ),
    width: int = typer.Option(_D.width, help="Frame width to request / resize to (0 = the source's own)."),
    height: int = typer.Option(_D.height, help="Frame height to request / resize to (0 = the source's own)."),
    fps: float = typer.Option(
        _D.fps, help="Frame rate to request from a camera; files are played at this rate (0 = as fast as possible)."
    ),
    loop_video: bool = typer.Option(_D.loop, "--loop", help="Start a video file or image folder again at its end."),
    as_video: bool = typer.Option(
        _D.as_video,
        "--as-video",
        help="Read an image folder as frames of one video (numbered frame dumps); by default each photo is its own scene, classified on its own.",
    ),
    device_profile: str = typer.Option(
        _D.device_profile,
        "--device",
        help="Device profile ('edgemask devices list'): the CSI pipeline csi://N uses and, with --backend onnxrt on a GPU build of ONNX Runtime, its TensorRT/CUDA provider options.",
    ),
    bundle: str = typer.Option(
        _D.bundle,
        "--bundle",
        "-b",
        help="Exported bundle folder (verified before use). Default: the pretrained detector + classifier shipped with edgemask (model card: edgemask/pretrained/MODEL_CARD.md). Not needed with --backend null.",
    ),
    backend: str = typer.Option(
        _D.backend,
        help="Inference backend: onnxrt, torch, opencv, tensorrt, or null (fake classifier, for timing the pipeline).",
    ),
    precision: str = typer.Option(_D.precision, help="Model precision from the bundle: fp32, fp16 or int8."),
    classify_threads: int = typer.Option(
        _D.classify_threads,
        help="Threads of a torch or onnxrt classifier (0 = the backend's default); more only pay off with many faces per frame.",
    ),
    detector: str = typer.Option(
        _D.detector,
        help=f"Face detector: {', '.join(DETECTORS)} or yunet:FILE. auto = the bundle's learned detector when the bundle has one, else yunet with --face-model, else haar-fusion (finds more masked faces than haar).",
    ),
    face_model: str = typer.Option(
        _D.face_model,
        help="YuNet ONNX model for cv2.FaceDetectorYN (face_detection_yunet_2023mar.onnx); same as --detector yunet:FILE.",
    ),
    detector_precision: str = typer.Option(
        _D.detector_precision,
        help="Precision of the bundle's detector: fp32, fp16 or int8 (empty = --precision). It runs on --backend (onnxrt with --backend null).",
    ),
    detect_width: int = typer.Option(
        _D.detect_width, help="Downscale frames to this width for detection (0 = full size)."
    ),
    detect_every: int = typer.Option(
        _D.detect_every,
        help="Run a detector pass every k-th frame (haar-fusion spreads its 3 views over 3 passes); tracks are extrapolated and classified in between.",
    ),
    detect_mode: str = typer.Option(
        _D.detect_mode,
        help="sync: detect inside the frame loop (reproducible); async: detector on its own thread, frame latency excludes it; auto: async for cameras and streams, sync for files.",
    ),
    min_face: int = typer.Option(
        _D.min_face,
        help="Smallest face to detect (its longer side, in frame pixels); detection downscales less when needed so such faces stay findable.",
    ),
    roi: str = typer.Option(_D.roi, help="With --detector none: the fixed face region x,y,w,h (empty = whole frame)."),
    crop_margin: Optional[float] = typer.Option(
        _D.crop_margin,
        help="Context added per side of a face box before the square crop, a fraction of its longer side (default: the bundle's, as in training).",
    ),
    alert_on: str = typer.Option(",".join(_D.alert_on), help="Comma-separated classes that raise alerts."),
    vote_window: int = typer.Option(_D.vote_window, help="Frames in each track's class vote (majority wins)."),
    min_confidence: float = typer.Option(
        _D.min_confidence, help="A frame votes only with at least this softmax confidence."
    ),
    iou_threshold: float = typer.Option(_D.iou_threshold, help="Minimum IoU to continue a track."),
    max_missed: int = typer.Option(_D.max_missed, help="Detector runs a track survives without a match."),
    debounce: float = typer.Option(_D.debounce_s, help="Seconds between two alerts of the same track."),
    headless: bool = typer.Option(
        _D.headless, "--headless", help="Never open a window (one opens only when a display exists)."
    ),
    record: str = typer.Option(_D.record, help="Write an annotated MP4 here."),
    events: str = typer.Option(
        _D.events, help="Append JSON Lines events (time, frame, track, box, class, confidence; alerts) here."
    ),
    snapshots: str = typer.Option(_D.snapshots, help="Write one annotated JPEG per alert into this folder."),
    log_alerts: bool = typer.Option(_D.log_alerts, help="Log every alert as a WARNING line."),
    webhook: str = typer.Option(
        _D.webhook, help=f"POST alerts as JSON to this http(s) URL (token: ${ENV_WEBHOOK_TOKEN} or --config)."
    ),
    mqtt: str = typer.Option(
        _D.mqtt,
        help=f"Publish alerts to mqtt://user@host:port/topic (mqtts:// for TLS; password: ${ENV_MQTT_PASSWORD} or --config).",
    ),
    mqtt_qos: int = typer.Option(_D.mqtt_qos, help="MQTT QoS: 1 = at least once."),
    state_dir: str = typer.Option(
        _D.state_dir, help="Folder of the alert outbox (survives restarts) and run_config.json."
    ),
    sink_timeout: float = typer.Option(_D.sink_timeout_s, help="Seconds one webhook/MQTT delivery attempt may take."),
    metrics_port: int = typer.Option(
        _D.metrics_port, help="Serve Prometheus /metrics and /healthz on this port (0 = off)."
    ),
    metrics_host: str = typer.Option(_D.metrics_host, help="Address the metrics server binds (loopback by default)."),
    health_stale: float = typer.Option(
        _D.health_stale_s, help="/healthz fails after this many seconds without a processed frame."
    ),
    max_frames: int = typer.Option(_D.max_frames, help="Stop after this many frames (0 = never)."),
    duration: float = typer.Option(_D.duration_s, help="Stop after this many seconds (0 = never)."),
    stall_timeout: float = typer.Option(
        _D.stall_timeout_s, help="Reopen a live source that sends no frame for this many seconds."
    ),
    freeze_timeout: float = typer.Option(
        _D.freeze_timeout_s, help="Reopen a live source that repeats the same frame this long (0 = off)."
    ),
    open_timeout: float = typer.Option(
        _D.open_timeout_s, help="Seconds opening a source (and its first frame) may take."
    ),
    start_timeout: float = typer.Option(
        _D.start_timeout_s,
        help="Seconds to keep retrying (with backoff) a source that cannot be opened at start-up (0 = forever, as the systemd unit does).",
    ),
    config: str = typer.Option(
        _D.config_file,
        "--config",
        help="TOML config file: a 'run' table of these options (underscores for dashes) and a 'secrets' table (chmod 600).",
    ),
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

    params = {k: v for k, v in ctx.params.items() if k not in ("log_level", "as_json")}
    explicit = set()
    for name in params:
        # By name: typer >= 0.20 ships its own copy of click, so the enum class differs.
        src = ctx.get_parameter_source(name)
        if src is not None and src.name == "COMMANDLINE":
            explicit.add(_FIELD_OF.get(name, name))
    kw = {_FIELD_OF.get(k, k): v for k, v in params.items()}
    kw["alert_on"] = tuple(c.strip() for c in str(kw["alert_on"]).split(",") if c.strip())
    return config_with_file(RunConfig(**kw), explicit)


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
    if ctx.params.get("config") and not Path(ctx.params["config"]).is_file():
        return
    try:
        _config_of(ctx).validate()
    except ConfigError as e:
        raise ConfigError(f"the run options after '--' are not valid: {e}") from None


def register(app: typer.Typer) -> None:
    """Add ``run`` and the ``service`` sub-app to the root app."""
    app.command("run")(run_cmd)
    app.add_typer(service_app, name="service")

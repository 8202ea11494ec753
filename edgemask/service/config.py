"""RunConfig: every default of ``edgemask run`` in one place.

The CLI shows these as its ``--help`` defaults and the service saves the
resolved config (without secrets) as ``run_config.json`` in its state folder.

Secrets never live here: webhook tokens and MQTT passwords come from the
environment (``EDGEMASK_WEBHOOK_TOKEN``, ``EDGEMASK_MQTT_PASSWORD``,
``EDGEMASK_SOURCE_PASSWORD`` for an RTSP/HTTP camera) or from a
config file (``--config``), see :func:`load_secrets`. Anything on the command
line is visible to every local user through ``ps`` and ends up in shell
history and systemd unit files.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemask.config import EDGEMASK_MQTT_PASSWORD, EDGEMASK_SOURCE_PASSWORD, EDGEMASK_WEBHOOK_TOKEN, setting
from edgemask.errors import ConfigError

#: Classes that raise an alert by default.
DEFAULT_ALERT_ON = ("no_mask", "mask_incorrect")
#: ``--detector`` choices, and ``yunet:FILE``. ``auto`` = the bundle's learned detector when the
#: bundle has one, else ``yunet`` with ``--face-model``, else ``haar-fusion``.
DETECTORS = ("auto", "bundle", "haar", "haar-fusion", "yunet", "none")
#: ``--detect-mode`` choices.
DETECT_MODES = ("auto", "sync", "async")
#: Names a config file may use for a field besides the field's own: the long option of
#: ``edgemask run --help`` ('-' written as '_' or kept), where that differs from the field.
OPTION_ALIASES = {
    "debounce": "debounce_s",
    "duration": "duration_s",
    "stall_timeout": "stall_timeout_s",
    "freeze_timeout": "freeze_timeout_s",
    "open_timeout": "open_timeout_s",
    "start_timeout": "start_timeout_s",
    "sink_timeout": "sink_timeout_s",
    "health_stale": "health_stale_s",
    "device": "device_profile",
    "retry_min": "retry_min_s",
    "retry_max": "retry_max_s",
    "reconnect_min": "reconnect_min_s",
    "reconnect_max": "reconnect_max_s",
}
#: Environment variables holding secrets (documented in edgemask/config.py's table).
ENV_MQTT_PASSWORD = EDGEMASK_MQTT_PASSWORD
ENV_WEBHOOK_TOKEN = EDGEMASK_WEBHOOK_TOKEN
ENV_SOURCE_PASSWORD = EDGEMASK_SOURCE_PASSWORD  # of an rtsp:// / http:// camera: --source rtsp://USER@host/...


@dataclass
class RunConfig:
    """Everything ``run_service`` needs.

    Attributes (grouped as in ``edgemask run --help``):
        source: video file, image folder, ``rtsp://``/``http://`` URL, a raw
            GStreamer pipeline (contains ``!``) or ``csi://N``. Empty with ``camera``.
        camera: V4L2 camera index (``/dev/videoN``); None when ``source`` is set.
        width, height, fps: requested frame size / rate (0 = the source's own).
            Cameras are asked for it; other sources are resized (and, for
            files, paced to ``fps``).
        loop: restart a video file / image folder at its end (demos, soak tests).
        as_video: read an image folder as frames of one video (tracks and
            votes carry over); by default each photo is an independent scene.
        device_profile: profile whose CSI pipeline ``csi://N`` uses; with the onnxrt backend on a
            GPU build of ONNX Runtime also its TensorRT/CUDA provider options.
        bundle: exported bundle folder (required unless ``backend == "null"``).
        backend, precision: which Runner classifies the crops.
        classify_threads: intra-op threads of a torch or onnxrt classifier
            (0 = the backend's default, see ``EDGEMASK_NUM_THREADS``). One by
            default: a frame's batch is a few small crops, and the other cores
            decode and detect. Measured on 2 busy cores: torch with 2 threads
            took 108 ms per frame to classify, with 1 thread 2.9 ms.
        detector: face detector, see :data:`DETECTORS`; ``yunet:FILE`` names a YuNet model.
        face_model: YuNet ONNX file for ``cv2.FaceDetectorYN`` (older spelling of ``yunet:FILE``).
        detector_precision: precision of the bundle's detector ("" = ``precision``);
            it runs on ``backend`` (onnxrt when that is ``null``).
        detect_width: frames are downscaled to this width for detection
            (0 = full size); boxes are scaled back.
        detect_every: run a detector pass on every k-th frame; frames in
            between move tracks by their velocity and are still classified.
            A multi-pass detector (``haar-fusion``: 3 views) runs one pass per
            detect frame, so a full fusion takes 3·k frames.
        detect_mode: ``sync`` (detect inside the frame loop: reproducible,
            frame latency includes the detector), ``async`` (detector on its
            own thread, fed the newest frame whenever it is free: frame latency
            excludes it) or ``auto`` (async for live sources, sync for files
            and folders).
        min_face: smallest face side in full-frame pixels.
        roi: ``x,y,w,h`` crop used as the one "face" with ``detector == "none"``
            (empty = whole frame).
        crop_margin: context added per side of a face box before the square
            crop, as a fraction of the box's longer side. None (the default):
            the bundle's ``preprocessing.crop_margin``, the margin the model
            was trained with, so live crops look like training crops.
        alert_on: classes that raise an alert.
        vote_window: K, the per-track vote window in frames.
        min_confidence: a frame's vote counts only when its softmax confidence
            reaches this.
        iou_threshold: minimum IoU to continue a track.
        max_missed: a track is dropped after this many detector runs without a match.
        debounce_s: a track alerts at most once per this many seconds.
        headless: never open a window (a window is only opened when a display exists).
        record: annotated MP4 to write ("" = none).
        events: JSON Lines file of per-face detections and alerts ("" = none).
        snapshots: folder for one JPEG per alert ("" = none).
        log_alerts: the ``log`` sink (alerts as WARNING log lines).
        webhook: URL alerts are POSTed to as JSON ("" = none).
        mqtt: ``mqtt://user@host:port/topic`` ("" = none); ``mqtts://`` for TLS.
        mqtt_qos: MQTT QoS (1 = at least once; 0 gives no delivery guarantee).
        state_dir: outbox database and resolved config live here.
        sink_timeout_s: per-attempt timeout of the webhook / MQTT sinks.
        retry_min_s, retry_max_s: exponential backoff of alert delivery.
        metrics_port: Prometheus ``/metrics`` + ``/healthz`` port (0 = off).
        metrics_host: bind address; loopback by default (put a reverse proxy in front).
        health_stale_s: ``/healthz`` fails when no frame was processed for this long.
        max_frames, duration_s: stop after this many frames / seconds (0 = never).
        stall_timeout_s: no frame for this long → the source is reopened.
        freeze_timeout_s: identical frames for this long → reopened (0 = off;
            only for live sources).
        open_timeout_s: how long opening a source may take.
        start_timeout_s: how long a source that cannot be opened at start-up
            is retried, with the reconnect backoff, before the run fails
            (0 = forever: what the systemd unit uses, so a box that boots
            before its camera or network waits for them).
        reconnect_min_s, reconnect_max_s: exponential backoff of source reopening.
        config_file: TOML file with options and secrets (``--config``).
    """

    # source
    source: str = ""
    camera: int | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    loop: bool = False
    as_video: bool = False
    device_profile: str = "jetson-orin-nano"
    # model
    bundle: str = ""
    backend: str = "onnxrt"
    precision: str = "fp32"
    classify_threads: int = 1
    # detection
    detector: str = "auto"
    face_model: str = ""
    detector_precision: str = ""
    detect_width: int = 320
    detect_every: int = 1
    detect_mode: str = "auto"
    min_face: int = 40
    roi: str = ""
    crop_margin: float | None = None  # None = the bundle's (resolved by validate())
    # tracking and alerts
    alert_on: tuple[str, ...] = DEFAULT_ALERT_ON
    vote_window: int = 5
    min_confidence: float = 0.6
    iou_threshold: float = 0.3
    max_missed: int = 5
    debounce_s: float = 30.0
    # outputs
    headless: bool = False
    record: str = ""
    events: str = ""
    snapshots: str = ""
    log_alerts: bool = True
    webhook: str = ""
    mqtt: str = ""
    mqtt_qos: int = 1
    state_dir: str = "edgemask-state"
    sink_timeout_s: float = 5.0
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0
    # operations
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    health_stale_s: float = 15.0
    max_frames: int = 0
    duration_s: float = 0.0
    stall_timeout_s: float = 5.0
    freeze_timeout_s: float = 10.0
    open_timeout_s: float = 10.0
    start_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    config_file: str = ""

    # -- views: each subsystem gets its own options, not the other fifty ----------
    def source_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~edgemask.vision.sources.FrameSource`: its watchdog and reconnect timing."""
        return {
            "stall_timeout_s": self.stall_timeout_s,
            "freeze_timeout_s": self.freeze_timeout_s,
            "open_timeout_s": self.open_timeout_s,
            "reconnect_min_s": self.reconnect_min_s,
            "reconnect_max_s": self.reconnect_max_s,
            "start_timeout_s": self.start_timeout_s,
        }

    def tracker_options(self, alert_classes: tuple[int, ...]) -> dict[str, Any]:
        """Keyword arguments of :class:`~edgemask.vision.tracker.IoUTracker`.

        Args:
            alert_classes: the class indices of ``alert_on``, resolved against the bundle's class names.
        """
        return {
            "iou_threshold": self.iou_threshold,
            "max_missed": self.max_missed,
            "vote_window": self.vote_window,
            "min_confidence": self.min_confidence,
            "alert_classes": alert_classes,
            "debounce_s": self.debounce_s,
        }

    # ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["alert_on"] = list(self.alert_on)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the config file") -> RunConfig:
        """Build from a dict (e.g. a config file's ``[run]`` table), see :func:`typed_options`."""
        return cls(**typed_options(d, where, from_file=False))

    def validate(self) -> None:
        """Check values that need no I/O; raise a one-line ConfigError on the first bad one.

        Then resolve ``crop_margin=None`` ("from the bundle") to the bundle's
        margin, one read of its manifest.json (see :meth:`bundle_crop_margin`),
        so everything after it, and ``run_config.json``, sees the number used.
        """
        if (self.camera is None) == (not self.source):
            raise ConfigError("give exactly one video source: --camera N or --source PATH|URL|PIPELINE|csi://N")
        from edgemask.utils.redact import url_has_password

        if url_has_password(self.source):
            raise ConfigError(
                f"--source URL contains a password; command lines are visible to every user: give "
                f"rtsp://USER@host/... and the password in ${ENV_SOURCE_PASSWORD} or in the "
                "secrets table of the --config file"
            )
        if self.camera is not None and self.camera < 0:
            raise ConfigError(f"--camera must be a device index >= 0, got {self.camera}")
        for name in ("width", "height", "detect_width", "min_face", "max_frames", "metrics_port", "classify_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if (self.width == 0) != (self.height == 0):
            raise ConfigError("give --width and --height together (or neither, for the source's own size)")
        if self.metrics_port > 65535:
            raise ConfigError(f"--metrics-port must be 1..65535 (or 0 = off), got {self.metrics_port}")
        if self.fps < 0 or self.duration_s < 0:
            raise ConfigError("--fps and --duration must be >= 0")
        from edgemask.bundle.manifest import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown --precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)} "
                "(lower case; the bundle must contain a model at that precision)"
            )
        if not self.bundle and self.backend != "null":
            # No --bundle: the pretrained defaults shipped in the package (edgemask/pretrained/).
            from edgemask.pretrained import default_bundle

            shipped = default_bundle()
            if shipped is None:
                raise ConfigError(
                    "--bundle is required: this install ships no pretrained bundle (rebuild it with "
                    "'python -m edgemask.pretrained.rebuild --install' or pass an exported bundle "
                    "folder, see 'edgemask export'); only --backend null runs without one"
                )
            self.bundle = str(shipped)
        from edgemask.vision.detectors import parse_detector

        kind, _ = parse_detector(self.detector, self.face_model)  # unknown name, yunet without a file
        if kind == "bundle" and not self.bundle:
            raise ConfigError(
                "--detector bundle needs --bundle DIR (a bundle exported with "
                "'edgemask export RUN --detector DET_RUN'); or choose --detector haar-fusion"
            )
        if self.detector_precision and self.detector_precision not in PRECISIONS:
            raise ConfigError(
                f"unknown --detector-precision {self.detector_precision!r}; choose one of: "
                f"{', '.join(PRECISIONS)}, or leave it empty for --precision"
            )
        if self.detect_mode not in DETECT_MODES:
            raise ConfigError(f"unknown --detect-mode {self.detect_mode!r}; choose one of: {', '.join(DETECT_MODES)}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {self.detect_every}")
        if self.vote_window < 1:
            raise ConfigError(f"--vote-window must be >= 1, got {self.vote_window}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence must lie in [0, 1], got {self.min_confidence}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"--iou-threshold must lie in (0, 1], got {self.iou_threshold}")
        if self.crop_margin is not None and not 0.0 <= self.crop_margin <= 1.0:
            raise ConfigError(f"--crop-margin must lie in [0, 1], got {self.crop_margin}")
        if self.mqtt_qos not in (0, 1, 2):
            raise ConfigError(f"--mqtt-qos must be 0, 1 or 2, got {self.mqtt_qos}")
        if self.start_timeout_s < 0:
            raise ConfigError(f"--start-timeout must be >= 0 seconds (0 = keep retrying), got {self.start_timeout_s}")
        if self.debounce_s < 0 or self.max_missed < 0:
            raise ConfigError("--debounce and --max-missed must be >= 0")
        for name in (
            "stall_timeout_s",
            "open_timeout_s",
            "reconnect_min_s",
            "reconnect_max_s",
            "sink_timeout_s",
            "retry_min_s",
            "retry_max_s",
            "health_stale_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.roi:
            parse_roi(self.roi)
        if self.crop_margin is None:
            self.crop_margin = self.bundle_crop_margin()

    def bundle_crop_margin(self) -> float | None:
        """The crop margin the bundle's model was trained with (``preprocessing.crop_margin``).

        Without a bundle (``--backend null``) the default; None when the
        bundle cannot be read: opening it later reports why, in one line.
        """
        from edgemask.config import CROP_MARGIN

        if not self.bundle:
            return CROP_MARGIN
        from edgemask.bundle.manifest import load_manifest
        from edgemask.errors import BundleError

        try:
            return load_manifest(self.bundle).preprocessing.crop_margin
        except BundleError:
            return None


def valid_option_names() -> list[str]:
    """The keys a ``[run]`` table accepts, as the docs name them (an option's name where it has one)."""
    field_names = [f.name for f in dataclasses.fields(RunConfig) if f.name != "config_file"]
    by_field = {v: k for k, v in OPTION_ALIASES.items()}
    return sorted(by_field.get(n, n) for n in field_names)


_NUMBER_HINT = {
    float: "a number",
    int: "a whole number",
    bool: "true or false (a TOML boolean, no quotes)",
    str: "a string in quotes",
}


def typed_options(d: Any, where: str = "the config file", from_file: bool = True) -> dict[str, Any]:
    """A ``[run]`` table as RunConfig keyword arguments: names resolved, every value type-checked.

    Keys may be the field name (``debounce_s``) or the option's name in the
    docs (``debounce``, ``health-stale``...). Booleans must be TOML booleans
    (``headless = "no"`` is an error, not true), numbers must be numbers.

    Raises:
        ConfigError: one line naming the key, what it holds and what it needs;
            for an unknown key, the valid ones.
    """
    from edgemask.utils.redact import redact

    if not isinstance(d, dict):
        raise ConfigError(f"{where}: 'run' must be a table ([run] with key = value lines), got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    defaults = RunConfig()
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    unknown = []
    for key, value in d.items():
        norm = str(key).replace("-", "_")
        name = OPTION_ALIASES.get(norm, norm)
        if name not in fields or (from_file and name == "config_file"):
            unknown.append(str(key))
            continue
        if name in given:
            raise ConfigError(f"{where}: [run] sets {name} twice (as {given[name]} and as {key}); keep one")
        given[name] = str(key)
        out[name] = _typed(name, key, value, getattr(defaults, name), where, redact)
    if unknown:
        import difflib

        valid = valid_option_names()
        near = [m for k in unknown for m in difflib.get_close_matches(k.replace("-", "_"), valid, n=1)]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ConfigError(f"{where}: unknown run option(s) {', '.join(unknown)}{hint}; valid ones: {', '.join(valid)}")
    return out


def _typed(name: str, key: Any, value: Any, default: Any, where: str, redact: Any) -> Any:
    shown = redact(repr(value))
    if name == "camera":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{where}: [run] {key} = {shown} must be a camera index, a whole number >= 0 (e.g. camera = 0)"
            )
        return value
    if name == "crop_margin":  # None (the bundle's) by default, a number when given
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{where}: [run] {key} = {shown} must be a number (a fraction of the face box, "
                f"e.g. {key} = 0.15); leave it out to use the bundle's"
            )
        return float(value)
    if name == "alert_on":
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list) and all(isinstance(x, str) for x in value):
            items = value
        else:
            raise ConfigError(
                f"{where}: [run] {key} = {shown} must be class names, e.g. "
                'alert_on = ["no_mask", "mask_incorrect"] or "no_mask,mask_incorrect"'
            )
        return tuple(x.strip() for x in items if x.strip())
    kind = type(default)
    ok = (
        isinstance(value, bool)
        if kind is bool
        else isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is float
        else isinstance(value, int) and not isinstance(value, bool)
        if kind is int
        else isinstance(value, str)
    )
    if not ok:
        unit = " (seconds)" if name.endswith("_s") else ""
        example = {bool: "true", float: f"{default:g}" if kind is float else "", int: str(default), str: '"..."'}[kind]
        raise ConfigError(f"{where}: [run] {key} = {shown} must be {_NUMBER_HINT[kind]}{unit}, e.g. {key} = {example}")
    return float(value) if kind is float else value


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` → ints; ConfigError when malformed."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--roi {text!r} is not 'x,y,w,h' in pixels, e.g. --roi 160,80,320,320") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"--roi {text!r} needs x, y >= 0 and w, h > 0")
    return x, y, w, h


@dataclass(frozen=True)
class Secrets:
    """Credentials for the alert sinks. ``repr`` never shows them."""

    mqtt_password: str = field(default="", repr=False)
    webhook_token: str = field(default="", repr=False)
    source_password: str = field(default="", repr=False)

    def __repr__(self) -> str:  # never print a secret, even in a traceback's locals
        return (
            f"Secrets(mqtt_password={'***' if self.mqtt_password else ''!r}, "
            f"webhook_token={'***' if self.webhook_token else ''!r}, "
            f"source_password={'***' if self.source_password else ''!r})"
        )


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML config file: a ``[run]`` table of options, a ``[secrets]`` table.

    Example::

        [run]
        camera = 0
        bundle = "/opt/edgemask/bundle"
        mqtt = "mqtt://edge@broker.local:1883/site/cam1/alerts"

        [secrets]
        mqtt_password = "..."
        webhook_token = "..."
        source_password = "..."   # the camera's, with --source rtsp://USER@host/...

    Raises:
        ConfigError: missing, unreadable or malformed file.
    """
    from edgemask.utils.toml_compat import tomllib

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist; pass an existing TOML file to --config") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text; save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    bad = sorted(set(data) - {"run", "secrets"})
    if bad:
        raise ConfigError(f"config file {p} has unknown table(s) {', '.join(bad)}; use only the tables run and secrets")
    return data


def load_secrets(config_file: str = "", environ: dict[str, str] | None = None) -> Secrets:
    """Secrets from the environment, else from the config file's ``[secrets]`` table.

    A config file holding secrets that other users can read is refused: fix
    it with ``chmod 600``.
    """
    file_secrets: dict[str, Any] = {}
    if config_file:
        data = read_config_file(config_file)
        file_secrets = data.get("secrets", {}) or {}
        if not isinstance(file_secrets, dict):
            raise ConfigError(
                f"config file {config_file}: 'secrets' must be a table ([secrets] with key = \"value\" lines)"
            )
        for k, v in file_secrets.items():
            if not isinstance(v, str):
                raise ConfigError(
                    f"config file {config_file}: [secrets] {k} must be a string in quotes, got a {type(v).__name__}"
                )
        unknown = sorted(set(file_secrets) - {"mqtt_password", "webhook_token", "source_password"})
        if unknown:
            raise ConfigError(
                f"config file {config_file} has unknown secret(s) {', '.join(unknown)}; "
                "known: mqtt_password, webhook_token, source_password"
            )
        if file_secrets and os.name == "posix":
            mode = Path(config_file).stat().st_mode
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                raise ConfigError(
                    f"config file {config_file} holds secrets but other users can read it; "
                    f"run 'chmod 600 {config_file}'"
                )
    secrets = Secrets(
        mqtt_password=setting(ENV_MQTT_PASSWORD, environ) or str(file_secrets.get("mqtt_password", "")),
        webhook_token=setting(ENV_WEBHOOK_TOKEN, environ) or str(file_secrets.get("webhook_token", "")),
        source_password=setting(ENV_SOURCE_PASSWORD, environ) or str(file_secrets.get("source_password", "")),
    )
    from edgemask.utils.redact import register_secret

    for value in (secrets.mqtt_password, secrets.webhook_token, secrets.source_password):
        register_secret(value)  # hidden from every log line and error from now on
    return secrets


def config_with_file(cfg: RunConfig, explicit: set[str]) -> RunConfig:
    """``cfg`` with values from ``cfg.config_file``'s ``[run]`` table where not given explicitly.

    Args:
        cfg: options as parsed (defaults included).
        explicit: names of the fields the user set on the command line; they
            win over the file.
    """
    if not cfg.config_file:
        return cfg
    data = typed_options(read_config_file(cfg.config_file).get("run", {}) or {}, f"config file {cfg.config_file}")
    merged = cfg.to_dict()
    for k, v in data.items():
        if k not in explicit:
            merged[k] = v
    merged["alert_on"] = tuple(merged["alert_on"])
    return RunConfig(**merged)


__all__ = [
    "DEFAULT_ALERT_ON",
    "DETECTORS",
    "DETECT_MODES",
    "ENV_MQTT_PASSWORD",
    "ENV_SOURCE_PASSWORD",
    "ENV_WEBHOOK_TOKEN",
    "OPTION_ALIASES",
    "RunConfig",
    "Secrets",
    "config_with_file",
    "load_secrets",
    "parse_roi",
    "read_config_file",
    "typed_options",
    "valid_option_names",
]

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

from edgemask.config import (
    EDGEMASK_MQTT_PASSWORD,
    EDGEMASK_SOURCE_PASSWORD,
    EDGEMASK_WEBHOOK_TOKEN,
    described,
    setting,
)
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

    Each option's description is its field's ``metadata["help"]``, the line
    ``edgemask run --help`` shows (:func:`edgemask.config.field_help`); fields
    are grouped as there. What a help line has no room for:

        source: a raw GStreamer pipeline is recognised by its ``!``; empty when ``camera`` is set.
        width, height, fps: cameras are asked for them; other sources are
            resized (and files paced to ``fps``).
        loop: for demos and soak tests.
        as_video: tracks and votes carry over from photo to photo.
        bundle: required unless ``backend == "null"``; empty = the shipped pretrained bundle.
        classify_threads: see also ``EDGEMASK_NUM_THREADS``. One by default: a
            frame's batch is a few small crops, and the other cores decode and
            detect. Measured on 2 busy cores: torch with 2 threads took 108 ms
            per frame to classify, with 1 thread 2.9 ms.
        face_model: the older spelling of ``detector="yunet:FILE"``.
        detect_width: boxes are scaled back to the full frame.
        detect_every: a multi-pass detector (``haar-fusion``: 3 views) runs one
            pass per detect frame, so a full fusion takes 3·k frames.
        detect_mode: ``async`` feeds the detector thread the newest frame
            whenever it is free; ``auto`` is async for live sources, sync for
            files and folders.
        crop_margin: None (the default) is resolved by :meth:`validate` to the
            bundle's ``preprocessing.crop_margin``, the margin the model was
            trained with, so live crops look like training crops.
        mqtt_qos: 0 gives no delivery guarantee.
        metrics_host: loopback by default; put a reverse proxy in front.
        retry_min_s, retry_max_s: exponential backoff of alert delivery (no option; ``--config`` only).
        freeze_timeout_s: only for live sources.
        start_timeout_s: 0 = forever, what the systemd unit uses, so a box that
            boots before its camera or network waits for them.
        reconnect_min_s, reconnect_max_s: exponential backoff of source reopening (``--config`` only).
    """

    # source
    source: str = described(
        "",
        help=f"Video file, image folder, rtsp:// or http:// URL (rtsp://USER@host/...; password: ${ENV_SOURCE_PASSWORD} or "
        "--config), a GStreamer pipeline ending in appsink, or csi://N (CSI sensor N via the device profile).",
    )
    camera: int | None = described(None, help="V4L2 camera index (/dev/videoN).")
    width: int = described(0, help="Frame width to request / resize to (0 = the source's own).")
    height: int = described(0, help="Frame height to request / resize to (0 = the source's own).")
    fps: float = described(
        0.0, help="Frame rate to request from a camera; files are played at this rate (0 = as fast as possible)."
    )
    loop: bool = described(False, help="Start a video file or image folder again at its end.")
    as_video: bool = described(
        False,
        help="Read an image folder as frames of one video (numbered frame dumps); by default each photo is its own "
        "scene, classified on its own.",
    )
    device_profile: str = described(
        "jetson-orin-nano",
        help="Device profile ('edgemask devices list'): the CSI pipeline csi://N uses and, with --backend onnxrt on a "
        "GPU build of ONNX Runtime, its TensorRT/CUDA provider options.",
    )
    # model
    bundle: str = described(
        "",
        help="Exported bundle folder (verified before use). Default: the pretrained detector + classifier shipped with "
        "edgemask (model card: edgemask/pretrained/MODEL_CARD.md). Not needed with --backend null.",
    )
    backend: str = described(
        "onnxrt",
        help="Inference backend: onnxrt, torch, opencv, tensorrt, or null (fake classifier, for timing the pipeline).",
    )
    precision: str = described("fp32", help="Model precision from the bundle: fp32, fp16 or int8.")
    classify_threads: int = described(
        1,
        help="Threads of a torch or onnxrt classifier (0 = the backend's default); more only pay off with many "
        "faces per frame.",
    )
    # detection
    detector: str = described(
        "auto",
        help=f"Face detector: {', '.join(DETECTORS)} or yunet:FILE. auto = the bundle's learned detector when the bundle "
        "has one, else yunet with --face-model, else haar-fusion (finds more masked faces than haar).",
    )
    face_model: str = described(
        "",
        help="YuNet ONNX model for cv2.FaceDetectorYN (face_detection_yunet_2023mar.onnx); same as --detector yunet:FILE.",
    )
    detector_precision: str = described(
        "",
        help="Precision of the bundle's detector: fp32, fp16 or int8 (empty = --precision). It runs on --backend "
        "(onnxrt with --backend null).",
    )
    detect_width: int = described(320, help="Downscale frames to this width for detection (0 = full size).")
    detect_every: int = described(
        1,
        help="Run a detector pass every k-th frame (haar-fusion spreads its 3 views over 3 passes); tracks are "
        "extrapolated and classified in between.",
    )
    detect_mode: str = described(
        "auto",
        help="sync: detect inside the frame loop (reproducible); async: detector on its own thread, frame latency "
        "excludes it; auto: async for cameras and streams, sync for files.",
    )
    min_face: int = described(
        40,
        help="Smallest face to detect (its longer side, in frame pixels); detection downscales less when needed so such "
        "faces stay findable.",
    )
    roi: str = described("", help="With --detector none: the fixed face region x,y,w,h (empty = whole frame).")
    crop_margin: float | None = described(
        None,
        help="Context added per side of a face box before the square crop, a fraction of its longer side (default: the "
        "bundle's, as in training).",
    )
    # tracking and alerts
    alert_on: tuple[str, ...] = described(DEFAULT_ALERT_ON, help="Comma-separated classes that raise alerts.")
    vote_window: int = described(5, help="Frames in each track's class vote (majority wins).")
    # 0.5: a frame votes only for a class that holds most of the probability. On the pretrained classifier's
    # validation crops (real photos) 0.6 left 15 % of unmasked faces without a vote, 0.5 11 %, for 0.2 points
    # more masked faces voted no_mask; below 0.5 a vote could go to a class that is likelier wrong than right.
    min_confidence: float = described(
        0.5, help="A frame votes only with at least this softmax confidence (0.5: its class is likelier than not)."
    )
    iou_threshold: float = described(0.3, help="Minimum IoU to continue a track.")
    max_missed: int = described(5, help="Detector runs a track survives without a match.")
    debounce_s: float = described(30.0, help="Seconds between two alerts of the same track.")
    # outputs
    headless: bool = described(False, help="Never open a window (one opens only when a display exists).")
    record: str = described("", help="Write an annotated MP4 here.")
    events: str = described(
        "", help="Append JSON Lines events (time, frame, track, box, class, confidence; alerts) here."
    )
    snapshots: str = described("", help="Write one annotated JPEG per alert into this folder.")
    log_alerts: bool = described(True, help="Log every alert as a WARNING line.")
    webhook: str = described(
        "", help=f"POST alerts as JSON to this http(s) URL (token: ${ENV_WEBHOOK_TOKEN} or --config)."
    )
    mqtt: str = described(
        "",
        help=f"Publish alerts to mqtt://user@host:port/topic (mqtts:// for TLS; password: ${ENV_MQTT_PASSWORD} or --config).",
    )
    mqtt_qos: int = described(1, help="MQTT QoS: 1 = at least once.")
    state_dir: str = described(
        "edgemask-state", help="Folder of the alert outbox (survives restarts) and run_config.json."
    )
    sink_timeout_s: float = described(5.0, help="Seconds one webhook/MQTT delivery attempt may take.")
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0
    # operations
    metrics_port: int = described(0, help="Serve Prometheus /metrics and /healthz on this port (0 = off).")
    metrics_host: str = described("127.0.0.1", help="Address the metrics server binds (loopback by default).")
    health_stale_s: float = described(15.0, help="/healthz fails after this many seconds without a processed frame.")
    max_frames: int = described(0, help="Stop after this many frames (0 = never).")
    duration_s: float = described(0.0, help="Stop after this many seconds (0 = never).")
    stall_timeout_s: float = described(5.0, help="Reopen a live source that sends no frame for this many seconds.")
    freeze_timeout_s: float = described(
        10.0, help="Reopen a live source that repeats the same frame this long (0 = off)."
    )
    open_timeout_s: float = described(10.0, help="Seconds opening a source (and its first frame) may take.")
    start_timeout_s: float = described(
        10.0,
        help="Seconds to keep retrying (with backoff) a source that cannot be opened at start-up (0 = forever, as the "
        "systemd unit does).",
    )
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    config_file: str = described(
        "",
        help="TOML config file: a 'run' table of these options (underscores for dashes) and a 'secrets' table "
        "(chmod 600).",
    )

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
            from edgemask.pretrained import CARD_MARKDOWN, default_bundle

            shipped = default_bundle()
            if shipped is None:
                raise ConfigError(
                    "--bundle is required: this install ships no pretrained bundle (rebuild it with "
                    "'python -m edgemask.rebuild_pretrained --voc VOC_DIR --install' or pass an exported bundle "
                    "folder, see 'edgemask export'); only --backend null runs without one"
                )
            self.bundle = str(shipped)
            import logging

            logging.getLogger("edgemask.service").info(
                "no --bundle: using the pretrained bundle shipped with edgemask (%s; model card %s)",
                shipped,
                CARD_MARKDOWN,
            )
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

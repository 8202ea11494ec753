"""Start-up of a run: every check a user can fail, then every part opened, in an order that fails fast.

:func:`prepare_run` does every check a user can fail (options, URLs, paths,
bundle/backend/precision, detector, the source itself) before any long work
starts, raising one-line :class:`~edgemask.errors.EdgemaskError` s, and
returns a :class:`PreparedRun` that :func:`edgemask.service.loop.run_service`
loops over. A start that fails leaves no file or folder behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError
from edgemask.service.config import RunConfig, Secrets, load_secrets, parse_roi
from edgemask.service.outputs import AlertQueue, EventWriter, Outputs, check_writable
from edgemask.vision.sources import FrameSourceLike, SourceSpec

log = logging.getLogger("edgemask.service")


@dataclass
class PreparedRun:
    """Everything :func:`run_service` loops over, opened and checked."""

    cfg: RunConfig
    source: FrameSourceLike  # None only while prepare_run has not opened it yet
    detector: Any
    runner: Any
    class_names: list[str]
    alert_classes: tuple[int, ...]
    outputs: Outputs | None = None  # events file, snapshots, recording, window; alerts into the outbox
    outbox: Any = None
    dispatcher: Any = None
    metrics: Any = None
    metrics_server: Any = None
    owns_runner: bool = True
    owns_detector: bool = True
    final_pending: dict[str, int] = field(default_factory=dict)
    final_outbox: dict[str, Any] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)  # outputs made by prepare_run, removed if the start fails

    def close(self) -> None:
        """Release everything, in the order that keeps alerts safe."""
        with contextlib.suppress(Exception):
            self.source.close()
        if self.outputs is not None:
            self.outputs.close()
        if self.dispatcher is not None:
            self.dispatcher.drain(min(2.0, self.cfg.sink_timeout_s))  # a last chance to deliver; the rest stays queued
            self.dispatcher.stop()
        if self.outbox is not None:
            self.outbox.close()
            self.final_pending = dict(self.outbox.pending_at_close)
            self.final_outbox = self.outbox.status()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.owns_runner and self.runner is not None:
            with contextlib.suppress(Exception):
                self.runner.deactivate()
        if self.owns_detector and hasattr(self.detector, "close"):
            with contextlib.suppress(Exception):
                self.detector.close()  # the bundle detector's runner


# The backends whose intra-op thread count concerns only the classifier. (OpenCV DNN's is
# process-wide and would slow the Haar detector too; TensorRT runs on the GPU.)
_THREADS_OPTION = {"torch": "num_threads", "onnxrt": "intra_op_num_threads"}


def _ort_has_gpu_providers() -> bool:
    import onnxruntime

    return bool({"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(onnxruntime.get_available_providers()))


def make_runner(cfg: RunConfig, bundle: Any = None) -> tuple[Any, list[str]]:
    """The active Runner and class names for ``cfg`` (bundle verified first, unless ``bundle`` is given loaded).

    Raises:
        BundleError / BackendError / ConfigError: a damaged bundle, a backend
            or precision it cannot run, or a missing option.
    """
    from edgemask.backends import get_backend, runner_from_bundle

    if cfg.backend == "null" and not cfg.bundle:
        from edgemask.data.labels import CLASS_NAMES

        runner = get_backend("null")(input_size=64, num_classes=len(CLASS_NAMES), precision=cfg.precision)
        names = list(CLASS_NAMES)
    else:
        from edgemask.bundle import load_bundle

        bundle = bundle if bundle is not None else load_bundle(cfg.bundle)
        option = _THREADS_OPTION.get(cfg.backend)
        opts: dict[str, Any] = {option: cfg.classify_threads} if option and cfg.classify_threads else {}
        if cfg.backend == "onnxrt" and _ort_has_gpu_providers():
            # A GPU build of ONNX Runtime (Jetson Zoo wheel, onnxruntime-gpu): run its TensorRT/CUDA
            # providers with the device profile's options (precision flags, DLA, engine cache).
            opts["device"] = cfg.device_profile
        if cfg.backend == "tensorrt":
            # No engine for this box in the bundle: build one on first use into the engine cache.
            from edgemask.export.engine import first_use_engine

            opts["engine_loader"] = first_use_engine
        runner = runner_from_bundle(bundle, cfg.backend, cfg.precision, **opts)
        names = bundle.class_names
    runner.activate()
    runner.infer(np.zeros((1, runner.input_size, runner.input_size, 3), np.uint8))  # warm-up outside the loop
    runner.latencies_ms.clear()
    return runner, names


def make_bundle_detector(cfg: RunConfig, bundle: Any) -> Any:
    """The bundle's learned detector for ``cfg``: on ``cfg.backend`` (onnxrt for null), at
    ``cfg.detector_precision`` or ``cfg.precision``; active and warmed up."""
    from edgemask.vision.bundle_detector import detector_backend, detector_from_bundle

    backend = detector_backend(cfg.backend)
    opts: dict[str, Any] = {}
    if backend == "onnxrt" and _ort_has_gpu_providers():
        opts["device"] = cfg.device_profile
    if backend == "tensorrt":
        # as for the classifier: no detector engine in the bundle -> built on first use into the engine cache
        from edgemask.export.engine import first_use_engine

        opts["engine_loader"] = first_use_engine
    return detector_from_bundle(bundle, backend, cfg.detector_precision or cfg.precision, min_face=cfg.min_face, **opts)


def build_sinks(cfg: RunConfig, secrets: Secrets) -> list[Any]:
    """The configured alert sinks (not started)."""
    from edgemask.service.alerts import LogSink, MqttSink, WebhookSink

    sinks: list[Any] = []
    if cfg.log_alerts:
        sinks.append(LogSink())
    if cfg.webhook:
        sinks.append(WebhookSink(cfg.webhook, token=secrets.webhook_token, timeout_s=cfg.sink_timeout_s))
    if cfg.mqtt:
        sinks.append(MqttSink(cfg.mqtt, password=secrets.mqtt_password, qos=cfg.mqtt_qos, timeout_s=cfg.sink_timeout_s))
    return sinks


def prepare_run(
    cfg: RunConfig,
    *,
    secrets: Secrets | None = None,
    runner: Any = None,
    class_names: list[str] | None = None,
    detector: Any = None,
    source: FrameSourceLike | None = None,
    metrics: Any = None,
    notifier: Any = None,
) -> PreparedRun:
    """Check everything and open all parts; raise a one-line EdgemaskError on the first problem.

    Cheap checks come first (options, URLs, secrets, whether the camera
    exists, output paths), then the detector, the bundle and backend, the
    metrics port, and last the source (opening a camera or an RTSP stream can
    take ``open_timeout_s``). The events file, snapshot folder and outbox are
    created only once all of that passed, so a failed start writes nothing.

    Args:
        cfg: the options.
        secrets: default: :func:`load_secrets` (environment, then config file).
        runner, class_names: an active Runner to use instead of the bundle's (tests).
        detector: a FaceDetector to use instead of ``cfg.detector`` (tests).
        source: a FrameSource to use instead of opening ``cfg.source`` (tests);
            it is opened here if it is not yet.
        metrics: a ServiceMetrics to record into (default: a new one).
        notifier: an SdNotifier told about start-up retries of the source (systemd's start timeout is extended).
    """
    from edgemask.vision.sources import FrameSource

    secrets, spec = _check_options(cfg, secrets, source)
    # Nothing is written before every check has passed (the source open, last, is the slowest),
    # so a start-up that fails leaves no empty events file or outbox behind.
    prepared = PreparedRun(cfg=cfg, source=None, detector=None, runner=None, class_names=[], alert_classes=())
    try:
        _open_models(prepared, runner, class_names, detector)
        # alerts and metrics (bound now: a port in use fails before the source is waited for)
        sinks = build_sinks(cfg, secrets)
        _open_metrics(prepared, metrics)
        # source, last of the checks: it may wait for a camera or a stream
        if source is None:
            assert spec is not None
            source = FrameSource(spec, **cfg.source_options(), on_start_retry=_start_retry_notice(notifier, cfg))
        prepared.source = source
        if not source.opened:
            source.open()
        _create_outputs(prepared, sinks)  # everything checked: create the outputs
        return prepared
    except BaseException:
        prepared.close()
        for path in reversed(prepared.created):  # a failed start leaves no empty file or folder behind
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                elif path.stat().st_size == 0:
                    path.unlink()
        raise


def _check_options(
    cfg: RunConfig, secrets: Secrets | None, source: FrameSourceLike | None
) -> tuple[Secrets, SourceSpec | None]:
    """The checks that need no waiting: options, sink URLs, secrets, the source (a missing camera), output paths.

    Returns the secrets and, unless a source was given, the spec to open.
    """
    from edgemask.service.alerts import check_http_url, parse_mqtt_url
    from edgemask.vision.sources import check_source, parse_source, url_with_password

    cfg.validate()
    if cfg.mqtt:
        parse_mqtt_url(cfg.mqtt)
    if cfg.webhook:
        check_http_url(cfg.webhook)
    if secrets is None:
        secrets = load_secrets(cfg.config_file)
    spec = None
    if source is None:
        spec = parse_source(
            cfg.source or None,
            cfg.camera,
            width=cfg.width,
            height=cfg.height,
            fps=cfg.fps,
            loop=cfg.loop,
            device_profile=cfg.device_profile,
            as_video=cfg.as_video,
        )
        if spec.kind == "url" and secrets.source_password:
            spec = dataclasses.replace(spec, target=url_with_password(str(spec.target), secrets.source_password))
        check_source(spec)  # a missing camera is known now, not after the model has loaded
    for path, what, folder in (
        (cfg.events, "--events", False),
        (cfg.record, "--record", False),
        (cfg.snapshots, "--snapshots", True),
        (cfg.state_dir, "--state-dir", True),
    ):
        if path:
            check_writable(path, what, folder)
    return secrets, spec


def _open_models(prepared: PreparedRun, runner: Any, class_names: list[str] | None, detector: Any) -> None:
    """The detector and the classifier (the bundle verified once for both), and the classes that alert."""
    from edgemask.vision.detectors import create_detector, resolve_detector

    cfg = prepared.cfg
    bundle_obj = None
    if cfg.bundle and (runner is None or (detector is None and cfg.detector in ("auto", "bundle"))):
        from edgemask.bundle import load_bundle

        bundle_obj = load_bundle(cfg.bundle)
    # detector: Haar/YuNet now (cheap; a bad model file fails before the classifier loads), the bundle's below
    kind, yunet_model = resolve_detector(
        cfg.detector, cfg.face_model, bundle_obj.has_detector if bundle_obj is not None else False
    )
    if kind == "bundle" and detector is None and bundle_obj is not None and not bundle_obj.has_detector:
        bundle_obj.detector_view()  # BundleError: this bundle has no detector (one line, with the fix)
    roi = parse_roi(cfg.roi) if cfg.roi else None
    if detector is not None:
        prepared.detector, prepared.owns_detector = detector, False
    elif kind != "bundle":
        name = f"yunet:{yunet_model}" if cfg.detector.startswith("yunet:") else kind
        prepared.detector = create_detector(
            name, face_model=cfg.face_model, detect_width=cfg.detect_width, min_face=cfg.min_face, roi=roi
        )
    # model
    if runner is None:
        runner, class_names = make_runner(cfg, bundle_obj)
    else:
        prepared.owns_runner = False
        if not runner.active:
            runner.activate()
        class_names = list(class_names or [])
        if not class_names:
            raise ConfigError("prepare_run(runner=...) needs class_names too")
    prepared.runner, prepared.class_names = runner, list(class_names)
    if prepared.detector is None:
        prepared.detector = make_bundle_detector(cfg, bundle_obj)
    missing = [c for c in cfg.alert_on if c not in class_names]
    if missing:
        raise ConfigError(
            f"--alert-on names {', '.join(missing)}, which the model does not know; "
            f"its classes are: {', '.join(class_names)}"
        )
    prepared.alert_classes = tuple(class_names.index(c) for c in cfg.alert_on)


def _open_metrics(prepared: PreparedRun, metrics: Any) -> None:
    """The run's metrics and, with ``--metrics-port``, its HTTP server (bound now, started with the loop)."""
    from edgemask.service.metrics import MetricsServer, ServiceMetrics

    cfg = prepared.cfg
    prepared.metrics = m = metrics or ServiceMetrics()
    if cfg.bundle and Path(cfg.bundle, "manifest.json").is_file():
        from edgemask.bundle.bundle import manifest_identity

        m.model = manifest_identity(cfg.bundle)
    if prepared.owns_runner:
        m.inferences += 1  # make_runner's warm-up ran the model once
    if cfg.metrics_port:
        prepared.metrics_server = MetricsServer(
            m,
            cfg.metrics_host,
            cfg.metrics_port,
            cfg.health_stale_s,
            extra_health=lambda: {
                "outbox_depth": prepared.outbox.depth() if prepared.outbox is not None else 0,
                "source": prepared.source.spec.describe() if prepared.source is not None else "",
            },
        )


def _create_outputs(prepared: PreparedRun, sinks: list[Any]) -> None:
    """Snapshot folder, events file, outbox and dispatcher: made only once every check has passed."""
    from edgemask.service.alerts import AlertDispatcher
    from edgemask.service.outbox import Outbox

    cfg, m = prepared.cfg, prepared.metrics
    if cfg.snapshots:
        prepared.created.extend(_missing_paths(Path(cfg.snapshots)))
        try:
            Path(cfg.snapshots).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create --snapshots {cfg.snapshots}: {e.strerror}; choose a writable folder"
            ) from None
    events = None
    if cfg.events:
        prepared.created.extend(_missing_paths(Path(cfg.events)))
        events = EventWriter(cfg.events)
    prepared.outputs = Outputs(
        prepared.source.spec,
        events=events,
        snapshots=cfg.snapshots,
        record=cfg.record,
        record_fps=cfg.fps,
        headless=cfg.headless,
    )
    # (it removes what it made itself if it fails; the events file and folders are removed by prepare_run)
    prepared.outbox = Outbox(Path(cfg.state_dir) / "outbox.sqlite3", [s.name for s in sinks], on_state=m.outbox_state)
    m.outbox_state(prepared.outbox.status())
    stale = {k: v for k, v in prepared.outbox.pending_by_sink().items() if k not in {s.name for s in sinks}}
    for k, v in stale.items():
        log.warning(
            "%d alert(s) in the outbox wait for sink %r, which this run does not use; they stay queued "
            "until a run with that sink delivers them",
            v,
            k,
        )
    prepared.dispatcher = AlertDispatcher(
        prepared.outbox,
        sinks,
        cfg.retry_min_s,
        cfg.retry_max_s,
        on_result=lambda s, o: (m.delivery(s, o), m.outbox_depth(prepared.outbox.depth())),
    )
    prepared.outputs.alerts = AlertQueue(prepared.outbox, prepared.dispatcher, m)


def _start_retry_notice(notifier: Any, cfg: RunConfig) -> Callable[[str], None] | None:
    """Under systemd, each start-up retry of the source extends the unit's start timeout and sets its status."""
    if notifier is None:
        return None
    extend_us = int((cfg.reconnect_max_s + cfg.open_timeout_s * 1.5 + 1.0 + 30.0) * 1e6)

    def notice(why: str) -> None:
        from edgemask.utils.redact import redact

        notifier.notify(f"EXTEND_TIMEOUT_USEC={extend_us}\nSTATUS=waiting for the video source: {redact(why)}")

    return notice


def _missing_paths(path: Path) -> list[Path]:
    """``path`` and its missing parent folders, outermost first (what creating it would make)."""
    out = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out[::-1]


__all__ = [
    "PreparedRun",
    "build_sinks",
    "make_bundle_detector",
    "make_runner",
    "prepare_run",
]

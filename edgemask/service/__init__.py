"""The on-device detection service behind ``edgemask run``.

Typical use::

    from edgemask.service import RunConfig, run_service
    summary = run_service(RunConfig(source="hall.mp4", bundle="export/default", headless=True,
                                    events="events.jsonl", max_frames=300))
    print(summary.fps, summary.alerts)

Modules: ``config`` (RunConfig, secrets), ``loop`` (run_service), ``alerts``
(sinks and dispatcher), ``outbox`` (durable alert queue), ``metrics``
(Prometheus + health), ``systemd`` (unit file, sd_notify). Importing this
package pulls in nothing heavy; paho-mqtt and prometheus_client are imported
when used.
"""

from __future__ import annotations

from edgemask.service.config import RunConfig, Secrets, load_secrets
from edgemask.utils.lazy import lazy_exports

_LAZY = {
    "run_service": "edgemask.service.loop",
    "prepare_run": "edgemask.service.prepare",
    "RunSummary": "edgemask.service.loop",
    "Outbox": "edgemask.service.outbox",
    "AlertDispatcher": "edgemask.service.alerts",
    "LogSink": "edgemask.service.alerts",
    "WebhookSink": "edgemask.service.alerts",
    "MqttSink": "edgemask.service.alerts",
    "parse_mqtt_url": "edgemask.service.alerts",
    "ServiceMetrics": "edgemask.service.metrics",
    "MetricsServer": "edgemask.service.metrics",
    "SdNotifier": "edgemask.service.systemd",
    "unit_text": "edgemask.service.systemd",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [  # noqa: RUF022 - grouped: eager names first, then the lazy ones
    "RunConfig",
    "Secrets",
    "load_secrets",
    "AlertDispatcher",
    "LogSink",
    "MetricsServer",
    "MqttSink",
    "Outbox",
    "RunSummary",
    "SdNotifier",
    "ServiceMetrics",
    "WebhookSink",
    "parse_mqtt_url",
    "prepare_run",
    "run_service",
    "unit_text",
]

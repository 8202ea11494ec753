"""The stability study: DeepFool on the float model, transfer to every engine, report.

Typical use::

    from edgemask.stability import StabilityConfig, stability_report, headline_rows
    result = stability_report("export/mask-v1", "data/synth", "reports/mask-v1", StabilityConfig(n=300))
    for row in headline_rows(result):
        print(row.engine, row.transfer_rate, row.rho_adv)

Importing this package is cheap: torch, onnx, onnxruntime and matplotlib are
imported by the functions that need them.
"""

from __future__ import annotations

from edgemask.stability.config import (
    DEFAULT_ALPHAS,
    AttackConfig,
    StabilityConfig,
    engine_key,
    parse_engines,
)
from edgemask.utils.lazy import lazy_exports

_LAZY = {
    "StudyResult": "edgemask.stability.result",
    "FloatAttack": "edgemask.stability.result",
    "HeadlineRow": "edgemask.stability.result",
    "headline_rows": "edgemask.stability.result",
    "run_study": "edgemask.stability.study",
    "stability_report": "edgemask.stability.pipeline",
    "load_study_data": "edgemask.stability.pipeline",
    "load_float_model": "edgemask.stability.inputs",
    "stratified_sample": "edgemask.stability.inputs",
    "engine_metrics": "edgemask.stability.metrics",
    "FakeQuantTwin": "edgemask.stability.fakequant",
    "twin_agreement": "edgemask.stability.fakequant",
    "write_report": "edgemask.stability.report",
    "attack_to_folder": "edgemask.stability.attack",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["DEFAULT_ALPHAS", "AttackConfig", "StabilityConfig", "engine_key", "parse_engines", *_LAZY]

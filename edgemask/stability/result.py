"""What the stability study returns: typed results, the definitions they follow, JSON helpers.

:class:`StudyResult` is what :func:`edgemask.stability.study.run_study`
returns and :mod:`edgemask.stability.report` renders; :data:`DEFINITIONS`
says what every statistic means (it is copied into ``report.json``).
:class:`FloatAttack` carries the float model's DeepFool outcome from the
attack to every engine's measurement as one object.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The dangerous direction for a mask alarm: an unmasked face read as masked.
ALERT_CLASS, SAFE_CLASS = "no_mask", "mask"


DEFINITIONS = {
    "F": "samples the float-model DeepFool attack fooled (float(x_adv) != float(x), re-checked after clipping)",
    "T_E": "F restricted to samples where engine E agreed with float on the clean image",
    "clean_accuracy": "E(x) == ground truth, over all N",
    "agreement": "E(x) == float(x), over all N",
    "transfer_rate": "over T_E, fraction with E(x_adv) != E(x)",
    "adv_agreement": "over F, fraction with E(x_adv) == float(x_adv)",
    "rho_adv": "mean ||r||2/||x||2 over samples of T_E whose x_adv fooled E (count in rho_n)",
    "alpha_sweep": "over T_E, fraction with E(clip(x + alpha*r)) != E(x); r = x_adv - x",
    "noise": "over T_E, fraction with E(clip(x + u)) != E(x), u Gaussian scaled so ||clip(x + u) - x||2 = ||r||2, "
    "averaged over trials",
    "margin_adv": "float logit gap past the boundary at x_adv: max over k != float(x) of f_k(x_adv) - f_float(x)(x_adv); "
    "an engine whose logits differ from the float model's by more than this can undo the flip",
    "eight_bit": "over the samples of T_E that fooled E, fraction still fooling E after round(255*x_adv)/255",
    "missed_alert": "ground truth no_mask, E(x) == no_mask and E(x_adv) == mask, over ground-truth no_mask samples E got right",
    "sensitivity": "mean over random delta of ||E(x+delta) - E(x)||2 / ||delta||2 with ||delta||2 = scale*||x||2 (logits)",
}


def to_jsonable(o: Any) -> Any:
    """numpy → Python, non-finite floats → None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


def column_name(key: str) -> str:
    """Engine key → CSV column prefix: ``onnxrt:int8@cuda`` → ``onnxrt_int8_cuda``."""
    return key.replace(":", "_").replace("@", "_").replace("+", "_")


@dataclass
class FloatAttack:
    """DeepFool on the float model, on N images (float32 NCHW in [0, 1]).

    ``r = x_adv − x`` is the perturbation actually applied (overshoot and
    clipping included), so ``x + 1·r`` is exactly ``x_adv``.
    """

    x: np.ndarray  # (N, 3, S, S) clean images
    x_adv: np.ndarray  # (N, 3, S, S) DeepFool's images
    x_adv8: np.ndarray  # (N, 3, S, S) x_adv stored as 8-bit pixels, round(255·x_adv)/255
    r: np.ndarray  # (N, 3, S, S) x_adv − x
    r_norm: np.ndarray  # (N,) ‖r‖₂ (float64)
    pred_clean: np.ndarray  # (N,) float model's class on x
    pred_adv: np.ndarray  # (N,) float model's class on x_adv
    success: np.ndarray  # (N,) bool: the set F, fooled (re-checked after clipping)
    rho: np.ndarray  # (N,) ‖r‖₂/‖x‖₂ (float64)
    deepfool: Any  # the DeepFoolResult (iterations, margins, … for the per-sample table)
    summary: dict[str, Any]  # DeepFoolResult.summary() plus where it ran

    @property
    def fooled(self) -> np.ndarray:
        """Indices of F."""
        return np.flatnonzero(self.success)


@dataclass
class StudyResult:
    """Everything the study measured. Rendering lives in :mod:`edgemask.stability.report`.

    Attributes:
        config: the resolved :class:`StabilityConfig` as a dict.
        meta: provenance: bundle, dataset, seed, library versions, TF32 state, device, timings.
        float_attack: DeepFool summary on the float model.
        engines: one dict per engine: its label (``source``: "engine" or
            "host-emulation", backend, precision, describe()) and its metrics.
        int8_attack: DeepFool directly against the int8 model (twin), or None.
        twin: agreement of the fake-quant twin with the int8 engine, or None.
        class_names: the model's classes.
        alphas: the α grid.
        rows: per-sample table, one dict per image (see ``columns``).
        columns: column order of ``rows``.
        examples: a few adversarial examples with their images (numpy; not in JSON).
        warnings: things the reader must know (softmax-shaped output, skipped engines, ...).
    """

    config: dict[str, Any]
    meta: dict[str, Any]
    float_attack: dict[str, Any]
    engines: list[dict[str, Any]]
    int8_attack: dict[str, Any] | None
    twin: dict[str, Any] | None
    class_names: list[str]
    alphas: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def engine(self, key: str) -> dict[str, Any]:
        """The engine entry named ``key`` (e.g. ``"onnxrt:int8"``)."""
        for e in self.engines:
            if e["key"] == key:
                return e
        raise KeyError(f"no engine {key!r}; have {', '.join(e['key'] for e in self.engines)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-sample table goes to its own file)."""
        return to_jsonable(
            {
                "format": "edgemask-stability-report",
                "version": 1,
                "config": self.config,
                "meta": self.meta,
                "class_names": self.class_names,
                "alphas": self.alphas,
                "float_attack": self.float_attack,
                "engines": self.engines,
                "int8_attack": self.int8_attack,
                "twin": self.twin,
                "warnings": self.warnings,
                "columns": self.columns,
                "definitions": DEFINITIONS,
            }
        )


@dataclass
class HeadlineRow:
    """One engine's line in the summary tables (the CLI's, the demo's, report.md's)."""

    engine: str  # engine key, e.g. "onnxrt:int8"
    source: str  # "engine", "host-emulation" or "fake"
    clean_accuracy: float | None  # E(x) == truth, over N
    agreement: float | None  # E(x) == float(x), over N
    transfer_rate: float | None  # over T_E, E(x_adv) != E(x)
    transfer_k: int | None
    transfer_n: int | None
    adv_agreement: float | None  # over F, E(x_adv) == float(x_adv)
    rho_adv: float | None  # mean ρ over the samples of T_E that fooled E
    rho_n: int | None
    missed_alerts: int | None  # no_mask → mask flips among alerted no_mask faces
    missed_alert_n: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def headline_rows(result: StudyResult) -> list[HeadlineRow]:
    """One typed row per engine, in the study's order."""
    return [
        HeadlineRow(
            engine=e["key"],
            source=e["source"],
            clean_accuracy=e["clean_accuracy"],
            agreement=e["agreement"],
            transfer_rate=e["transfer_rate"],
            transfer_k=e["transfer_k"],
            transfer_n=e["transfer_n"],
            adv_agreement=e["adv_agreement"],
            rho_adv=e["rho_adv"],
            rho_n=e["rho_n"],
            missed_alerts=e["missed_alerts"],
            missed_alert_n=e["missed_alert_n"],
        )
        for e in result.engines
    ]


__all__ = [
    "ALERT_CLASS",
    "DEFINITIONS",
    "FloatAttack",
    "HeadlineRow",
    "SAFE_CLASS",
    "StudyResult",
    "column_name",
    "headline_rows",
    "to_jsonable",
]

"""Per-engine statistics of the study from per-sample predictions (definitions: result.DEFINITIONS)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemask.stability.result import ALERT_CLASS, SAFE_CLASS


def rate(hit: np.ndarray, among: np.ndarray) -> tuple[float | None, int, int]:
    """(fraction, count, denominator) of ``hit`` within the boolean mask ``among``."""
    den = int(among.sum())
    k = int((hit & among).sum())
    return (k / den if den else None), k, den


def mean_finite(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def median_finite(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def engine_metrics(
    *,
    y: np.ndarray,
    f_clean: np.ndarray,
    f_adv: np.ndarray,
    f_success: np.ndarray,
    e_clean: np.ndarray,
    e_adv: np.ndarray,
    e_adv8: np.ndarray,
    rho: np.ndarray,
    class_names: list[str],
) -> dict[str, Any]:
    """The per-engine numbers of the study from per-sample predictions (see the module docstring).

    Args:
        y: (N,) ground truth; f_*: float model predictions / success; e_*: this engine's predictions.
        rho: (N,) ‖r‖₂/‖x‖₂ of the float attack.
    """
    agree = e_clean == f_clean
    t_set = f_success & agree
    fooled = e_adv != e_clean
    out: dict[str, Any] = {"n": len(y)}
    out["clean_accuracy"], out["clean_correct"], _ = rate(e_clean == y, np.ones_like(agree))
    out["agreement"], out["agreement_k"], _ = rate(agree, np.ones_like(agree))
    out["transfer_rate"], out["transfer_k"], out["transfer_n"] = rate(fooled, t_set)
    out["adv_agreement"], out["adv_agreement_k"], out["adv_agreement_n"] = rate(e_adv == f_adv, f_success)
    fooled_t = t_set & fooled
    out["rho_adv"] = mean_finite(rho[fooled_t].astype(np.float64))
    out["rho_adv_median"] = median_finite(rho[fooled_t].astype(np.float64))
    out["rho_n"] = int(fooled_t.sum())
    out["eight_bit_still_adversarial"], out["eight_bit_k"], out["eight_bit_n"] = rate(e_adv8 != e_clean, fooled_t)
    # Per ground-truth class, and the flip matrix clean → adversarial over T_E.
    k = len(class_names)
    per_class = {}
    for c, name in enumerate(class_names):
        in_c = y == c
        acc, _, n_c = rate(e_clean == y, in_c)
        tr, tk, tn = rate(fooled, t_set & in_c)
        per_class[name] = {
            "n": n_c,
            "clean_accuracy": acc,
            "transfer_rate": tr,
            "transfer_k": tk,
            "transfer_n": tn,
            "rho_adv": mean_finite(rho[fooled_t & in_c].astype(np.float64)),
        }
    out["per_class"] = per_class
    flips = np.zeros((k, k), dtype=np.int64)
    valid = t_set & (e_clean >= 0) & (e_clean < k) & (e_adv >= 0) & (e_adv < k)
    np.add.at(flips, (e_clean[valid], e_adv[valid]), 1)
    out["flips"] = flips.tolist()  # flips[i][j]: clean prediction i, adversarial prediction j, over T_E
    if ALERT_CLASS in class_names and SAFE_CLASS in class_names:
        a, s = class_names.index(ALERT_CLASS), class_names.index(SAFE_CLASS)
        alerted = (y == a) & (e_clean == a)
        out["missed_alert_rate"], out["missed_alerts"], out["missed_alert_n"] = rate(e_adv == s, alerted)
    else:
        out["missed_alert_rate"], out["missed_alerts"], out["missed_alert_n"] = None, None, None
    return out


__all__ = ["engine_metrics", "mean_finite", "median_finite", "rate"]

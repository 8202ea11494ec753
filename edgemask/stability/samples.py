"""The per-sample table (samples.csv) and the adversarial examples shown in the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemask.stability.config import StabilityConfig
from edgemask.stability.result import ALERT_CLASS, SAFE_CLASS, FloatAttack, column_name


def sample_rows(
    fa: FloatAttack,
    y: np.ndarray,
    class_names: list[str],
    preds: dict[str, dict[str, np.ndarray]],
    sens: dict[str, dict[float, np.ndarray]],
    cfg: StabilityConfig,
    direct: dict[str, np.ndarray],
    sources: list[str] | None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of samples.csv: one row per image, float attack first, then each engine's columns."""
    x, res, r_norm, rho = fa.x, fa.deepfool, fa.r_norm, fa.rho
    n = len(x)
    x_norm = np.sqrt((x.astype(np.float64) ** 2).reshape(n, -1).sum(1))
    cols = [
        "index",
        "source",
        "label",
        "label_name",
        "float_pred",
        "float_pred_adv",
        "float_success",
        "iterations",
        "l2",
        "linf",
        "rho",
        "x_l2",
        "margin",
        "margin_adv",
        "zero_grad",
    ]
    base = {
        "float_pred": res.pred_orig.cpu().numpy(),
        "float_pred_adv": res.pred_adv.cpu().numpy(),
        "float_success": res.success.cpu().numpy().astype(bool),
        "iterations": res.iterations.cpu().numpy(),
        "l2": r_norm,
        "linf": res.linf.detach().double().cpu().numpy(),
        "rho": rho,
        "x_l2": x_norm,
        "margin": res.margin.detach().double().cpu().numpy(),
        "margin_adv": res.margin_adv.detach().double().cpu().numpy(),
        "zero_grad": res.zero_grad.cpu().numpy().astype(bool),
    }
    for key in preds:
        c = column_name(key)
        cols += [f"{c}_clean", f"{c}_adv", f"{c}_adv8", f"{c}_fooled", f"{c}_alpha_min", f"{c}_noise_flips"]
        cols += [f"{c}_sens_{s:g}" for s in cfg.sensitivity_scales]
    if direct:
        cols += ["int8_direct_pred", "int8_direct_pred_adv", "int8_direct_success", "int8_direct_l2", "int8_direct_rho"]
        if "fools_engine" in direct:
            cols.append("int8_direct_fools_engine")
    alphas = np.asarray(cfg.alphas, dtype=np.float64)
    order = np.argsort(alphas)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {
            "index": i,
            "source": sources[i] if sources else "",
            "label": int(y[i]),
            "label_name": class_names[int(y[i])],
        }
        for k, v in base.items():
            row[k] = v[i].item() if hasattr(v[i], "item") else v[i]
        for key, p in preds.items():
            c = column_name(key)
            clean = int(p["clean"][i])
            row[f"{c}_clean"] = clean
            row[f"{c}_adv"] = int(p["adv"][i])
            row[f"{c}_adv8"] = int(p["adv8"][i])
            row[f"{c}_fooled"] = bool(p["adv"][i] != clean)
            amin = None
            if base["float_success"][i]:
                for ai in order:
                    if p["sweep"][ai, i] != clean:
                        amin = float(alphas[ai])
                        break
                row[f"{c}_noise_flips"] = int(p["noise_flips"][i])
            else:
                row[f"{c}_noise_flips"] = None
            row[f"{c}_alpha_min"] = amin
            for s in cfg.sensitivity_scales:
                v = sens[key][s][i]
                row[f"{c}_sens_{s:g}"] = float(v) if np.isfinite(v) else None
        if direct:
            row["int8_direct_pred"] = int(direct["pred"][i])
            row["int8_direct_pred_adv"] = int(direct["pred_adv"][i])
            row["int8_direct_success"] = bool(direct["success"][i])
            row["int8_direct_l2"] = float(direct["l2"][i])
            row["int8_direct_rho"] = float(direct["rho"][i])
            if "fools_engine" in direct:
                row["int8_direct_fools_engine"] = bool(direct["fools_engine"][i]) if direct["success"][i] else None
        rows.append(row)
    return cols, rows


def pick_examples(
    fa: FloatAttack,
    y: np.ndarray,
    preds: dict[str, dict[str, np.ndarray]],
    class_names: list[str],
    cfg: StabilityConfig,
) -> list[dict[str, Any]]:
    """Up to ``cfg.examples`` fooled samples, missed alerts (no_mask → mask) first, then seeded random."""
    x, x_adv, f_clean, f_adv, f_success = fa.x, fa.x_adv, fa.pred_clean, fa.pred_adv, fa.success
    if cfg.examples == 0 or not f_success.any():
        return []
    idx = np.flatnonzero(f_success)
    first: list[int] = []
    if ALERT_CLASS in class_names and SAFE_CLASS in class_names:
        # Missed alerts as the report counts them: a real no_mask face, alerted on, read as mask.
        a, s = class_names.index(ALERT_CLASS), class_names.index(SAFE_CLASS)
        first = [int(i) for i in idx if y[i] == a and f_clean[i] == a and f_adv[i] == s]
    rest = [int(i) for i in np.random.default_rng([cfg.seed, 77]).permutation(idx) if int(i) not in set(first)]
    chosen = (first[: max(1, cfg.examples // 2)] + rest)[: cfg.examples] if first else rest[: cfg.examples]
    out = []
    for i in chosen:
        out.append(
            {
                "index": i,
                "x": x[i],
                "x_adv": x_adv[i],
                "label": class_names[y[i]],
                "float": (class_names[f_clean[i]], class_names[f_adv[i]]),
                "engines": {k: (class_names[p["clean"][i]], class_names[p["adv"][i]]) for k, p in preds.items()},
            }
        )
    return out


__all__ = ["pick_examples", "sample_rows"]

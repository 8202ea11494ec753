"""DeepFool directly against the int8 model, through its fake-quant torch twin (a host emulation).

The twin executes the bundle's QDQ ONNX graph in torch so DeepFool can take
gradients through it; :func:`choose_twin_mode` picks the arithmetic closest
to ONNX Runtime's int8 kernels, and :func:`attack_int8` checks that what
fools the twin fools the real engine too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemask.errors import EdgemaskError
from edgemask.stability.engines import StudySetup, open_engine
from edgemask.stability.metrics import mean_finite, median_finite, rate
from edgemask.stability.result import FloatAttack


def choose_twin_mode(bundle: Any, x: np.ndarray, bs: int, device: str) -> tuple[dict[str, Any], str, np.ndarray | None]:
    """Run both twin modes and ONNX Runtime int8 on clean x; keep the mode closer to the engine."""
    from edgemask.stability.fakequant import TWIN_MODES as MODES
    from edgemask.stability.fakequant import FakeQuantTwin, twin_agreement

    try:
        eng = open_engine(bundle, "onnxrt", "int8", None, device, "reference")
    except EdgemaskError as e:
        return {"mode": "reference", "chosen_by": f"default (onnxrt:int8 not available: {e})"}, "reference", None
    try:
        ort_logits = eng.logits(x, bs)
    finally:
        eng.close()
    agreement = {}
    for mode in MODES:
        twin = FakeQuantTwin(bundle.model_path("int8"), mode=mode).eval().to(device)
        agreement[mode] = twin_agreement(twin, ort_logits, x, bs, device)
    best = min(MODES, key=lambda m: (agreement[m]["max_abs_diff"], MODES.index(m)))
    info = {
        "mode": best,
        "chosen_by": "closest logits to onnxrt:int8 on the clean images",
        "agreement": agreement,
        "engine": "onnxrt:int8",
    }
    return info, best, ort_logits


def attack_int8(setup: StudySetup, fa: FloatAttack, y: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """DeepFool on the fake-quant twin; ρ next to the float model's; checked on the real int8 engine.

    Returns:
        (summary for the report, per-sample arrays for samples.csv).
    """
    bundle, cfg, device, mode, bs, progress = (
        setup.bundle,
        setup.cfg,
        setup.device,
        setup.twin_mode,
        setup.batch_size,
        setup.progress,
    )
    twin_info = setup.twin_info
    x, rho_float, f_success = fa.x, fa.rho, fa.success
    import torch

    from edgemask.attacks import deepfool
    from edgemask.stability.fakequant import FakeQuantTwin, twin_logits

    n = len(x)
    twin = FakeQuantTwin(bundle.model_path("int8"), mode=mode).eval().to(device)
    progress("int8 attack", 0, n)
    res = deepfool(
        twin,
        torch.from_numpy(x).to(device),
        norm=cfg.norm,
        overshoot=float(cfg.overshoot),
        max_iter=int(cfg.max_iter),
        candidates=cfg.candidates or None,
        clip=(0.0, 1.0),
        batch_size=cfg.batch_size or None,
    )
    progress("int8 attack", n, n, f"fooled {int(res.success.sum())}/{n}")
    x_adv = res.x_adv.detach().float().cpu().numpy()
    ok = res.success.cpu().numpy().astype(bool)
    rho = res.rho.detach().double().cpu().numpy()
    out: dict[str, Any] = {
        "source": "host-emulation",
        "twin_mode": mode,
        "model": bundle.model_entry("int8").file,
        "summary": res.summary(),
    }
    both = ok & f_success
    out["rho_adv_int8"] = mean_finite(rho[ok])
    out["rho_n_int8"] = int(ok.sum())
    out["rho_adv_float"] = mean_finite(rho_float[f_success])
    out["rho_n_float"] = int(f_success.sum())
    out["paired_n"] = int(both.sum())
    out["paired_rho_int8"] = mean_finite(rho[both])
    out["paired_rho_float"] = mean_finite(rho_float[both])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["paired_ratio_median"] = median_finite(rho[both] / rho_float[both])
    # Does what fooled the twin fool the real int8 engine? (It must, if the twin is faithful.)
    engine_pred_adv = None
    try:
        eng = setup.open("onnxrt", "int8")
        try:
            e_clean = eng.logits(x, bs).argmax(1)
            engine_pred_adv = eng.logits(x_adv, bs).argmax(1)
        finally:
            eng.close()
        out["engine_check"] = "onnxrt:int8"
        frac, k, den = rate(engine_pred_adv != e_clean, ok)
        out["fools_engine_rate"], out["fools_engine_k"], out["fools_engine_n"] = frac, k, den
    except EdgemaskError as e:
        out["engine_check"] = f"not run: {e}"
        e_clean = None
    tw_clean = twin_logits(twin, x, bs, device).argmax(1)
    out["twin_clean_accuracy"] = float(np.mean(tw_clean == y))
    if twin_info is not None:
        out["twin_agreement"] = twin_info.get("agreement", {}).get(mode)
    direct = {
        "pred": res.pred_orig.cpu().numpy(),
        "pred_adv": res.pred_adv.cpu().numpy(),
        "success": ok,
        "rho": rho,
        "l2": res.l2.detach().double().cpu().numpy(),
    }
    if engine_pred_adv is not None and e_clean is not None:
        direct["fools_engine"] = engine_pred_adv != e_clean
    return out, direct


__all__ = ["attack_int8", "choose_twin_mode"]

"""The stability probe set that travels inside a bundle.

At export, a few images are attacked with DeepFool on the float model (the
same attack and parameters as ``edgemask stability``). Each adversarial input
sits just past one of the float model's decision boundaries, so it is the
most sensitive input there is to a change of arithmetic: an engine that
differs from float (fp16, int8, another TensorRT tactic) flips some of them
back. A box runs them through its own engine after install and records the
flip rate, a stability figure measured on the deployed engine itself.

Stored: ``probe/inputs.npy`` (P, 3, S, S) float32 adversarial images in
[0, 1], and in the manifest's ``probe`` field the float model's predictions
on the clean and the adversarial images, the clean logit margins (top-1 minus
top-2) and how far past the boundary each adversarial image lies.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

PROBE_INPUTS = "probe/inputs.npy"


def probe_from_model(
    model: Any, images: np.ndarray, sources: Optional[Sequence[str]] = None, overshoot: float = 0.02, max_iter: int = 50
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """DeepFool (L2) on ``model`` for ``images``; returns (adversarial inputs, manifest ``probe`` entry).

    Args:
        model: torch module in eval mode mapping (N, 3, S, S) [0, 1] pixels to logits.
        images: (P, 3, S, S) float32 in [0, 1].
        sources: where each image came from (kept for the successful ones).

    Only successful attacks are kept (an input the attack could not move has
    no boundary to probe); the entry's ``attempted`` says how many were tried.
    """
    import torch

    from edgemask.attacks.deepfool import deepfool

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    res = deepfool(model, x, norm="l2", overshoot=overshoot, max_iter=max_iter)
    ok = res.success.cpu().numpy().astype(bool)
    x_adv = res.x_adv.detach().cpu().numpy().astype(np.float32)[ok]
    with torch.no_grad():
        # Predictions of exactly the stored float32 array (what a box will feed its engine).
        logits_adv = model(torch.from_numpy(x_adv)).numpy() if len(x_adv) else np.zeros((0, 1), np.float32)
    pred_adv = logits_adv.argmax(1) if len(x_adv) else np.zeros(0, np.int64)
    srt = np.sort(logits_adv, axis=1) if len(x_adv) else np.zeros((0, 2))
    entry = {
        "inputs": PROBE_INPUTS,
        "count": int(len(x_adv)),
        "attempted": int(len(images)),
        "attack": {
            "name": "deepfool",
            "norm": "l2",
            "overshoot": float(overshoot),
            "max_iter": int(max_iter),
            "model": "torch fp32, CPU, eval mode",
        },
        "float_pred_clean": [int(v) for v in res.pred_orig.cpu().numpy()[ok]],
        "float_pred_adv": [int(v) for v in pred_adv],
        "margin_clean": [round(float(v), 6) for v in res.margin.detach().cpu().numpy()[ok]],
        "margin_adv": [round(float(v), 6) for v in (srt[:, -1] - srt[:, -2])] if len(x_adv) else [],
        "rho": [round(float(v), 6) for v in res.rho.detach().cpu().numpy()[ok]],
        "sources": [str(s) for s, keep in zip(sources, ok) if keep] if sources is not None else [],
        "note": "flip = an engine's argmax on inputs[i] differs from float_pred_adv[i]",
    }
    return x_adv, entry


__all__ = ["PROBE_INPUTS", "probe_from_model"]

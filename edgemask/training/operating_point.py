"""Class imbalance: a capped balanced sampler and an operating point chosen on validation.

Real face-mask sets are skewed (``mask_incorrect`` is about 3 % of the VOC
boxes). Plain training ignores such a class; inverse-frequency weights fix its
recall but flood the other classes with false positives. edgemask does both
halves separately:

1. **Sampler** (:func:`sample_weights`): each class is drawn up to ``cap``
   times more often than its natural share (never more than the largest
   class), so the rare class is seen often enough to be learnt.
2. **Operating point** (:func:`choose_logit_bias`): after training, one
   additive bias per class on the logits is chosen on the validation split:
   the best macro-F2 (recall counts double) such that no class takes more than ``max_fp`` of the
   other classes' samples. The bias is folded into the classifier's last
   layer (:func:`fold_logit_bias`), so ONNX, every engine and the service use
   the same operating point with no extra code, and ``metrics.json`` /
   ``model.json`` record it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

#: F-beta of the objective: 2 weighs recall over precision (a missed alert
#: costs more than a false one, which the false-positive budget bounds).
BETA = 2.0
#: Grid of bias values tried per class (logit units).
BIAS_GRID = np.round(np.arange(-4.0, 4.0001, 0.25), 2)


def sample_weights(labels: np.ndarray, num_classes: int, cap: float) -> np.ndarray:
    """Per-sample draw weights: class c is oversampled by ``min(cap, n_max / n_c)``.

    Args:
        labels: (N,) training labels.
        num_classes: K.
        cap: the most a class is oversampled (1 = natural frequencies).

    Returns:
        (N,) float64 weights (sum irrelevant) for ``torch.multinomial``.
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    factor = np.minimum(float(cap), counts.max() / np.maximum(counts, 1.0))
    return factor[labels]


def _scores(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, np.ndarray, float]:
    """(macro F-beta over present classes, (K,) false-positive rates, accuracy)."""
    f1s, fps = [], np.zeros(k)
    for c in range(k):
        t, p = y == c, pred == c
        tp = int(np.sum(t & p))
        neg = int(np.sum(~t))
        if neg:
            fps[c] = float(np.sum(p & ~t)) / neg
        if t.any():
            prec = tp / max(1, int(p.sum()))
            rec = tp / int(t.sum())
            b2 = BETA * BETA
            f1s.append((1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0, fps, float(np.mean(y == pred)) if len(y) else 0.0


def choose_logit_bias(
    logits: np.ndarray, labels: np.ndarray, max_fp: float = 0.05, rounds: int = 3
) -> tuple[np.ndarray, dict[str, Any]]:
    """Pick per-class logit offsets on validation data.

    Coordinate ascent over :data:`BIAS_GRID`, the largest class fixed at 0.
    A candidate is allowed when every class's false-positive rate (share of
    the other classes' samples predicted as it) is at most ``max_fp``, or
    no higher than plain argmax gives, whichever is larger: the bias never
    makes a class flood the others more than the budget. Among allowed
    candidates the highest macro-F2 (recall-weighted F-score) wins (then accuracy, then the smaller
    bias); zero bias is always allowed.

    Args:
        logits: (N, K) validation logits.
        labels: (N,) validation labels.
        max_fp: false-positive budget per class.

    Returns:
        (bias (K,) float32, info) where info holds the validation scores
        before and after.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = logits.shape
    bias = np.zeros(k)
    if n == 0:
        return bias.astype(np.float32), {"method": "none (empty validation split)"}
    ref = int(np.bincount(labels, minlength=k).argmax())
    start = _scores(labels, logits.argmax(1), k)
    budget = np.maximum(start[1], max_fp) + 1e-12

    def key(b: np.ndarray) -> tuple:
        f1, fps, acc = _scores(labels, (logits + b).argmax(1), k)
        return (bool(np.all(fps <= budget)), f1, acc, -float(np.abs(b).sum()))

    best = key(bias)
    for _ in range(rounds):
        changed = False
        for c in range(k):
            if c == ref:
                continue
            for v in BIAS_GRID:
                cand = bias.copy()
                cand[c] = v
                kc = key(cand)
                if kc > best:
                    best, bias, changed = kc, cand, True
        if not changed:
            break
    end = _scores(labels, (logits + bias).argmax(1), k)
    info = {
        "method": "logit bias chosen on the validation split: best macro-F2 with no class's "
        "false-positive rate above max(max_false_positive_rate, its argmax rate)",
        "max_false_positive_rate": max_fp,
        "n_val": int(n),
        "val_before": {"macro_f2": start[0], "accuracy": start[2], "false_positive_rate": [float(v) for v in start[1]]},
        "val_after": {"macro_f2": end[0], "accuracy": end[2], "false_positive_rate": [float(v) for v in end[1]]},
    }
    return bias.astype(np.float32), info


def last_linear(model: nn.Module, num_classes: int) -> nn.Linear | None:
    """The classifier's output layer: the last ``nn.Linear`` with K outputs and a bias."""
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes and m.bias is not None:
            found = m
    return found


@torch.no_grad()
def fold_logit_bias(model: nn.Module, bias: Sequence[float]) -> bool:
    """Add ``bias`` to the output layer's bias in place; False if there is no such layer."""
    b = torch.as_tensor(np.asarray(bias, dtype=np.float32))
    layer = last_linear(model, int(b.numel()))
    if layer is None:
        return False
    layer.bias.add_(b.to(layer.bias.dtype))
    return True


def operating_point_record(class_names: Sequence[str], bias: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    """The ``operating_point`` entry of metrics.json / model.json."""
    return {"logit_bias": {n: float(v) for n, v in zip(class_names, bias)}, "folded_into_weights": True, **info}

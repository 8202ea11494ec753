"""Accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Metrics of a labelled prediction, JSON-ready.

    Args:
        y_true: (N,) int ground-truth indices into ``class_names``.
        y_pred: (N,) int predicted indices.
        class_names: the model's classes, in index order.

    Returns:
        ``{"n", "accuracy", "confusion" (rows = truth, cols = prediction),
        "per_class": {name: {"precision", "recall", "f1", "support"}}, "macro_f1"}``.
    """
    k = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1s.append(f1)
    n = int(len(y_true))
    return {
        "n": n,
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "confusion": cm.tolist(),
        "class_names": list(class_names),
        "per_class": per_class,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
    }

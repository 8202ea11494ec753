"""Imbalance defaults: capped balanced sampler + operating point chosen on validation.

The seeded synthetic case mimics real VOC crops: ``mask_incorrect`` is 3 % of
the samples and overlaps both other classes, so plain argmax misses most of it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgemask.training.operating_point import choose_logit_bias, fold_logit_bias, sample_weights

PRIORS = (0.60, 0.37, 0.03)  # mask, no_mask, mask_incorrect
MEANS = np.array([[0.0, 0.0], [3.2, 0.0], [1.6, 2.4]])  # 2-D class means, unit-variance noise


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=PRIORS)
    return MEANS[y] + rng.standard_normal((n, 2)), y


def _bayes_logits(x: np.ndarray) -> np.ndarray:
    # The ideal classifier for the natural mix: argmax already maximises accuracy,
    # and that is exactly what buries the 3 % class.
    return -((x[:, None, :] - MEANS[None]) ** 2).sum(-1) / 2 + np.log(PRIORS)


def _rare_recall_fp(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float(np.mean(pred[y == 2] == 2)), float(np.mean(pred[y != 2] == 2))


def test_operating_point_lifts_the_rare_class_within_the_false_positive_budget():
    xv, yv = _features(1500, seed=1)
    xt, yt = _features(20000, seed=2)
    bias, info = choose_logit_bias(_bayes_logits(xv), yv, max_fp=0.05)
    rec0, _ = _rare_recall_fp(_bayes_logits(xt).argmax(1), yt)
    rec, fp = _rare_recall_fp((_bayes_logits(xt) + bias).argmax(1), yt)
    assert rec0 < 0.6  # the case is hard for argmax
    assert rec >= 0.6 and fp <= 0.05, (bias, rec, fp)
    assert bias[0] == 0.0  # the largest class is the reference
    # No class floods the others: no false-positive rate ends above max(budget, argmax's) on held-out data.
    pred = (_bayes_logits(xt) + bias).argmax(1)
    pred0 = _bayes_logits(xt).argmax(1)
    for c in range(3):
        assert np.mean(pred[yt != c] == c) <= max(0.05, np.mean(pred0[yt != c] == c)) + 0.01, c
    assert info["max_false_positive_rate"] == 0.05 and info["n_val"] == 1500


def test_zero_bias_when_argmax_is_already_best():
    x, y = _features(600, seed=3)
    logits = np.eye(3)[y] * 10.0  # a perfect classifier
    bias, _ = choose_logit_bias(logits, y)
    assert np.all(bias == 0)


def test_sampler_weight_is_capped():
    labels = np.array([0] * 600 + [1] * 370 + [2] * 30)
    w = sample_weights(labels, 3, cap=4.0)
    share = np.array([w[labels == c].sum() for c in range(3)]) / w.sum()
    assert w[labels == 0][0] == 1.0 and w[labels == 2][0] == 4.0  # 20x rarer, drawn only 4x more
    assert w[labels == 1][0] == pytest.approx(600 / 370)
    assert share[2] < 0.1
    assert np.all(sample_weights(labels, 3, cap=1.0) == 1.0)


def test_fold_logit_bias_shifts_the_output_layer():
    from edgemask.models import create_model

    m = create_model("seed_cnn", num_classes=3, input_size=32, widths=[8, 16, 32], hidden=16).eval()
    x = torch.rand(4, 3, 32, 32)
    before = m(x)
    assert fold_logit_bias(m, [0.0, 0.5, 2.0])
    assert torch.allclose(m(x) - before, torch.tensor([[0.0, 0.5, 2.0]]).expand(4, 3), atol=1e-5)


def _write_folder(root, n: int, seed: int) -> None:
    """16×16 PNG crops whose colour encodes the 2-D feature (plus pixel noise)."""
    import cv2

    x, y = _features(n, seed)
    rng = np.random.default_rng(seed + 100)
    names = ("with_mask", "without_mask", "mask_weared_incorrect")
    for i, (f, c) in enumerate(zip(x, y)):
        base = np.array([128 + 22 * f[0], 128 + 22 * f[1], 128], dtype=np.float64)
        img = np.clip(base + rng.normal(0, 4, (16, 16, 3)), 0, 255).astype(np.uint8)
        d = root / names[c]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:05d}.png"), img[:, :, ::-1])


def test_training_defaults_on_a_seeded_3_percent_class(tmp_path):
    """End to end: train with the default imbalance handling, judge on a fresh seeded set."""
    from edgemask.config import TrainConfig
    from edgemask.training import evaluate_run, train

    _write_folder(tmp_path / "train", 1500, seed=10)
    _write_folder(tmp_path / "held", 3000, seed=11)
    cfg = TrainConfig(
        data=str(tmp_path / "train"),
        out=str(tmp_path / "run"),
        arch="linear",
        size=16,
        epochs=12,
        batch_size=64,
        lr=1e-2,
        augment=False,
        seed=0,
        split=(0.6, 0.3, 0.1),
    )
    run = train(cfg)
    m = json.loads((run / "metrics.json").read_text())
    op = m["operating_point"]
    assert op["logit_bias"] is not None and op["folded_into_weights"]
    assert json.loads((run / "model.json").read_text())["operating_point"]["logit_bias"] == op["logit_bias"]
    h = evaluate_run(run, tmp_path / "held", split="all")
    rare = h["per_class"]["mask_incorrect"]
    conf = np.array(h["confusion"])
    fp_rate = (conf[:, 2].sum() - conf[2, 2]) / (conf.sum() - conf[2].sum())
    assert rare["recall"] >= 0.6 and fp_rate <= 0.05, (rare, fp_rate, op["logit_bias"])
    assert "precision" in rare

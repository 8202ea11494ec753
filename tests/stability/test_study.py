"""The study's numbers: recomputed by hand from the per-sample table, and the definitions on toy arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

CLASSES = ["mask", "no_mask", "mask_incorrect"]
STUDY_N = 24  # the study_dir fixture's --n


def _load(study_dir):
    from edgemask.stability.report import read_samples_csv

    return json.loads((study_dir / "report.json").read_text()), read_samples_csv(study_dir / "samples.csv")


def _b(v: str) -> bool:
    assert v in ("True", "False"), v
    return v == "True"


def test_transfer_numbers_match_a_hand_computation_on_the_sample_table(study_dir):
    rep, rows = _load(study_dir)
    assert len(rows) == STUDY_N
    assert len(rep["engines"]) >= 4
    for e in rep["engines"]:
        c = e["key"].replace(":", "_").replace("@", "_")
        y = [int(r["label"]) for r in rows]
        fc = [int(r["float_pred"]) for r in rows]
        fa = [int(r["float_pred_adv"]) for r in rows]
        ok = [_b(r["float_success"]) for r in rows]
        ec = [int(r[f"{c}_clean"]) for r in rows]
        ea = [int(r[f"{c}_adv"]) for r in rows]
        e8 = [int(r[f"{c}_adv8"]) for r in rows]
        rho = [float(r["rho"]) for r in rows]
        # transfer: float fooled AND engine agreed on the clean image; fooled = engine changed its mind
        t_set = [i for i in range(STUDY_N) if ok[i] and ec[i] == fc[i]]
        fooled = [i for i in t_set if ea[i] != ec[i]]
        assert e["transfer_n"] == len(t_set)
        assert e["transfer_k"] == len(fooled)
        assert e["transfer_rate"] == pytest.approx(len(fooled) / len(t_set))
        assert e["clean_accuracy"] == pytest.approx(sum(ec[i] == y[i] for i in range(STUDY_N)) / STUDY_N)
        assert e["agreement"] == pytest.approx(sum(ec[i] == fc[i] for i in range(STUDY_N)) / STUDY_N)
        f_set = [i for i in range(STUDY_N) if ok[i]]
        assert e["adv_agreement"] == pytest.approx(sum(ea[i] == fa[i] for i in f_set) / len(f_set))
        assert e["rho_n"] == len(fooled)
        if fooled:
            assert e["rho_adv"] == pytest.approx(sum(rho[i] for i in fooled) / len(fooled), rel=1e-6)
            still = [i for i in fooled if e8[i] != ec[i]]
            assert e["eight_bit_k"] == len(still) and e["eight_bit_n"] == len(fooled)
        # α = 1 is x_adv itself, so its sweep value is the transfer rate
        assert e["alpha_sweep"][rep["alphas"].index(1.0)] == pytest.approx(e["transfer_rate"])
        # the dangerous direction: truth no_mask, engine alerted on the clean face, adversarial says mask
        nm, m = CLASSES.index("no_mask"), CLASSES.index("mask")
        alerted = [i for i in range(STUDY_N) if y[i] == nm and ec[i] == nm]
        assert e["missed_alert_n"] == len(alerted)
        assert e["missed_alerts"] == sum(ea[i] == m for i in alerted)
        # the flip matrix counts T_E by (clean, adversarial) prediction
        flips = np.zeros((3, 3), int)
        for i in t_set:
            flips[ec[i], ea[i]] += 1
        assert e["flips"] == flips.tolist()


def test_float_attack_and_engine_labels(study_dir):
    rep, rows = _load(study_dir)
    fa = rep["float_attack"]
    assert fa["n"] == STUDY_N and fa["n_success"] == sum(_b(r["float_success"]) for r in rows)
    assert fa["n_success"] > STUDY_N // 2  # DeepFool fools a small CNN almost always
    keys = [e["key"] for e in rep["engines"]]
    assert keys[:4] == ["torch:fp32", "onnxrt:fp32", "onnxrt:fp16", "onnxrt:int8"] and "twin:int8" in keys
    src = {e["key"]: e["source"] for e in rep["engines"]}
    assert src["onnxrt:int8"] == "engine" and src["twin:int8"] == "host-emulation" and src["torch:fp32"] == "engine"
    assert rep["engines"][3]["label"]["quantization"]["format"] == "QDQ"
    # the float engines see exactly what the float model saw
    assert rep["engines"][0]["transfer_rate"] == 1.0 and rep["engines"][0]["agreement"] == 1.0
    meta = rep["meta"]
    assert meta["seed"] == 0 and meta["tf32"]["pinned_off"] is True
    for lib in ("torch", "onnxruntime", "numpy", "onnx"):
        assert meta["versions"][lib]
    assert rep["int8_attack"]["source"] == "host-emulation"
    assert rep["int8_attack"]["rho_n_int8"] > 0 and rep["int8_attack"]["rho_adv_int8"] > 0
    # what fooled the twin fools the real int8 engine (the twin is faithful to it)
    assert rep["int8_attack"]["fools_engine_rate"] >= 0.9
    assert rep["twin"]["agreement"][rep["twin"]["mode"]]["argmax_agreement"] == 1.0


def test_engine_metrics_definitions_on_toy_arrays():
    from edgemask.stability.metrics import engine_metrics

    # 6 samples; classes mask=0, no_mask=1, mask_incorrect=2
    y = np.array([1, 1, 0, 2, 1, 0])
    f_clean = np.array([1, 1, 0, 2, 0, 0])
    f_adv = np.array([0, 0, 1, 0, 1, 0])
    f_ok = np.array([True, True, True, True, True, False])
    e_clean = np.array([1, 1, 0, 1, 0, 0])  # disagrees with float on sample 3
    e_adv = np.array([0, 1, 1, 1, 2, 0])
    e_adv8 = np.array([1, 1, 1, 1, 2, 0])
    rho = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    m = engine_metrics(
        y=y,
        f_clean=f_clean,
        f_adv=f_adv,
        f_success=f_ok,
        e_clean=e_clean,
        e_adv=e_adv,
        e_adv8=e_adv8,
        rho=rho,
        class_names=CLASSES,
    )
    # T_E = {0, 1, 2, 4}; fooled among them: 0 (1→0), 2 (0→1), 4 (0→2)
    assert (m["transfer_k"], m["transfer_n"]) == (3, 4)
    assert m["agreement"] == pytest.approx(5 / 6)
    assert m["clean_accuracy"] == pytest.approx(4 / 6)  # samples 0, 1, 2, 5
    assert (m["adv_agreement_k"], m["adv_agreement_n"]) == (2, 5)  # over F: samples 0 and 2 match float
    assert m["rho_adv"] == pytest.approx((0.1 + 0.3 + 0.5) / 3) and m["rho_n"] == 3
    assert (m["eight_bit_k"], m["eight_bit_n"]) == (2, 3)  # sample 0 recovered by 8-bit rounding
    assert (m["missed_alerts"], m["missed_alert_n"]) == (1, 2)  # truth no_mask & alerted: 0, 1; 0 → mask
    assert m["flips"][1][0] == 1 and m["flips"][0][1] == 1 and m["flips"][0][2] == 1 and m["flips"][1][1] == 1


def test_stratified_sample_is_deterministic_and_proportional():
    from edgemask.errors import ConfigError
    from edgemask.stability.inputs import stratified_sample

    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    a = stratified_sample(labels, 10, seed=3)
    assert np.array_equal(a, stratified_sample(labels, 10, seed=3))
    assert not np.array_equal(a, stratified_sample(labels, 10, seed=4))
    assert np.bincount(labels[a]).tolist() == [5, 3, 2]
    assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0)
    assert np.array_equal(stratified_sample(labels, 0, seed=0), np.arange(100))
    assert sum(np.bincount(labels[stratified_sample(labels, 7, seed=0)], minlength=3)) == 7
    with pytest.raises(ConfigError, match="only 100 images"):
        stratified_sample(labels, 101, seed=0)


def test_softmax_output_is_detected_and_warned(tiny_bundle, synth_xy, monkeypatch):
    import torch

    from edgemask.stability import study
    from edgemask.stability.config import StabilityConfig

    real = study.load_float_model
    monkeypatch.setattr(
        study,
        "load_float_model",
        lambda b, device="cpu": torch.nn.Sequential(real(b, device), torch.nn.Softmax(dim=1)).eval(),
    )
    x, y = synth_xy(6, seed=5)
    res = study.run_study(
        tiny_bundle,
        x,
        y,
        StabilityConfig(
            n=0, engines=("onnxrt:fp32",), int8_attack=False, noise_trials=1, sensitivity_trials=1, max_iter=5
        ),
    )
    assert any("probabilities" in w for w in res.warnings), res.warnings
    assert study.looks_like_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not study.looks_like_probabilities(np.array([[2.0, -1.0], [0.1, 0.3]]))


def test_tf32_is_pinned_off_during_the_study_and_restored():
    import torch

    from edgemask.stability.provenance import tf32_pinned_off

    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with tf32_pinned_off() as before:
            assert before["cuda.matmul.allow_tf32"] is True
            assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def test_missing_float_weights_is_a_bundle_error(tiny_bundle, tmp_path):
    import shutil

    from edgemask.bundle import load_bundle
    from edgemask.errors import BundleError
    from edgemask.stability.inputs import load_float_model

    b = load_bundle(shutil.copytree(tiny_bundle, tmp_path / "b"))
    (b.root / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="no float weights"):
        load_float_model(b)


def test_headline_rows_and_result_json(study_dir):
    rep, _ = _load(study_dir)
    assert rep["format"] == "edgemask-stability-report"
    # strict JSON: no NaN/Infinity anywhere
    json.loads((study_dir / "report.json").read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    for e in rep["engines"]:
        for v in e["alpha_sweep"]:
            assert v is None or 0.0 <= v <= 1.0
        assert list(e["sensitivity"]) == ["0.001", "0.01"]
        s = e["sensitivity"]["0.01"]
        assert s["mean"] is None or (math.isfinite(s["mean"]) and s["mean"] >= 0)


def test_headline_rows_shape():
    from edgemask.stability.result import StudyResult, headline_rows

    eng = {
        "key": "onnxrt:int8",
        "source": "engine",
        "clean_accuracy": 0.9,
        "agreement": 0.95,
        "transfer_rate": 0.5,
        "transfer_k": 5,
        "transfer_n": 10,
        "adv_agreement": 0.4,
        "rho_adv": 0.01,
        "rho_n": 5,
        "missed_alerts": 1,
        "missed_alert_n": 3,
    }
    r = StudyResult(
        config={},
        meta={},
        float_attack={},
        engines=[eng],
        int8_attack=None,
        twin=None,
        class_names=CLASSES,
        alphas=[1.0],
    )
    (row,) = headline_rows(r)
    assert row.engine == "onnxrt:int8" and row.transfer_rate == 0.5 and row.rho_n == 5
    assert row.to_dict()["missed_alerts"] == 1


def test_noise_baseline_matches_the_norm_actually_applied_after_clipping():
    from edgemask.stability.study import noise_like

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    x[:3, :, :4] = 1.0  # half of each of three images saturated white
    x[3, 0] = 0.0  # one channel black
    target = np.array([0.05, 0.5, 2.0, 0.3, 1.0, 0.0])
    xn, ratio = noise_like(x, target, seed=1, trial=0)
    applied = np.sqrt(((xn - x).astype(np.float64) ** 2).reshape(6, -1).sum(1))
    assert xn.dtype == np.float32 and xn.min() >= 0 and xn.max() <= 1
    assert np.allclose(applied[:5], target[:5], rtol=2e-4), applied / np.maximum(target, 1e-12)
    assert applied[5] == 0 and np.allclose(ratio, 1, atol=2e-4)
    # A plain ‖u‖₂ = target draw falls short on the saturated images: the rescaling is needed.
    u = np.random.default_rng([1, 4049, 0]).standard_normal(x.shape).astype(np.float32)
    un = np.sqrt((u.astype(np.float64) ** 2).reshape(6, -1).sum(1))
    plain = np.clip(x + u * (target / un).astype(np.float32).reshape(-1, 1, 1, 1), 0, 1)
    plain_norm = np.sqrt(((plain - x).astype(np.float64) ** 2).reshape(6, -1).sum(1))
    assert plain_norm[2] < 0.95 * target[2]
    # Seeded: the same noise for every engine, a new one per trial.
    assert np.array_equal(xn, noise_like(x, target, seed=1, trial=0)[0])
    assert not np.array_equal(xn, noise_like(x, target, seed=1, trial=1)[0])


def test_margin_adv_column_is_the_float_logit_gap_at_x_adv(study_dir):
    rep, rows = _load(study_dir)
    for r in rows:
        gap = float(r["margin_adv"])
        assert (gap > 0) == _b(r["float_success"]), r["index"]
    gaps = sorted(float(r["margin_adv"]) for r in rows if _b(r["float_success"]))
    assert rep["float_attack"]["median_margin_adv"] == pytest.approx(float(np.median(gaps)), rel=1e-6)
    assert "margin_adv" in rep["definitions"]


def test_example_grid_puts_real_missed_alerts_first():
    from edgemask.stability.config import StabilityConfig
    from edgemask.stability.result import FloatAttack
    from edgemask.stability.samples import pick_examples

    # classes mask=0, no_mask=1, mask_incorrect=2
    y = np.array([0, 1, 1, 2, 1])
    f_clean = np.array([1, 1, 1, 2, 1])  # sample 0: a masked face the float model misreads as no_mask
    f_adv = np.array([0, 0, 2, 0, 0])  # 0 and 1 and 4 go to mask; only 1 and 4 are real missed alerts
    ok = np.ones(5, dtype=bool)
    x = np.zeros((5, 3, 2, 2), np.float32)
    fa = FloatAttack(
        x=x,
        x_adv=x,
        x_adv8=x,
        r=x * 0,
        r_norm=np.zeros(5),
        pred_clean=f_clean,
        pred_adv=f_adv,
        success=ok,
        rho=np.zeros(5),
        deepfool=None,
        summary={},
    )
    ex = pick_examples(fa, y, {}, CLASSES, StabilityConfig(examples=2))
    assert sorted(e["index"] for e in ex[:1]) in ([1], [4])
    assert 0 not in [e["index"] for e in ex[:1]]


def test_candidates_reach_the_attack(tiny_bundle, synth_xy, monkeypatch):
    """--candidates is passed to DeepFool for the float attack and the direct int8 attack alike."""
    from edgemask.attacks import deepfool as real_deepfool
    from edgemask.stability import study
    from edgemask.stability.config import StabilityConfig

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("candidates"))
        return real_deepfool(*args, **kwargs)

    monkeypatch.setattr("edgemask.attacks.deepfool", spy)
    x, y = synth_xy(6, seed=5)
    study.run_study(
        tiny_bundle,
        x,
        y,
        StabilityConfig(n=0, engines=("onnxrt:fp32",), candidates=2, noise_trials=0, sensitivity_trials=0, max_iter=5),
    )
    assert seen == [2, 2]

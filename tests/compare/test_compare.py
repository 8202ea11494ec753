"""compare_outputs statistics and tolerances; run_backends / compare_bundle on the tiny bundle."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgemask.compare import (
    CompareConfig,
    EngineSpec,
    check_tolerance,
    compare_bundle,
    compare_outputs,
    default_engines,
    parse_engines,
    run_backends,
)
from edgemask.compare.compare import select_images
from edgemask.errors import BackendError, ConfigError


def _logits(n=100, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, (n, k)).astype(np.float32)


# -- statistics on synthetic logits ---------------------------------------------
def test_identical_outputs_pass_with_zero_diff():
    ref = _logits()
    res = compare_outputs({"torch:fp32": ref, "onnxrt:fp32": ref.copy()})
    e = res.engine("onnxrt:fp32")
    assert res.passed and res.reference == "torch:fp32"
    assert e.max_abs_diff == 0 and e.agreement == 1.0 and e.accuracy is None


def test_fp32_tolerance_is_max_abs_diff():
    ref = _logits()
    off = ref.copy()
    off[3, 1] += 2e-3  # one logit of one sample, decisions unchanged or not: fp32 must be exact
    res = compare_outputs({"torch:fp32": ref, "onnxrt:fp32": off})
    e = res.engine("onnxrt:fp32")
    assert not res.passed and not e.passed
    assert e.max_abs_diff == pytest.approx(2e-3, rel=1e-3)
    assert e.mean_abs_diff == pytest.approx(2e-3 / ref.size, rel=1e-3)
    assert "> 0.001" in e.reason and [f.engine for f in res.failures] == ["onnxrt:fp32"]
    # A looser tolerance accepts it.
    assert compare_outputs({"torch:fp32": ref, "onnxrt:fp32": off}, config=CompareConfig(fp32_max_abs_diff=3e-3)).passed


def test_fp16_passes_on_small_diff_or_high_agreement():
    ref = _logits(200)
    small = ref + 0.01
    big_same_decisions = ref * 1.5  # large Δ, argmax unchanged
    flipped = ref.copy()
    flipped[:10] = flipped[:10, ::-1]  # 5% of decisions change (where the max moved)
    res = compare_outputs({"torch:fp32": ref, "a:fp16": small, "b:fp16": big_same_decisions, "c:fp16": flipped})
    assert res.engine("a:fp16").passed and "max |Δlogit|" in res.engine("a:fp16").reason
    assert res.engine("b:fp16").passed and "agreement" in res.engine("b:fp16").reason
    c = res.engine("c:fp16")
    assert not c.passed and c.agreement < 0.99 and "and agreement" in c.reason


def test_int8_is_judged_by_agreement():
    ref = _logits(100)
    out = ref + 5.0  # huge Δ, same decisions
    out2 = ref.copy()
    out2[:3] = out2[:3, [1, 2, 0]]
    res = compare_outputs({"onnxrt:fp32": ref, "x:int8": out, "y:int8": out2})
    assert res.reference == "onnxrt:fp32"
    assert res.engine("x:int8").passed
    y = res.engine("y:int8")
    agree = float((out2.argmax(1) == ref.argmax(1)).mean())
    assert y.agreement == pytest.approx(agree) and y.passed == (agree >= 0.98)
    assert (
        not compare_outputs({"onnxrt:fp32": ref, "y:int8": out2}, config=CompareConfig(int8_min_agreement=1.0)).passed
        or agree == 1.0
    )


def test_non_finite_logits_fail():
    ref = _logits()
    bad = ref.copy()
    bad[0, 0] = np.nan
    res = compare_outputs({"torch:fp32": ref, "onnxrt:int8": bad})
    assert not res.passed and "non-finite" in res.engine("onnxrt:int8").reason
    json.dumps(res.to_dict(), allow_nan=True)


def test_labels_give_accuracy_and_confusions():
    ref = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]] * 5  # predicts 0,1,2,0
    eng = np.eye(3, dtype=np.float32)[[0, 2, 2, 0]] * 5  # predicts 0,2,2,0
    labels = np.array([0, 1, 2, 1])
    res = compare_outputs({"torch:fp32": ref, "onnxrt:int8": eng}, labels=labels, class_names=["a", "b", "c"])
    r, e = res.engine("torch:fp32"), res.engine("onnxrt:int8")
    assert res.has_labels and r.accuracy == 0.75 and e.accuracy == 0.5
    assert e.confusion == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]  # rows label, cols engine
    assert e.confusion_vs_reference == [[2, 0, 0], [0, 0, 1], [0, 0, 1]]  # rows float, cols engine
    assert e.per_class_recall == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert e.agreement == 0.75 and not e.passed  # int8 needs 98%
    assert r.is_reference and r.passed and res.engines[0] is r
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["passed"] is False and d["engines"][1]["confusion"] == e.confusion and d["class_names"] == ["a", "b", "c"]


def test_reference_choice_and_errors():
    ref = _logits()
    assert compare_outputs({"onnxrt:int8": ref, "opencv:fp32": ref}).reference == "opencv:fp32"
    with pytest.raises(ConfigError, match="no fp32 engine"):
        compare_outputs({"onnxrt:int8": ref})
    with pytest.raises(ConfigError, match="not among"):
        compare_outputs({"onnxrt:fp32": ref}, reference="torch:fp32")
    with pytest.raises(ConfigError, match="same inputs"):
        compare_outputs({"torch:fp32": ref, "onnxrt:fp32": ref[:5]})
    with pytest.raises(ConfigError, match="labels"):
        compare_outputs({"torch:fp32": ref}, labels=np.zeros(3))
    with pytest.raises(ConfigError, match="unknown precision"):
        compare_outputs({"torch:fp32": ref, "onnxrt:fp8": ref})


def test_check_tolerance_rules():
    assert check_tolerance("fp32", 1e-3, 0.0) == (True, "max |Δlogit| 0.001 <= 0.001")
    assert check_tolerance("fp32", 1.1e-3, 1.0)[0] is False
    assert check_tolerance("fp16", 1.0, 0.99)[0] is True
    assert check_tolerance("fp16", 1.0, 0.98)[0] is False
    assert check_tolerance("int8", 100.0, 0.98)[0] is True
    assert check_tolerance("int8", 0.0, 0.97)[0] is False
    assert check_tolerance("fp32", float("inf"), 1.0)[0] is False


def test_config_validates():
    with pytest.raises(ConfigError):
        CompareConfig(int8_min_agreement=98)
    with pytest.raises(ConfigError):
        CompareConfig(fp32_max_abs_diff=-1)


# -- engine specs -----------------------------------------------------------------
def test_parse_engines():
    assert parse_engines("torch, onnxrt:int8,onnxrt:INT8,opencv:fp32") == [
        EngineSpec("torch", "fp32"),
        EngineSpec("onnxrt", "int8"),
        EngineSpec("opencv", "fp32"),
    ]
    assert parse_engines(["null:fp32"])[0].label == "null:fp32"
    with pytest.raises(BackendError, match="unknown backend 'trt'.*onnxrt"):
        parse_engines("trt:int8")
    with pytest.raises(ConfigError, match="unknown precision"):
        parse_engines("onnxrt:int4")
    with pytest.raises(ConfigError, match="no engines"):
        parse_engines(" , ")


def test_default_engines(tiny_bundle):
    from edgemask.bundle import load_bundle

    labels = [s.label for s in default_engines(load_bundle(tiny_bundle))]
    assert labels == [
        "torch:fp32",
        "onnxrt:fp32",
        "onnxrt:fp16",
        "onnxrt:int8",
        "opencv:fp32",
        "opencv:fp16",
        "opencv:int8",
    ]


def test_select_images_spreads_and_is_stable():
    idx = select_images(100, 10, seed=0)
    assert len(idx) == 10 and len(set(idx)) == 10 and (np.diff(idx) > 0).all() and idx.max() > 50
    np.testing.assert_array_equal(idx, select_images(100, 10, seed=0))
    np.testing.assert_array_equal(select_images(5, 0), np.arange(5))


# -- real engines on the tiny bundle ----------------------------------------------
def test_run_backends_same_inputs(tiny_bundle, images):
    x, _ = images(20, seed=4)
    out = run_backends(tiny_bundle, x, "onnxrt:fp32,torch:fp32,null", batch_size=7)
    assert list(out) == ["onnxrt:fp32", "torch:fp32", "null:fp32"]
    assert all(v.shape == (20, 3) and v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["onnxrt:fp32"], out["torch:fp32"], atol=1e-4)


def test_compare_bundle_on_a_dataset(tiny_bundle, tiny_data):
    seen = []
    res = compare_bundle(tiny_bundle, data=tiny_data, progress=lambda e, d, t: seen.append(e))
    assert res.passed, [(e.engine, e.reason) for e in res.failures]
    assert res.n == 24 and res.has_labels and res.reference == "torch:fp32"
    assert [e.engine for e in res.engines] == [
        "torch:fp32",
        "onnxrt:fp32",
        "onnxrt:fp16",
        "onnxrt:int8",
        "opencv:fp32",
        "opencv:fp16",
        "opencv:int8",
    ]
    for e in res.engines:
        assert e.accuracy >= 0.9, e
        assert e.describe["backend"] == e.backend
    assert res.engine("onnxrt:fp32").max_abs_diff < 1e-4
    assert res.engine("onnxrt:int8").max_abs_diff > 0
    assert "load" in seen and "onnxrt:int8" in seen


def test_compare_bundle_adds_the_reference_and_limits_n(tiny_bundle, tiny_data):
    res = compare_bundle(tiny_bundle, data=tiny_data, engines="onnxrt:int8", config=CompareConfig(max_images=10))
    assert [e.engine for e in res.engines] == ["torch:fp32", "onnxrt:int8"] and res.n == 10


def test_compare_bundle_golden_inputs_and_a_failing_engine(tiny_bundle):
    res = compare_bundle(tiny_bundle, engines="torch:fp32,null:fp32")
    assert res.n == 8 and not res.has_labels and res.engine("null:fp32").accuracy is None
    assert not res.passed and [f.engine for f in res.failures] == ["null:fp32"]


def test_compare_bundle_reference_falls_back_to_onnxrt(tiny_bundle, monkeypatch):
    from edgemask.backends import get_backend

    monkeypatch.setattr(get_backend("torch"), "available", classmethod(lambda cls: (False, "no torch")))
    res = compare_bundle(tiny_bundle, engines="onnxrt:int8")
    assert res.reference == "onnxrt:fp32" and [e.engine for e in res.engines] == ["onnxrt:fp32", "onnxrt:int8"]


def test_compare_cuts_the_faces_out_of_a_whole_scene_imagefolder(tiny_bundle, tmp_path):
    """Whole photos are cut to their largest face (issue 12: load_dataset needs the finder handed in).

    Of the 7 images, 3 scenes are cut to a face, 3 crops are kept whole and the faceless photo is
    skipped; without the finder all 7 would be squashed whole into the compare.
    """
    from types import SimpleNamespace

    from assets import scene_folder

    from edgemask.stability.pipeline import load_study_data

    root = scene_folder(tmp_path / "photos")
    res = compare_bundle(tiny_bundle, root, engines="onnxrt:fp32")
    assert res.n == 6 and res.has_labels
    # The study loads through the same call: the faceless photo is gone, and the cut scene looks like
    # the face crop rather than the whole photo squashed.
    bundle = SimpleNamespace(input_size=32, class_names=["mask", "no_mask", "mask_incorrect"])
    images, labels, sources, info = load_study_data(root, bundle, 0, 0)
    assert len(images) == 6 and info["size"] == 6 and "without_mask/no_face.png" not in sources
    scene, crop = (images[sources.index(f"without_mask/{f}.png")].astype(int) for f in ("scene_square", "crop"))
    whole = cv2.resize(
        cv2.cvtColor(cv2.imread(str(root / "without_mask/scene_square.png")), cv2.COLOR_BGR2RGB), (32, 32)
    ).astype(int)
    assert np.abs(scene - crop).mean() < np.abs(scene - whole).mean()

"""The pretrained bundle shipped in the package: intact, self-consistent with its card, and runnable on the box.

Only device-runtime APIs (no torch), so the Python 3.8 job runs these too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgemask import pretrained

BUNDLE = pretrained.default_bundle()
pytestmark = pytest.mark.skipif(
    BUNDLE is None,
    reason="this checkout ships no pretrained bundle yet (python -m edgemask.rebuild_pretrained --install makes it)",
)


def test_the_shipped_bundle_verifies_and_is_small():
    from edgemask.bundle import verify_bundle

    assert verify_bundle(BUNDLE) == []
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    assert size <= 10 * 1024 * 1024, f"the shipped bundle is {size / 1e6:.1f} MB; the package budget is 10 MB"


def test_the_card_describes_this_bundle():
    from edgemask.bundle import load_bundle

    card = pretrained.model_card()
    assert card is not None, "card.json is missing or unreadable beside the shipped bundle"
    b = load_bundle(BUNDLE)
    assert card["bundle_manifest_sha256"] == hashlib.sha256((BUNDLE / "manifest.json").read_bytes()).hexdigest()
    assert card["classes"] == list(b.manifest.class_names)
    assert b.has_detector, "the shipped bundle must carry the learned face detector"
    assert card["rebuild"].startswith("python -m edgemask.rebuild_pretrained")
    for p in ("fp32", "fp16", "int8"):
        assert 0.0 <= card["classifier"][p]["accuracy"] <= 1.0
        assert set(card["detector"][p]["recall_min_side"]) == {"with_mask", "without_mask", "mask_weared_incorrect"}
    assert pretrained.CARD_MARKDOWN.read_text(encoding="utf-8").splitlines()[0] == f"# Model card: {card['name']}"


def test_no_photo_of_the_training_set_is_stored_in_the_bundle():
    """The VOC set may train shipped models but is never copied: golden, calibration and probe inputs are synthetic."""
    from edgemask.bundle import load_bundle

    b = load_bundle(BUNDLE)
    cfg = json.loads((BUNDLE / "resolved_config.json").read_text(encoding="utf-8"))
    assert cfg["detector_calibration"] == "synth"
    assert cfg["calibration"] == "default"  # the synthetic recipe in calibration/default.toml
    sources = json.dumps(b.full_manifest.to_dict() if b.full_manifest else b.manifest.to_dict())
    assert "face-mask-voc/images" not in sources and "maksssksksss" not in sources


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_classifier_reproduces_its_golden_outputs(precision):
    from edgemask.backends import get_backend
    from edgemask.bundle import load_bundle
    from edgemask.fleet.selftest import run_selftest

    b = load_bundle(BUNDLE)
    with get_backend("onnxrt").from_bundle(b, precision=precision) as r:
        st = run_selftest(b, r, "onnxrt", precision)
    assert st.ok, st.problems
    assert st.golden_count >= 8


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_detector_reproduces_its_golden_scenes(precision):
    from edgemask.vision.bundle_detector import check_detector_golden

    res = check_detector_golden(BUNDLE, "onnxrt", precision)
    assert res["ok"], res["problems"]
    assert res["boxes_ref"] > 0, "the golden scenes hold faces the float detector finds"


def test_run_finds_the_shipped_bundle_without_being_told():
    from edgemask.service.config import RunConfig

    cfg = RunConfig(source="x.mp4", backend="onnxrt")
    cfg.validate()
    assert cfg.bundle == str(BUNDLE)


def test_the_shipped_detector_finds_a_drawn_face_in_a_frame():
    """A synthetic 640x480 scene (offline, seeded) through the shipped detector, as `edgemask run` feeds it (BGR)."""
    pytest.importorskip("skimage", reason="the scene generator needs scikit-image (train extra)")
    from edgemask.data.synth import render_scene
    from edgemask.vision.bundle_detector import detector_from_bundle
    from edgemask.vision.facedet_decode import box_iou

    det = detector_from_bundle(BUNDLE, "onnxrt", "fp32")
    found = total = 0
    for seed in range(6):
        rgb, objs = render_scene(np.random.default_rng([99, seed]), 640, 480, 3)
        boxes = np.float32([o["box"] for o in objs]).reshape(-1, 4)
        got = np.float32([d.box for d in det.detect(np.ascontiguousarray(rgb[:, :, ::-1]))]).reshape(-1, 4)
        total += len(boxes)
        if len(got) and len(boxes):
            found += int((box_iou(boxes, got).max(axis=1) >= 0.5).sum())
    det.close()
    assert total and found / total >= 0.5, f"found {found} of {total} drawn faces"


def test_the_shipped_bundle_names_no_folder_of_the_machine_that_built_it():
    import re

    for name in ("manifest.json", "resolved_config.json"):
        text = (BUNDLE / name).read_text(encoding="utf-8")
        absolute = re.findall(r'"(/[^"]*|[A-Za-z]:\\\\[^"]*)"', text)
        assert not absolute, f"{name} records absolute paths: {absolute[:3]}"


REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "face-mask-voc"


@pytest.mark.skipif(not REAL.is_dir(), reason="real VOC photos absent (../shared/data/face-mask-voc is not in a clone)")
def test_the_shipped_detector_finds_a_face_that_fills_most_of_the_frame():
    """Someone close to the camera: real faces >= 40 px zoomed to 70 % of a 640x480 frame's width.

    The detector's training crops hold faces up to about 190 input px; the coarse pass finds larger ones.
    """
    from edgemask.data.detection import close_up, read_detection_set, split_images
    from edgemask.vision.bundle_detector import detector_from_bundle
    from edgemask.vision.facedet_decode import box_iou

    held = split_images(read_detection_set(REAL), 0, 0.2)[1]
    views = [close_up(im, i, 0.7) for im in held for i, b in enumerate(im.boxes) if max(b[2:] - b[:2]) >= 40][:40]
    det = detector_from_bundle(BUNDLE, "onnxrt", "fp32")
    found = {}
    for coarse in (0.0, det.params.coarse):
        det.params.coarse = coarse
        hits = 0
        for v in views:
            got = np.float32([d.box for d in det.detect(np.ascontiguousarray(v.rgb[:, :, ::-1]))]).reshape(-1, 4)
            hits += bool(len(got)) and float(box_iou(v.boxes[:1], got).max()) >= 0.5  # the zoomed face is first
        found[coarse] = hits / len(views)
    det.close()
    assert len(views) == 40
    assert found[0.5] >= 0.75, found
    assert found[0.0] <= 0.25, found  # the reason for the second pass: without it, close faces are lost

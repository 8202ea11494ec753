"""The face detector in a bundle: parity at each precision, the manifest entry, verification, runners, CLI.

The detector is ``tiny_detector_run`` (tests/detector_assets.py: trained a few
seconds, so its heatmap has peaks and decoded boxes exist; every parity check
below compares real boxes). The bundle fixture is shared: tests that damage a
bundle copy it first.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgemask.bundle import DetectorEntry, load_bundle, load_manifest, verify_bundle
from edgemask.errors import BundleError

pytestmark = pytest.mark.slow  # the session fixtures train and export a detector (~20 s on 2 busy cores)


def test_parity_at_each_precision_within_the_manifest_tolerance(detector_bundle):
    from edgemask.vision.bundle_detector import check_detector_golden

    m = load_manifest(detector_bundle)
    det = m.detector
    assert det is not None and det.golden["tolerance"].keys() == {"fp32", "fp16", "int8"}
    seen = {}
    for precision in ("fp32", "fp16", "int8"):
        r = check_detector_golden(detector_bundle, "onnxrt", precision)
        assert r["ok"], r
        assert r["boxes_ref"] >= 3  # the box comparison compares something
        seen[precision] = r
    assert seen["fp32"]["heat_max_abs"] < 1e-4 and seen["fp32"]["box_agreement"] == 1.0
    assert seen["fp16"]["heat_max_abs"] < 2e-2
    # int8 is further off than fp16, but still finds most of fp32's boxes on the calibration scenes too
    int8 = det.model("int8")
    assert (
        int8.extra["parity_vs_fp32_calibration_scenes"]["box_agreement"]
        >= det.golden["tolerance"]["int8"]["box_agreement"]
    )
    assert int8.quantization["format"] == "QDQ" and int8.quantization["symmetric"] is True
    # what the export measured is what a runner reproduces from the bundle
    assert det.golden["measured"]["fp16"]["heat_max_abs"] == pytest.approx(seen["fp16"]["heat_max_abs"], rel=1e-5)


def test_the_decoded_boxes_are_what_the_torch_model_finds(detector_bundle, tiny_detector_run):
    """fp32 ONNX through the runtime detector (letterbox, infer, decode, NMS) = the torch run's own eval path."""
    import cv2
    from detector_assets import scenes

    from edgemask.training.detector import load_detector_run, torch_heads
    from edgemask.vision.bundle_detector import detector_from_bundle
    from edgemask.vision.facedet_decode import DecodeParams, letterbox, postprocess

    model, info = load_detector_run(tiny_detector_run)
    det = detector_from_bundle(detector_bundle, "onnxrt", "fp32")
    n = 0
    for im in scenes(4, seed=99):
        canvas, scale = letterbox(im.rgb, 128, 96)
        ref, _ = postprocess(torch_heads(model, [canvas])[0], DecodeParams.from_dict(info["decode"]), scale, (640, 480))
        got = np.array([d.box for d in det.detect(cv2.cvtColor(im.rgb, cv2.COLOR_RGB2BGR))]).reshape(-1, 4)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-2)
        n += len(ref)
    det.close()
    assert n > 0


def test_manifest_detector_entry_round_trip(detector_bundle):
    m = load_manifest(detector_bundle)
    det = m.detector
    assert det.input.shape == ["N", 3, 96, 128] and (det.width, det.height) == (128, 96)
    assert det.output["shape"] == ["N", 5, 24, 32] and det.output["stride"] == 4
    assert det.output["channels"] == ["heat", "log_w", "log_h", "off_x", "off_y"]
    assert det.letterbox["align"] == "top-left" and det.letterbox["pad_value"] == 114
    assert det.decode["score_threshold"] == 0.2 and {"nms_iou", "top_k", "stride", "min_side"} <= set(det.decode)
    assert det.preprocessing.normalization_in_model and len(det.preprocessing.mean) == 3
    files = {e.file for e in det.models}
    assert files == {
        "detector/weights.safetensors",
        "detector/model.fp32.onnx",
        "detector/model.fp16.onnx",
        "detector/model.int8.onnx",
    }
    for f in files | {det.golden["inputs"], det.golden["outputs"], det.calibration["table"], det.calibration["cache"]}:
        assert f in m.files and len(m.files[f]["sha256"]) == 64
    g = np.load(detector_bundle / det.golden["inputs"])
    assert g.dtype == np.uint8 and g.shape == (3, 96, 128, 3)
    assert det.calibration["count"] == 12 and det.calibration["source"] == "synth"
    # JSON -> manifest -> JSON is the identity, and the classifier's side is untouched by the detector
    d = json.loads((detector_bundle / "manifest.json").read_text())
    again = type(m).from_dict(d)
    assert again.to_dict() == d and isinstance(again.detector, DetectorEntry)
    assert m.class_names == ["mask", "no_mask", "mask_incorrect"] and m.input.shape == ["N", 3, 32, 32]
    # the detector's cache and table describe its own graph
    cache = (detector_bundle / det.calibration["cache"]).read_text().splitlines()
    assert cache[0] == det.calibration["cache_header"] and len(cache) > 5


def test_verify_catches_a_flipped_byte_in_a_detector_file(detector_bundle, tmp_path):
    b = shutil.copytree(detector_bundle, tmp_path / "b")
    assert verify_bundle(b) == []
    p = b / "detector" / "model.int8.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    problems = verify_bundle(b)
    assert len(problems) == 1 and problems[0].startswith("detector/model.int8.onnx: SHA-256")
    with pytest.raises(BundleError, match="detector/model.int8.onnx"):
        load_bundle(b)


def test_a_detector_model_missing_from_files_is_a_problem(detector_bundle, tmp_path):
    b = shutil.copytree(detector_bundle, tmp_path / "b")
    d = json.loads((b / "manifest.json").read_text())
    del d["files"]["detector/model.fp16.onnx"]
    (b / "manifest.json").write_text(json.dumps(d))
    assert any("detector/model.fp16.onnx: model listed without a hash" in p for p in verify_bundle(b))


def test_malformed_detector_entry_is_one_line(detector_bundle, tmp_path):
    b = shutil.copytree(detector_bundle, tmp_path / "b")
    d = json.loads((b / "manifest.json").read_text())
    d["detector"]["models"][1]["precision"] = "int4"
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="detector model detector/model.fp32.onnx with unknown precision 'int4'"):
        load_manifest(b)
    del d["detector"]["decode"]
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="no valid 'decode'"):
        load_manifest(b)


def test_every_runner_runs_the_detector_file(detector_bundle):
    """onnxrt and OpenCV at every precision, torch on the float weights; null gives the right shape."""
    from edgemask.backends import get_backend

    b = load_bundle(detector_bundle)
    view = b.detector_view()
    det = b.manifest.detector
    x = np.load(detector_bundle / det.golden["inputs"])
    ref = np.load(detector_bundle / det.golden["outputs"])
    limits = {"fp32": 1e-4, "fp16": 2e-2, "int8": det.golden["tolerance"]["int8"]["heat_max_abs"]}
    for name, precisions in (
        ("onnxrt", ("fp32", "fp16", "int8")),
        ("opencv", ("fp32", "fp16", "int8")),
        ("torch", ("fp32",)),
    ):
        for p in precisions:
            with get_backend(name).from_bundle(view, precision=p) as r:
                out = r.infer(x)
                assert out.shape == (3, 5, 24, 32)
                assert np.abs(out[:, 0] - ref[:, 0]).max() <= limits[p], (name, p)
                # float NCHW in [0, 1] is the same input
                np.testing.assert_allclose(r.infer(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0), out, atol=1e-5)
    with get_backend("null").from_bundle(view) as r:
        out = r.infer(x)
        assert out.shape == (3, 5, 24, 32) and 0.0 <= out[:, 0].min() and out[:, 0].max() <= 1.0
    with get_backend("onnxrt").from_bundle(view) as r:  # the classifier's input size is refused
        with pytest.raises(Exception, match=r"\(N, 96, 128, 3\)"):
            r.infer(np.zeros((1, 32, 32, 3), np.uint8))


def test_int8_detector_passes_the_tensorrt_qdq_check(detector_bundle):
    from edgemask.export.qdq_check import check_qdq_for_tensorrt

    for version in ("8.5", "10.3"):
        report = check_qdq_for_tensorrt(detector_bundle / "detector" / "model.int8.onnx", version)
        assert report.passed, report.summary()


def test_a_bundle_without_detector_says_how_to_add_one(tiny_run, tiny_recipe, tmp_path):
    from edgemask.export import export_bundle

    b = load_bundle(
        export_bundle(tiny_run, tmp_path / "b", precisions="fp32", calibration=str(tiny_recipe), opencv_check=False)
    )
    assert b.manifest.detector is None and not b.has_detector
    with pytest.raises(BundleError, match=r"has no face detector; re-export it with 'edgemask export RUN --detector"):
        b.detector_view()


def test_cli_export_with_detector_and_its_errors(tiny_detector_run, tmp_path):
    from detector_assets import make_detector_bundle
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    # the classifier run of a finished bundle export doubles as the run to export here
    make_detector_bundle(tmp_path / "w", tiny_detector_run, precisions="fp32", out_name="first")
    run = tmp_path / "w" / "run"
    recipe = tmp_path / "w" / "recipe.toml"
    out = tmp_path / "cli"
    args = [
        "export",
        str(run),
        "--out",
        str(out),
        "--precision",
        "fp32,int8",
        "--calibration",
        str(recipe),
        "--no-opencv-check",
        "--detector",
        str(tiny_detector_run),
        "--detector-calibration-count",
        "8",
        "--detector-golden-count",
        "2",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    m = load_manifest(out)
    assert [e.precision for e in m.detector.models if e.format == "onnx"] == ["fp32", "int8"]
    assert "detector facedet 128x96" in r.output
    r = CliRunner().invoke(
        app,
        ["export", str(run), "--out", str(tmp_path / "bad"), "--calibration", str(recipe), "--detector", str(tmp_path)],
    )
    assert r.exit_code == 1 and "is not a detector run" in r.output and not (tmp_path / "bad").exists()
    r = CliRunner().invoke(
        app, ["export", str(run), "--out", str(tmp_path / "bad"), "--calibration", str(recipe), "--detector", str(run)]
    )
    assert r.exit_code == 1 and "not a face detector" in r.output and not (tmp_path / "bad").exists()

"""Face detectors on a real photo (scikit-image's astronaut), crops, NMS and the factory."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgemask.errors import ConfigError
from edgemask.vision.detectors import (
    FUSION,
    Detection,
    FixedRegionDetector,
    HaarDetector,
    YuNetDetector,
    create_detector,
    iou,
    merge_detections,
)

# Where the frontal cascade puts the astronaut's face at full resolution (x0, y0, x1, y1).
FACE = (177, 67, 270, 160)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    # The photo comes with scikit-image (train extra); the device runtime job has none.
    data = pytest.importorskip("skimage.data", reason="the astronaut photo needs scikit-image (the train extra)")

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # a real 512×512 photo with one face


def _finds_face(dets: list[Detection]) -> bool:
    return any(iou(d.box, FACE) >= 0.5 for d in dets)


def _with_mask(img: np.ndarray, top: float, color: tuple[int, int, int]) -> np.ndarray:
    """Draw a mask over the face from ``top`` (fraction of the face box) down past the chin."""
    x0, y0, x1, y1 = FACE
    out = img.copy()
    yt = y0 + int(top * (y1 - y0))
    pts = np.array([[x0 + 5, yt], [x1 - 5, yt], [x1, y1 + 10], [(x0 + x1) // 2, y1 + 25], [x0, y1 + 10]])
    cv2.fillPoly(out, [pts], color)
    return out


def test_frontal_cascade_finds_a_real_face(astronaut):
    assert _finds_face(HaarDetector(("frontal",), detect_width=320).detect(astronaut))
    assert _finds_face(HaarDetector(("frontal",), detect_width=0).detect(astronaut))  # full size too


def test_fusion_finds_a_light_mask_the_frontal_cascade_misses(astronaut):
    masked = _with_mask(astronaut, 0.55, (230, 230, 230))  # a white mask below the nose
    assert not _finds_face(HaarDetector(("frontal",)).detect(masked))
    assert _finds_face(HaarDetector(FUSION).detect(masked))


def test_no_cascade_finds_a_face_whose_nose_is_covered(astronaut):
    # The documented limit of Haar cascades (why YuNet is supported): a mask over
    # the nose hides what every frontal view needs.
    masked = _with_mask(astronaut, 0.45, (230, 230, 230))
    assert not _finds_face(HaarDetector(FUSION).detect(masked))


def test_phases_split_the_fusion(astronaut):
    det = HaarDetector(FUSION)
    assert det.phases == 3
    per_phase = [det.detect(astronaut, phase=k) for k in range(3)]
    assert {d.source for k in range(3) for d in per_phase[k]} <= set(FUSION)
    assert all({d.source for d in per_phase[k]} <= {FUSION[k]} for k in range(3))
    assert all(_finds_face(p) for p in per_phase)


def test_boxes_are_in_full_frame_pixels(astronaut):
    small = HaarDetector(("frontal",), detect_width=256).detect(astronaut)
    big = cv2.resize(astronaut, (1024, 1024))
    scaled = HaarDetector(("frontal",), detect_width=256).detect(big)
    b1 = next(d.box for d in small if iou(d.box, FACE) > 0.5)
    b2 = next(d.box for d in scaled if iou(np.array(d.box) / 2, FACE) > 0.5)
    assert np.allclose(np.array(b2) / 2, b1, atol=6)


def test_merge_detections_keeps_the_best_of_overlapping_boxes():
    a = Detection((0, 0, 100, 100), 0.9, "frontal")
    b = Detection((5, 5, 105, 105), 0.5, "frontal-value")  # same face, other view
    c = Detection((30, 30, 70, 70), 0.8, "frontal-red")  # inside a
    d = Detection((200, 0, 260, 60), 0.3, "frontal")  # another face
    assert merge_detections([b, c, a, d]) == [a, d]
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_fixed_region_detector():
    img = np.zeros((240, 320, 3), np.uint8)
    assert FixedRegionDetector().detect(img)[0].box == (0.0, 0.0, 320.0, 240.0)
    assert FixedRegionDetector((100, 50, 400, 100)).detect(img)[0].box == (100.0, 50.0, 320.0, 150.0)  # clamped


def test_create_detector_names(tmp_path):
    assert create_detector("auto").describe()["detector"] == "haar-fusion"
    assert create_detector("haar").describe()["components"] == ["frontal"]
    assert create_detector("none", roi=(1, 2, 3, 4)).describe() == {"detector": "none", "roi": [1, 2, 3, 4]}
    with pytest.raises(
        ConfigError,
        match=r"unknown --detector 'hog'; choose one of: auto, bundle, haar, "
        r"haar-fusion, yunet, yunet:FILE, none",
    ):
        create_detector("hog")
    with pytest.raises(ConfigError, match="needs --face-model FILE, or write --detector yunet:FILE"):
        create_detector("yunet")
    with pytest.raises(ConfigError, match="--face-model .*missing.onnx does not exist"):
        create_detector("auto", face_model=str(tmp_path / "missing.onnx"))  # auto + model = yunet
    with pytest.raises(ConfigError, match=r"--detector yunet:.*missing.onnx: .*missing.onnx does not exist"):
        create_detector(f"yunet:{tmp_path / 'missing.onnx'}")
    with pytest.raises(ConfigError, match="needs a file after the colon"):
        create_detector("yunet:")
    with pytest.raises(ConfigError, match="needs --bundle DIR"):
        create_detector("bundle")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    with pytest.raises(ConfigError, match="not a YuNet ONNX model") as e:
        YuNetDetector(str(junk))
    assert "\n" not in str(e.value) and ".cpp" not in str(e.value)  # OpenCV's reason, not its source location
    assert "Failed to parse ONNX model" in str(e.value)


# --------------------------------------------------------------------------- YuNet through cv2.FaceDetectorYN


def _fake_yunet(path, log_wh: float = float(np.log(2.0))) -> str:
    """A YuNet-shaped ONNX graph: "faces" where channel 0 is bright, on the stride-32 grid.

    cv2.FaceDetectorYN reads outputs cls/obj/bbox/kps_{8,16,32} (N anchors
    each, row-major over the padded input); score = sqrt(cls·obj), centre =
    cell corner + bbox[0:2] cells, size = exp(bbox[2:4]) cells. Here
    cls = obj = mean of channel 0 over a 32×32 cell / 255, bbox = (0, 0,
    log 2, log 2): a white 32×32 cell at (r, c) gives a 64×64 face centred
    on (32c, 32r). The real model is not shipped with OpenCV; this graph
    checks our wiring of the real decoder.
    """
    onnx = pytest.importorskip("onnx", reason="building the YuNet-shaped graph needs onnx (the train extra)")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))

    const("st0", np.array([0], np.int64))
    const("en1", np.array([1], np.int64))
    const("ax1", np.array([1], np.int64))
    const("inv255", np.array(1 / 255.0, np.float32))
    const("zero", np.array(0.0, np.float32))
    const("lwh", np.array(log_wh, np.float32))
    const("to_n1", np.array([1, -1, 1], np.int64))
    nodes.append(helper.make_node("Slice", ["input", "st0", "en1", "ax1"], ["c0"]))
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["c0"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Reshape", [f"p{s}", "to_n1"], [f"f{s}"]),
            helper.make_node("Mul", [f"f{s}", "inv255" if s == 32 else "zero"], [f"cls_{s}"]),
            helper.make_node("Identity", [f"cls_{s}"], [f"obj_{s}"]),
            helper.make_node("Mul", [f"f{s}", "zero"], [f"z{s}"]),
            helper.make_node("Add", [f"z{s}", "lwh"], [f"l{s}"]),
            helper.make_node("Concat", [f"z{s}", f"z{s}", f"l{s}", f"l{s}"], [f"bbox_{s}"], axis=2),
            helper.make_node("Concat", [f"z{s}"] * 10, [f"kps_{s}"], axis=2),
        ]
    width = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    outputs = [
        helper.make_tensor_value_info(f"{k}_{s}", TensorProto.FLOAT, [1, "N", width[k]])
        for k in ("cls", "obj", "bbox", "kps")
        for s in (8, 16, 32)
    ]
    graph = helper.make_graph(
        nodes,
        "fake_yunet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_yunet_boxes_come_back_in_frame_pixels(tmp_path):
    model = _fake_yunet(tmp_path / "yunet.onnx")
    img = np.zeros((240, 320, 3), np.uint8)
    img[96:128, 128:160] = 255  # cell (r=3, c=4) → face centred on (128, 96), 64×64
    det = create_detector("auto", face_model=model, detect_width=0)
    assert isinstance(det, YuNetDetector)
    (d,) = det.detect(img)
    assert d.box == (96.0, 64.0, 160.0, 128.0) and d.score == pytest.approx(1.0) and d.source == "yunet"
    big = cv2.resize(img, (640, 480), interpolation=cv2.INTER_NEAREST)  # detected at 320 wide, reported at 640
    (d2,) = YuNetDetector(model, detect_width=320).detect(big)
    assert d2.box == (192.0, 128.0, 320.0, 256.0)
    assert YuNetDetector(model, detect_width=0, min_face=65).detect(img) == []  # smaller than --min-face
    assert YuNetDetector(model, detect_width=0).detect(np.zeros((240, 320, 3), np.uint8)) == []


def test_min_face_sets_the_detection_scale():
    from edgemask.vision.detectors import HaarDetector, detect_scale

    # 640-wide frame, detect at 320: a 24-px face would shrink to 12 px, under the cascade's 24-px window.
    assert detect_scale(640, 320, 24, 24) == 1.0
    assert detect_scale(640, 320, 40, 24) == pytest.approx(0.6)
    assert detect_scale(640, 320, 80, 24) == 0.5  # big faces: the cheap downscale stays
    assert detect_scale(320, 640, 24, 24) == 1.0  # never upscaled
    assert HaarDetector(("frontal",), 320, 24).smallest_face(640) == 24
    assert HaarDetector(("frontal",), 320, 40).smallest_face(640) == 40
    assert HaarDetector(("frontal",), 320, 40).describe()["smallest_face_640"] == 40


def test_small_real_face_is_found_with_a_small_min_face():
    """A ~50–60 px real face in a 640×480 frame: --min-face 24 keeps the frame at full size for the
    cascade, so it finds what a full-size pass finds; the old fixed 320-px downscale halved the face."""
    import cv2

    data = pytest.importorskip("skimage.data", reason="the real photos come with scikit-image (the train extra)")

    from edgemask.vision.detectors import HaarDetector

    base = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:240, 100:420]
    crop = base[14:215, 23:224]  # her face (about 101 px) with half a face of margin per side
    for s in (100, 124, 127):  # face boxes of ~50–64 px
        frame = np.full((480, 640, 3), 120, np.uint8)
        frame[200 : 200 + s, 300 : 300 + s] = cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA)
        small = HaarDetector(("frontal",), 320, 24).detect(frame)
        full = HaarDetector(("frontal",), 0, 24).detect(frame)
        assert [d.box for d in small] == [d.box for d in full] and len(small) == 1, (s, small)
        x0, y0, x1, y1 = small[0].box
        assert 300 <= x0 and x1 <= 300 + s and 40 <= x1 - x0 <= 80, (s, small[0].box)


def test_resolve_detector_prefers_the_bundles_learned_detector():
    from edgemask.vision.detectors import resolve_detector

    assert resolve_detector("auto", "", bundle_has_detector=True) == ("bundle", "")
    assert resolve_detector("auto", "y.onnx", bundle_has_detector=True) == ("bundle", "y.onnx")
    assert resolve_detector("auto", "y.onnx") == ("yunet", "y.onnx")
    assert resolve_detector("auto") == ("haar-fusion", "")
    assert resolve_detector("yunet:m.onnx") == ("yunet", "m.onnx")
    assert resolve_detector("haar", "", bundle_has_detector=True) == ("haar", "")
    with pytest.raises(ConfigError, match="name two YuNet files"):
        resolve_detector("yunet:a.onnx", "b.onnx")


@pytest.mark.slow  # the session detector bundle
def test_bundle_detector_finds_faces_in_frames(detector_bundle):
    import cv2
    from detector_assets import scenes

    from edgemask.vision.bundle_detector import BundleFaceDetector

    det = create_detector("auto", bundle=str(detector_bundle), min_face=0)
    assert isinstance(det, BundleFaceDetector) and det.describe()["detector"] == "bundle"
    assert det.describe()["precision"] == "fp32" and det.describe()["input"] == [128, 96]
    hits = total = 0
    for im in scenes(6, seed=31):
        dets = det.detect(cv2.cvtColor(im.rgb, cv2.COLOR_RGB2BGR))
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480 and d.source == "bundle"
        total += len(im.boxes)
        hits += sum(any(iou(b, d.box) >= 0.3 for d in dets) for b in im.boxes)
    assert hits >= 1, (
        hits,
        total,
    )  # a detector trained for seconds (recall varies with threads), but one that sees faces
    big = create_detector("bundle", bundle=str(detector_bundle), min_face=400, precision="int8")
    assert all(
        max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= 400
        for im in scenes(3, seed=31)
        for d in big.detect(im.rgb[:, :, ::-1].copy())
    )
    det.close()
    big.close()

"""Decode + NMS of the learned detector against hand-made heads, and the recall metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgemask.vision.facedet_decode import (
    DecodeParams,
    average_precision,
    decode_heads,
    detection_metrics,
    letterbox,
    merge_passes,
    nms,
    pass_canvases,
    postprocess,
    size_bucket,
)


def _head(h=12, w=16):
    head = np.zeros((5, h, w), np.float32)
    head[3:5] = 0.5
    return head


def _peak(head, y, x, score, bw, bh, ox=0.5, oy=0.5, stride=4):
    head[0, y, x] = score
    head[1, y, x] = math.log(bw / stride)
    head[2, y, x] = math.log(bh / stride)
    head[3, y, x] = ox
    head[4, y, x] = oy


def test_decode_one_peak_gives_its_box_in_frame_pixels():
    head = _head()
    _peak(head, 5, 7, 0.9, 20, 24, ox=0.25, oy=0.75)
    boxes, scores = decode_heads(head, DecodeParams(score_threshold=0.3))
    cx, cy = (7 + 0.25) * 4, (5 + 0.75) * 4
    np.testing.assert_allclose(boxes, [[cx - 10, cy - 12, cx + 10, cy + 12]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9])
    # a letterbox scale of 0.5 means the frame is twice the input
    boxes2, _ = decode_heads(head, DecodeParams(score_threshold=0.3), scale=0.5)
    np.testing.assert_allclose(boxes2, boxes * 2, atol=1e-4)


def test_decode_keeps_only_local_maxima_above_threshold():
    head = _head()
    _peak(head, 5, 7, 0.9, 20, 20)
    head[0, 5, 8] = 0.8  # neighbour of a stronger peak: not a maximum
    _peak(head, 1, 1, 0.2, 20, 20)  # below the threshold
    _peak(head, 10, 14, 0.6, 12, 12)
    boxes, scores = decode_heads(head, DecodeParams(score_threshold=0.3, min_side=6))
    np.testing.assert_allclose(scores, [0.9, 0.6])
    assert len(boxes) == 2


def test_decode_clips_to_the_frame_and_drops_tiny_boxes():
    head = _head()
    _peak(head, 0, 0, 0.9, 40, 40)
    _peak(head, 8, 8, 0.9, 4, 4)  # 4 px < min_side 6
    boxes, _ = decode_heads(head, DecodeParams(score_threshold=0.3, min_side=6), frame_wh=(64, 48))
    assert len(boxes) == 1
    assert boxes[0, 0] == 0 and boxes[0, 1] == 0


def test_the_default_drops_faces_too_small_to_classify():
    head = _head()
    _peak(head, 5, 7, 0.9, 20, 20)
    _peak(head, 10, 14, 0.9, 12, 14)  # shorter side 12 px: under the default 16
    boxes, _ = decode_heads(head, DecodeParams(score_threshold=0.3))
    assert len(boxes) == 1 and boxes[0, 2] - boxes[0, 0] == pytest.approx(20)


def test_bad_decode_parameters_are_one_line_errors():
    from edgemask.errors import ConfigError
    from edgemask.vision.facedet_decode import check_decode

    with pytest.raises(ConfigError, match="--score-threshold must be in"):
        check_decode(DecodeParams(score_threshold=1.5))
    with pytest.raises(ConfigError, match="--min-side must be"):
        check_decode(DecodeParams(min_side=-1))


def test_decode_rejects_a_wrong_head_shape():
    with pytest.raises(ValueError, match="5, h, w"):
        decode_heads(np.zeros((4, 3, 3), np.float32), DecodeParams())


def test_nms_suppresses_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.1], np.float32)
    keep = nms(boxes, scores, 0.4)
    assert keep.tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


def test_postprocess_merges_two_adjacent_peaks_of_one_face():
    head = _head()
    _peak(head, 5, 5, 0.9, 30, 30)
    _peak(head, 5, 7, 0.7, 30, 30)  # two cells away: both are maxima, NMS merges them
    boxes, scores = postprocess(head, DecodeParams(score_threshold=0.3, nms_iou=0.4))
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9)


def test_letterbox_scales_to_fit_and_pads_bottom_right():
    img = np.full((100, 200, 3), 7, np.uint8)
    canvas, scale = letterbox(img, 64, 64)
    assert canvas.shape == (64, 64, 3) and scale == pytest.approx(0.32)
    assert (canvas[:32] == 7).all() and (canvas[33:] == 114).all()


def test_metrics_recall_by_class_and_size_false_boxes_and_ap():
    gt = np.array([[0, 0, 20, 20], [50, 50, 80, 80], [100, 100, 160, 160]], np.float32)
    labels = ["with_mask", "without_mask", "with_mask"]
    det = np.array([[0, 0, 20, 20], [100, 100, 160, 158], [300, 300, 340, 340]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    m = detection_metrics([(gt, labels, det, scores), (np.zeros((0, 4)), [], np.zeros((0, 4)), np.zeros(0))])
    assert m["images"] == 2 and m["faces"] == 3
    assert m["recall"]["with_mask"] == {"<24": 1.0, ">=40": 1.0}
    assert m["recall"]["without_mask"] == {"24-39": 0.0}
    assert m["recall_min_side"] == {"with_mask": 1.0, "without_mask": 0.0}
    assert m["false_per_image"] == pytest.approx(0.5)
    # ranked TP, TP, FP over 3 faces: AP = 2/3
    assert m["ap50"] == pytest.approx(2 / 3)


def test_average_precision_of_a_perfect_ranking_is_one():
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == pytest.approx(1.0)
    assert average_precision(np.array([0.9, 0.8]), np.array([False, True]), 2) == pytest.approx(0.25)


def test_size_buckets():
    assert size_bucket((0, 0, 23, 10)) == "<24"
    assert size_bucket((0, 0, 10, 24)) == "24-39"
    assert size_bucket((0, 0, 40, 40)) == ">=40"


def test_runtime_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgemask.vision.facedet_decode, edgemask.data.detection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_pass_canvases_one_pass_or_a_coarse_canvas_at_the_top_left():
    frame = np.full((480, 640, 3), 200, np.uint8)
    canvases, scales = pass_canvases(frame, 64, 48, DecodeParams(coarse=0.0))
    assert len(canvases) == 1 and scales == [pytest.approx(0.1)]
    canvases, scales = pass_canvases(frame, 64, 48, DecodeParams(coarse=0.5))
    assert [c.shape for c in canvases] == [(48, 64, 3), (48, 64, 3)]
    assert scales == [pytest.approx(0.1), pytest.approx(0.05)]
    coarse = canvases[1]
    assert (coarse[:24, :32] == 200).all()  # the frame at half the letterbox scale
    assert (coarse[24:] == 114).all() and (coarse[:, 32:] == 114).all()  # grey padding, as the letterbox's


def test_merge_passes_takes_only_large_faces_from_the_coarse_pass():
    params = DecodeParams(score_threshold=0.3, coarse=0.5, coarse_min_side=40, min_side=0)
    full, coarse = _head(), _head()
    _peak(full, 2, 2, 0.8, 12, 12)  # a small face: the full pass's alone
    _peak(coarse, 1, 1, 0.7, 6, 6)  # the same small face in the coarse pass: 12 px at full scale, under 40
    _peak(coarse, 3, 5, 0.9, 30, 30)  # a face 60 px wide at full scale, centred at (44, 28)
    _peak(full, 6, 10, 0.4, 40, 40)  # the full pass half-sees it (IoU 0.44): NMS keeps the coarse box
    boxes, scores = merge_passes([full, coarse], [1.0, 0.5], params)
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    big = boxes[0]
    assert big[2] - big[0] == pytest.approx(60.0) and big[3] - big[1] == pytest.approx(60.0)
    assert boxes[1][2] - boxes[1][0] == pytest.approx(12.0)
    one, _ = merge_passes([full], [1.0], DecodeParams(score_threshold=0.3, coarse=0.0, min_side=0))
    assert len(one) == 2  # without the coarse pass: the small face and the half-seen one


@pytest.mark.parametrize("bad", [{"coarse": 1.0}, {"coarse": -0.1}, {"coarse_min_side": -1.0}])
def test_bad_coarse_parameters_are_one_line_errors(bad):
    from edgemask.errors import ConfigError
    from edgemask.vision.facedet_decode import check_decode

    with pytest.raises(ConfigError, match="coarse"):
        check_decode(DecodeParams(**bad))

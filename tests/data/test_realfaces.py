"""The real-face check: held-out LFW crops, the astronaut variants, jittered boxes, the rates."""

from __future__ import annotations

import numpy as np

from edgemask.data import realfaces
from edgemask.data.synth import LFW_TRAIN_FACES


def test_heldout_lfw_crops_are_the_reserved_faces():
    from skimage import data as skdata

    crops = realfaces.heldout_lfw_crops(25)
    assert crops.shape == (100 - LFW_TRAIN_FACES, 25, 25, 3) and crops.dtype == np.uint8
    assert (crops[..., 0] == crops[..., 2]).all()  # grey in three channels
    ref = np.rint(skdata.lfw_subset()[LFW_TRAIN_FACES] * 255)
    assert np.abs(crops[0, ..., 0].astype(float) - ref).max() <= 1


def test_astronaut_masks_cover_what_their_label_says():
    v = realfaces.astronaut_variants()
    x0, y0, x1, y1 = (int(c) for c in realfaces.ASTRONAUT_FACE_BOX)
    h = y1 - y0
    nose = (slice(y0 + int(0.60 * h), y0 + int(0.66 * h)), slice(x0 + 40, x0 + 55))
    mouth = (slice(y0 + int(0.82 * h), y0 + int(0.88 * h)), slice(x0 + 35, x0 + 60))
    paint = np.array(realfaces._MASK_BGR, float)

    def painted(img, where):
        return np.abs(img[where].astype(float) - paint).max(axis=-1).mean() < 3

    assert not painted(v["no_mask"], nose) and not painted(v["no_mask"], mouth)
    assert painted(v["mask"], nose) and painted(v["mask"], mouth)
    assert not painted(v["mask_incorrect"], nose) and painted(v["mask_incorrect"], mouth)
    # the face itself is where the Haar cascade finds it
    import cv2

    gray = cv2.cvtColor(v["no_mask"], cv2.COLOR_BGR2GRAY)
    found = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml").detectMultiScale(
        gray, 1.1, 5
    )
    ((fx, fy, fw, fh),) = found
    assert (fx, fy, fx + fw, fy + fh) == realfaces.ASTRONAUT_FACE_BOX


def test_jittered_boxes_stay_square_within_the_ranges():
    b = realfaces.jittered_boxes((100, 100, 200, 200), 500, seed=1, scale=(0.8, 1.3), shift=0.1)
    side = b[:, 2] - b[:, 0]
    assert np.allclose(side, b[:, 3] - b[:, 1]) and side.min() >= 80 and side.max() <= 130
    centre = (b[:, :2] + b[:, 2:]) / 2
    assert np.abs(centre - 150).max() <= 10 + 1e-9
    assert np.array_equal(b, realfaces.jittered_boxes((100, 100, 200, 200), 500, seed=1))


def test_check_counts_what_the_classifier_says():
    names = ["mask", "no_mask", "mask_incorrect"]
    always_no_mask = realfaces.real_face_check(lambda c: np.ones(len(c), int), names, 32, n_jitter=5)
    assert set(always_no_mask) == {"lfw_heldout", "astronaut_no_mask", "astronaut_mask", "astronaut_mask_incorrect"}
    assert always_no_mask["lfw_heldout"]["rate"] == 1.0 and always_no_mask["astronaut_mask"]["rate"] == 0.0
    assert always_no_mask["astronaut_no_mask"]["counts"] == {"mask": 0, "no_mask": 5, "mask_incorrect": 0}

    seen = []

    def brightness(c):  # a classifier that sees the crops: the painted mask is brighter than a face
        seen.append(c.shape)
        return np.where(c.reshape(len(c), -1).mean(1) > 0, 1, 0)

    two = realfaces.real_face_check(brightness, ["mask", "no_mask"], 24, n_jitter=3)
    assert "astronaut_mask_incorrect" not in two  # a two-class model has no such class
    assert all(s[1:] == (24, 24, 3) for s in seen)

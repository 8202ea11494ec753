"""IoUTracker: identities, detection cycles, the class vote and alert debounce."""

from __future__ import annotations

import numpy as np

from edgemask.vision.detectors import Detection
from edgemask.vision.tracker import IoUTracker

MASK, NO_MASK, INCORRECT = 0, 1, 2


def det(x0, y0, x1, y1):
    return Detection((x0, y0, x1, y1), 1.0, "test")


def test_ids_follow_moving_faces_and_new_faces_get_new_ids():
    tr = IoUTracker(iou_threshold=0.3)
    a = tr.update([det(10, 10, 60, 60), det(200, 10, 250, 60)], 0)
    ids = [t.id for t in a]
    assert ids == [1, 2]
    b = tr.update([det(205, 12, 255, 62), det(14, 10, 64, 60)], 1)  # both moved, order swapped
    assert sorted((t.id, int(t.box[0])) for t in b) == [(1, 14), (2, 205)]
    c = tr.update([det(18, 10, 68, 60), det(205, 12, 255, 62), det(100, 150, 150, 200)], 2)
    assert sorted(t.id for t in c) == [1, 2, 3]


def test_lost_face_is_not_reported_and_dropped_after_max_missed():
    tr = IoUTracker(max_missed=2)
    tr.update([det(10, 10, 60, 60)], 0)
    for f in (1, 2):
        assert tr.update([], f) == []  # not reported while lost ...
        assert len(tr.tracks) == 1  # ... but kept for re-matching
    assert tr.update([], 3) == [] and tr.tracks == []
    again = tr.update([det(10, 10, 60, 60)], 4)
    assert again[0].id == 2  # came back after being dropped: a new track


def test_predict_extrapolates_between_detector_passes():
    tr = IoUTracker()
    tr.update([det(0, 0, 50, 50)], 0)
    tr.update([det(10, 0, 60, 50)], 1)  # moving 10 px per frame (smoothed: 5 after one step)
    (t,) = tr.predict(3, width=320, height=240)
    assert not t.detected and t.box[0] > 10 and t.box[2] - t.box[0] == 50
    (t,) = tr.update([det(30, 0, 80, 50)], 4)  # matched to the extrapolated box
    assert t.id == 1 and t.detected


def test_detection_cycle_keeps_a_face_only_one_pass_sees():
    # A 3-pass detector (one Haar view per frame): the face is found by pass 1 only.
    tr = IoUTracker(max_missed=1)
    seen = []
    for f in range(9):
        found = [det(10, 10, 60, 60)] if f % 3 == 1 else []
        seen.append([t.id for t in tr.update(found, f, cycle_end=f % 3 == 2)])
    assert seen[0] == [] and all(s == [1] for s in seen[1:])
    assert len(tr.tracks) == 1 and tr.tracks[0].missed == 0


def test_second_box_on_a_tracked_face_is_not_a_new_face():
    tr = IoUTracker()
    tr.update([det(10, 10, 110, 110)], 0)
    out = tr.update([det(12, 10, 112, 110), det(40, 40, 80, 80)], 1)  # second box inside the first
    assert [t.id for t in out] == [1] and len(tr.tracks) == 1


def test_vote_needs_a_confident_majority_of_the_window():
    tr = IoUTracker(vote_window=5, min_confidence=0.6)
    (t,) = tr.update([det(0, 0, 50, 50)], 0)
    assert tr.vote(t, NO_MASK, 0.9) is None  # 1 of 5: no majority yet
    assert tr.vote(t, NO_MASK, 0.9) is None
    assert tr.vote(t, NO_MASK, 0.9) == NO_MASK  # 3 of 5
    assert tr.vote(t, MASK, 0.99) == NO_MASK  # one flickering frame changes nothing
    assert tr.vote(t, MASK, 0.99) == NO_MASK
    assert tr.vote(t, MASK, 0.99) == MASK  # window now N N M M M
    (u,) = tr.update([det(200, 0, 250, 50)], 1)
    for _ in range(5):
        tr.vote(u, INCORRECT, 0.4)  # unsure frames do not vote
    assert u.voted is None


def test_alert_once_per_track_per_debounce_window():
    tr = IoUTracker(vote_window=3, alert_classes=[NO_MASK, INCORRECT], debounce_s=10.0)
    (t,) = tr.update([det(0, 0, 50, 50)], 0)
    (m,) = [x for x in tr.update([det(0, 0, 50, 50), det(100, 0, 150, 50)], 1) if x.id == 2]
    for _ in range(3):
        tr.vote(t, NO_MASK, 0.9)
        tr.vote(m, MASK, 0.9)
    first = tr.should_alert(t, now=100.0)
    assert first is not None and (first.track_id, first.class_index) == (1, NO_MASK)
    assert first.confidence == np.float32(0.9) or abs(first.confidence - 0.9) < 1e-6
    assert tr.should_alert(t, now=105.0) is None  # debounced
    assert tr.should_alert(m, now=105.0) is None  # a masked face never alerts
    assert tr.should_alert(t, now=110.5) is not None  # window over: alert again
    assert t.alerts == 2

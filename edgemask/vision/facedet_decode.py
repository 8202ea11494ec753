"""Pre- and post-processing of the learned face detector, in numpy/OpenCV only.

Device runtime code: no torch, Python 3.8. The graph ends at the dense head
(N, 5, H/4, W/4) of :mod:`edgemask.models.facedet`; everything here runs the
same way whichever runner produced the head:

* :func:`letterbox` — scale a frame to fit the input, pad bottom/right;
* :func:`decode_heads` — heatmap peaks (3x3 local maxima above a threshold)
  -> boxes in frame pixels;
* :func:`nms` — greedy IoU suppression;
* :func:`match_detections` / :func:`detection_metrics` — recall per class and
  size bucket, false boxes per image, AP50 (shared by ``edgemask detector
  eval`` and the benchmarks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

#: Size buckets of the recall table, by the longer side of the ground-truth box in image pixels.
SIZE_BUCKETS: Tuple[Tuple[str, float, float], ...] = (("<24", 0.0, 24.0), ("24-39", 24.0, 40.0), (">=40", 40.0, 1e9))


@dataclass
class DecodeParams:
    """What turns the head into boxes; stored in the bundle's ``detector`` entry."""

    stride: int = 4
    score_threshold: float = 0.35
    nms_iou: float = 0.4
    top_k: int = 100
    # Boxes whose shorter side is under this many frame pixels are dropped: the classifier cannot tell a mask
    # on such a face, and in crowd photos most of them are unlabelled background faces (false boxes).
    min_side: float = 16.0
    # A second pass with the frame at this fraction of the input (0 = one pass). Training crops hold faces up
    # to about 190 input px, so a face filling most of the frame (someone close to the camera) is found only
    # when shrunk: from this pass, boxes whose shorter side would be at least ``coarse_min_side`` input px at
    # full scale join the full pass's boxes before NMS; smaller ones come from the full pass alone.
    coarse: float = 0.5
    coarse_min_side: float = 96.0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DecodeParams":
        return cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})


def check_decode(params: DecodeParams) -> None:
    """One-line errors for decode parameters that cannot work."""
    from edgemask.errors import ConfigError

    if not 0.0 < params.score_threshold < 1.0:
        raise ConfigError(f"--score-threshold must be in (0, 1), e.g. 0.35 (got {params.score_threshold})")
    if not params.min_side >= 0:
        raise ConfigError(f"--min-side must be 0 or more frame pixels, e.g. 16 (got {params.min_side})")
    if not 0.0 <= params.coarse < 1.0:
        raise ConfigError(f"--coarse must be in [0, 1), e.g. 0.5, or 0 for one pass (got {params.coarse})")
    if not params.coarse_min_side >= 0:
        raise ConfigError(f"coarse_min_side must be 0 or more input pixels, e.g. 96 (got {params.coarse_min_side})")


def letterbox(rgb: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, float]:
    """Resize ``rgb`` (H, W, 3) to fit (height, width) keeping its aspect; pad bottom/right with grey.

    Returns:
        (canvas uint8 (height, width, 3), scale): frame px = input px / scale.
    """
    import cv2

    h, w = rgb.shape[:2]
    scale = min(width / float(w), height / float(h))
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else rgb
    canvas = np.full((height, width, 3), 114, dtype=np.uint8)
    canvas[:nh, :nw] = small[:height, :width]
    return canvas, scale


def pass_canvases(
    rgb: np.ndarray, width: int, height: int, params: DecodeParams
) -> Tuple[List[np.ndarray], List[float]]:
    """The detector's input canvases of one frame and their scales: the letterbox, then the coarse pass if any.

    The coarse canvas holds the frame letterboxed to ``params.coarse`` of the input, at its top left, in the
    same grey padding, so one batch of the same fixed-size model runs both passes.
    """
    canvas, scale = letterbox(rgb, width, height)
    canvases, scales = [canvas], [scale]
    if params.coarse > 0:
        small, s2 = letterbox(rgb, max(1, round(width * params.coarse)), max(1, round(height * params.coarse)))
        coarse = np.full_like(canvas, 114)
        coarse[: small.shape[0], : small.shape[1]] = small
        canvases.append(coarse)
        scales.append(s2)
    return canvases, scales


def merge_passes(
    heads: Sequence[np.ndarray], scales: Sequence[float], params: DecodeParams, frame_wh: Tuple[int, int] | None = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Final boxes and scores of one frame from the heads of :func:`pass_canvases`' canvases.

    Each pass is decoded at its own scale; a coarse pass contributes only boxes whose shorter side is at
    least ``params.coarse_min_side`` input pixels at the full pass's scale; one NMS over all.
    """
    boxes, scores = [], []
    for i, (head, scale) in enumerate(zip(heads, scales)):
        b, s = decode_heads(head, params, scale, frame_wh)
        if i:  # a coarse pass: only faces too large for the full pass
            big = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * float(scales[0]) >= params.coarse_min_side
            b, s = b[big], s[big]
        boxes.append(b)
        scores.append(s)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(b, s, params.nms_iou)
    return b[keep], s[keep]


def to_input(canvases: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) RGB canvases -> float32 NCHW in [0, 1]."""
    x = np.stack(canvases).astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _local_max(heat: np.ndarray) -> np.ndarray:
    """Mask of cells equal to their 3x3 neighbourhood maximum."""
    import cv2

    dil = cv2.dilate(heat.astype(np.float32), np.ones((3, 3), np.uint8))
    return heat >= dil


def decode_heads(
    head: np.ndarray, params: DecodeParams, scale: float = 1.0, frame_wh: Tuple[int, int] | None = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes and scores of one image's head (5, h, w), before NMS.

    Args:
        head: channels heat (in [0, 1]), log w, log h, offset x, offset y (in cells).
        params: stride, threshold, top_k.
        scale: the letterbox scale; boxes are divided by it (frame pixels).
        frame_wh: clip boxes to this frame size.

    Returns:
        boxes (K, 4) float32 x0, y0, x1, y1 and scores (K,), best first.
    """
    head = np.asarray(head, dtype=np.float32)
    if head.ndim != 3 or head.shape[0] != 5:
        raise ValueError(f"detector head must be (5, h, w), got {head.shape}")
    heat = head[0]
    peaks = _local_max(heat) & (heat >= params.score_threshold)
    ys, xs = np.nonzero(peaks)
    scores = heat[ys, xs]
    order = np.argsort(-scores, kind="stable")[: params.top_k]
    ys, xs, scores = ys[order], xs[order], scores[order]
    s = float(params.stride)
    bw = np.exp(np.clip(head[1, ys, xs], -6, 6)) * s
    bh = np.exp(np.clip(head[2, ys, xs], -6, 6)) * s
    cx = (xs + head[3, ys, xs]) * s
    cy = (ys + head[4, ys, xs]) * s
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32) / scale
    if frame_wh is not None:
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, frame_wh[0])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, frame_wh[1])
    keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= params.min_side
    return boxes[keep], scores[keep].astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x0, y0, x1, y1 boxes."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best score first."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: List[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious < iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    head: np.ndarray, params: DecodeParams, scale: float = 1.0, frame_wh: Tuple[int, int] | None = None
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`decode_heads` then :func:`nms`: final boxes (K, 4) and scores (K,)."""
    boxes, scores = decode_heads(head, params, scale, frame_wh)
    keep = nms(boxes, scores, params.nms_iou)
    return boxes[keep], scores[keep]


# --------------------------------------------------------------------------- parity


def box_agreement(ref: Sequence[np.ndarray], test: Sequence[np.ndarray], iou_threshold: float = 0.5) -> float:
    """How far two runs of a detector found the same boxes, over many images.

    Boxes of each image are matched one to one (greedy, IoU >= ``iou_threshold``);
    the result is matched / max(len(ref), len(test)) summed over images, 1.0
    when neither run found anything: a box found by only one of them counts
    against it, whichever it is.
    """
    matched = 0
    total = 0
    for r, t in zip(ref, test):
        r = np.asarray(r, np.float32).reshape(-1, 4)
        t = np.asarray(t, np.float32).reshape(-1, 4)
        total += max(len(r), len(t))
        if len(r) and len(t):
            hit, _ = match_detections(r, t, np.arange(len(t), 0, -1, dtype=np.float32), iou_threshold)
            matched += int(hit.sum())
    return matched / total if total else 1.0


def compare_heads(ref: np.ndarray, test: np.ndarray, params: DecodeParams) -> Dict[str, Any]:
    """Parity of two batches of detector heads (N, 5, h, w) of the same inputs.

    Returns:
        ``heat_max_abs`` (largest heatmap difference), ``head_max_abs`` (any
        channel), ``box_agreement`` (:func:`box_agreement` of the decoded,
        NMS-ed boxes in input pixels) and the box counts.
    """
    ref = np.asarray(ref, np.float32)
    test = np.asarray(test, np.float32)
    if ref.shape != test.shape:
        raise ValueError(f"detector heads differ in shape: {ref.shape} vs {test.shape}")
    rb = [postprocess(h, params)[0] for h in ref]
    tb = [postprocess(h, params)[0] for h in test]
    d = np.abs(ref.astype(np.float64) - test.astype(np.float64))
    return {
        "heat_max_abs": float(d[:, 0].max()) if d.size else 0.0,
        "head_max_abs": float(d.max()) if d.size else 0.0,
        "box_agreement": box_agreement(rb, tb),
        "boxes_ref": int(sum(len(b) for b in rb)),
        "boxes": int(sum(len(b) for b in tb)),
        "images": int(len(ref)),
    }


def within_tolerance(parity: Dict[str, Any], tolerance: Dict[str, Any] | None) -> List[str]:
    """What breaks a per-precision tolerance ``{"heat_max_abs": x, "box_agreement": y}``; None/missing = not enforced."""
    problems: List[str] = []
    tol = tolerance or {}
    if tol.get("heat_max_abs") is not None and parity["heat_max_abs"] > float(tol["heat_max_abs"]):
        problems.append(f"heatmap differs by {parity['heat_max_abs']:.2e} (allowed {float(tol['heat_max_abs']):.0e})")
    if tol.get("box_agreement") is not None and parity["box_agreement"] < float(tol["box_agreement"]):
        problems.append(
            f"boxes agree {parity['box_agreement'] * 100:.1f}% (needs {float(tol['box_agreement']) * 100:.0f}%)"
        )
    return problems


# --------------------------------------------------------------------------- metrics


def size_bucket(box: Sequence[float]) -> str:
    side = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]))
    for name, lo, hi in SIZE_BUCKETS:
        if lo <= side < hi:
            return name
    return SIZE_BUCKETS[-1][0]


def match_detections(
    gt_boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray, iou_threshold: float = 0.5
) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy matching, best detection first: (gt_hit bool (G,), det_is_tp bool (D,))."""
    g = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    d = np.asarray(det_boxes, dtype=np.float32).reshape(-1, 4)
    hit = np.zeros(len(g), dtype=bool)
    tp = np.zeros(len(d), dtype=bool)
    if len(g) == 0 or len(d) == 0:
        return hit, tp
    ious = box_iou(d, g)
    for i in np.argsort(-np.asarray(det_scores), kind="stable"):
        row = np.where(hit, -1.0, ious[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            hit[j] = True
            tp[i] = True
    return hit, tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """VOC-style all-point AP of a ranked list of detections."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def detection_metrics(
    samples: Sequence[Tuple[np.ndarray, Sequence[str], np.ndarray, np.ndarray]], iou_threshold: float = 0.5
) -> Dict[str, Any]:
    """Recall per ground-truth class x size bucket, false boxes per image, AP50.

    Args:
        samples: per image (gt boxes (G, 4), gt labels (G,), det boxes (D, 4), det scores (D,)),
            all in the image's own pixels.
        iou_threshold: a detection matches a face at IoU >= this (0.5: AP50).

    Returns:
        JSON-able dict: ``recall[class][bucket]``, ``counts``, ``recall_min_side[class]`` (faces >= 24 px),
        ``false_per_image``, ``ap50``, ``images``.
    """
    found: Dict[str, Dict[str, int]] = {}
    total: Dict[str, Dict[str, int]] = {}
    all_scores: List[np.ndarray] = []
    all_tp: List[np.ndarray] = []
    n_gt = 0
    false = 0
    for gt, labels, det, scores in samples:
        gt = np.asarray(gt, dtype=np.float32).reshape(-1, 4)
        det = np.asarray(det, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        hit, tp = match_detections(gt, det, scores, iou_threshold)
        for k, lab in enumerate(labels):
            b = size_bucket(gt[k])
            total.setdefault(lab, {}).setdefault(b, 0)
            found.setdefault(lab, {}).setdefault(b, 0)
            total[lab][b] += 1
            found[lab][b] += int(hit[k])
        n_gt += len(gt)
        all_scores.append(scores)
        all_tp.append(tp)
        # a false box overlaps no face at IoU >= 0.3 (loose: a box on a face, badly sized, is not a ghost)
        if len(det):
            best = box_iou(det, gt).max(axis=1) if len(gt) else np.zeros(len(det), np.float32)
            false += int(np.sum(best < 0.3))
    recall: Dict[str, Dict[str, float]] = {}
    big: Dict[str, float] = {}
    for lab in sorted(total):
        recall[lab] = {b: found[lab][b] / total[lab][b] for b in total[lab]}
        n = sum(total[lab][b] for b in total[lab] if b != "<24")
        f = sum(found[lab][b] for b in found[lab] if b != "<24")
        big[lab] = f / n if n else float("nan")
    sc = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    tps = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    return {
        "images": len(samples),
        "faces": n_gt,
        "iou": iou_threshold,
        "recall": recall,
        "counts": total,
        "recall_min_side": big,
        "min_side": 24,
        "false_per_image": false / max(1, len(samples)),
        "ap50": average_precision(sc, tps, n_gt),
    }


__all__ = [
    "SIZE_BUCKETS",
    "DecodeParams",
    "average_precision",
    "box_agreement",
    "box_iou",
    "compare_heads",
    "decode_heads",
    "detection_metrics",
    "within_tolerance",
    "letterbox",
    "match_detections",
    "merge_passes",
    "nms",
    "pass_canvases",
    "postprocess",
    "size_bucket",
    "to_input",
]

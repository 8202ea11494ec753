"""Face-detector recall per class and face size: Haar, the bundle's learned detector at each precision, YuNet.

Usage::

    python benchmarks/detector_recall.py --bundle export/NAME [--voc ../shared/data/face-mask-voc]
        [--scenes 100] [--seed 1] [--close-up 0.7] [--face-model yunet.onnx] [--iou 0.5] [--backend onnxrt] [--json]

Two data sets:

* **real**: the held-out split of a VOC face-mask folder (default
  ``../shared/data/face-mask-voc``; skipped with a message when absent). The
  split is the one the bundle's detector was trained with (its manifest's
  ``detector.training.split``: by image, seeded), so these are photos the
  learned detector never saw; without a detector in the bundle, seed 0 and
  20 %, the training default.
* **real close-ups**: each held-out face >= 40 px in a 640x480 view zoomed so
  that it spans ``--close-up`` (0.7) of the width, as when someone stands
  close to the camera; the other faces of the photo still in view count too.
* **synth**: ``--scenes`` fresh 640x480 scenes of ``edgemask.data.synth.render_scene``
  (1-4 faces, a third real LFW faces with drawn masks), seed ``--seed``.

A face counts as found when a box overlaps it with IoU >= ``--iou`` (0.5, as
``edgemask detector eval``; Haar boxes cover brows to mouth, so Haar scores
more at ``--iou 0.3``); a false box overlaps no face at IoU >= 0.3. Recall
is per ground-truth class and size bucket (longer side < 24, 24-39, >= 40
px) and for all faces >= 24 px; ``ms/frame`` is the detector's time on the
640x480 synthetic frames (noisy under load: the load average is printed).

Rows: ``haar`` (frontal cascade) and ``haar-fusion`` (the three-view fusion
that ``edgemask run`` falls back to), both at ``--min-face 24`` and full size
(so 24-px faces are findable); the learned detector of ``--bundle`` at each
precision it ships, through ``--backend`` (ONNX Runtime by default), decoded
with the manifest's parameters; YuNet with ``--face-model``.
Targets (issue 10): recall >= 0.90 on faces >= 24 px for each class at <= 0.25
false boxes per image; int8 within 1 point of fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_VOC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "face-mask-voc"


def synth_scenes(n: int, seed: int):
    """(name, BGR frame, boxes, labels) of ``n`` synthetic 640x480 scenes with faces."""
    import numpy as np

    from edgemask.data.synth import render_scene

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        img, objs = render_scene(rng, 640, 480, 4)
        if objs:
            out.append(
                (
                    f"synth{len(out)}",
                    np.ascontiguousarray(img[:, :, ::-1]),
                    np.float32([o["box"] for o in objs]),
                    [o["label"] for o in objs],
                )
            )
    return out


def real_heldout(voc: Path, split: dict, close_up: float = 0.0):
    """(name, BGR image, boxes, labels) of the held-out images of a VOC folder.

    ``close_up`` > 0: instead, one 640x480 view per face >= 40 px, zoomed so it spans that share of the width.
    """
    import numpy as np

    from edgemask.data.detection import close_up as zoom
    from edgemask.data.detection import read_detection_set, split_images

    ims = read_detection_set(voc)
    held = split_images(ims, int(split.get("seed", 0)), float(split.get("heldout", 0.2)))[1]
    if close_up > 0:
        held = [
            zoom(im, i, close_up) for im in held for i, b in enumerate(im.boxes) if max(b[2] - b[0], b[3] - b[1]) >= 40
        ]
    return [(im.name, np.ascontiguousarray(im.rgb[:, :, ::-1]), im.boxes, im.labels) for im in held]


def evaluate(detector, data, iou: float) -> dict:
    """detection_metrics of one detector on one data set, plus its mean time per image."""
    import numpy as np

    from edgemask.vision.facedet_decode import detection_metrics

    samples = []
    t = 0.0
    for _, bgr, boxes, labels in data:
        t0 = time.perf_counter()
        dets = detector.detect(bgr)
        t += time.perf_counter() - t0
        det_boxes = np.float32([d.box for d in dets]).reshape(-1, 4)
        samples.append((boxes, labels, det_boxes, np.float32([d.score for d in dets])))
    m = detection_metrics(samples, iou_threshold=iou)
    m["ms"] = 1e3 * t / max(1, len(data))
    return m


def detectors(args, bundle):
    """(row name, factory) of every detector to measure."""
    from edgemask.vision.detectors import FUSION, HaarDetector, YuNetDetector

    rows = [
        ("haar (frontal, --min-face 24, full size)", lambda: HaarDetector(("frontal",), 0, 24)),
        ("haar-fusion (--min-face 24, full size)", lambda: HaarDetector(FUSION, 0, 24)),
    ]
    if bundle is not None and bundle.has_detector:
        from edgemask.vision.bundle_detector import detector_from_bundle

        for p in bundle.detector_view().manifest.precisions("onnx"):
            rows.append(
                (f"learned {args.backend}:{p}", lambda p=p: detector_from_bundle(bundle, args.backend, p, min_face=0))
            )
    if args.face_model:
        rows.append(("yunet (--min-face 24, full size)", lambda: YuNetDetector(args.face_model, 0, 24)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--bundle",
        help="bundle whose learned detector to measure (default: the pretrained bundle shipped in the package)",
    )
    ap.add_argument("--voc", default=str(DEFAULT_VOC), help="VOC face-mask folder for the real held-out split")
    ap.add_argument("--scenes", type=int, default=100, help="synthetic 640x480 scenes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--face-model", help="YuNet ONNX model to add as a row")
    ap.add_argument(
        "--close-up",
        type=float,
        default=0.7,
        help="also measure each held-out face >= 40 px zoomed to span this share of a 640x480 frame (0 = skip)",
    )
    ap.add_argument("--iou", type=float, default=0.5, help="IoU for a face to count as found")
    ap.add_argument(
        "--backend", default="onnxrt", help="runner of the learned detector (onnxrt, opencv, torch, tensorrt)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import cv2

    from edgemask.bundle import load_bundle
    from edgemask.pretrained import default_bundle
    from edgemask.vision.facedet_decode import SIZE_BUCKETS

    # No --bundle: the pretrained bundle shipped in the package (what `edgemask run` uses by default).
    path = args.bundle or default_bundle()
    bundle = load_bundle(path) if path else None
    if bundle is not None and not bundle.has_detector:
        print(f"note: bundle {args.bundle} has no detector (export it with --detector RUN); measuring Haar only")
    sets = {}
    voc = Path(args.voc)
    split = {"seed": 0, "heldout": 0.2}
    if bundle is not None and bundle.has_detector:
        split = bundle.manifest.detector.training.get("split") or split
    if voc.is_dir():
        sets["real held-out"] = real_heldout(voc, split)
        if args.close_up > 0:
            sets[f"real close-ups ({args.close_up:.0%} of the width)"] = real_heldout(voc, split, args.close_up)
    else:
        print(
            f"skipping the real split: {voc} is absent (the VOC face-mask photos are not in a fresh clone; "
            "pass --voc DIR)"
        )
    sets["synth 640x480"] = synth_scenes(args.scenes, args.seed)
    load0 = os.getloadavg()[0]
    rows = []
    for name, make in detectors(args, bundle):
        det = make()
        for set_name, data in sets.items():
            m = evaluate(det, data, args.iou)
            rows.append({"detector": name, "data": set_name, **m})
        if hasattr(det, "close"):
            det.close()
    env = {
        "opencv": cv2.__version__,
        "cpus": os.cpu_count(),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "iou": args.iou,
        "split": split,
        "bundle": args.bundle,
        "threads": os.environ.get("EDGEMASK_NUM_THREADS", "all cores"),
    }
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2, default=float))
        return
    buckets = [b for b, _, _ in SIZE_BUCKETS]
    print(
        f"# detector recall at IoU >= {args.iou}; OpenCV {env['opencv']}, {env['cpus']} CPUs, "
        f"load avg {env['load_before']} -> {env['load_after']}"
    )
    for set_name, data in sets.items():
        sub = [r for r in rows if r["data"] == set_name]
        faces = sub[0]["faces"] if sub else 0
        counts = sub[0]["counts"] if sub else {}
        extra = f", held out by image (seed {split.get('seed')}, {split.get('heldout')})" if "real" in set_name else ""
        print(
            f"\n## {set_name}: {len(data)} images, {faces} faces{extra}; "
            + "; ".join(f"{c}: " + "/".join(str(counts[c].get(b, 0)) for b in buckets) for c in sorted(counts))
            + " faces per size bucket\n"
        )
        print(
            f"| {'detector':42} | {'class':22} | "
            + " | ".join(f"{b + ' px':>8}" for b in buckets)
            + " | >=24 px | false/img | AP50  | ms/frame |"
        )
        print(
            "|"
            + "-" * 44
            + "|"
            + "-" * 24
            + "|"
            + "|".join("-" * 10 for _ in buckets)
            + "|---------|-----------|-------|----------|"
        )
        for r in sub:
            for i, c in enumerate(sorted(r["recall"])):
                cells = [f"{r['recall'][c][b] * 100:7.1f}%" if b in r["recall"][c] else f"{'-':>8}" for b in buckets]
                big = r["recall_min_side"][c]
                tail = (
                    f"{r['false_per_image']:9.3f} | {r['ap50'] * 100:5.1f} | {r['ms']:8.1f}"
                    if i == 0
                    else f"{'':9} | {'':5} | {'':8}"
                )
                print(
                    f"| {r['detector'] if i == 0 else '':42} | {c:22} | "
                    + " | ".join(cells)
                    + f" | {('-' if big != big else f'{big * 100:6.1f}%'):>7} | {tail} |"
                )
    print("\nms/frame: mean time of one detect() on that set's images (the synth rows are 640x480 frames).")
    print(
        "Targets (issue 10): recall >= 0.90 at >= 24 px for every class, <= 0.25 false boxes per image; "
        "int8 within 1 point of fp32."
    )


if __name__ == "__main__":
    main()

"""Face-detector recall on synthetic scenes, by class: the frontal Haar cascade alone vs the fusion.

Usage::

    python benchmarks/detector_recall.py [--scenes 200] [--seed 1] [--face-model yunet.onnx] [--json]

Scenes come from ``edgemask.data.synth.render_scene`` (640×480, 1–4 faces,
about a third of them real LFW faces with drawn masks). A ground-truth face
counts as found when a detection overlaps it with IoU ≥ 0.3 (Haar boxes
cover brows to mouth, the ground truth the whole head outline, so a
stricter IoU would count hits as misses). False positives: detections with
IoU < 0.3 to every face, per frame. ``ms`` is the detector's time per frame
on this machine (noisy when other work runs: the load average is printed).

Rows: each Haar view alone (``frontal`` = the stock frontal cascade on
luma; ``frontal-value`` / ``frontal-red`` = the same cascade on the max of
B, G, R / the red channel; ``profile``), the ``haar-fusion`` detector (what
``edgemask run`` uses by default; the run loop spreads its three views over
three frames), at 320 px wide (the default ``--detect-width``) and at full
size, and YuNet with ``--face-model``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = ("no_mask", "mask_incorrect", "mask")


def scenes(n: int, seed: int):
    import numpy as np

    from edgemask.data.synth import render_scene

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        img, objs = render_scene(rng, 640, 480, 4)
        if objs:
            out.append((img[:, :, ::-1].copy(), objs))  # RGB → BGR, as a camera frame
    return out


def evaluate(detector, data) -> dict:
    from edgemask.vision.detectors import iou

    found = {c: 0 for c in CLASSES}
    total = {c: 0 for c in CLASSES}
    fp = 0
    t = 0.0
    for img, objs in data:
        t0 = time.perf_counter()
        dets = detector.detect(img)
        t += time.perf_counter() - t0
        for o in objs:
            total[o["label"]] += 1
            if any(iou(o["box"], d.box) >= 0.3 for d in dets):
                found[o["label"]] += 1
        fp += sum(1 for d in dets if all(iou(o["box"], d.box) < 0.3 for o in objs))
    return {"recall": {c: found[c] / max(1, total[c]) for c in CLASSES}, "found": found, "total": total,
            "fp_per_frame": fp / len(data), "ms": 1e3 * t / len(data)}


def evaluate_video(detector, data, frames: int = 9, seed: int = 0) -> dict:
    """Recall per person over ``frames`` video frames, detected as the run loop does.

    Each scene becomes a short clip: the frame drifts by ~1 px per frame and
    gets fresh sensor noise (σ = 3 grey levels), and the detector runs one
    pass per frame (the fusion's three views in turn). A face counts as
    found if any frame's detections hit it: once found, the tracker keeps it.
    """
    import cv2
    import numpy as np

    from edgemask.vision.detectors import iou

    rng = np.random.default_rng(seed)
    phases = getattr(detector, "phases", 1)
    found = {c: 0 for c in CLASSES}
    total = {c: 0 for c in CLASSES}
    for img, objs in data:
        hit = [False] * len(objs)
        for f in range(frames):
            dx = float(f)
            m = np.float32([[1, 0, dx], [0, 1, 0]])
            frame = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
            frame = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
            dets = detector.detect(frame, phase=f % phases) if phases > 1 else detector.detect(frame)
            for k, o in enumerate(objs):
                b = o["box"]
                moved = (b[0] + dx, b[1], b[2] + dx, b[3])
                hit[k] = hit[k] or any(iou(moved, d.box) >= 0.3 for d in dets)
        for k, o in enumerate(objs):
            total[o["label"]] += 1
            found[o["label"]] += hit[k]
    return {c: found[c] / max(1, total[c]) for c in CLASSES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--face-model", help="YuNet ONNX model to add as a row")
    ap.add_argument("--video-scenes", type=int, default=100, help="scenes replayed as 9-frame clips")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import cv2

    from edgemask.vision.detectors import FUSION, HaarDetector, YuNetDetector

    data = scenes(args.scenes, args.seed)
    load0 = os.getloadavg()[0]
    rows = []
    configs = [
        ("frontal (stock cascade)", lambda w: HaarDetector(("frontal",), w)),
        ("frontal-value view", lambda w: HaarDetector(("frontal-value",), w)),
        ("frontal-red view", lambda w: HaarDetector(("frontal-red",), w)),
        ("profile (both sides)", lambda w: HaarDetector(("profile",), w)),
        ("haar-fusion (frontal+value+red)", lambda w: HaarDetector(FUSION, w)),
    ]
    if args.face_model:
        configs.append(("yunet", lambda w: YuNetDetector(args.face_model, w)))
    for width in (320, 0):
        for name, make in configs:
            if width == 0 and name.startswith(("frontal-", "profile")):
                continue  # single views at full size add little but minutes
            det = make(width)
            r = evaluate(det, data)
            row = {"detector": name, "detect_width": width or 640, **r}
            if width == 320 and name.startswith(("frontal (", "haar-fusion", "yunet")):
                row["video_recall"] = evaluate_video(det, data[: args.video_scenes])
            rows.append(row)
    env = {"scenes": len(data), "faces": rows[0]["total"], "seed": args.seed, "opencv": cv2.__version__,
           "cpus": os.cpu_count(), "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2))
        return
    t = env["faces"]
    print(f"# detector recall, {env['scenes']} synthetic 640×480 scenes (seed {args.seed}): {t['no_mask']} unmasked, "
          f"{t['mask_incorrect']} incorrectly masked, {t['mask']} masked faces; IoU ≥ 0.3; OpenCV {env['opencv']}, "
          f"load avg {env['load_before']} → {env['load_after']}")
    print("\nPer frame (one full detector run on each scene):\n")
    print("| detector                          | width | no_mask | mask_incorrect | mask  | FP/frame | ms/frame |")
    print("|-----------------------------------|-------|---------|----------------|-------|----------|----------|")
    for r in rows:
        rc = r["recall"]
        print(f"| {r['detector']:33} | {r['detect_width']:5} | {rc['no_mask'] * 100:6.1f}% | {rc['mask_incorrect'] * 100:13.1f}% "
              f"| {rc['mask'] * 100:4.1f}% | {r['fp_per_frame']:8.2f} | {r['ms']:8.1f} |")
    vid = [r for r in rows if "video_recall" in r]
    if vid:
        print(f"\nPer person within 9 frames (0.3 s at 30 FPS; drift + sensor noise; one detector pass per frame, "
              f"as 'edgemask run' does; first {min(args.video_scenes, len(data))} scenes):\n")
        print("| detector                          | width | no_mask | mask_incorrect | mask  |")
        print("|-----------------------------------|-------|---------|----------------|-------|")
        for r in vid:
            rc = r["video_recall"]
            print(f"| {r['detector']:33} | {r['detect_width']:5} | {rc['no_mask'] * 100:6.1f}% | "
                  f"{rc['mask_incorrect'] * 100:13.1f}% | {rc['mask'] * 100:4.1f}% |")


if __name__ == "__main__":
    main()

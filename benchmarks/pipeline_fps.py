"""End-to-end FPS and frame latency of ``edgemask run`` on 640×480 video with 1–4 faces, headless.

Usage::

    python benchmarks/pipeline_fps.py [--bundle DIR] [--detector-run RUN] [--frames 300] [--backend onnxrt]
        [--precision fp32] [--only TEXT] [--json]

The video is made here: synthetic scenes (``edgemask.data.synth.render_scene``)
with 1–4 faces each, every scene held for 30 frames while it drifts
sideways, written as MPEG-4 (mp4v) so decoding costs what a camera stream's
would. Without ``--bundle`` an untrained default ``seed_cnn`` (64×64) is
exported to a temporary bundle: classification time does not depend on the
weights. ``--detector-run`` (a run of ``edgemask detector train``) is
exported into that bundle as its learned detector; a ``--bundle`` that has a
detector uses its own. The learned-detector rows (``bundle detector ...``)
run it at fp32 and int8 on the classifier's backend; without a detector
they are skipped with a note. Its detection time does depend on the weights
only through the number of faces it finds (decode, NMS, crops), so use a
trained detector.

Each configuration runs the real service loop (``run_service``): decode
(reader thread) → detect → classify (all faces in one batch) → track/vote →
events JSON Lines. Two modes:

* ``max``: the file is read as fast as the pipeline goes; FPS = throughput.
* ``live``: the file is replayed as a 30 FPS camera (frames the loop is too
  slow for are dropped, as with a real camera); ``e2e`` = capture to events
  written, queue wait included — the latency a live camera sees.

Columns: FPS; ``work`` = decode + detect + classify + track + output for one
frame (p50/p99, ms); ``e2e p99`` (live mode only); mean ms per stage.
Targets: ≥ 30 FPS and p99 ≤ 60 ms with the default configuration.
In ``live`` mode FPS cannot exceed the camera's 30; frames the loop cannot
keep up with are dropped (counted), as a real camera's would be.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("decode", "detect", "classify", "track", "output")


def make_video(path: Path, frames: int, seed: int = 0, hold: int = 30) -> dict:
    """640×480 mp4v video of synthetic scenes with 1–4 faces; returns face statistics."""
    import cv2
    import numpy as np

    from edgemask.data.synth import render_scene

    rng = np.random.default_rng(seed)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    faces, written = [], 0
    while written < frames:
        img, objs = render_scene(rng, 640, 480, 4)
        if not 1 <= len(objs) <= 4:
            continue
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        for i in range(min(hold, frames - written)):
            m = np.float32([[1, 0, i * 0.8], [0, 1, i * 0.2]])  # people drift a little
            vw.write(cv2.warpAffine(bgr, m, (640, 480), borderMode=cv2.BORDER_REFLECT))
            faces.append(len(objs))
            written += 1
    vw.release()
    return {"frames": written, "faces_per_frame": round(sum(faces) / len(faces), 2)}


def make_bundle(work: Path, detector_run: str | None = None) -> Path:
    import torch

    from edgemask.data.labels import CLASS_NAMES
    from edgemask.export import export_bundle
    from edgemask.models import create_model
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files

    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=3).eval()  # the default architecture at its default 64×64
    save_run_files(
        work / "run",
        model,
        run_info_for(model, "seed_cnn", resolved_args("seed_cnn", num_classes=3), list(CLASS_NAMES)),
    )
    recipe = work / "recipe.toml"
    recipe.write_text('source = "synth"\ncount = 32\nstratified = true\nseed = 0\n')
    det = {"detector": detector_run} if detector_run else {}
    return export_bundle(
        work / "run", work / "bundle", calibration=str(recipe), precisions=("fp32", "int8"), opencv_check=False, **det
    )


def run_config(video: Path, bundle: Path, work: Path, name: str, args: argparse.Namespace, **kw) -> dict:
    from edgemask.service.config import RunConfig, Secrets
    from edgemask.service.loop import run_service
    from edgemask.vision.sources import FrameSource, SourceSpec

    live = kw.pop("live", False)
    events = work / f"events-{name}.jsonl"
    events.unlink(missing_ok=True)
    cfg = RunConfig(
        source=str(video),
        bundle=str(bundle),
        backend=args.backend,
        precision=args.precision,
        headless=True,
        events=str(events),
        log_alerts=False,
        state_dir=str(work / "state"),
        max_frames=args.frames,
        **kw,
    )
    # live: the recording replayed as a 30 FPS camera (a reader that drops stale frames, never waits for us)
    source = FrameSource(SourceSpec("file", str(video), fps=30.0, as_live=True)) if live else None
    s = run_service(cfg, source=source, install_signal_handlers=False, secrets=Secrets())
    lat = s.latency_ms
    return {
        "config": name,
        "mode": "live" if live else "max",
        "detect_mode": s.detect_mode,
        "fps": s.fps,
        "frames": s.frames,
        "faces": s.faces,
        "detector_runs": s.detector_runs,
        "dropped": s.dropped_frames,
        "work_p50": lat["total"]["p50"],
        "work_p99": lat["total"]["p99"],
        "e2e_p50": lat["e2e"]["p50"] if live else None,
        "e2e_p99": lat["e2e"]["p99"] if live else None,
        "detector_pass_p50": s.detector_pass_ms.get("p50"),
        "detection_age_frames": s.detection_age_frames,
        **{f"{k}_mean": lat[k]["mean"] for k in STAGES},
        **{f"{k}_p99": lat[k]["p99"] for k in STAGES},
        "options": kw,
    }


FUSION = {"detector": "haar-fusion"}  # what 'auto' is for a bundle without a detector
LEARNED = {"detector": "bundle"}
CONFIGS = [
    # name, options, live
    ("bundle detector fp32, sync", {**LEARNED, "detector_precision": "fp32"}, False),
    ("bundle detector int8, sync", {**LEARNED, "detector_precision": "int8"}, False),
    (
        "bundle detector fp32, every 2nd frame, sync",
        {**LEARNED, "detector_precision": "fp32", "detect_every": 2},
        False,
    ),
    ("live 30 FPS camera, bundle detector fp32, auto", {**LEARNED, "detector_precision": "fp32"}, True),
    ("fusion 1 view/frame, 320 px, sync", dict(FUSION), False),
    ("fusion, async detector", {**FUSION, "detect_mode": "async"}, False),
    ("live 30 FPS camera, fusion, auto (= async)", dict(FUSION), True),
    ("live 30 FPS camera, fusion, sync", {**FUSION, "detect_mode": "sync"}, True),
    ("haar frontal only, sync", {"detector": "haar"}, False),
    ("fusion, detect every 2nd frame, sync", {**FUSION, "detect_every": 2}, False),
    ("fusion at full 640 px, sync", {**FUSION, "detect_width": 0}, False),
    ("no detector (fixed ROI)", {"detector": "none", "roi": "200,120,240,240"}, False),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", help="bundle to classify with (default: build a temporary one)")
    ap.add_argument("--detector-run", help="detector run to export into the temporary bundle (learned-detector rows)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--backend", default="onnxrt")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--only", help="run only configs whose name contains this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgemask-fps-") as tmp:
        work = Path(tmp)
        video = work / "scene.mp4"
        stats = make_video(video, args.frames)
        bundle = Path(args.bundle) if args.bundle else make_bundle(work, args.detector_run)
        from edgemask.bundle import load_manifest

        has_detector = load_manifest(bundle).detector is not None
        if not has_detector:
            print(
                "note: the bundle has no learned detector: 'bundle detector' rows skipped (pass --detector-run RUN, "
                "or a --bundle exported with --detector)"
            )
        load0 = os.getloadavg()[0]
        rows = []
        for name, opts, live in CONFIGS:
            if args.only and args.only not in name:
                continue
            if opts.get("detector") == "bundle" and not has_detector:
                continue
            rows.append(run_config(video, bundle, work, f"c{len(rows)}", args, live=live, **opts))
            rows[-1]["config"] = name
        env = {
            "cpus": os.cpu_count(),
            "opencv": cv2.__version__,
            "cv2_threads": cv2.getNumThreads(),
            "numpy": np.__version__,
            "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "video": {"size": "640x480", **stats},
            "backend": f"{args.backend}:{args.precision}",
        }
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2))
        return
    print(
        f"# pipeline FPS, 640×480, {stats['frames']} frames, {stats['faces_per_frame']} faces/frame, "
        f"{env['backend']}, {env['cpus']} CPUs, OpenCV {env['opencv']} ({env['cv2_threads']} threads), "
        f"load avg {env['load_before']} → {env['load_after']}"
    )
    head = (
        f"| {'configuration':42} | mode | det   | FPS   | passes | work p50 | work p99 | e2e p50 | e2e p99 | pass p50 | "
        + " | ".join(f"{s} ms" for s in STAGES)
        + " |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")

    def opt(v, width):
        return f"{v:{width}.1f}" if v is not None else " " * (width - 1) + "–"

    for r in rows:
        print(
            f"| {r['config']:42} | {r['mode']:4} | {r['detect_mode']:5} | {r['fps']:5.1f} | {r['detector_runs']:6d} | "
            f"{r['work_p50']:8.1f} | "
            f"{r['work_p99']:8.1f} | {opt(r['e2e_p50'], 7)} | {opt(r['e2e_p99'], 7)} | {opt(r['detector_pass_p50'], 8)} | "
            + " | ".join(f"{r[s + '_mean']:{len(s) + 3}.2f}" for s in STAGES)
            + " |"
        )
    print(
        "\npasses = detector passes applied (the fusion runs one of its 3 views per pass); work = decode + detect +"
        "\nclassify + track + output of one frame; e2e = capture → events written (live only); pass p50 = one"
        "\ndetector pass on the async thread (not part of a frame's work); stage columns are means per frame."
        "\nAn async run on a file at full speed ('max') outruns its detector: few passes, so its FPS is not"
        "\ncomparable; async is meant for live sources."
    )
    for r in rows:
        if r["mode"] == "live":
            print(
                f"{r['config']}: {r['fps']:.1f} FPS, e2e p99 {r['e2e_p99']:.1f} ms, {r['dropped']} frames dropped, "
                f"{r['detector_runs']} detector passes, detections applied {r['detection_age_frames']:.1f} frames late"
            )
    print("\nTarget (issue 5): >= 30 FPS and p99 frame latency <= 60 ms (work p99 for files, e2e p99 for live):")
    for r in rows:
        if r["mode"] == "max" and r["detect_mode"] == "async":
            continue  # not comparable (see above)
        p99 = r["e2e_p99"] if r["mode"] == "live" else r["work_p99"]
        # A live camera cannot deliver more than its 30 FPS: within 2 % of it counts as keeping up.
        fps_ok = r["fps"] >= (29.4 if r["mode"] == "live" else 30.0)
        verdict = "met" if fps_ok and p99 <= 60.0 else "NOT met"
        print(f"  {verdict:7} {r['config']} ({r['mode']}): {r['fps']:.1f} FPS, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()

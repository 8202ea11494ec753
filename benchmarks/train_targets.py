"""Training targets of the default model: accuracy, mask_incorrect recall, a fresh seed, time, real faces.

Usage::

    python benchmarks/train_targets.py [--n 6000] [--epochs 12] [--seed 0] [--work DIR] [--json]

What it does, with the same defaults as ``edgemask demo``:

1. ``write_synth_dataset(n=6000, size=64, seed=0)``;
2. ``train(TrainConfig(...))`` (seed_cnn, at most 15 epochs, early stop at
   99.5 % validation accuracy or after 4 epochs without progress), timed;
3. evaluates the best weights on the run's validation and test splits, and on
   a fresh synthetic set drawn with seed + 1 (``--fresh-n`` crops);
4. classifies real photos the generator never drew
   (:func:`edgemask.data.realfaces.real_face_check`): 20 held-out LFW faces
   (bare: expect ``no_mask``) and the scikit-image astronaut, bare, masked and
   with the mask below the nose, cut from 100 jittered boxes each.

It prints one table with each target of the foundation issue beside the
measured value: validation accuracy ≥ 98 %, ``mask_incorrect`` recall ≥ 95 %,
fresh-seed accuracy within 2 points, validation accuracy ≥ 97 % reached within
120 s of training (from the run's ``history.json``), and the whole demo part
(synth + train + evaluate) within 3 minutes. Thread count:
``EDGEMASK_NUM_THREADS`` (default every core). The load average before and
after is printed: timings taken while other work runs are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=6000, help="synthetic training crops")
    ap.add_argument("--fresh-n", type=int, default=600, help="crops of the fresh set (seed + 1)")
    ap.add_argument("--epochs", type=int, default=0, help="maximum epochs (default: the demo's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="", help="folder for data and run (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import torch

    from edgemask.config import DemoConfig, TrainConfig, num_threads
    from edgemask.data.realfaces import real_face_check
    from edgemask.data.synth import write_synth_dataset
    from edgemask.training import evaluate_run, train
    from edgemask.training.run import load_run

    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="edgemask-train-bench-")
        work = Path(tmp.name)
    load_before = os.getloadavg()[0]
    t_all = time.perf_counter()

    t = time.perf_counter()
    write_synth_dataset(work / "data", n=args.n, size=64, seed=args.seed, overwrite=True)
    synth_s = time.perf_counter() - t

    t = time.perf_counter()
    cfg = TrainConfig(
        data=str(work / "data"),
        out=str(work / "run"),
        epochs=args.epochs or DemoConfig().epochs,
        seed=args.seed,
        target_accuracy=DemoConfig().target_accuracy,
        overwrite=True,
    )
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    reach97 = next((h["seconds"] for h in history if h["val_accuracy"] >= 0.97), None)
    test = evaluate_run(run, work / "data", split="test")
    demo_part_s = time.perf_counter() - t_all

    write_synth_dataset(work / "fresh", n=args.fresh_n, size=64, seed=args.seed + 1, n_scenes=0, overwrite=True)
    fresh = evaluate_run(run, work / "fresh", split="all")

    model, info = load_run(run)

    def classify(crops):
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        with torch.no_grad():
            return model(x).argmax(1).numpy()

    real = real_face_check(classify, info.class_names, info.input_size)
    load_after = os.getloadavg()[0]

    val = metrics["val"]
    rows = [
        ("validation accuracy", f"{val['accuracy']:.2%}", "≥ 98%", val["accuracy"] >= 0.98),
        (
            "mask_incorrect recall (val)",
            f"{val['per_class']['mask_incorrect']['recall']:.2%}",
            "≥ 95%",
            val["per_class"]["mask_incorrect"]["recall"] >= 0.95,
        ),
        ("test accuracy", f"{test['accuracy']:.2%}", "", None),
        (
            f"fresh set (seed {args.seed + 1}, {args.fresh_n} crops)",
            f"{fresh['accuracy']:.2%}",
            "within 2 pts of val",
            abs(fresh["accuracy"] - val["accuracy"]) <= 0.02,
        ),
        (
            "training s to val ≥ 97%",
            "never" if reach97 is None else f"{reach97:.0f}",
            "≤ 120 s",
            reach97 is not None and reach97 <= 120,
        ),
        (
            f"training s, {metrics['epochs_run']} epochs ({metrics['stopped']})",
            f"{metrics['train_seconds']:.0f}",
            "",
            None,
        ),
        ("synth + train + evaluate s", f"{demo_part_s:.0f}", "≤ 180 s", demo_part_s <= 180),
    ]
    for name, r in real.items():
        rows.append((f"real: {name} → {r['expected']} (n={r['n']})", f"{r['rate']:.1%}", "", None))

    print(
        f"# training targets: seed_cnn 64×64, {args.n} synthetic crops (seed {args.seed}), "
        f"{num_threads()} threads on {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; synth {synth_s:.0f} s; load avg {load_before:.2f} → {load_after:.2f}"
    )
    w = max(len(r[0]) for r in rows)
    print(f"| {'measure':{w}} | value   | target              | met |")
    print(f"|{'-' * (w + 2)}|---------|---------------------|-----|")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        print(f"| {name:{w}} | {value:>7} | {target:19} | {mark:3} |")
    for name, r in real.items():
        print(f"{name}: " + ", ".join(f"{c} {k}" for c, k in r["counts"].items()))
    if args.json:
        print(
            json.dumps(
                {
                    "val": val["accuracy"],
                    "test": test["accuracy"],
                    "fresh": fresh["accuracy"],
                    "reach97_s": reach97,
                    "train_s": metrics["train_seconds"],
                    "demo_part_s": demo_part_s,
                    "real": real,
                },
                indent=2,
            )
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""The main job: synthetic data → train → evaluate → export → stability, offline.

``run_demo`` is what ``edgemask demo`` calls; each stage is the same library
function the individual commands use, so the demo is also an integration test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from edgemask.config import DemoConfig, TrainConfig
from edgemask.progress import NO_PROGRESS, Progress, prefixed, staged
from edgemask.utils.io import atomic_write_json


@dataclass
class DemoSummary:
    """What :func:`run_demo` did; ``to_dict()`` is ``summary.json``."""

    out: Path  # the demo folder (data/, run/, heldout/, bundle/, report/, summary.json)
    config: Dict[str, Any]  # the DemoConfig used
    stages: Dict[
        str, Dict[str, Any]
    ]  # per stage (synth, train, heldout, real_faces, export, stability): seconds, path, figures
    seconds: float  # wall time of the whole demo
    study: Any  # the stability study's StudyResult (not in summary.json)

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config, "stages": self.stages, "seconds": self.seconds}


def real_faces_of_run(run_dir: str | Path) -> dict[str, dict]:
    """:func:`edgemask.data.realfaces.real_face_check` on a run's float model (torch, CPU)."""
    import torch

    from edgemask.data.realfaces import real_face_check
    from edgemask.training.run import load_run

    model, info = load_run(run_dir)

    def classify(crops):  # uint8 (N, S, S, 3) RGB -> (N,) class indices
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.no_grad():
            return model(x).argmax(1).numpy()

    return real_face_check(classify, info.class_names, info.input_size, margin=info.crop_margin)


def run_demo(cfg: DemoConfig, progress: Progress | None = None, overwrite: bool = False) -> DemoSummary:
    """Run every stage into ``cfg.out`` and return the summary (also saved as ``summary.json``).

    Layout of ``cfg.out``: ``data/`` (synthetic training set), ``run/``
    (trained model), ``heldout/`` (a fresh synthetic set with seed + 1; the
    model is also tried on real photos, see :func:`real_faces_of_run`),
    ``bundle/`` (ONNX fp32/fp16/int8 + manifest) and ``report/`` (the
    stability study: report.json, samples.csv, report.md, report.html).
    The returned summary also holds the study result (``.study``).
    """
    from edgemask.data.synth import write_synth_dataset
    from edgemask.errors import ConfigError
    from edgemask.training import evaluate_run, train

    progress = progress or NO_PROGRESS
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite to replace the demo there, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"config": cfg.__dict__, "stages": {}}
    t_all = time.perf_counter()

    t = time.perf_counter()
    data_dir = out / "data"
    info = write_synth_dataset(
        data_dir, n=cfg.n, size=cfg.size, seed=cfg.seed, overwrite=True, progress=staged(progress, "synth")
    )
    summary["stages"]["synth"] = {
        "seconds": round(time.perf_counter() - t, 1),
        "path": str(data_dir),
        "counts": info["counts"],
    }

    t = time.perf_counter()
    tcfg = TrainConfig(
        data=str(data_dir),
        out=str(out / "run"),
        arch=cfg.arch,
        epochs=cfg.epochs,
        size=cfg.size,
        seed=cfg.seed,
        target_accuracy=cfg.target_accuracy,
        overwrite=True,
    )
    run_dir = train(tcfg, progress=progress).run_dir
    m = evaluate_run(run_dir, data_dir, split="test")
    summary["stages"]["train"] = {
        "seconds": round(time.perf_counter() - t, 1),
        "path": str(run_dir),
        "test_accuracy": m["accuracy"],
        "recall": {k: v["recall"] for k, v in m["per_class"].items()},
    }

    # A held-out set drawn with another seed: the honest test of a model
    # trained on synthetic data, and the inputs of the comparison and study.
    t = time.perf_counter()
    heldout = out / "heldout"
    write_synth_dataset(
        heldout,
        n=cfg.heldout_n,
        size=cfg.size,
        seed=cfg.seed + 1,
        n_scenes=0,
        overwrite=True,
        progress=staged(progress, "heldout"),
    )
    mh = evaluate_run(run_dir, heldout, split="all")
    summary["stages"]["heldout"] = {
        "seconds": round(time.perf_counter() - t, 1),
        "path": str(heldout),
        "seed": cfg.seed + 1,
        "accuracy": mh["accuracy"],
    }

    # Real photos the generator never drew: does a model trained on synthetic faces call a real
    # bare face no_mask? (edgemask.data.realfaces; 20 held-out LFW faces + the astronaut portrait.)
    t = time.perf_counter()
    summary["stages"]["real_faces"] = {"seconds": 0.0, "checks": real_faces_of_run(run_dir)}
    summary["stages"]["real_faces"]["seconds"] = round(time.perf_counter() - t, 1)

    from edgemask.compare import compare_bundle
    from edgemask.export import export_bundle

    t = time.perf_counter()
    bundle_dir = export_bundle(
        run_dir,
        out / "bundle",
        precisions=("fp32", "fp16", "int8"),
        overwrite=True,
        progress=prefixed(progress, "export: "),
    ).bundle
    cmp = compare_bundle(bundle_dir, heldout)
    summary["stages"]["export"] = {
        "seconds": round(time.perf_counter() - t, 1),
        "path": str(bundle_dir),
        "passed": cmp.passed,
        "engines": {
            e.engine: {
                "accuracy": e.to_dict().get("accuracy"),
                "agreement": e.to_dict().get("agreement"),
                "max_abs_diff": e.to_dict().get("max_abs_diff"),
            }
            for e in cmp.engines
        },
    }

    from edgemask.stability import StabilityConfig, headline_rows, stability_report

    t = time.perf_counter()
    result = stability_report(
        bundle_dir,
        heldout,
        out / "report",
        StabilityConfig(n=cfg.stability_n, seed=cfg.seed, overwrite=True),
        progress=prefixed(progress, "stability: "),
    )
    summary["stages"]["stability"] = {
        "seconds": round(time.perf_counter() - t, 1),
        "path": str(out / "report"),
        "headline": [r.to_dict() for r in headline_rows(result)],
    }
    done = DemoSummary(
        out=out,
        config=summary["config"],
        stages=summary["stages"],
        seconds=round(time.perf_counter() - t_all, 1),
        study=result,
    )
    atomic_write_json(out / "summary.json", done.to_dict())
    return done

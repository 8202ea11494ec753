"""The main job: synthetic data → train → evaluate → export → stability, offline.

``run_demo`` is what ``edgemask demo`` calls; each stage is the same library
function the individual commands use, so the demo is also an integration test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

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
    # The shipped pretrained bundle's figures on real held-out photos, copied from its model card
    # (:func:`pretrained_figures`; nothing re-run); None when this install ships no card.
    pretrained: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config, "stages": self.stages, "seconds": self.seconds, "pretrained": self.pretrained}


def pretrained_figures(card: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The pretrained bundle's card figures the demo shows beside its own, or None without a card.

    Read from :func:`edgemask.pretrained.model_card` (``card`` overrides it), never
    re-measured, so the demo stays offline and fast. Per precision: the
    classifier's accuracy and no_mask→mask share on held-out real face crops,
    and the detector's recall per class on faces >= 24 px and false boxes per
    image on held-out real photos. Figures a card lacks are None.
    """
    from edgemask.bundle.manifest import PRECISIONS

    if card is None:
        from edgemask.pretrained import model_card  # looked up at call time: tests replace it

        card = model_card()
    if not isinstance(card, dict):
        return None
    cls = card.get("classifier") if isinstance(card.get("classifier"), dict) else {}
    det = card.get("detector") if isinstance(card.get("detector"), dict) else {}

    def per_precision(figures: Dict[str, Any], keys: tuple) -> Dict[str, Dict[str, Any]]:
        return {p: {k: figures[p].get(k) for k in keys} for p in PRECISIONS if isinstance(figures.get(p), dict)}

    return {
        "source": "model card of the shipped pretrained bundle (real held-out photos); not re-run by the demo",
        "name": card.get("name"),
        "held_out": card.get("held_out"),
        "classifier": per_precision(cls, ("accuracy", "no_mask_called_mask")),
        "classifier_crops": cls.get("crops"),
        "detector": per_precision(det, ("recall_min_side", "false_per_image")),
        "detector_images": det.get("images"),
    }


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
    The returned summary also holds the study result (``.study``) and the
    shipped pretrained bundle's card figures (``.pretrained``, see
    :func:`pretrained_figures`).
    """
    # The train extra first: without it the demo stops with one line, before it writes anything.
    import edgemask.data.synth  # noqa: F401
    import edgemask.training  # noqa: F401

    progress = progress or NO_PROGRESS
    out = _demo_folder(cfg, overwrite)
    t_all = time.perf_counter()
    stages: Dict[str, Dict[str, Any]] = {}
    data_dir, heldout = out / "data", out / "heldout"
    stages["synth"] = _synth_stage(cfg, data_dir, progress)
    run_dir, stages["train"] = _train_stage(cfg, data_dir, out / "run", progress)
    stages["heldout"] = _heldout_stage(cfg, run_dir, heldout, progress)
    stages["real_faces"] = _real_faces_stage(run_dir)
    bundle_dir, stages["export"] = _export_stage(run_dir, heldout, out / "bundle", progress)
    result, stages["stability"] = _stability_stage(cfg, bundle_dir, heldout, out / "report", progress)
    done = DemoSummary(
        out=out,
        config=cfg.__dict__,
        stages=stages,
        seconds=round(time.perf_counter() - t_all, 1),
        study=result,
        pretrained=pretrained_figures(),
    )
    atomic_write_json(out / "summary.json", done.to_dict())
    return done


def _demo_folder(cfg: DemoConfig, overwrite: bool) -> Path:
    """``cfg.out``, created; a non-empty one only with ``overwrite``."""
    from edgemask.errors import ConfigError

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite to replace the demo there, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _since(t: float) -> float:
    return round(time.perf_counter() - t, 1)


def _synth_stage(cfg: DemoConfig, data_dir: Path, progress: Progress) -> Dict[str, Any]:
    """The synthetic training set."""
    from edgemask.data.synth import write_synth_dataset

    t = time.perf_counter()
    info = write_synth_dataset(
        data_dir, n=cfg.n, size=cfg.size, seed=cfg.seed, overwrite=True, progress=staged(progress, "synth")
    )
    return {"seconds": _since(t), "path": str(data_dir), "counts": info["counts"]}


def _train_stage(cfg: DemoConfig, data_dir: Path, run_out: Path, progress: Progress) -> Tuple[Path, Dict[str, Any]]:
    """Train on the synthetic set; its test split's accuracy and per-class recall."""
    from edgemask.training import evaluate_run, train

    t = time.perf_counter()
    tcfg = TrainConfig(
        data=str(data_dir),
        out=str(run_out),
        arch=cfg.arch,
        epochs=cfg.epochs,
        size=cfg.size,
        seed=cfg.seed,
        target_accuracy=cfg.target_accuracy,
        overwrite=True,
    )
    run_dir = train(tcfg, progress=progress).run_dir
    m = evaluate_run(run_dir, data_dir, split="test")
    return run_dir, {
        "seconds": _since(t),
        "path": str(run_dir),
        "test_accuracy": m["accuracy"],
        "recall": {k: v["recall"] for k, v in m["per_class"].items()},
    }


def _heldout_stage(cfg: DemoConfig, run_dir: Path, heldout: Path, progress: Progress) -> Dict[str, Any]:
    """A held-out set drawn with another seed: the honest test of a model trained on synthetic data,
    and the inputs of the comparison and study."""
    from edgemask.data.synth import write_synth_dataset
    from edgemask.training import evaluate_run

    t = time.perf_counter()
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
    return {"seconds": _since(t), "path": str(heldout), "seed": cfg.seed + 1, "accuracy": mh["accuracy"]}


def _real_faces_stage(run_dir: Path) -> Dict[str, Any]:
    """Real photos the generator never drew: does a model trained on synthetic faces call a real bare
    face no_mask? (edgemask.data.realfaces; 20 held-out LFW faces + the astronaut portrait.)"""
    t = time.perf_counter()
    stage: Dict[str, Any] = {"seconds": 0.0, "checks": real_faces_of_run(run_dir)}
    stage["seconds"] = _since(t)
    return stage


def _export_stage(run_dir: Path, heldout: Path, bundle_out: Path, progress: Progress) -> Tuple[Path, Dict[str, Any]]:
    """Export fp32/fp16/int8 and compare every engine with the float model on the held-out set."""
    from edgemask.compare import compare_bundle
    from edgemask.export import export_bundle

    t = time.perf_counter()
    bundle_dir = export_bundle(
        run_dir,
        bundle_out,
        precisions=("fp32", "fp16", "int8"),
        overwrite=True,
        progress=prefixed(progress, "export: "),
    ).bundle
    cmp = compare_bundle(bundle_dir, heldout)
    return bundle_dir, {
        "seconds": _since(t),
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


def _stability_stage(
    cfg: DemoConfig, bundle_dir: Path, heldout: Path, report: Path, progress: Progress
) -> Tuple[Any, Dict[str, Any]]:
    """The DeepFool stability study of the bundle on the held-out set: (StudyResult, its headline)."""
    from edgemask.stability import StabilityConfig, headline_rows, stability_report

    t = time.perf_counter()
    result = stability_report(
        bundle_dir,
        heldout,
        report,
        StabilityConfig(n=cfg.stability_n, seed=cfg.seed, overwrite=True),
        progress=prefixed(progress, "stability: "),
    )
    return result, {
        "seconds": _since(t),
        "path": str(report),
        "headline": [r.to_dict() for r in headline_rows(result)],
    }

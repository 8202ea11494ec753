"""The study as a user runs it: load a bundle and a dataset, run the study, write the report folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemask.errors import ConfigError
from edgemask.progress import NO_PROGRESS, Progress, staged
from edgemask.stability.config import StabilityConfig
from edgemask.stability.inputs import stratified_sample
from edgemask.stability.report import write_report
from edgemask.stability.result import StudyResult
from edgemask.stability.study import run_study


def load_study_data(
    data_dir: str | Path, bundle: Any, n: int, seed: int, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """Load a dataset at the bundle's input size and class list; stratified sample of ``n`` (0 = all).

    An ImageFolder of whole photos is cut to the largest face of each (:mod:`edgemask.data.facecrop`).

    Returns:
        (uint8 NHWC images, labels, sources, provenance dict).
    """
    from edgemask.data import load_dataset
    from edgemask.vision.detectors import face_finder  # data never imports vision: a whole-scene folder needs it

    ds = load_dataset(
        data_dir, size=bundle.input_size, class_names=bundle.class_names, progress=progress, find_faces=face_finder()
    )
    if n > len(ds):
        raise ConfigError(
            f"dataset {data_dir} has only {len(ds)} images but --n is {n}; lower --n to at most "
            f"{len(ds)} (or --n 0 for all)"
        )
    idx = stratified_sample(ds.labels, n, seed)
    info = {
        "path": str(data_dir),
        "format": ds.format,
        "size": len(ds),
        "counts": ds.class_counts(),
        "sampled": len(idx),
        "sampled_counts": {c: int(np.sum(ds.labels[idx] == k)) for k, c in enumerate(ds.class_names)},
        "sample": "stratified by class, seeded",
        "skipped": len(ds.skipped),
    }
    return ds.images[idx], ds.labels[idx], [ds.sources[i] for i in idx], info


def stability_report(
    bundle_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: StabilityConfig | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Load a bundle and a dataset, run the study, write the report folder (atomically).

    Writes ``report.json``, ``samples.csv``, ``report.md``, ``report.html`` and
    ``config.json`` into ``out_dir``.

    Raises:
        ConfigError: ``out_dir`` exists (without ``cfg.overwrite``), ``n`` too large, bad settings.
        BundleError, DataError, BackendError: as from the steps.
    """
    from edgemask.bundle import load_bundle

    cfg = (cfg or StabilityConfig()).validate()
    out = Path(out_dir)
    if out.exists() and not cfg.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    bundle = load_bundle(bundle_dir)
    progress = progress or NO_PROGRESS
    images, labels, sources, info = load_study_data(
        data_dir, bundle, cfg.n, cfg.seed, progress=staged(progress, "load")
    )
    result = run_study(bundle, images, labels, cfg, progress=progress, sources=sources, dataset=info)
    progress("report", 0, 1)
    write_report(result, out, overwrite=True)
    progress("report", 1, 1)
    return result


__all__ = ["load_study_data", "stability_report"]

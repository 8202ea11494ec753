"""``evaluate_run``: the metrics of a trained run on any split or dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgemask.errors import ConfigError
from edgemask.training.metrics import classification_metrics
from edgemask.training.run import load_run

SPLITS = ("train", "val", "test", "all")


def evaluate_run(
    run_dir: str | Path,
    data: str | Path,
    split: str = "auto",
    label_map: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    crop_faces: bool | None = None,
) -> dict:
    """Evaluate the run's best weights on ``data``.

    Args:
        run_dir: a folder written by ``edgemask train``.
        data: any dataset layout ``load_dataset`` reads.
        split: ``train``/``val``/``test`` select the run's own split when
            ``data`` is the dataset it was trained on; ``all`` uses every
            image; ``auto`` means ``test`` for the training set, ``all``
            for any other dataset.
        label_map: extra label aliases for foreign datasets.
        crop_faces: ImageFolder face cropping (see ``load_dataset``; None = auto).

    Returns:
        The metrics dict of :func:`classification_metrics`, plus ``split`` and ``dataset``.
    """
    from edgemask.data import load_dataset
    from edgemask.training.train import _fingerprint, predict_logits

    if split not in SPLITS + ("auto",):
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}, auto")
    model, info = load_run(run_dir)
    from edgemask.vision.detectors import face_finder

    ds = load_dataset(
        data,
        size=info.input_size,
        label_map=label_map,
        class_names=info.class_names,
        progress=progress,
        crop_faces=crop_faces,
        find_faces=face_finder(),
        margin=info.crop_margin,
    )
    splits_file = Path(run_dir) / "splits.json"
    same = False
    if splits_file.is_file():
        saved = json.loads(splits_file.read_text())
        same = saved.get("fingerprint") == _fingerprint(ds.groups)
    if split == "auto":
        split = "test" if same else "all"
    if split == "all":
        idx = np.arange(len(ds.labels))
    else:
        if not same:
            raise ConfigError(
                f"--split {split} needs the dataset the run was trained on; {data} is another one (use --split all)"
            )
        wanted = set(saved[split])
        idx = np.array([i for i, s in enumerate(ds.sources) if s in wanted], dtype=np.int64)
    torch.set_num_threads(torch.get_num_threads())
    pred = predict_logits(model, torch.from_numpy(ds.images[idx])).argmax(1).numpy()
    m = classification_metrics(ds.labels[idx], pred, info.class_names)
    m.update(split=split, dataset=str(data), skipped=len(ds.skipped), face_crops=ds.face_crops)
    return m

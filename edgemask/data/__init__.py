"""Datasets: import (synth, ImageFolder, VOC), split, summarise, augment.

Typical use::

    from edgemask.data import load_dataset, split_indices, summary
    ds = load_dataset("data/synth", size=64)       # any of the three layouts
    splits = split_indices(ds.labels, ds.groups, seed=0)
    print(summary(ds, splits)["counts"])

Importing this package pulls in numpy only; OpenCV is imported when images
are read, torch when the transforms or the synth generator are first used.
"""

from __future__ import annotations

from typing import Any

from edgemask.data.dataset import (
    FORMATS,
    LABEL_ALIASES,
    FaceDataset,
    LabelResolver,
    detect_format,
    load_dataset,
    normalize_label,
)
from edgemask.data.labels import CLASS_NAMES, VOC_LABEL_OF_CLASS
from edgemask.data.splits import SPLITS, imbalance_warning, split_indices, summary

# Loaded on first access so `import edgemask.data` stays free of torch.
_LAZY = {
    "augment_batch": "edgemask.data.transforms",
    "to_tensor": "edgemask.data.transforms",
    "write_synth_dataset": "edgemask.data.synth",
}

__all__ = [
    "CLASS_NAMES",
    "FORMATS",
    "LABEL_ALIASES",
    "SPLITS",
    "VOC_LABEL_OF_CLASS",
    "FaceDataset",
    "LabelResolver",
    "augment_batch",
    "detect_format",
    "imbalance_warning",
    "load_dataset",
    "normalize_label",
    "split_indices",
    "summary",
    "to_tensor",
    "write_synth_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgemask.data' has no attribute {name!r}")

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
from edgemask.utils.lazy import lazy_exports

# Loaded on first access so `import edgemask.data` stays free of torch.
_LAZY = {
    "real_face_check": "edgemask.data.realfaces",
    "augment_batch": "edgemask.data.transforms",
    "to_tensor": "edgemask.data.transforms",
    "to_nchw_float": "edgemask.data.transforms",
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
    "real_face_check",
    "split_indices",
    "summary",
    "to_nchw_float",
    "to_tensor",
    "write_synth_dataset",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

"""The canonical class names and their spellings in the public VOC set."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("mask", "no_mask", "mask_incorrect")
# Labels of the public Kaggle face-mask VOC set, used in synthetic scene XML.
VOC_LABEL_OF_CLASS = {"mask": "with_mask", "no_mask": "without_mask", "mask_incorrect": "mask_weared_incorrect"}

"""Whole images with face boxes, for the face detector: VOC folders and ``data synth`` scenes.

Any VOC object counts as a face; its label is kept so recall can be reported
per class. The held-out split is by image, from a seeded hash of the image's
path inside its dataset, so it is the same on every machine and for every
subset of the files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from edgemask.errors import DataError


@dataclass
class DetImage:
    """One image: RGB uint8 (H, W, 3), boxes (G, 4) float32 x0, y0, x1, y1, one label per box."""

    name: str
    rgb: np.ndarray
    boxes: np.ndarray
    labels: List[str]


def voc_root(path: Path) -> Path | None:
    from edgemask.data.voc import find_voc_dirs

    if find_voc_dirs(path) is not None:
        return path
    if find_voc_dirs(path / "scenes") is not None:  # a `data synth` folder
        return path / "scenes"
    return None


def read_detection_set(path: str | Path) -> List[DetImage]:
    """Images and boxes of a VOC folder, or of the ``scenes/`` of a ``data synth`` folder.

    Unusable XML files, images and boxes are skipped (as the VOC importer does).

    Raises:
        DataError: neither layout, or no usable image.
    """
    import cv2

    from edgemask.data.imagefile import read_image_file
    from edgemask.data.imagefolder import rel_posix
    from edgemask.data.voc import annotated_images, clamp_box, find_voc_dirs

    path = Path(path)
    root = voc_root(path)
    if root is None:
        raise DataError(
            f"{path} is neither a VOC folder (annotations/*.xml + images/) nor a 'data synth' folder "
            "with scenes/; pass e.g. ../shared/data/face-mask-voc or the output of 'edgemask data synth'"
        )
    ann_dir, img_dir = find_voc_dirs(root)  # type: ignore[misc]
    out: List[DetImage] = []
    for ann, img_path in annotated_images(ann_dir, img_dir):
        bgr = read_image_file(img_path).bgr  # FIFOs unopened, oversized images undecoded
        if bgr is None:
            continue
        # DetImage holds RGB, the detector's channel order (BundleDetector flips camera BGR to RGB);
        # a BGR image here would train the detector on blue skin and break it on every real frame.
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        boxes, labels = [], []
        for o in ann.objects:
            if o.box is None:
                continue
            b, _ = clamp_box(o.box, w, h)
            if b is not None:
                boxes.append(b)
                labels.append(o.name)
        out.append(
            DetImage(
                photo_name(path, rel_posix(img_path, root)),
                img,
                np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels,
            )
        )
    if not out:
        raise DataError(f"{path} holds no readable annotated image; check its annotations/ and images/")
    return out


def photo_name(folder: str | Path, rel: str) -> str:
    """The name a photo is held out by: the data folder's own name, then the photo's path inside it.

    ``edgemask detector train`` and ``edgemask train --heldout`` both name photos
    this way, so the same ``--heldout``/``--split-seed`` hold out the same photos
    from both models.
    """
    return f"{Path(folder).name}/{rel}"


def is_heldout(name: str, seed: int = 0, fraction: float = 0.2) -> bool:
    """Whether image ``name`` is in the held-out split (seeded hash of the name, by image)."""
    h = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64 < fraction


def split_images(
    images: Sequence[DetImage], seed: int = 0, fraction: float = 0.2
) -> Tuple[List[DetImage], List[DetImage]]:
    """(train, held-out) by image; see :func:`is_heldout`."""
    train = [im for im in images if not is_heldout(im.name, seed, fraction)]
    held = [im for im in images if is_heldout(im.name, seed, fraction)]
    return train, held


def close_up(im: DetImage, index: int, fill: float, width: int = 640, height: int = 480) -> DetImage:
    """A ``width`` x ``height`` view of ``im`` zoomed on face ``index`` so it spans ``fill`` of the width.

    What a camera sees when that person stands close to it: the face centred a little above the middle,
    the photo mirrored past its edges. Boxes go through the same zoom; a face less than half in view is
    dropped, the rest are clipped to the frame (as the detector's training crops treat them).
    """
    import cv2

    x0, y0, x1, y1 = (float(v) for v in im.boxes[index])
    span = max(x1 - x0, y1 - y0) / float(fill)  # source pixels across the view
    k = width / span
    ox, oy = (x0 + x1) / 2 - span / 2, (y0 + y1) / 2 - 0.45 * height / k
    m = np.float32([[k, 0, -ox * k], [0, k, -oy * k]])
    rgb = cv2.warpAffine(im.rgb, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    boxes = (np.asarray(im.boxes, np.float32).reshape(-1, 4) - np.float32([ox, oy, ox, oy])) * k
    clipped = np.clip(boxes, 0, np.float32([width, height, width, height]))
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 1e-6, None), axis=1)
    seen = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1) / area >= 0.5
    seen[index] = True
    order = [index] + [i for i in np.nonzero(seen)[0] if i != index]  # the zoomed face first
    return DetImage(f"{im.name}#close{index}", rgb, clipped[order], [im.labels[i] for i in order])


__all__ = ["DetImage", "close_up", "is_heldout", "photo_name", "read_detection_set", "split_images", "voc_root"]

"""The dataset writer: crops, scenes with VOC XML, crops.jsonl and dataset.json, written atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.config import SynthConfig
from edgemask.data.labels import CLASS_NAMES, VOC_LABEL_OF_CLASS
from edgemask.data.synth.common import _KIND_CROP, _KIND_SCENE, _PNG_LEVEL, FORMAT, FORMAT_VERSION, GENERATOR
from edgemask.data.synth.head import render_face
from edgemask.data.synth.scenes import render_scene
from edgemask.errors import DataError
from edgemask.utils.io import atomic_dir


def _png(img_rgb: np.ndarray) -> bytes:
    import cv2

    # Fixed filter + level: stable bytes, and ~2x faster than libpng's adaptive
    # filter choice for about the same size on these small noisy crops.
    params = [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img_rgb[..., ::-1]), params)
    if not ok:  # pragma: no cover - cv2 only fails on bad shapes
        raise RuntimeError("cv2.imencode('.png') failed")
    return buf.tobytes()


class _Writer:
    """Encodes and writes PNGs on one background thread.

    cv2.imencode and file writes release the GIL, so on a machine with a
    second core they overlap with drawing the next item (creating thousands
    of small files costs ~0.5-1 ms each in the kernel here). Output bytes do
    not depend on it: every file's content is fixed before it is queued.
    Errors surface in the caller at the next ``png``/``flush``.
    """

    _MAX_PENDING = 64  # bounds memory: at most this many images wait in the queue

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer")
        self._pending: deque = deque()

    def png(self, path: Path, img: np.ndarray) -> None:
        self._pending.append(self._pool.submit(_write_png, path, img))
        while len(self._pending) > self._MAX_PENDING:
            self._pending.popleft().result()

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        for f in self._pending:  # on error: drop what is queued, stop quickly
            f.cancel()
        self._pool.shutdown(wait=True)


def _write_png(path: Path, img: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(_png(img))


def voc_xml(filename: str, width: int, height: int, objects: list[dict], folder: str = "images") -> str:
    """PASCAL VOC XML for one image, laid out like the Kaggle face-mask set."""
    lines = [
        "<annotation>",
        f"    <folder>{folder}</folder>",
        f"    <filename>{filename}</filename>",
        "    <size>",
        f"        <width>{width}</width>",
        f"        <height>{height}</height>",
        "        <depth>3</depth>",
        "    </size>",
        "    <segmented>0</segmented>",
    ]
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        lines += [
            "    <object>",
            f"        <name>{VOC_LABEL_OF_CLASS[o['label']]}</name>",
            "        <pose>Unspecified</pose>",
            "        <truncated>0</truncated>",
            "        <occluded>0</occluded>",
            "        <difficult>0</difficult>",
            "        <bndbox>",
            f"            <xmin>{int(x0)}</xmin>",
            f"            <ymin>{int(y0)}</ymin>",
            f"            <xmax>{int(x1)}</xmax>",
            f"            <ymax>{int(y1)}</ymax>",
            "        </bndbox>",
            "    </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def crop_label(index: int) -> str:
    """Class of crop ``index``: round-robin, so every prefix is balanced (extra ones go to the first classes)."""
    return CLASS_NAMES[index % len(CLASS_NAMES)]


def write_synth_dataset(
    out: str | Path,
    cfg: SynthConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> dict:
    """Write a synthetic dataset of face crops and annotated scenes.

    Layout::

        OUT/dataset.json                     format, version, seed, n, size, n_scenes, classes, counts, generator
        OUT/crops/<class>/<index:06d>.png    n crops, ImageFolder layout, classes balanced
        OUT/crops.jsonl                      {"file": ..., **attributes} per crop, in index order
        OUT/scenes/images/scene_<k:04d>.png  640x480 frames
        OUT/scenes/annotations/scene_<k:04d>.xml   PASCAL VOC, Kaggle face-mask labels

    The same (n, size, seed, n_scenes) gives byte-identical files. The folder
    appears all at once (written to a temporary sibling, then renamed).
    ``write_synth_dataset(out, n=300, seed=3)`` and
    ``write_synth_dataset(out, SynthConfig(n=300, seed=3))`` are the same call.

    Args:
        out: output folder; must not exist unless ``cfg.overwrite``.
        cfg: n (crops, >= 3), size (crop side in pixels, >= 16), seed (item i
            uses ``default_rng([seed, kind, i])``), n_scenes (>= 0) and
            overwrite; None = :class:`~edgemask.config.SynthConfig` defaults.
        progress: called as ``progress(done, total)`` after each item.
        **overrides: fields of ``cfg`` to replace, e.g. ``n=300``.

    Returns:
        The content of ``dataset.json``.

    Raises:
        DataError: ``out`` exists without ``overwrite``, or a bad n/size/seed/n_scenes.
        TypeError: an override that is not a field of SynthConfig.
    """
    cfg = dataclasses.replace(cfg or SynthConfig(), **overrides)
    n, size, seed, n_scenes, overwrite = cfg.n, cfg.size, cfg.seed, cfg.n_scenes, cfg.overwrite
    out = Path(out)
    if not isinstance(n, (int, np.integer)) or n < 3:
        raise DataError(f"number of crops must be an integer >= 3 (one per class), got {n!r}; pass e.g. --n 6000")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise DataError(f"crop size must be an integer >= 16 pixels, got {size!r}; pass e.g. --size 64")
    if not isinstance(n_scenes, (int, np.integer)) or n_scenes < 0:
        raise DataError(f"number of scenes must be an integer >= 0, got {n_scenes!r}; pass e.g. --scenes 40")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if out.exists() and not overwrite:
        raise DataError(f"output folder {out} exists; pass --overwrite or choose another --out")
    if out.exists() and not out.is_dir():
        raise DataError(f"output path {out} is a file, not a folder; choose another --out")
    n, size, seed, n_scenes = int(n), int(size), int(seed), int(n_scenes)

    total = n + n_scenes
    counts = {c: 0 for c in CLASS_NAMES}
    writer = _Writer()
    # the writer stops before atomic_dir cleans up after an error, so no file lands in a deleted folder
    with atomic_dir(out, overwrite=overwrite) as tmp, contextlib.closing(writer):
        # Plain writes inside the temporary folder: atomic_dir makes the whole folder appear at once.
        for c in CLASS_NAMES:
            (tmp / "crops" / c).mkdir(parents=True)
        lines = []
        for i in range(n):
            label = crop_label(i)
            img, attrs = render_face(np.random.default_rng([seed, _KIND_CROP, i]), label, size)
            rel = f"crops/{label}/{i:06d}.png"
            writer.png(tmp / rel, img)
            lines.append(json.dumps({"file": rel, **attrs}))
            counts[label] += 1
            if progress is not None:
                progress(i + 1, total)
        (tmp / "crops.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

        (tmp / "scenes" / "images").mkdir(parents=True)
        (tmp / "scenes" / "annotations").mkdir(parents=True)
        for k in range(n_scenes):
            img, objects = render_scene(np.random.default_rng([seed, _KIND_SCENE, k]))
            name = f"scene_{k:04d}"
            writer.png(tmp / "scenes" / "images" / f"{name}.png", img)
            xml = voc_xml(f"{name}.png", img.shape[1], img.shape[0], objects)
            (tmp / "scenes" / "annotations" / f"{name}.xml").write_text(xml, encoding="utf-8")
            if progress is not None:
                progress(n + k + 1, total)
        writer.flush()  # every image is on disk before dataset.json marks the set complete

        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "seed": seed,
            "n": n,
            "size": size,
            "n_scenes": n_scenes,
            "classes": list(CLASS_NAMES),
            "counts": counts,
            "generator": GENERATOR,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta

"""One entry point for every dataset format: :func:`load_dataset`.

Three layouts are accepted and told apart by their files:

* **synth** — ``dataset.json`` with ``"format": "edgemask-synth"`` and a
  ``crops/`` ImageFolder beside it (made by ``edgemask data synth``).
* **VOC** — ``annotations/*.xml`` + ``images/`` (the Kaggle face-mask set;
  ``Annotations/`` + ``JPEGImages/`` also work, and so does a synth ``scenes/``).
* **ImageFolder** — one subfolder per class holding face crops.

Whatever the format, the result is the same :class:`FaceDataset`: S×S RGB
crops, integer labels into ``class_names``, and per-sample source and
content-hash group (for leak-free splits).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemask.config import CROP_MARGIN, DEFAULT_MAX_IMAGE_PIXELS
from edgemask.data.imagefolder import (
    class_folders,
    has_images,
    is_hidden,
    is_image_file,
    read_imagefolder,
)
from edgemask.data.labels import CLASS_NAMES
from edgemask.data.voc import find_voc_dirs, read_voc
from edgemask.errors import ConfigError, DataError

#: Built-in label spellings per canonical class, compared after :func:`normalize_label`.
LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "mask": ("with_mask", "withmask", "masked", "mask", "face_mask", "good"),
    "no_mask": ("without_mask", "withoutmask", "no_mask", "nomask", "unmasked", "bad", "none"),
    "mask_incorrect": (
        "mask_weared_incorrect",
        "mask_worn_incorrectly",
        "incorrect_mask",
        "incorrect",
        "improper",
        "mask_incorrect",
        "partial_mask",
    ),
}

FORMATS = ("synth", "imagefolder", "voc")

LAYOUTS_HELP = (
    "an ImageFolder (ROOT/<class>/<image>, e.g. with_mask/ and without_mask/), "
    "a VOC folder (ROOT/annotations/*.xml + ROOT/images/, as in the Kaggle face-mask set), "
    "or an edgemask synth dataset (ROOT/dataset.json + ROOT/crops/, from `edgemask data synth`)"
)


@dataclass
class FaceDataset:
    """Face crops and labels, the same whatever the on-disk format.

    Attributes:
        images: (N, S, S, 3) uint8 RGB, all resized to S.
        labels: (N,) int64 index into ``class_names``.
        class_names: classes present, in canonical order (or the order forced
            by ``load_dataset(class_names=...)``).
        sources: per sample, file path relative to ``root`` (POSIX), plus
            ``#<box index>`` for VOC crops.
        groups: per sample, a group id; identical images (and, for VOC,
            all crops of one photo) share a group, and splits keep a group
            together.
        skipped: (file, reason) for every file or box that was not used.
        format: "synth" | "imagefolder" | "voc".
        root: the dataset path as given.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sources: list[str]
    groups: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    format: str = "imagefolder"
    root: str = ""
    face_crops: dict | None = None  # ImageFolder only: cropped / kept whole / skipped (facecrop.CropReport)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        """Side length S of every image."""
        return int(self.images.shape[1])

    def class_counts(self) -> dict[str, int]:
        """Samples per class name, in ``class_names`` order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


def normalize_label(name: str) -> str:
    """Lower-case, with '-', spaces and runs of '_' folded to one '_'."""
    return re.sub(r"[\s\-_]+", "_", name.strip().lower()).strip("_")


def _builtin_lookup() -> dict[str, str]:
    return {normalize_label(a): cls for cls, aliases in LABEL_ALIASES.items() for a in aliases}


def canonical_class(name: str) -> str | None:
    """The canonical class for a label or alias (built-in spellings only), else None."""
    return _builtin_lookup().get(normalize_label(name))


class LabelResolver:
    """Maps raw labels (folder or object names) to canonical class names.

    Built-in aliases (:data:`LABEL_ALIASES`) first, then ``label_map`` entries
    added on top (they win). Unknown labels are an error, never dropped
    silently: a typo must not quietly remove a class from training.
    """

    def __init__(self, label_map: Mapping[str, str] | None = None):
        self.lookup = _builtin_lookup()
        self.label_map = dict(label_map or {})
        for raw, target in self.label_map.items():
            cls = canonical_class(str(target))
            if cls is None:
                raise ConfigError(
                    f"label map sends {raw!r} to {target!r}, which is not a class; "
                    f"use one of {', '.join(CLASS_NAMES)} (e.g. --label-map {raw}=no_mask)"
                )
            self.lookup[normalize_label(str(raw))] = cls

    def __call__(self, raw_labels: Sequence[str], where: str) -> dict[str, str]:
        """Resolve every label; raise one DataError listing all unknown ones."""
        out: dict[str, str] = {}
        unknown: list[str] = []
        for raw in raw_labels:
            cls = self.lookup.get(normalize_label(raw))
            if cls is None:
                unknown.append(raw)
            else:
                out[raw] = cls
        if unknown:
            shown = ", ".join(repr(u) for u in sorted(set(unknown)))
            example = ",".join(f"{u}=<class>" for u in sorted(set(unknown))[:2])
            raise DataError(
                f"unknown label(s) {shown} in {where}; known classes: {', '.join(CLASS_NAMES)} "
                f"(also spelled e.g. with_mask, without_mask, mask_weared_incorrect); "
                f"map them with --label-map {example} (label_map= in Python)"
            )
        return out


SYNTH_FORMAT = "edgemask-synth"
SYNTH_VERSION = 1


def _read_synth_meta(root: Path) -> dict | None:
    """``dataset.json`` of a synth folder, None when the folder is not one.

    A ``dataset.json`` that is not ours (another tool's, with another
    ``format``) is ignored and the folder read as the other layouts. One that
    is damaged (not JSON, not an object, no ``format``, a mistyped field) is
    an error when it sits beside a ``crops/`` folder or claims to be ours:
    reading that folder as an ImageFolder would only report 'crops' and
    'scenes' as unknown classes.
    """
    from edgemask.data.imagefile import Unreadable, read_small_file

    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        return None
    crops = (root / "crops").is_dir()
    problem = None
    meta = None
    try:
        meta = json.loads(read_small_file(meta_path).decode("utf-8"))
    except Unreadable as e:
        problem = str(e.args[0])
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        problem = f"is not valid JSON ({type(e).__name__})"
    if problem is None and not isinstance(meta, dict):
        problem = f"holds a JSON {type(meta).__name__}, not an object"
    if problem is None:
        assert isinstance(meta, dict)
        fmt = meta.get("format")
        if fmt is None:
            problem = "has no 'format' field"
        elif fmt != SYNTH_FORMAT:
            return None  # another tool's file: not ours to judge
        else:
            v = meta.get("version", SYNTH_VERSION)
            if isinstance(v, bool) or not isinstance(v, int):
                problem = f"has version {v!r}, not a whole number"
            elif v > SYNTH_VERSION:
                raise DataError(
                    f"{meta_path} is synth dataset version {v}, newer than this edgemask reads "
                    f"({SYNTH_VERSION}); upgrade edgemask or regenerate it with "
                    f"`edgemask data synth --out {root} --overwrite`"
                )
            for key, typ in (("classes", list), ("counts", dict)):
                if problem is None and key in meta and not isinstance(meta[key], typ):
                    problem = f"has a mistyped {key!r} ({type(meta[key]).__name__}, expected {typ.__name__})"
    if problem is None:
        return meta
    if not crops and not (isinstance(meta, dict) and meta.get("format") == SYNTH_FORMAT):
        return None  # damaged, but nothing here says it is a synth folder: read the other layouts
    read_crops = f", or read the crops as an ImageFolder with --data {root / 'crops'}" if crops else ""
    raise DataError(
        f"{meta_path} {problem}; regenerate the dataset with `edgemask data synth --out {root} --overwrite`{read_crops}"
    )


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Tell which layout ``path`` holds.

    Returns:
        (format, folder to read): ``("synth", ROOT/crops)``, ``("voc", ROOT)``
        or ``("imagefolder", ROOT)``.

    Raises:
        DataError: the path is missing, not a folder, or none of the layouts.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"dataset path {str(root)!r} does not exist; pass a folder holding {LAYOUTS_HELP}")
    if not root.is_dir():
        hint = " (extract the archive first)" if root.suffix.lower() in (".zip", ".tar", ".gz", ".tgz") else ""
        raise DataError(
            f"dataset path {str(root)!r} is a file, not a folder{hint}; pass a folder holding {LAYOUTS_HELP}"
        )
    if _read_synth_meta(root) is not None:
        crops = root / "crops"
        if not crops.is_dir():
            raise DataError(
                f"synth dataset {root} has dataset.json but no crops/ folder; regenerate it with `edgemask data synth --out {root} --overwrite`"
            )
        return "synth", crops
    if find_voc_dirs(root) is not None:
        return "voc", root
    subs = class_folders(root)
    if any(has_images(s) for s in subs):
        return "imagefolder", root
    # Nothing matched: say what we saw, so the fix is obvious.
    names = {s.name.lower() for s in subs}
    if names & {"annotations"}:
        if not names & {"images", "jpegimages"}:
            raise DataError(
                f"{root} has annotations/ but no images/ (or JPEGImages/) folder beside it; a VOC dataset needs both"
            )
        raise DataError(f"{root} looks like a VOC dataset but its annotations/ folder has no .xml files")
    try:
        loose = any(p.is_file() and is_image_file(p) and not is_hidden(p.name) for p in root.iterdir())
    except OSError:
        loose = False
    if loose:
        raise DataError(
            f"{root} holds images directly; an ImageFolder needs one subfolder per class (e.g. {root}/with_mask/, {root}/without_mask/)"
        )
    raise DataError(f"{root} is not a dataset edgemask can read; expected {LAYOUTS_HELP}")


def load_dataset(
    path: str | Path,
    *,
    size: int = 64,
    label_map: dict[str, str] | None = None,
    margin: float = CROP_MARGIN,
    class_names: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    crop_faces: bool | None = None,
    find_faces: Callable[[np.ndarray], Sequence[Sequence[float]]] | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> FaceDataset:
    """Load any supported dataset as S×S RGB face crops.

    Args:
        path: dataset folder (synth, VOC or ImageFolder; detected automatically).
        size: side length S of the returned crops.
        label_map: extra ``{raw label: class}`` spellings; they override the
            built-in aliases (e.g. ``{"face": "no_mask"}``).
        margin: context added on each side of a VOC box or of a face cut
            out of an ImageFolder photo, as a fraction of its longer side
            (:mod:`edgemask.data.crops`; ``TrainConfig.crop_margin``).
        class_names: force the class list and order, e.g. a trained model's,
            so labels index that model's outputs. A dataset label outside it
            is an error.
        progress: called as ``progress(done, total)`` per file read.
        crop_faces: ImageFolder only: cut the largest face out of whole
            photos (True), never (False), or when most images are not square
            face crops (None, the default); see :mod:`edgemask.data.facecrop`.
        find_faces: ``BGR image -> face boxes``, needed for ``crop_faces``
            (``edgemask.vision.detectors.face_finder()``; ``data`` never
            imports ``vision``). Without one, ``crop_faces=None`` uses every
            image whole and ``crop_faces=True`` is a ConfigError.
        max_pixels: images whose header declares more pixels are skipped
            without being decoded (``TrainConfig.max_image_pixels``). Names
            that are not regular files (FIFOs, devices, sockets) are skipped
            without being opened.

    Returns:
        The dataset; ``skipped`` lists every file or box that was not used.

    Raises:
        DataError: unknown layout, unknown labels, or nothing usable.
        ConfigError: a bad ``size``, ``margin``, ``label_map`` or ``class_names``.

    Example:
        >>> ds = load_dataset("data/synth", size=64)            # doctest: +SKIP
        >>> ds.images.shape, ds.class_names                      # doctest: +SKIP
        ((6000, 64, 64, 3), ['mask', 'no_mask', 'mask_incorrect'])
    """
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ConfigError(f"image size must be an integer from 8 to 1024 pixels, got {size!r}")
    if not 0.0 <= float(margin) <= 2.0:
        raise ConfigError(f"crop margin must be between 0 and 2 (a fraction of the box size), got {margin!r}")
    from edgemask.data.imagefile import check_max_pixels

    check_max_pixels(max_pixels)
    resolve = LabelResolver(label_map)
    fmt, folder = detect_format(path)
    root = Path(path)

    if fmt == "voc":
        raw = read_voc(
            folder, size=size, resolve=resolve, margin=float(margin), progress=progress, max_pixels=max_pixels
        )
    else:
        raw = read_imagefolder(
            folder,
            size=size,
            resolve=resolve,
            rel_root=root,
            progress=progress,
            crop_faces=crop_faces if fmt == "imagefolder" else False,
            margin=float(margin),
            find_faces=find_faces,
            max_pixels=max_pixels,
        )

    if not raw.labels:
        reasons = "; ".join(f"{f}: {r}" for f, r in raw.skipped[:3])
        more = f" (and {len(raw.skipped) - 3} more)" if len(raw.skipped) > 3 else ""
        raise DataError(
            f"no usable images in {root} ({fmt} layout): {reasons or 'no image files found'}{more}; "
            f"run `edgemask data summary {root}` to list every skipped file"
        )

    if class_names is not None:
        names = _forced_class_names(class_names)
        canon = [canonical_class(n) for n in names]
        present = sorted(set(raw.labels), key=CLASS_NAMES.index)
        missing = [c for c in present if c not in canon]
        if missing:
            counts = {c: raw.labels.count(c) for c in missing}
            raise DataError(
                f"dataset {root} has class(es) the model does not know: "
                + ", ".join(f"{c} ({n} samples)" for c, n in counts.items())
                + f"; model classes: {', '.join(names)}; remove those images or relabel them with --label-map"
            )
        index_of = {c: i for i, c in enumerate(canon)}
        out_names = list(names)
    else:
        out_names = [c for c in CLASS_NAMES if c in set(raw.labels)]
        index_of = {c: i for i, c in enumerate(out_names)}

    return FaceDataset(
        images=raw.images,
        labels=np.fromiter((index_of[c] for c in raw.labels), dtype=np.int64, count=len(raw.labels)),
        class_names=out_names,
        sources=raw.sources,
        groups=raw.groups,
        skipped=raw.skipped,
        format=fmt,
        root=str(path),
        face_crops=raw.face_crops.to_dict() if raw.face_crops is not None else None,
    )


def _forced_class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(n) for n in class_names]
    if not names:
        raise ConfigError("class_names is empty; pass the model's class names, e.g. ['mask', 'no_mask']")
    bad = [n for n in names if canonical_class(n) is None]
    if bad:
        raise ConfigError(
            f"unknown class name(s) {', '.join(map(repr, bad))} in class_names; expected names from {', '.join(CLASS_NAMES)}"
        )
    canon = [canonical_class(n) for n in names]
    if len(set(canon)) != len(canon):
        raise ConfigError(
            f"class_names {names} name the same class twice; each of {', '.join(CLASS_NAMES)} may appear once"
        )
    return names

"""ImageFolder importer: one subfolder per class, face crops inside.

Layout::

    ROOT/
      with_mask/      a.png b.jpg more/c.png ...   (any depth inside a class folder)
      without_mask/   ...
      [mask_weared_incorrect/ ...]

Folder names are labels; they are resolved to canonical classes by the caller
(see :func:`edgemask.data.dataset.load_dataset`), so this module only reads
files. It also holds what the VOC importer shares: file listing, the per-run
bookkeeping in :class:`ImportedSamples` and :func:`merge_groups`. Crops and
resizing live in :mod:`edgemask.data.crops`, file reading in
:mod:`edgemask.data.imagefile`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import numpy as np

from edgemask.config import CROP_MARGIN, DEFAULT_MAX_IMAGE_PIXELS
from edgemask.data.crops import face_crops, resize_square_rgb
from edgemask.errors import DataError

#: File extensions read as images (compared lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Aliases are evaluated at import: typing's generics, not the builtins', for Python 3.8 (device runtime).
ProgressFn = Callable[[int, int], None]
# Maps raw labels (folder or object names) to canonical class names; raises
# DataError naming every label it does not know. ``where`` says what the
# labels are ("class folders in X", "object names in X") for that message.
ResolveFn = Callable[[Sequence[str], str], Dict[str, str]]


@dataclass
class ImportedSamples:
    """What an importer read, before labels become indices.

    Attributes:
        images: (N, S, S, 3) uint8 RGB.
        labels: canonical class name per sample.
        sources: path relative to the dataset root (POSIX), "#k" for box k of a VOC image.
        groups: content hash per sample (identical content → identical group).
        skipped: (file, reason) for everything that was not used.
    """

    images: np.ndarray
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    face_crops: Any = None  # facecrop.CropReport when faces were looked for


def is_image_file(path: Path | str) -> bool:
    """True if the file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    """Dotfiles and macOS zip debris (``.DS_Store``, ``._x.png``, ``__MACOSX``)."""
    return name.startswith(".") or name == "__MACOSX"


def merge_groups(keys: Sequence[Sequence[str]]) -> list[str]:
    """One group id per sample, joining samples that share any key (union-find).

    VOC crops use two keys each, their scene (the photo's pixels) and their
    own pixels: crops of one photo join, and so does the same face cut from a
    re-uploaded copy of another photo. The id is the SHA-256 of the
    component's smallest key, so it does not depend on sample order.

    Args:
        keys: per sample, one or more strings.

    Returns:
        N group ids (hex strings).
    """
    import hashlib

    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for ks in keys:
        roots = [find(str(k)) for k in ks]
        for r in roots[1:]:
            a, b = find(roots[0]), find(r)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the smaller key is the root
    return [hashlib.sha256(find(str(ks[0])).encode()).hexdigest() for ks in keys]


def rel_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (stable across OSes)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _walk_files(folder: Path) -> list[Path]:
    """All non-hidden files under ``folder``, sorted by relative path."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        # Prune hidden dirs in place so os.walk does not descend into them.
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        out.extend(Path(dirpath) / f for f in filenames if not is_hidden(f))
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def class_folders(root: Path) -> list[Path]:
    """Immediate, non-hidden subfolders of ``root``, sorted by name."""
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise DataError(f"cannot list dataset folder {root}: {e.strerror or e}; check the path and permissions") from e
    return [p for p in entries if p.is_dir() and not is_hidden(p.name)]


def has_images(folder: Path) -> bool:
    """True if any image file lies anywhere under ``folder`` (stops at the first)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        if any(is_image_file(f) and not is_hidden(f) for f in filenames):
            return True
    return False


def read_imagefolder(
    folder: Path | str,
    *,
    size: int,
    resolve: ResolveFn,
    rel_root: Path | str | None = None,
    progress: ProgressFn | None = None,
    crop_faces: bool | None = False,
    find_faces: Any = None,
    margin: float = CROP_MARGIN,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ImportedSamples:
    """Read an ImageFolder tree into face crops of ``size``×``size``.

    Args:
        folder: the folder holding one subfolder per class.
        size: output side length in pixels.
        resolve: maps folder names to canonical class names (raises on unknown).
        rel_root: sources are written relative to this (default ``folder``);
            the synth layout passes its dataset root so sources read
            ``crops/mask/000001.png``.
        progress: called as ``progress(done, total)`` after every file.
        crop_faces: True: cut the largest face out of photos that are not
            face crops (:mod:`edgemask.data.facecrop`); None: do so when most
            images are not square face crops; False: use every image whole.
        find_faces: ``BGR image -> boxes``, the face finder cropping needs
            (the callers build it: ``edgemask.vision.detectors.face_finder()``);
            its ``name`` attribute, if any, is reported. None: no cropping
            (``crop_faces=None`` uses every image whole; True is an error).
        margin: context per side of a cut face (:func:`edgemask.data.crops.face_crops`).
        max_pixels: an image whose header declares more pixels is skipped
            before decoding (:mod:`edgemask.data.imagefile`).

    Returns:
        The samples in sorted (class folder, relative path) order, plus the
        skipped files with reasons. Unreadable, empty or corrupt files,
        oversized images, non-image files and names that are not regular
        files (FIFOs, devices, sockets: never opened) are skipped, never raised.

    Raises:
        DataError: a class folder name that ``resolve`` does not know.
        ConfigError: ``crop_faces=True`` without ``find_faces``.
    """
    from edgemask.data.imagefile import check_max_pixels, read_image_file

    check_max_pixels(max_pixels)
    folder = Path(folder)
    rel_root = Path(rel_root) if rel_root is not None else folder
    skipped: list[tuple[str, str]] = []
    # 1. List everything first and resolve labels, so an unknown class folder
    #    fails in milliseconds instead of after decoding thousands of images.
    listing = _list_class_files(folder, rel_root, skipped)
    class_of = resolve([name for name, _ in listing], f"class folders of {folder}") if listing else {}

    # 2. Read, hash and decode. One read per file serves both the hash and the
    #    decoder; 64×64 PNGs decode in ~50 µs, so thousands take about a second.
    total = sum(len(files) for _, files in listing)
    out = ImportedSamples(images=np.empty((total, size, size, 3), dtype=np.uint8), skipped=skipped)
    cropper = _FaceCutter.start(listing, crop_faces, find_faces, size, margin, max_pixels)
    out.face_crops = cropper.report if cropper is not None else None
    n = 0
    done = 0
    for name, files in listing:
        label = class_of[name]
        for f in files:
            rel = rel_posix(f, rel_root)
            got = read_image_file(f, max_pixels)
            img = got.bgr if got.ok else None
            if not got.ok:
                skipped.append((rel, got.skip or "unreadable"))
            elif cropper is not None:
                img = cropper.cut(img, rel, skipped)
            if img is not None:
                out.images[n] = resize_square_rgb(img, size)
                out.labels.append(label)
                out.sources.append(rel)
                out.groups.append(hashlib.sha256(got.data or b"").hexdigest())
                n += 1
            done += 1
            if progress is not None:
                progress(done, total)
    if cropper is not None:
        cropper.finish()
    if n < total:  # copy so the unused tail of the buffer is freed
        out.images = out.images[:n].copy()
    return out


def _list_class_files(folder: Path, rel_root: Path, skipped: list[tuple[str, str]]) -> list[tuple[str, list[Path]]]:
    """(class folder name, its image files) per class folder; everything else goes to ``skipped`` with a reason."""
    from edgemask.data.imagefile import not_regular_reason

    listing: list[tuple[str, list[Path]]] = []
    for sub in class_folders(folder):
        files = []
        for f in _walk_files(sub):
            odd = not_regular_reason(f)
            if odd:
                skipped.append((rel_posix(f, rel_root), odd))
            else:
                files.append(f)
        images = [f for f in files if is_image_file(f)]
        for f in files:
            if not is_image_file(f):
                ext = f.suffix.lower() or "no extension"
                skipped.append(
                    (rel_posix(f, rel_root), f"not an image file ({ext}); accepted: {', '.join(IMAGE_EXTENSIONS)}")
                )
        if not images:
            skipped.append((rel_posix(sub, rel_root) + "/", "folder has no image files"))
            continue
        listing.append((sub.name, images))
    for f in sorted(p for p in folder.iterdir() if not p.is_dir() and not is_hidden(p.name)):
        skipped.append(
            (rel_posix(f, rel_root), "file outside any class folder (ImageFolder needs ROOT/<class>/<image>)")
        )
    return listing


@dataclass
class _FaceCutter:
    """Per-image face cropping of :func:`read_imagefolder` (``--crop-faces``), with its report."""

    report: Any  # facecrop.CropReport
    find_faces: Any  # BGR image -> boxes; None once auto mode decided against cropping
    name_of: Any  # the finder, asked for its name at the end
    size: int
    margin: float

    @classmethod
    def start(
        cls,
        listing: list[tuple[str, list[Path]]],
        crop_faces: bool | None,
        find_faces: Any,
        size: int,
        margin: float,
        max_pixels: int,
    ) -> _FaceCutter | None:
        """None when cropping is off (``crop_faces=False``, or auto with no face finder)."""
        from edgemask.data import facecrop
        from edgemask.data.imagefile import image_shape

        if crop_faces is False or (crop_faces is None and find_faces is None):
            return None
        if find_faces is None:
            from edgemask.errors import ConfigError

            raise ConfigError(
                "crop_faces=True needs a face finder: pass find_faces=edgemask.vision.detectors."
                "face_finder() (the CLI and train() do), or crop_faces=None to use the images whole"
            )
        report = facecrop.CropReport(mode="on")
        if crop_faces is None:
            flat = [f for _, files in listing for f in files]
            shapes = [image_shape(f, max_pixels) for f in flat]  # headers only
            ok = [i for i, s in enumerate(shapes) if s is not None]
            on = facecrop.auto_wants_crops(
                [shapes[i] for i in ok],  # type: ignore[misc]
                lambda j: _load_bgr(flat[ok[j]], max_pixels),
                find_faces,
            )
            report.mode = "auto-on" if on else "auto-off"
            return cls(report, find_faces if on else None, find_faces, size, margin)
        return cls(report, find_faces, find_faces, size, margin)

    def cut(self, img: np.ndarray, rel: str, skipped: list[tuple[str, str]]) -> np.ndarray | None:
        """The image to use (BGR): cut to its largest face, or whole; None when skipped (listed in ``skipped``)."""
        from edgemask.data import facecrop

        if self.find_faces is None:
            return img
        what, box = facecrop.decide(img, self.find_faces)
        if what == "skip":
            self.report.skipped += 1
            self.report.no_face.append(rel)
            skipped.append(
                (
                    rel,
                    "no face found in this whole photo (not a face crop); "
                    "crop it by hand, or use a VOC folder with boxes",
                )
            )
            return None
        if what == "crop" and box is not None:
            self.report.cropped += 1
            return face_crops(img, [box], self.size, self.margin)[0][:, :, ::-1]  # back to BGR
        self.report.kept_whole += 1
        return img

    def finish(self) -> None:
        self.report.detector = str(getattr(self.name_of, "name", "custom"))


def _load_bgr(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray | None:
    from edgemask.data.imagefile import read_image_file

    return read_image_file(path, max_pixels).bgr

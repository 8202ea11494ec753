"""ImageFolder importer: one subfolder per class, face crops inside.

Layout::

    ROOT/
      with_mask/      a.png b.jpg more/c.png ...   (any depth inside a class folder)
      without_mask/   ...
      [mask_weared_incorrect/ ...]

Folder names are labels; they are resolved to canonical classes by the caller
(see :func:`edgemask.data.dataset.load_dataset`), so this module only reads
files. It also holds the image helpers the VOC importer shares (decode,
resize, the per-run bookkeeping in :class:`ImportedSamples`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import numpy as np

from edgemask.config import DEFAULT_MAX_IMAGE_PIXELS
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


def decode_image(data: bytes) -> np.ndarray | None:
    """Decode image bytes to an (H, W, 3) uint8 BGR array, or None if corrupt.

    Gray and 16-bit images come back as 8-bit, 3-channel; alpha is dropped.
    """
    import cv2

    if not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR: always 3 channels, 8 bit; also applies JPEG EXIF rotation.
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return img


def resize_square_rgb(img_bgr: np.ndarray, size: int) -> np.ndarray:
    """Resize a BGR image straight to ``size``×``size`` and convert it to RGB.

    Face crops are roughly square already, so we resize directly instead of
    padding (padding would shrink the face and add borders the camera never
    produces). INTER_AREA when shrinking (no aliasing); INTER_LINEAR when
    enlarging (INTER_AREA degenerates to blocky nearest-neighbour there).
    """
    import cv2

    h, w = img_bgr.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
        img_bgr = cv2.resize(img_bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(img_bgr[:, :, ::-1])


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
    margin: float = 0.15,
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
        find_faces: ``BGR image -> boxes`` (default: :func:`~edgemask.data.facecrop.default_face_detector`).
        margin: context per side of a cut face, as in the service.
        max_pixels: an image whose header declares more pixels is skipped
            before decoding (:mod:`edgemask.data.imagefile`).

    Returns:
        The samples in sorted (class folder, relative path) order, plus the
        skipped files with reasons. Unreadable, empty or corrupt files,
        oversized images, non-image files and names that are not regular
        files (FIFOs, devices, sockets: never opened) are skipped, never raised.

    Raises:
        DataError: a class folder name that ``resolve`` does not know.
    """
    from edgemask.data.imagefile import check_max_pixels, image_shape, not_regular_reason, read_image_file

    check_max_pixels(max_pixels)
    folder = Path(folder)
    rel_root = Path(rel_root) if rel_root is not None else folder
    skipped: list[tuple[str, str]] = []

    # 1. List everything first and resolve labels, so an unknown class folder
    #    fails in milliseconds instead of after decoding thousands of images.
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
                skipped.append((rel_posix(f, rel_root), f"not an image file ({ext}); accepted: {', '.join(IMAGE_EXTENSIONS)}"))
        if not images:
            skipped.append((rel_posix(sub, rel_root) + "/", "folder has no image files"))
            continue
        listing.append((sub.name, images))
    for f in sorted(p for p in folder.iterdir() if not p.is_dir() and not is_hidden(p.name)):
        skipped.append((rel_posix(f, rel_root), "file outside any class folder (ImageFolder needs ROOT/<class>/<image>)"))

    class_of = resolve([name for name, _ in listing], f"class folders of {folder}") if listing else {}

    # 2. Read, hash and decode. One read per file serves both the hash and the
    #    decoder; 64×64 PNGs decode in ~50 µs, so thousands take about a second.
    total = sum(len(files) for _, files in listing)
    out = ImportedSamples(images=np.empty((total, size, size, 3), dtype=np.uint8), skipped=skipped)
    report = None
    if crop_faces is None or crop_faces:
        from edgemask.data import facecrop

        det_name = "custom"
        if find_faces is None:
            det_name, find_faces = facecrop.default_face_detector()
        report = facecrop.CropReport(mode="on", detector=det_name)
        if crop_faces is None:
            flat = [f for _, files in listing for f in files]
            shapes = [image_shape(f, max_pixels) for f in flat]  # headers only
            ok = [i for i, s in enumerate(shapes) if s is not None]
            on = facecrop.auto_wants_crops([shapes[i] for i in ok],  # type: ignore[misc]
                                           lambda j: _load_bgr(flat[ok[j]], max_pixels), find_faces)
            report.mode = "auto-on" if on else "auto-off"
            if not on:
                find_faces = None
        out.face_crops = report
    n = 0
    done = 0
    for name, files in listing:
        label = class_of[name]
        for f in files:
            rel = rel_posix(f, rel_root)
            got = read_image_file(f, max_pixels)
            if not got.ok:
                skipped.append((rel, got.skip or "unreadable"))
            else:
                data, img = got.data or b"", got.bgr
                if report is not None and find_faces is not None:
                    from edgemask.data import facecrop
                    from edgemask.vision.crops import face_crops

                    what, box = facecrop.decide(img, find_faces)
                    if what == "skip":
                        report.skipped += 1
                        report.no_face.append(rel)
                        skipped.append((rel, "no face found in this whole photo (not a face crop); "
                                             "crop it by hand, or use a VOC folder with boxes"))
                        done += 1
                        if progress is not None:
                            progress(done, total)
                        continue
                    if what == "crop" and box is not None:
                        report.cropped += 1
                        img = face_crops(img, [box], size, margin)[0][:, :, ::-1]  # back to BGR
                    else:
                        report.kept_whole += 1
                out.images[n] = resize_square_rgb(img, size)
                out.labels.append(label)
                out.sources.append(rel)
                out.groups.append(hashlib.sha256(data).hexdigest())
                n += 1
            done += 1
            if progress is not None:
                progress(done, total)
    if n < total:  # copy so the unused tail of the buffer is freed
        out.images = out.images[:n].copy()
    return out


def _load_bgr(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray | None:
    from edgemask.data.imagefile import read_image_file

    return read_image_file(path, max_pixels).bgr

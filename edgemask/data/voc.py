"""Pascal VOC importer (the Kaggle face-mask layout): whole images + XML boxes.

Layout::

    ROOT/
      annotations/  maksssksksss0.xml ...      (or Annotations/)
      images/       maksssksksss0.png ...      (or JPEGImages/)

Each XML names its image in ``<filename>`` and lists ``<object>`` elements::

    <annotation>
      <filename>maksssksksss0.png</filename>
      <object>
        <name>with_mask</name>
        <bndbox><xmin>79</xmin><ymin>105</ymin><xmax>109</xmax><ymax>142</ymax></bndbox>
      </object>
    </annotation>

Every object becomes one face crop (:mod:`edgemask.data.crops`): the box, grown
by ``margin`` of its size on each side, made square, shifted inside the image,
resized to S×S. Broken files and
boxes are skipped with a reason, never raised.
"""

from __future__ import annotations

import hashlib
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edgemask.config import CROP_MARGIN, DEFAULT_MAX_IMAGE_PIXELS
from edgemask.data.crops import resize_square_rgb, square_crop
from edgemask.data.imagefolder import (
    IMAGE_EXTENSIONS,
    ImportedSamples,
    ProgressFn,
    ResolveFn,
    is_hidden,
    is_image_file,
    merge_groups,
    rel_posix,
)
from edgemask.errors import DataError

#: Folder names accepted for annotations / images (compared lower-case).
ANNOTATION_DIRS = ("annotations",)
IMAGE_DIRS = ("images", "jpegimages")
#: Boxes narrower or shorter than this (after clamping to the image) are skipped.
MIN_BOX_PX = 4

# Refuse DTDs outright: a face-mask annotation never needs one, and entity
# expansion is how XML files blow up memory ("billion laughs") or reach files.
_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass
class VocObject:
    """One ``<object>``: its label and box in image pixels (x0, y0, x1, y1)."""

    index: int
    name: str
    box: tuple[float, float, float, float] | None
    problem: str | None = None  # why the box cannot be used (box is None then)


@dataclass
class VocAnnotation:
    """One parsed XML file."""

    xml: Path
    filename: str | None
    objects: list[VocObject] = field(default_factory=list)


class _BadXml(Exception):
    """A file that cannot be read as a VOC annotation (reason in args[0])."""


def find_voc_dirs(root: Path | str) -> tuple[Path, Path] | None:
    """Return (annotations dir, images dir) if ``root`` has the VOC layout.

    The annotations folder must hold at least one ``*.xml``; names are matched
    case-insensitively (``Annotations``/``JPEGImages`` from Pascal VOC too).
    """
    root = Path(root)
    try:
        subdirs = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    except OSError:
        return None
    ann = next((subdirs[n] for n in ANNOTATION_DIRS if n in subdirs), None)
    img = next((subdirs[n] for n in IMAGE_DIRS if n in subdirs), None)
    if ann is None or img is None or not _xml_files(ann):
        return None
    return ann, img


def _xml_files(ann_dir: Path) -> list[Path]:
    try:
        return sorted(
            p for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() == ".xml" and not is_hidden(p.name)
        )
    except OSError:
        return []


def _odd_entries(folder: Path, wanted) -> list[tuple[Path, str]]:
    """Entries of ``folder`` that ``wanted(path)`` would read but are not regular files (FIFOs, devices, ...).

    Only ``stat`` is called: such a name is reported, never opened.
    """
    from edgemask.data.imagefile import not_regular_reason

    out = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for p in entries:
        if is_hidden(p.name) or not wanted(p) or p.is_dir():
            continue
        why = not_regular_reason(p)
        if why:
            out.append((p, why))
    return out


def _text(el: ET.Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    t = el.text.strip()
    return t or None


def parse_voc_xml(data: bytes, xml_path: Path) -> VocAnnotation:
    """Parse one VOC annotation; raise ``_BadXml`` with a reason if unusable."""
    if not data.strip():
        raise _BadXml("empty file")
    if _DTD_RE.search(data):
        raise _BadXml("XML with a DOCTYPE/ENTITY declaration (refused for safety)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise _BadXml(f"malformed XML ({e})") from None
    if root.tag != "annotation":
        raise _BadXml(f"not a VOC annotation (root element <{root.tag}>, expected <annotation>)")
    ann = VocAnnotation(xml=xml_path, filename=_text(root.find("filename")))
    for i, obj in enumerate(root.iter("object")):
        name = _text(obj.find("name"))
        if name is None:
            ann.objects.append(VocObject(i, "", None, "object without a <name>"))
            continue
        bb = obj.find("bndbox")
        if bb is None:
            ann.objects.append(VocObject(i, name, None, "object without a <bndbox>"))
            continue
        try:
            # Coordinates are sometimes written as floats ("79.5"); accept them.
            x0, y0, x1, y1 = (float(_text(bb.find(k)) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            ann.objects.append(VocObject(i, name, None, "box with a non-numeric coordinate"))
            continue
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            ann.objects.append(VocObject(i, name, None, "box with a missing coordinate (xmin/ymin/xmax/ymax)"))
        elif x0 >= x1 or y0 >= y1:
            ann.objects.append(
                VocObject(i, name, None, f"empty or inverted box (xmin={x0:g} xmax={x1:g} ymin={y0:g} ymax={y1:g})")
            )
        else:
            ann.objects.append(VocObject(i, name, (x0, y0, x1, y1)))
    return ann


def clamp_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Clamp a box to the image; return (box, None) or (None, why it is unusable)."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if cx1 <= cx0 or cy1 <= cy0:
        return None, f"box ({x0:g},{y0:g})-({x1:g},{y1:g}) lies outside the {width}x{height} image"
    if cx1 - cx0 < MIN_BOX_PX or cy1 - cy0 < MIN_BOX_PX:
        return None, f"box smaller than {MIN_BOX_PX} px ({cx1 - cx0:g}x{cy1 - cy0:g} inside the image)"
    return (cx0, cy0, cx1, cy1), None


class _ImageIndex:
    """Finds an annotation's image by exact name, then by stem with any image extension."""

    def __init__(self, img_dir: Path):
        files = sorted(p for p in img_dir.iterdir() if p.is_file() and is_image_file(p) and not is_hidden(p.name))
        self.files = files
        self.by_name = {p.name: p for p in files}
        self.by_lower = {p.name.lower(): p for p in reversed(files)}
        self.by_stem: dict[str, Path] = {}
        for p in files:  # sorted: the first match wins deterministically
            self.by_stem.setdefault(p.stem.lower(), p)

    def find(self, filename: str | None, xml_stem: str) -> Path | None:
        if filename:
            # <filename> is a bare name in VOC; strip any directories (also
            # Windows ones) so an annotation cannot point outside images/.
            base = filename.replace("\\", "/").rsplit("/", 1)[-1]
            hit = self.by_name.get(base) or self.by_lower.get(base.lower()) or self.by_stem.get(Path(base).stem.lower())
            if hit is not None:
                return hit
        return self.by_stem.get(xml_stem.lower())


def annotated_images(ann_dir: Path, img_dir: Path) -> Iterator[tuple[VocAnnotation, Path]]:
    """(annotation, its image file) of every readable XML whose image exists, in sorted XML order.

    Unreadable or malformed XML and annotations without their image are
    skipped silently (:func:`read_voc` reports them; this is for readers that
    only need the boxes of what is there).
    """
    from edgemask.data.imagefile import Unreadable, read_small_file

    index = _ImageIndex(img_dir)
    for xml in _xml_files(ann_dir):
        try:
            ann = parse_voc_xml(read_small_file(xml), xml)
        except (Unreadable, _BadXml):
            continue
        img = index.find(ann.filename, xml.stem)
        if img is not None:
            yield ann, img


def box_sides(root: Path | str) -> dict[str, float]:
    """Longer side (image pixels) of every VOC box, keyed like :func:`read_voc`'s sources (``images/<file>#<i>``).

    Only XML is parsed (no image is decoded), so per-size figures of a run's
    test crops are cheap. Unreadable annotations are left out.
    """
    dirs = find_voc_dirs(Path(root))
    if dirs is None:
        raise DataError(f"{root} is not a VOC dataset: expected annotations/*.xml and images/ inside it")
    out: dict[str, float] = {}
    for ann, img in annotated_images(*dirs):
        for o in ann.objects:
            if o.box is not None:
                out[f"{rel_posix(img, Path(root))}#{o.index}"] = float(max(o.box[2] - o.box[0], o.box[3] - o.box[1]))
    return out


def read_voc(
    root: Path | str,
    *,
    size: int,
    resolve: ResolveFn,
    margin: float = CROP_MARGIN,
    progress: ProgressFn | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ImportedSamples:
    """Read a VOC-layout folder into square face crops of ``size``×``size``.

    Args:
        root: folder with ``annotations/`` and ``images/`` (see module doc).
        size: output side length in pixels.
        resolve: maps object names to canonical class names (raises on unknown).
        margin: context added on each side, as a fraction of the box's longer side.
        progress: called as ``progress(done, total)`` after every XML file.
        max_pixels: an image whose header declares more pixels is skipped
            undecoded; FIFOs, devices and sockets are skipped unopened.

    Returns:
        Crops in sorted (XML name, object index) order; sources are
        ``images/<file>#<object index>``; groups join the crops of one
        photo (same decoded pixels) and crops with identical pixels, so a
        scene never straddles splits (:func:`edgemask.data.imagefolder.merge_groups`).

    Raises:
        DataError: not a VOC layout, or an object name ``resolve`` does not know.
    """
    root = Path(root)
    dirs = find_voc_dirs(root)
    if dirs is None:
        raise DataError(
            f"{root} is not a VOC dataset: expected annotations/*.xml and images/ (or Annotations/ and JPEGImages/) inside it"
        )
    from edgemask.data.imagefile import Unreadable, check_max_pixels, read_image_file, read_small_file

    check_max_pixels(max_pixels)
    ann_dir, img_dir = dirs
    skipped: list[tuple[str, str]] = []
    for p, why in _odd_entries(ann_dir, lambda q: q.suffix.lower() == ".xml") + _odd_entries(img_dir, is_image_file):
        skipped.append((rel_posix(p, root), why))

    # 1. Parse every XML (cheap) and resolve all object names before decoding
    #    any image, so an unknown label fails fast.
    parsed: list[VocAnnotation] = []
    for xml in _xml_files(ann_dir):
        rel = rel_posix(xml, root)
        try:
            parsed.append(parse_voc_xml(read_small_file(xml), xml))
        except (Unreadable, _BadXml) as e:
            skipped.append((rel, str(e.args[0])))
    names = sorted({o.name for a in parsed for o in a.objects if o.name})
    class_of = resolve(names, f"object names in {ann_dir}") if names else {}

    # 2. Decode each image once and cut all of its boxes.
    index = _ImageIndex(img_dir)
    referenced: set[Path] = set()
    n_max = sum(1 for a in parsed for o in a.objects if o.box is not None)
    out = ImportedSamples(images=np.empty((n_max, size, size, 3), dtype=np.uint8), skipped=skipped)
    n = 0
    keys: list[tuple[str, str]] = []  # (scene key, crop key) per crop, merged into groups below
    total = len(parsed)
    for done, ann in enumerate(parsed, 1):
        xml_rel = rel_posix(ann.xml, root)
        for o in ann.objects:
            if o.box is None:
                skipped.append((f"{xml_rel}#{o.index}", o.problem or "unusable object"))
        boxes = [o for o in ann.objects if o.box is not None]
        if not ann.objects:
            skipped.append((xml_rel, "annotation has no <object> boxes"))
        img_path = index.find(ann.filename, ann.xml.stem)
        if img_path is not None:
            referenced.add(img_path)
        img = None
        if boxes and img_path is None:
            want = ann.filename or ann.xml.stem
            skipped.append(
                (
                    xml_rel,
                    f"image {want!r} not found in {rel_posix(img_dir, root)}/ (tried that name and the same stem with {', '.join(IMAGE_EXTENSIONS)})",
                )
            )
        elif boxes and img_path is not None:
            got = read_image_file(img_path, max_pixels)
            img = got.bgr
            if img is None:
                skipped.append((rel_posix(img_path, root), got.skip or "unreadable"))
        if img is not None and img_path is not None:
            h, w = img.shape[:2]
            scene = hashlib.sha256(f"{img.shape}".encode())
            scene.update(np.ascontiguousarray(img).tobytes())
            scene_key = "scene:" + scene.hexdigest()
            for o in boxes:
                assert o.box is not None
                box, why = clamp_box(o.box, w, h)
                if box is None:
                    skipped.append((f"{xml_rel}#{o.index}", why or "unusable box"))
                    continue
                crop = square_crop(img, box, margin)
                # Group = hash of the crop pixels (and shape), so the same face
                # in a duplicated image lands in one split.
                digest = hashlib.sha256(f"{crop.shape}".encode())
                digest.update(np.ascontiguousarray(crop).tobytes())
                out.images[n] = resize_square_rgb(crop, size)
                out.labels.append(class_of[o.name])
                out.sources.append(f"{rel_posix(img_path, root)}#{o.index}")
                keys.append((scene_key, "crop:" + digest.hexdigest()))
                n += 1
        if progress is not None:
            progress(done, total)
    for p in index.files:
        if p not in referenced:
            skipped.append((rel_posix(p, root), "no annotation XML refers to this image"))
    if n < n_max:
        out.images = out.images[:n].copy()
    out.groups = merge_groups(keys)
    return out

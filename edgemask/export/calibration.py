"""Calibration recipes, the images they select, and the tables/caches they produce.

A recipe (``calibration/<name>.toml``) says which images calibrate the int8
activation ranges: a source (a dataset folder, or ``"synth"`` for generated
crops so the demo and tests calibrate offline), how many, whether to draw
them evenly across classes, and a seed. The same recipe on the same data
always selects the same images; the hash of those exact pixels goes into the
bundle's manifest, so a quantized model can be traced to what calibrated it.

Two outputs describe the ranges found:

* ``table.json`` — per tensor ``amax`` (and the calibrator's rmin/rmax);
* ``cache.txt`` — TensorRT's legacy calibration-cache text, for the older
  TensorRT on JetPack 4/5 that builds INT8 engines from an fp32 ONNX plus a
  cache (implicit quantization) instead of reading the QDQ graph.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemask.config import EDGEMASK_CALIBRATION_DIR
from edgemask.errors import ConfigError, DataError, ExportError
from edgemask.utils.io import atomic_write_json, atomic_write_text, sha256_bytes
from edgemask.utils.toml_compat import tomllib

ENV_DIR = EDGEMASK_CALIBRATION_DIR
TABLE_FORMAT = "edgemask-calibration-table"
TABLE_VERSION = 1
#: Largest calibration set we accept; ORT keeps every activation of every image in memory for entropy/percentile.
MAX_COUNT = 20000


@dataclass(frozen=True)
class CalibrationRecipe:
    """A parsed recipe file.

    Attributes:
        name: recipe name (the file stem unless the file sets ``name``).
        source: ``"synth"`` or a dataset folder (any layout ``load_dataset``
            reads; relative paths are relative to the current directory).
        count: images to select.
        stratified: draw evenly across classes (round-robin over per-class
            shuffles) instead of uniformly at random.
        seed: seed of the selection (and of the synthetic generator).
        label_map: extra dataset label spellings, ``{raw: class}``.
        description: free text.
        path: the TOML file it came from ("" for a recipe built in code).
        sha256: SHA-256 of that file's bytes.
    """

    name: str
    source: str = "synth"
    count: int = 256
    stratified: bool = True
    seed: int = 1234
    label_map: dict[str, str] = field(default_factory=dict)
    description: str = ""
    path: str = ""
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CalibrationSet:
    """The images a recipe selected.

    Attributes:
        images: (N, S, S, 3) uint8 RGB.
        labels: (N,) int64 into the model's class names.
        sources: per image, its dataset-relative path, or ``synth:<seed>:<i>``.
        images_sha256: SHA-256 over shape and pixels of ``images``.
        per_class: class name → count.
        generator: what made synthetic images (None for a dataset).
    """

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]
    images_sha256: str
    per_class: dict[str, int]
    generator: str | None = None

    def as_nchw_float(self) -> np.ndarray:
        """(N, 3, S, S) float32 in [0, 1]: the model's input."""
        from edgemask.data.transforms import to_nchw_float

        return to_nchw_float(self.images)


# ------------------------------------------------------------------ recipes
def calibration_search_dirs() -> list[Path]:
    """Existing folders searched for ``<name>.toml``, first match wins.

    1. ``$EDGEMASK_CALIBRATION_DIR`` (``os.pathsep``-separated),
    2. the checkout's ``calibration/`` beside the package,
    3. the installed wheel's ``share/edgemask/calibration`` (see :mod:`edgemask.utils.datadirs`).
    """
    from edgemask.utils.datadirs import search_dirs

    return search_dirs("calibration", ENV_DIR)


def list_recipes() -> dict[str, Path]:
    """Recipe name → file, over the search path (earlier folders win)."""
    found: dict[str, Path] = {}
    for d in calibration_search_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def find_recipe(name_or_path: str | Path) -> Path:
    """Resolve a recipe: an existing TOML path, or a name on the search path.

    Raises:
        ConfigError: nothing found; the message lists the known names.
    """
    s = str(name_or_path).strip()
    if not s:
        raise ConfigError("no calibration recipe given; pass --calibration default or a path to a recipe TOML")
    p = Path(s).expanduser()
    looks_like_path = s.endswith(".toml") or os.sep in s or (os.altsep or "/") in s
    if p.is_file():
        return p
    if looks_like_path:
        raise ConfigError(
            f"calibration recipe file {s} does not exist; pass an existing .toml or a recipe name "
            f"({', '.join(sorted(list_recipes())) or 'none found'})"
        )
    for d in calibration_search_dirs():
        cand = d / f"{s}.toml"
        if cand.is_file():
            return cand
    known = ", ".join(sorted(list_recipes())) or "none"
    raise ConfigError(
        f"unknown calibration recipe {s!r}; known recipes: {known} (searched "
        f"${ENV_DIR}, the checkout's calibration/ and <prefix>/share/edgemask/calibration)"
    )


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "source": str,
    "count": int,
    "stratified": bool,
    "seed": int,
    "label_map": dict,
    "description": str,
}


def load_recipe(name_or_path: str | Path) -> CalibrationRecipe:
    """Find, parse and validate a recipe TOML.

    Raises:
        ConfigError: missing file, bad TOML, unknown or mistyped field, bad count.
    """
    path = find_recipe(name_or_path)
    raw = path.read_bytes()
    try:
        d = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"calibration recipe {path} is not valid TOML ({e}); fix the file (see calibration/README.md)"
        ) from None
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"calibration recipe {path} has unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_FIELDS)} (see calibration/README.md)"
        )
    if "source" not in d:
        raise ConfigError(f"calibration recipe {path} has no 'source'; set source = \"synth\" or a dataset folder")
    for key, typ in _FIELDS.items():
        if key in d and (not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool))):
            raise ConfigError(
                f"calibration recipe {path}: field {key!r} should be {typ.__name__}, "
                f"got {type(d[key]).__name__} {d[key]!r}"
            )
    count = int(d.get("count", 256))
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(
            f"calibration recipe {path}: count {count} is out of range; the calibration set "
            f"needs 1..{MAX_COUNT} images (a few hundred is typical)"
        )
    if not d["source"].strip():
        raise ConfigError(f'calibration recipe {path}: source is empty; set source = "synth" or a dataset folder')
    return CalibrationRecipe(
        name=d.get("name", path.stem),
        source=d["source"],
        count=count,
        stratified=d.get("stratified", True),
        seed=int(d.get("seed", 1234)),
        label_map={str(k): str(v) for k, v in d.get("label_map", {}).items()},
        description=d.get("description", ""),
        path=str(path),
        sha256=sha256_bytes(raw),
    )


# ------------------------------------------------------------------ selection
def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of an image array's shape, dtype and bytes (C order)."""
    a = np.ascontiguousarray(images)
    h = hashlib.sha256(f"{a.dtype.str}{tuple(a.shape)}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def stratified_indices(
    labels: np.ndarray, count: int, seed: int, stratified: bool = True, exclude: Sequence[int] = ()
) -> np.ndarray:
    """Pick ``count`` indices, evenly across classes when ``stratified``.

    Each class is shuffled with the seed, then classes are visited
    round-robin, so a class with few images contributes all it has and the
    rest comes from the others. Deterministic for a given (labels, seed).
    """
    rng = np.random.default_rng(seed)
    excluded = set(int(i) for i in exclude)
    pool = np.array([i for i in range(len(labels)) if i not in excluded], dtype=np.int64)
    if not stratified:
        return np.sort(rng.permutation(pool)[:count])
    per_class = [rng.permutation(pool[labels[pool] == c]) for c in np.unique(labels[pool])]
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(p) for p in per_class):
        for p in per_class:
            if depth < len(p) and len(picked) < count:
                picked.append(int(p[depth]))
        depth += 1
    return np.array(picked, dtype=np.int64)


def synth_images(
    class_names: Sequence[str], size: int, count: int, seed: int, stratified: bool = True
) -> CalibrationSet:
    """Generate ``count`` synthetic crops of the model's classes, seeded.

    Stratified: classes in turn (0, 1, 2, 0, ...); otherwise a seeded random class each.
    Uses :func:`edgemask.data.synth.render_face`, the generator of ``edgemask data synth``.
    """
    from edgemask.data.labels import CLASS_NAMES

    unknown = [c for c in class_names if c not in CLASS_NAMES]
    if unknown:
        raise ConfigError(
            f"the synth calibration source only draws {', '.join(CLASS_NAMES)}, but the model has "
            f"class(es) {', '.join(unknown)}; use a recipe whose source is a dataset of those classes"
        )
    from edgemask.data.synth import render_face

    rng = np.random.default_rng(seed)
    k = len(class_names)
    labels = np.array([i % k for i in range(count)] if stratified else rng.integers(0, k, count), dtype=np.int64)
    # Image i has its own stream [seed, i], so the first images do not change when count does.
    images = (
        np.stack([render_face(np.random.default_rng([seed, i]), class_names[c], size)[0] for i, c in enumerate(labels)])
        if count
        else np.zeros((0, size, size, 3), np.uint8)
    )
    if images.shape[1:] != (size, size, 3):
        raise ExportError(
            f"the synthetic generator made images of shape {images.shape[1:]}, expected "
            f"({size}, {size}, 3); this is a bug in edgemask.data.synth"
        )
    return CalibrationSet(
        images=images,
        labels=labels,
        sources=[f"synth:{seed}:{i}" for i in range(count)],
        images_sha256=images_sha256(images),
        per_class={n: int((labels == i).sum()) for i, n in enumerate(class_names)},
        generator="edgemask.data.synth.render_face",
    )


def select_images(
    recipe: CalibrationRecipe,
    class_names: Sequence[str],
    size: int,
    *,
    count: int | None = None,
    seed: int | None = None,
    exclude_sources: Sequence[str] = (),
) -> CalibrationSet:
    """The images a recipe selects, at the model's input size.

    Args:
        recipe: the recipe.
        class_names: the model's classes (labels index these).
        size: the model's input side S.
        count, seed: override the recipe's (golden inputs use their own).
        exclude_sources: dataset images not to pick (the golden set avoids
            the calibration images when the dataset has enough).

    Raises:
        ConfigError: the source does not exist.
        DataError: the dataset cannot be read, or yields no images.
    """
    count = recipe.count if count is None else count
    seed = recipe.seed if seed is None else seed
    if recipe.source.strip().lower() == "synth":
        return synth_images(class_names, size, count, seed, recipe.stratified)
    from edgemask.data import load_dataset

    src = Path(recipe.source).expanduser()
    if not src.exists():
        raise ConfigError(
            f"calibration recipe {recipe.name!r} ({recipe.path or 'in code'}) points at {recipe.source}, "
            "which does not exist (relative paths are taken from the current directory); "
            "fix its 'source' or use --calibration default (synthetic images)"
        )
    from edgemask.vision.detectors import face_finder  # data never imports vision: whole scenes need it

    ds = load_dataset(
        src, size=size, label_map=recipe.label_map or None, class_names=list(class_names), find_faces=face_finder()
    )
    excl = set(exclude_sources)
    exclude_idx = [i for i, s in enumerate(ds.sources) if s in excl]
    if len(ds) - len(exclude_idx) < count:
        exclude_idx = []  # too small to keep golden and calibration apart; overlap beats too few images
    idx = stratified_indices(ds.labels, count, seed, recipe.stratified, exclude=exclude_idx)
    if len(idx) == 0:
        raise DataError(
            f"calibration recipe {recipe.name!r} selected no images from {src}; the dataset is empty "
            "for the model's classes, point 'source' at a folder with images"
        )
    images, labels = ds.images[idx], ds.labels[idx]
    return CalibrationSet(
        images=images,
        labels=labels,
        sources=[ds.sources[i] for i in idx],
        images_sha256=images_sha256(images),
        per_class={n: int((labels == i).sum()) for i, n in enumerate(class_names)},
    )


# ------------------------------------------------------------------ table and TensorRT cache
def write_table(path: str | Path, tensors: dict[str, dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write the activation-range table as JSON (atomic).

    Layout: ``{"format", "version", **meta, "tensors": {name: {"amax", "scale", ...}}}``.
    """
    return atomic_write_json(path, {"format": TABLE_FORMAT, "version": TABLE_VERSION, **meta, "tensors": tensors})


def trt_cache_text(tensors: dict[str, dict[str, Any]], version: int = 8201) -> str:
    """TensorRT's legacy calibration-cache text for an activation table.

    The first line is ``TRT-<version>-EntropyCalibration2`` (the header
    ``IInt8EntropyCalibrator2`` writes; ``version`` is TensorRT's
    ``major*1000 + minor*100 + patch``, e.g. 8201 for 8.2.1). Each further line
    is ``<tensor>: <scale>`` with the scale (= amax / 127) as the 8 hex digits
    of its big-endian IEEE float32. Only tensors of the fp32 graph are
    written, since TensorRT applies the cache to ``model.fp32.onnx``.
    """
    lines = [f"TRT-{int(version)}-EntropyCalibration2"]
    for name, e in tensors.items():
        if not e.get("in_fp32_graph", True):
            continue
        scale = float(e["amax"]) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def write_trt_cache(path: str | Path, tensors: dict[str, dict[str, Any]], version: int = 8201) -> Path:
    """Write :func:`trt_cache_text` atomically."""
    return atomic_write_text(path, trt_cache_text(tensors, version))


def read_trt_cache(text: str) -> tuple[str, dict[str, float]]:
    """Parse a legacy calibration cache: (header, tensor name → scale)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise ExportError(
            "not a TensorRT calibration cache (first line should start with 'TRT-'); re-export the bundle"
        )
    scales: dict[str, float] = {}
    for ln in lines[1:]:
        name, _, hexval = ln.rpartition(": ")
        try:
            scales[name] = struct.unpack(">f", bytes.fromhex(hexval.strip()))[0]
        except ValueError:
            raise ExportError(f"calibration cache line {ln!r} is malformed; re-export the bundle") from None
    return lines[0], scales

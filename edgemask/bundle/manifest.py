"""BundleManifest: the typed description of an exported bundle.

A bundle is a folder (``export/<name>/``) that carries everything a consumer
needs: the models at each precision, the float weights, golden inputs and
outputs for self-tests, and ``manifest.json``. Every consumer reads input size,
channel order, range and class names from here, through :func:`load_manifest`
— the only function that parses a manifest.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgemask.config import CROP_MARGIN, CROP_METHOD
from edgemask.errors import BundleError

BUNDLE_FORMAT = "edgemask-bundle"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class InputSpec:
    """What the model's input tensor is."""

    name: str = "input"
    shape: list[Any] = field(default_factory=lambda: ["N", 3, 64, 64])  # "N" = dynamic batch
    dtype: str = "float32"
    layout: str = "NCHW"
    range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    channel_order: str = "RGB"

    @property
    def size(self) -> int:
        return int(self.shape[-1])


@dataclass
class Preprocessing:
    """How a face box becomes the input tensor; mean/std are applied inside the model.

    ``crop`` and ``crop_margin`` say how the classifier's training crops were
    cut from a face box (:mod:`edgemask.data.crops`), and so how ``edgemask
    run`` must cut them: a manifest without them (older bundles) was made with
    the defaults. The detector sees whole letterboxed frames: null there.
    """

    resize: str = "cv2.INTER_AREA"
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    normalization_in_model: bool = True
    crop: str | None = CROP_METHOD
    crop_margin: float | None = CROP_MARGIN  # context per side, a fraction of the box's longer side


@dataclass
class ModelEntry:
    """One runnable model file of the bundle."""

    file: str  # relative to the bundle root
    precision: str  # fp32 | fp16 | int8
    format: str  # onnx | tensorrt | safetensors
    opset: int | None = None
    quantization: dict[str, Any] | None = None  # int8: {"format": "QDQ", "method", "per_channel", "symmetric", ...}
    device: str | None = None  # tensorrt engines: device profile name
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def find_model(models: Any, precision: str, format: str, device: Any, owner: str) -> ModelEntry:
    """The entry of ``models`` at this precision/format (and device); a BundleError naming what exists otherwise."""
    for m in models:
        if m.precision == precision and m.format == format and (device is None or m.device == device):
            return m
    have = ", ".join(f"{m.format}:{m.precision}" + (f"@{m.device}" if m.device else "") for m in models)
    raise BundleError(
        f"{owner} has no {format} model at precision {precision!r} (it has: {have}); "
        f"re-export with --precision {precision}"
    )


@dataclass
class DetectorEntry:
    """The bundle's learned face detector (``manifest["detector"]``), beside the classifier.

    Its files live under ``detector/`` and are hashed in the manifest's
    ``files`` like every other file. The graph ends at the dense head; a
    consumer letterboxes the frame as ``letterbox`` says, runs a model of
    ``models`` and decodes with ``decode`` (:mod:`edgemask.vision.facedet_decode`).
    """

    arch: str
    arch_args: dict[str, Any]
    input: InputSpec  # shape ["N", 3, H, W]
    output: dict[str, Any]  # {"name", "shape": ["N", 5, h, w], "channels": [...], "stride"}
    letterbox: dict[str, Any]  # {"align": "top-left", "pad_value": 114, "resize": ...}
    preprocessing: Preprocessing
    decode: dict[str, Any]  # DecodeParams: stride, score_threshold, nms_iou, top_k, min_side
    models: list[ModelEntry]
    golden: dict[str, Any] | None = None  # {"inputs", "outputs", "count", "tolerance": {precision: {...}}}
    calibration: dict[str, Any] | None = None  # {"source", "count", "seed", "images_sha256", "table", "cache", ...}
    source_run: str | None = None
    training: dict[str, Any] = field(default_factory=dict)  # data sets and held-out split of the run

    @property
    def width(self) -> int:
        return int(self.input.shape[-1])

    @property
    def height(self) -> int:
        return int(self.input.shape[-2])

    def model(self, precision: str, format: str = "onnx", device: str | None = None) -> ModelEntry:
        """The detector model of a precision/format; a BundleError naming what exists otherwise."""
        return find_model(self.models, precision, format, device, "the bundle's detector")

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> "DetectorEntry":
        if not isinstance(d, dict):
            raise BundleError(f"{where} field 'detector' is not a JSON object; re-export the bundle")
        required = {
            "arch": str,
            "arch_args": dict,
            "input": dict,
            "output": dict,
            "letterbox": dict,
            "preprocessing": dict,
            "decode": dict,
            "models": list,
        }
        for key, typ in required.items():
            if not isinstance(d.get(key), typ):
                raise BundleError(f"{where} detector entry has no valid {key!r} ({typ.__name__}); re-export the bundle")
        try:
            models = [ModelEntry(**m) for m in d["models"]]
            inp = InputSpec(**d["input"])
            pre = Preprocessing(**d["preprocessing"])
        except TypeError as e:
            raise BundleError(f"{where} has a malformed detector entry ({e}); re-export the bundle") from None
        for m in models:
            if m.precision not in PRECISIONS:
                raise BundleError(
                    f"{where} lists detector model {m.file} with unknown precision {m.precision!r}; "
                    f"expected one of {', '.join(PRECISIONS)}"
                )
        if len(inp.shape) != 4:
            raise BundleError(f"{where} detector input shape {inp.shape} is not [N, 3, H, W]; re-export the bundle")
        kw = {k: d[k] for k in d if k in cls.__dataclass_fields__}
        kw.update(models=models, input=inp, preprocessing=pre)
        return cls(**kw)


@dataclass
class BundleManifest:
    """``manifest.json``. Field order is the order in the file."""

    name: str
    version: int  # monotonically increasing per bundle name
    created: str  # ISO 8601 UTC
    arch: str
    arch_args: dict[str, Any]
    class_names: list[str]
    input: InputSpec
    preprocessing: Preprocessing
    models: list[ModelEntry]
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "bytes"}; every file but the manifest
    producer: dict[str, str]  # library versions that made the bundle
    opset: int | None = None
    golden: dict[str, Any] | None = None  # {"inputs", "outputs", "count", "tolerance": {precision: max abs logit diff}}
    calibration: dict[str, Any] | None = (
        None  # {"recipe", "recipe_sha256", "images_sha256", "count", "method", "table", "cache"}
    )
    detector: DetectorEntry | None = None  # the learned face detector, when exported with one
    probe: dict[str, Any] | None = (
        None  # stability probe: {"inputs", "count", "attack", "float_pred_adv", "margin_clean", ...}
    )
    signature: dict[str, Any] | None = None  # {"key_id", "algorithm", "file"} once signed
    source_run: str | None = None
    format: str = BUNDLE_FORMAT
    schema_version: int = SCHEMA_VERSION

    # -- lookups ---------------------------------------------------------
    def model(self, precision: str, format: str = "onnx", device: str | None = None) -> ModelEntry:
        """The model entry of a precision/format; a BundleError naming what exists otherwise."""
        return find_model(self.models, precision, format, device, f"bundle {self.name!r}")

    def precisions(self, format: str = "onnx") -> list[str]:
        return [m.precision for m in self.models if m.format == format]

    # -- (de)serialisation -----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> "BundleManifest":
        """Validate every field and build; a BundleError names the first bad field and the fix."""
        if not isinstance(d, dict):
            raise BundleError(f"{where} is not a JSON object; re-export the bundle")
        if d.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{where} has format {_show(d.get('format'))}, expected {BUNDLE_FORMAT!r}; "
                "is this an edgemask bundle? Re-export it with 'edgemask export'"
            )
        c = _Checker(where)
        sv = d.get("schema_version", SCHEMA_VERSION)
        c.int_(sv, "schema_version", lo=1)
        if sv > SCHEMA_VERSION:
            raise BundleError(
                f"{where} has schema version {sv}, newer than this edgemask "
                f"understands ({SCHEMA_VERSION}); upgrade edgemask"
            )
        for key in _REQUIRED:
            if key not in d:
                raise BundleError(f"{where} is missing the field {key!r}; re-export the bundle with 'edgemask export'")
        c.str_(d["name"], "name", empty=False)
        c.int_(d["version"], "version", lo=0)
        c.str_(d["created"], "created")
        c.str_(d["arch"], "arch", empty=False)
        c.dict_(d["arch_args"], "arch_args")
        names = c.list_(d["class_names"], "class_names", empty=False)
        for i, n in enumerate(names):
            c.str_(n, f"class_names[{i}]", empty=False)
        if len(set(names)) != len(names):
            c.fail("class_names", f"names a class twice ({names})", "re-export the bundle")
        inp = c.input_(d["input"])
        pre = c.preprocessing_(d["preprocessing"])
        models = [c.model_(m, f"models[{i}]") for i, m in enumerate(c.list_(d["models"], "models", empty=False))]
        files = c.dict_(d["files"], "files")
        for rel, meta in files.items():
            c.path_(rel, f"files[{rel!r}]")
            meta = c.dict_(meta, f"files[{rel!r}]")
            digest = meta.get("sha256")
            if not isinstance(digest, str) or not _SHA256_RE.match(digest):
                c.fail(f"files[{rel!r}].sha256", f"should be 64 hex digits, got {_show(digest)}")
            if "bytes" in meta:
                c.int_(meta["bytes"], f"files[{rel!r}].bytes", lo=0)
        producer = c.dict_(d["producer"], "producer")
        for k, v in producer.items():
            if v is not None and not isinstance(v, (str, int, float)):
                c.fail(f"producer[{k!r}]", f"should be a version string, got {_show(v)}")
        if d.get("opset") is not None:
            c.int_(d["opset"], "opset", lo=1)
        golden = d.get("golden")
        if golden is not None:
            c.golden_(golden)
        cal = d.get("calibration")
        if cal is not None:
            c.calibration_(cal)
        sig = d.get("signature")
        if sig is not None:
            sig = c.dict_(sig, "signature")
            for k in ("key_id", "algorithm"):
                if k in sig:
                    c.str_(sig[k], f"signature.{k}")
            if sig.get("file") is not None:
                c.path_(sig["file"], "signature.file")
        if d.get("source_run") is not None:
            c.str_(d["source_run"], "source_run")
        if d.get("probe") is not None:
            probe = c.dict_(d["probe"], "probe")
            if probe.get("inputs") is not None:
                c.path_(probe["inputs"], "probe.inputs")
            if "count" in probe:
                c.int_(probe["count"], "probe.count", lo=0)
        kw = {k: d[k] for k in d if k in cls.__dataclass_fields__}
        kw.update(models=models, input=inp, preprocessing=pre, schema_version=sv)
        if d.get("detector") is not None:
            det = DetectorEntry.from_dict(d["detector"], where)
            for i, dm in enumerate(det.models):
                c.path_(dm.file, f"detector.models[{i}].file")
            for part, keys in (("golden", _GOLDEN_PATHS), ("calibration", _CALIBRATION_PATHS)):
                sub = getattr(det, part) or {}
                for k in keys:
                    if isinstance(sub, dict) and sub.get(k) is not None:
                        c.path_(sub[k], f"detector.{part}.{k}")
            kw["detector"] = det
        return cls(**kw)

    def all_models(self) -> list[ModelEntry]:
        """The classifier's models and the detector's."""
        return list(self.models) + (list(self.detector.models) if self.detector else [])

    def named_paths(self) -> list[tuple[str, str]]:
        """(field, relative path) of every file the manifest names (files, models, golden, calibration, signature)."""
        out = [(f"files[{rel!r}]", rel) for rel in self.files]
        out += [(f"models[{i}].file", m.file) for i, m in enumerate(self.models)]
        for k in _GOLDEN_PATHS:
            if self.golden and isinstance(self.golden.get(k), str):
                out.append((f"golden.{k}", self.golden[k]))
        for k in _CALIBRATION_PATHS:
            if self.calibration and isinstance(self.calibration.get(k), str):
                out.append((f"calibration.{k}", self.calibration[k]))
        if self.signature and isinstance(self.signature.get("file"), str):
            out.append(("signature.file", self.signature["file"]))
        if self.detector:
            out += [(f"detector.models[{i}].file", m.file) for i, m in enumerate(self.detector.models)]
            for part, keys in (("golden", _GOLDEN_PATHS), ("calibration", _CALIBRATION_PATHS)):
                sub = getattr(self.detector, part) or {}
                out += [(f"detector.{part}.{k}", sub[k]) for k in keys if isinstance(sub.get(k), str)]
        return out


_REQUIRED = (
    "name",
    "version",
    "created",
    "arch",
    "arch_args",
    "class_names",
    "input",
    "preprocessing",
    "models",
    "files",
    "producer",
)
_GOLDEN_PATHS = ("inputs", "outputs")
_CALIBRATION_PATHS = ("recipe_file", "table", "cache")
MODEL_FORMATS = ("onnx", "tensorrt", "safetensors")
MAX_CROP_MARGIN = 2.0  # the largest margin training accepts (load_dataset)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REEXPORT = "re-export the bundle with 'edgemask export' (or correct that field)"


def _show(v: Any) -> str:
    """A value for a message: its repr, cut short, with its JSON type."""
    kind = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "list",
        dict: "object",
        type(None): "null",
    }.get(type(v), type(v).__name__)
    r = repr(v)
    return f"{kind} {r[:40] + '…' if len(r) > 40 else r}"


def check_relative_path(rel: Any, field_name: str, where: str = "manifest") -> str:
    """``rel`` if it is a plain path inside the bundle; a BundleError naming the field otherwise.

    Refused: non-strings, empty, absolute (``/x``, ``\\x``, ``C:x``), any ``..``
    component, NUL bytes. Symlinks are checked against the folder by :func:`load_manifest`.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise BundleError(
            f"{where}: field {field_name!r} should be a path inside the bundle, got {_show(rel)}; {_REEXPORT}"
        )
    if "\x00" in rel:
        raise BundleError(f"{where}: field {field_name!r} holds a NUL byte; {_REEXPORT}")
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise BundleError(
            f"{where}: field {field_name!r} is the absolute path {rel!r}; a bundle may only name "
            "files inside itself (relative paths): the bundle is not trustworthy, re-export it"
        )
    if ".." in re.split(r"[\\/]", rel):
        raise BundleError(
            f"{where}: field {field_name!r} is {rel!r}, which climbs out with '..'; a bundle may only "
            "name files inside itself: the bundle is not trustworthy, re-export it"
        )
    return rel


class _Checker:
    """Type checks that raise one BundleError naming the field (``input.shape[2]``) and the fix."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, name: str, problem: str, fix: str = _REEXPORT) -> None:
        raise BundleError(f"{self.where}: field {name!r} {problem}; {fix}")

    def int_(self, v: Any, name: str, lo: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(name, f"should be a whole number, got {_show(v)}")
        if lo is not None and v < lo:
            self.fail(name, f"should be ≥ {lo}, got {v}")
        return v

    def num_(self, v: Any, name: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            self.fail(name, f"should be a finite number, got {_show(v)}")
        return float(v)

    def str_(self, v: Any, name: str, empty: bool = True) -> str:
        if not isinstance(v, str) or (not empty and not v.strip()):
            self.fail(name, f"should be a{'' if empty else ' non-empty'} string, got {_show(v)}")
        return v

    def list_(self, v: Any, name: str, empty: bool = True) -> list:
        if not isinstance(v, list) or (not empty and not v):
            self.fail(name, f"should be a{'' if empty else ' non-empty'} list, got {_show(v)}")
        return v

    def dict_(self, v: Any, name: str) -> dict:
        if not isinstance(v, dict):
            self.fail(name, f"should be a JSON object, got {_show(v)}")
        return v

    def keys_(self, d: dict, name: str, allowed) -> None:
        extra = sorted(set(d) - set(allowed))
        if extra:
            self.fail(f"{name}.{extra[0]}", "is not a known field", f"remove it; {name} has {', '.join(allowed)}")

    def path_(self, v: Any, name: str) -> str:
        return check_relative_path(v, name, self.where)

    def input_(self, v: Any) -> InputSpec:
        d = self.dict_(v, "input")
        self.keys_(d, "input", InputSpec.__dataclass_fields__)
        if "shape" not in d:
            self.fail("input.shape", "is missing")
        spec = InputSpec(**d)
        self.str_(spec.name, "input.name", empty=False)
        shape = spec.shape
        example = '["N", 3, 64, 64]'
        if not isinstance(shape, list) or len(shape) != 4:
            self.fail("input.shape", f"should be a list of 4 sizes like {example}, got {_show(shape)}")
        if not (shape[0] == "N" or (isinstance(shape[0], int) and not isinstance(shape[0], bool) and shape[0] >= 1)):
            self.fail("input.shape[0]", f'should be "N" (any batch) or a batch size ≥ 1, got {_show(shape[0])}')
        for i in (1, 2, 3):
            self.int_(shape[i], f"input.shape[{i}]", lo=1)
        if shape[1] != 3:
            self.fail("input.shape[1]", f"should be 3 (RGB channels, NCHW), got {shape[1]}")
        if shape[2] != shape[3] or shape[2] < 8:
            self.fail("input.shape", f"should be square and at least 8 pixels like {example}, got {shape}")
        if spec.dtype not in ("float32",):
            self.fail("input.dtype", f'should be "float32", got {_show(spec.dtype)}')
        if spec.layout != "NCHW":
            self.fail("input.layout", f'should be "NCHW", got {_show(spec.layout)}')
        rng = self.list_(spec.range, "input.range")
        if len(rng) != 2 or self.num_(rng[0], "input.range[0]") >= self.num_(rng[1], "input.range[1]"):
            self.fail("input.range", f"should be [low, high] like [0.0, 1.0], got {_show(rng)}")
        if spec.channel_order not in ("RGB", "BGR"):
            self.fail("input.channel_order", f'should be "RGB" or "BGR", got {_show(spec.channel_order)}')
        return spec

    def preprocessing_(self, v: Any) -> Preprocessing:
        d = self.dict_(v, "preprocessing")
        self.keys_(d, "preprocessing", Preprocessing.__dataclass_fields__)
        pre = Preprocessing(**d)
        self.str_(pre.resize, "preprocessing.resize")
        for k in ("mean", "std"):
            vals = self.list_(getattr(pre, k), f"preprocessing.{k}")
            if len(vals) not in (0, 1, 3):
                self.fail(f"preprocessing.{k}", f"should hold 3 numbers (one per channel), got {_show(vals)}")
            for i, x in enumerate(vals):
                if self.num_(x, f"preprocessing.{k}[{i}]") <= 0 and k == "std":
                    self.fail(f"preprocessing.std[{i}]", f"should be positive, got {x}")
        if not isinstance(pre.normalization_in_model, bool):
            self.fail(
                "preprocessing.normalization_in_model",
                f"should be true or false, got {_show(pre.normalization_in_model)}",
            )
        self.str_(pre.crop, "preprocessing.crop", empty=False)
        margin = self.num_(pre.crop_margin, "preprocessing.crop_margin")
        if not 0.0 <= margin <= MAX_CROP_MARGIN:
            self.fail(
                "preprocessing.crop_margin",
                f"should lie in [0, {MAX_CROP_MARGIN:g}] (a fraction of the face box's longer side), got {margin:g}",
            )
        pre.crop_margin = margin
        return pre

    def model_(self, v: Any, name: str) -> ModelEntry:
        d = self.dict_(v, name)
        self.keys_(d, name, ModelEntry.__dataclass_fields__)
        for k in ("file", "precision", "format"):
            if k not in d:
                self.fail(f"{name}.{k}", "is missing")
        m = ModelEntry(**d)
        self.path_(m.file, f"{name}.file")
        if m.precision not in PRECISIONS:
            self.fail(f"{name}.precision", f"is {_show(m.precision)}; expected one of {', '.join(PRECISIONS)}")
        if m.format not in MODEL_FORMATS:
            self.fail(f"{name}.format", f"is {_show(m.format)}; expected one of {', '.join(MODEL_FORMATS)}")
        if m.opset is not None:
            self.int_(m.opset, f"{name}.opset", lo=1)
        if m.quantization is not None:
            self.dict_(m.quantization, f"{name}.quantization")
        for k in ("device", "tensorrt_version", "compute_capability"):
            if getattr(m, k) is not None:
                self.str_(getattr(m, k), f"{name}.{k}")
        self.dict_(m.extra, f"{name}.extra")
        return m

    def golden_(self, v: Any) -> None:
        g = self.dict_(v, "golden")
        for k in _GOLDEN_PATHS:
            if g.get(k) is not None:
                self.path_(g[k], f"golden.{k}")
        if "count" in g:
            self.int_(g["count"], "golden.count", lo=0)
        for k in ("sources", "labels"):
            if g.get(k) is not None:
                self.list_(g[k], f"golden.{k}")
        for i, x in enumerate(g.get("labels") or []):
            self.int_(x, f"golden.labels[{i}]", lo=0)
        for k in ("tolerance", "agreement"):
            if g.get(k) is None:
                continue
            for p, x in self.dict_(g[k], f"golden.{k}").items():
                if p not in PRECISIONS:
                    self.fail(f"golden.{k}", f"names the precision {p!r}; expected {', '.join(PRECISIONS)}")
                if x is not None and self.num_(x, f"golden.{k}.{p}") < 0:
                    self.fail(f"golden.{k}.{p}", f"should be ≥ 0, got {x}")

    def calibration_(self, v: Any) -> None:
        cal = self.dict_(v, "calibration")
        for k in _CALIBRATION_PATHS:
            if cal.get(k) is not None:
                self.path_(cal[k], f"calibration.{k}")
        for k in ("count", "seed", "tensors"):
            if cal.get(k) is not None:
                self.int_(cal[k], f"calibration.{k}", lo=0)
        if cal.get("per_class") is not None:
            for n, x in self.dict_(cal["per_class"], "calibration.per_class").items():
                self.int_(x, f"calibration.per_class.{n}", lo=0)
        for k in ("recipe", "method", "recipe_sha256", "images_sha256", "cache_header"):
            if cal.get(k) is not None:
                self.str_(cal[k], f"calibration.{k}")


def load_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Read and validate ``<bundle_dir>/manifest.json`` (hashes are checked by ``verify_bundle``).

    Every field is type-checked, and every path the manifest names (``files``,
    model files, golden and calibration files, the signature) must be a
    relative path that stays inside the bundle, symlinks resolved.

    Raises:
        BundleError: one line naming the bad field and the fix.
    """
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.exists():
        raise BundleError(
            f"bundle {bundle_dir} does not exist; create one with 'edgemask export RUN --out {bundle_dir}'"
        )
    if not path.is_file():
        raise BundleError(f"{path} not found; {bundle_dir} is not a bundle (create one with 'edgemask export')")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(
            f"{path} is not valid JSON ({e.__class__.__name__}); the bundle is damaged, re-export or re-copy it"
        ) from None
    except RecursionError:
        raise BundleError(f"{path} nests too deeply to be a manifest; the bundle is damaged, re-export it") from None
    m = BundleManifest.from_dict(d, where=str(path))
    check_paths_inside(bundle_dir, m, where=str(path))
    return m


def check_paths_inside(bundle_dir: str | Path, m: BundleManifest, where: str = "manifest") -> None:
    """Refuse a manifest naming a file that resolves (through symlinks) outside ``bundle_dir``."""
    root = os.path.realpath(bundle_dir)
    for name, rel in m.named_paths():
        target = os.path.realpath(os.path.join(root, rel))
        if target != root and not target.startswith(root + os.sep):
            raise BundleError(
                f"{where}: field {name!r} is {rel!r}, which a symlink takes outside the bundle; "
                "a bundle may only hold its own files: the bundle is not trustworthy, re-export it"
            )

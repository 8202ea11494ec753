"""BundleManifest: the typed description of an exported bundle.

A bundle is a folder (``export/<name>/``) that carries everything a consumer
needs: the models at each precision, the float weights, golden inputs and
outputs for self-tests, and ``manifest.json``. Every consumer reads input size,
channel order, range and class names from here, through :func:`load_manifest`
— the only function that parses a manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
    """How a face crop becomes the input tensor; mean/std are applied inside the model."""

    resize: str = "cv2.INTER_AREA"
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    normalization_in_model: bool = True


@dataclass
class ModelEntry:
    """One runnable model file of the bundle."""

    file: str                       # relative to the bundle root
    precision: str                  # fp32 | fp16 | int8
    format: str                     # onnx | tensorrt | safetensors
    opset: int | None = None
    quantization: dict[str, Any] | None = None   # int8: {"format": "QDQ", "method", "per_channel", "symmetric", ...}
    device: str | None = None                    # tensorrt engines: device profile name
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    input: InputSpec                          # shape ["N", 3, H, W]
    output: dict[str, Any]                    # {"name", "shape": ["N", 5, h, w], "channels": [...], "stride"}
    letterbox: dict[str, Any]                 # {"align": "top-left", "pad_value": 114, "resize": ...}
    preprocessing: Preprocessing
    decode: dict[str, Any]                    # DecodeParams: stride, score_threshold, nms_iou, top_k, min_side
    models: list[ModelEntry]
    golden: dict[str, Any] | None = None      # {"inputs", "outputs", "count", "tolerance": {precision: {...}}}
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
        for m in self.models:
            if m.precision == precision and m.format == format and (device is None or m.device == device):
                return m
        have = ", ".join(f"{m.format}:{m.precision}" + (f"@{m.device}" if m.device else "") for m in self.models)
        raise BundleError(f"the bundle's detector has no {format} model at precision {precision!r} (it has: {have}); "
                          f"re-export with --precision {precision}")

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> "DetectorEntry":
        if not isinstance(d, dict):
            raise BundleError(f"{where} field 'detector' is not a JSON object; re-export the bundle")
        required = {"arch": str, "arch_args": dict, "input": dict, "output": dict, "letterbox": dict,
                    "preprocessing": dict, "decode": dict, "models": list}
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
                raise BundleError(f"{where} lists detector model {m.file} with unknown precision {m.precision!r}; "
                                  f"expected one of {', '.join(PRECISIONS)}")
        if len(inp.shape) != 4:
            raise BundleError(f"{where} detector input shape {inp.shape} is not [N, 3, H, W]; re-export the bundle")
        kw = {k: d[k] for k in d if k in cls.__dataclass_fields__}
        kw.update(models=models, input=inp, preprocessing=pre)
        return cls(**kw)


@dataclass
class BundleManifest:
    """``manifest.json``. Field order is the order in the file."""

    name: str
    version: int                    # monotonically increasing per bundle name
    created: str                    # ISO 8601 UTC
    arch: str
    arch_args: dict[str, Any]
    class_names: list[str]
    input: InputSpec
    preprocessing: Preprocessing
    models: list[ModelEntry]
    files: dict[str, dict[str, Any]]          # relative path -> {"sha256", "bytes"}; every file but the manifest
    producer: dict[str, str]                  # library versions that made the bundle
    opset: int | None = None
    golden: dict[str, Any] | None = None      # {"inputs", "outputs", "count", "tolerance": {precision: max abs logit diff}}
    calibration: dict[str, Any] | None = None  # {"recipe", "recipe_sha256", "images_sha256", "count", "method", "table", "cache"}
    detector: DetectorEntry | None = None     # the learned face detector, when exported with one
    probe: dict[str, Any] | None = None       # stability probe: {"inputs", "count", "attack", "float_pred_adv", "margin_clean", ...}
    signature: dict[str, Any] | None = None   # {"key_id", "algorithm", "file"} once signed
    source_run: str | None = None
    format: str = BUNDLE_FORMAT
    schema_version: int = SCHEMA_VERSION

    # -- lookups ---------------------------------------------------------
    def model(self, precision: str, format: str = "onnx", device: str | None = None) -> ModelEntry:
        """The model entry of a precision/format; a BundleError naming what exists otherwise."""
        for m in self.models:
            if m.precision == precision and m.format == format and (device is None or m.device == device):
                return m
        have = ", ".join(f"{m.format}:{m.precision}" + (f"@{m.device}" if m.device else "") for m in self.models)
        raise BundleError(f"bundle {self.name!r} has no {format} model at precision {precision!r} (it has: {have}); "
                          f"re-export with --precision {precision}")

    def precisions(self, format: str = "onnx") -> list[str]:
        return [m.precision for m in self.models if m.format == format]

    # -- (de)serialisation -----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> "BundleManifest":
        """Validate and build; a BundleError names the first missing or mistyped field."""
        if not isinstance(d, dict):
            raise BundleError(f"{where} is not a JSON object; re-export the bundle")
        if d.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{where} has format {d.get('format')!r}, expected {BUNDLE_FORMAT!r}; "
                              "is this an edgemask bundle? Re-export it with 'edgemask export'")
        if int(d.get("schema_version", -1)) > SCHEMA_VERSION:
            raise BundleError(f"{where} has schema version {d.get('schema_version')}, newer than this edgemask "
                              f"understands ({SCHEMA_VERSION}); upgrade edgemask")
        required = {"name": str, "version": int, "created": str, "arch": str, "arch_args": dict, "class_names": list,
                    "input": dict, "preprocessing": dict, "models": list, "files": dict, "producer": dict}
        for key, typ in required.items():
            if key not in d:
                raise BundleError(f"{where} is missing the field {key!r}; re-export the bundle with 'edgemask export'")
            if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
                raise BundleError(f"{where} field {key!r} should be {typ.__name__}, got {type(d[key]).__name__}; "
                                  "re-export the bundle")
        try:
            models = [ModelEntry(**m) for m in d["models"]]
            inp = InputSpec(**d["input"])
            pre = Preprocessing(**d["preprocessing"])
        except TypeError as e:
            raise BundleError(f"{where} has a malformed entry ({e}); re-export the bundle") from None
        for m in models:
            if m.precision not in PRECISIONS:
                raise BundleError(f"{where} lists model {m.file} with unknown precision {m.precision!r}; "
                                  f"expected one of {', '.join(PRECISIONS)}")
        kw = {k: d[k] for k in d if k in cls.__dataclass_fields__}
        kw.update(models=models, input=inp, preprocessing=pre)
        if d.get("detector") is not None:
            kw["detector"] = DetectorEntry.from_dict(d["detector"], where)
        return cls(**kw)

    def all_models(self) -> list[ModelEntry]:
        """The classifier's models and the detector's."""
        return list(self.models) + (list(self.detector.models) if self.detector else [])


def load_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Read and validate ``<bundle_dir>/manifest.json`` (hashes are checked by ``verify_bundle``)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.exists():
        raise BundleError(f"bundle {bundle_dir} does not exist; create one with 'edgemask export RUN --out {bundle_dir}'")
    if not path.is_file():
        raise BundleError(f"{path} not found; {bundle_dir} is not a bundle (create one with 'edgemask export')")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e.__class__.__name__}); the bundle is damaged, re-export or re-copy it") from None
    return BundleManifest.from_dict(d, where=str(path))

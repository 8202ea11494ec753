"""Typed configs: the one place where defaults live.

The CLI reads its ``--help`` defaults from these dataclasses, and every
output directory gets the resolved config saved beside it.

Environment knobs (documented here, read nowhere else):

* ``EDGEMASK_NUM_THREADS`` — torch / ONNX Runtime intra-op threads (default:
  the number of cores). ``edgemask run`` classifies on one thread unless
  ``--classify-threads 0`` hands the choice to this variable.
* ``EDGEMASK_DEVICES_DIR`` — extra folder searched first for device profiles.
* ``EDGEMASK_CALIBRATION_DIR`` — extra folder searched first for calibration recipes.
* ``EDGEMASK_ENGINE_CACHE`` — where first-use TensorRT engines and timing
  caches are kept (default ``~/.cache/edgemask/engines``).
* ``EDGEMASK_MQTT_PASSWORD`` / ``EDGEMASK_WEBHOOK_TOKEN`` — alert-sink secrets
  for ``edgemask run`` (never taken from the command line).
* ``EDGEMASK_SOURCE_PASSWORD`` — password of an RTSP/HTTP camera
  (``--source rtsp://USER@host/...``); a password inside ``--source`` is refused.

``edgemask run`` also sets OpenCV's ``OPENCV_FFMPEG_LOGLEVEL`` and
``OPENCV_LOG_LEVEL`` to quiet FFmpeg's and OpenCV's own stderr lines, unless
``--log-level debug``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


def num_threads() -> int:
    """Intra-op thread count: ``EDGEMASK_NUM_THREADS`` or the core count."""
    env = os.environ.get("EDGEMASK_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


#: Dataset images whose header declares more pixels than this are skipped
#: undecoded (a 20000x20000 PNG would take 1.2 GB); ``max_image_pixels`` in
#: TrainConfig, ``--max-image-pixels`` on the command line.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

#: Context added on each side of a face box before the square crop, as a
#: fraction of the box's longer side (:mod:`edgemask.data.crops`). Training
#: records the margin it used in model.json, export copies it into the
#: bundle's ``preprocessing.crop_margin``, and ``edgemask run`` crops with the
#: bundle's, so training and serving frame faces alike. Bundles and runs older
#: than that field were all made with 0.15: keep it if this default changes.
CROP_MARGIN = 0.15
#: How a face box becomes a crop (:func:`edgemask.data.crops.square_crop`), as model.json and the manifest say it.
CROP_METHOD = "square, shifted inside the image"


@dataclass
class TrainConfig:
    """Everything ``edgemask train`` needs; saved as ``config.json`` in the run dir."""

    data: str = ""
    out: str = "runs/default"
    arch: str = "seed_cnn"
    arch_args: dict[str, Any] = field(default_factory=dict)
    size: int = 64
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.05
    augment: bool = True
    # Real-photo augmentation on top of flips/affine/colour: detector-box
    # jitter (shift/scale as a fraction of the side), blur and low light.
    box_jitter: float = 0.08
    blur_p: float = 0.2
    low_light_p: float = 0.2
    # Imbalance: a balanced sampler that oversamples a class at most
    # balance_cap times, then a logit bias chosen on validation so no class
    # takes more than max_false_positive of the others (training/operating_point.py).
    balance: bool = True
    balance_cap: float = 4.0
    operating_point: bool = True
    max_false_positive: float = 0.05
    # Early stopping on validation loss; the learning rate drops by
    # plateau_factor after plateau_epochs without improvement.
    patience: int = 8
    plateau_epochs: int = 3
    plateau_factor: float = 0.3
    target_accuracy: float = 1.0  # stop once val accuracy reaches this (1.0 = never early)
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    label_map: dict[str, str] = field(default_factory=dict)
    crop_faces: bool | None = None  # ImageFolder: cut faces out of whole photos (None = when most are)
    crop_margin: float = CROP_MARGIN  # VOC boxes and cut ImageFolder faces; travels to the bundle
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # larger images are skipped before decoding
    max_minutes: float = 0.0      # wall-clock budget; 0 = none
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "split" in kw:
            kw["split"] = tuple(kw["split"])
        return cls(**kw)


@dataclass
class DemoConfig:
    """Defaults of ``edgemask demo``: small enough for a 2-core laptop in minutes."""

    out: str = "demo"
    n: int = 6000
    size: int = 64
    seed: int = 0
    arch: str = "seed_cnn"
    epochs: int = 15
    target_accuracy: float = 0.995
    heldout_n: int = 600
    stability_n: int = 200


# The other commands' configs live beside their code; they are re-exported
# here so ``from edgemask.config import ExportConfig`` finds every default in
# one place. Loaded lazily: importing this module stays cheap.
_AREA_CONFIGS = {
    "ExportConfig": "edgemask.export.config",
    "CompareConfig": "edgemask.compare.config",
    "BenchConfig": "edgemask.compare.config",
    "StabilityConfig": "edgemask.stability.config",
    "RunConfig": "edgemask.service.config",
}


def __getattr__(name: str) -> Any:
    if name in _AREA_CONFIGS:
        import importlib

        return getattr(importlib.import_module(_AREA_CONFIGS[name]), name)
    raise AttributeError(f"module 'edgemask.config' has no attribute {name!r}")

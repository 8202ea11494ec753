"""Typed configs: the one place where defaults live.

The CLI reads its ``--help`` defaults and texts from these dataclasses (a
field's ``metadata["help"]``, written with :func:`described`; ``cli/options.py``
turns fields into options), and every output directory gets the resolved
config saved beside it.

Environment knobs: documented in this table, read nowhere else. Modules name
them by the constants below and read them through :func:`setting` (a string)
or :func:`env_int` (a whole number).

====================================  ===========================================================
variable                              what it sets
====================================  ===========================================================
``EDGEMASK_NUM_THREADS``              torch / ONNX Runtime intra-op threads (default: the number
                                      of cores). ``edgemask run`` classifies on one thread unless
                                      ``--classify-threads 0`` hands the choice to this variable.
``EDGEMASK_DEVICES_DIR``              extra folders (``os.pathsep``-separated) searched first for
                                      device profiles.
``EDGEMASK_CALIBRATION_DIR``          extra folders searched first for calibration recipes.
``EDGEMASK_ENGINE_CACHE``             where first-use TensorRT engines and timing caches are kept
                                      (default ``$XDG_CACHE_HOME/edgemask/engines``, else
                                      ``~/.cache/edgemask/engines``).
``EDGEMASK_MQTT_PASSWORD``            alert-sink secrets for ``edgemask run`` (never taken from
``EDGEMASK_WEBHOOK_TOKEN``            the command line; a ``--config`` file's ``[secrets]`` is
                                      the other place).
``EDGEMASK_SOURCE_PASSWORD``          password of an RTSP/HTTP camera (``--source
                                      rtsp://USER@host/...``); a password inside ``--source`` is
                                      refused.
``EDGEMASK_FLEET_CUT_AFTER_BYTES``    fault injection (tests, benchmarks): ``fleet deploy`` drops
                                      the connection after this many uploaded bytes.
``EDGEMASK_AGENT_DIE_AFTER``          fault injection (tests, benchmarks): the device agent
                                      SIGKILLs itself right after this install step.
====================================  ===========================================================

Variables that are not edgemask's own stay where they are used: ``XDG_CACHE_HOME``
(bundle/engines.py), ``OMP_NUM_THREADS`` (export/onnx_export.py), ``DISPLAY`` /
``WAYLAND_DISPLAY`` (vision/overlay.py), ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC``
(service/systemd.py). ``edgemask run`` also sets OpenCV's ``OPENCV_FFMPEG_LOGLEVEL``
and ``OPENCV_LOG_LEVEL`` to quiet FFmpeg's and OpenCV's own stderr lines, unless
``--log-level debug``.

This module is part of the device runtime: importable without torch, on Python 3.8.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

EDGEMASK_NUM_THREADS = "EDGEMASK_NUM_THREADS"
EDGEMASK_DEVICES_DIR = "EDGEMASK_DEVICES_DIR"
EDGEMASK_CALIBRATION_DIR = "EDGEMASK_CALIBRATION_DIR"
EDGEMASK_ENGINE_CACHE = "EDGEMASK_ENGINE_CACHE"
EDGEMASK_MQTT_PASSWORD = "EDGEMASK_MQTT_PASSWORD"
EDGEMASK_WEBHOOK_TOKEN = "EDGEMASK_WEBHOOK_TOKEN"
EDGEMASK_SOURCE_PASSWORD = "EDGEMASK_SOURCE_PASSWORD"
EDGEMASK_FLEET_CUT_AFTER_BYTES = "EDGEMASK_FLEET_CUT_AFTER_BYTES"
EDGEMASK_AGENT_DIE_AFTER = "EDGEMASK_AGENT_DIE_AFTER"
#: Every knob of the table above.
SETTINGS = (
    EDGEMASK_NUM_THREADS,
    EDGEMASK_DEVICES_DIR,
    EDGEMASK_CALIBRATION_DIR,
    EDGEMASK_ENGINE_CACHE,
    EDGEMASK_MQTT_PASSWORD,
    EDGEMASK_WEBHOOK_TOKEN,
    EDGEMASK_SOURCE_PASSWORD,
    EDGEMASK_FLEET_CUT_AFTER_BYTES,
    EDGEMASK_AGENT_DIE_AFTER,
)


def setting(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of knob ``name`` (one of :data:`SETTINGS`), or None when it is unset or empty.

    Args:
        name: a constant of this module, e.g. :data:`EDGEMASK_ENGINE_CACHE`.
        environ: where to look instead of ``os.environ`` (tests, an
            EnvironmentFile already read).

    Raises:
        ValueError: ``name`` is not in the table (add it there first).
    """
    if name not in SETTINGS:
        raise ValueError(
            f"{name!r} is not an edgemask setting; add it to edgemask/config.py's table (known: {', '.join(SETTINGS)})"
        )
    value = (os.environ if environ is None else environ).get(name)
    return value if value else None


def env_int(name: str, default: int | None = None, environ: Mapping[str, str] | None = None) -> int | None:
    """Knob ``name`` as a whole number; ``default`` when it is unset or empty.

    Raises:
        ConfigError: the variable holds something other than a whole number.
    """
    value = setting(name, environ)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        from edgemask.errors import ConfigError

        raise ConfigError(f"${name} is {value!r}, not a whole number; set it to one or unset it") from None


def num_threads() -> int:
    """Intra-op thread count: ``EDGEMASK_NUM_THREADS`` or the core count.

    A value that is not a positive whole number is ignored (the core count):
    a typo in a box's environment must not stop the service.
    """
    env = setting(EDGEMASK_NUM_THREADS)
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


def described(default: Any = dataclasses.MISSING, *, help: str, **kw: Any) -> Any:
    """A dataclass field with its one description: ``field(default=..., metadata={"help": help})``.

    The help is what ``--help`` shows for the field's option (``cli/options.py``
    reads it) and what :func:`field_help` returns, so an option is described once.
    Mutable defaults go in ``default_factory=`` as with ``field``.
    """
    return field(default=default, metadata={"help": help}, **kw)


def field_help(cls: Any, name: str) -> str:
    """The ``help`` of field ``name`` of config dataclass ``cls`` ("" when it has none)."""
    return next((f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name), "")


@dataclass
class TrainConfig:
    """Everything ``edgemask train`` needs; saved as ``config.json`` in the run dir.

    A field's ``metadata["help"]`` is its ``--help`` line; see :func:`field_help`.
    """

    data: str = described(
        "",
        help="Dataset: a 'data synth' folder, an ImageFolder tree (class folders) or a PASCAL VOC folder "
        "(images/ + annotations/). Not needed with --resume.",
    )
    out: str = described(
        "runs/default", help="Run directory to write (weights.safetensors, model.json, metrics.json, config.json)."
    )
    arch: str = described("seed_cnn", help="Architecture; see 'edgemask models'.")
    arch_args: dict[str, Any] = field(default_factory=dict)
    size: int = described(64, help="Input side in pixels; crops are resized to size×size.")
    epochs: int = described(30, help="Maximum number of epochs.")
    batch_size: int = described(64, help="Mini-batch size.")
    lr: float = described(3e-3, help="Peak AdamW learning rate (linear warm-up, then cosine decay).")
    weight_decay: float = described(1e-4, help="AdamW weight decay.")
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.05
    augment: bool = described(True, help="Random flips, small affine and colour jitter.")
    # Real-photo augmentation on top of flips/affine/colour: detector-box
    # jitter (shift/scale as a fraction of the side), blur and low light.
    box_jitter: float = 0.08
    blur_p: float = 0.2
    low_light_p: float = 0.2
    # Imbalance: a balanced sampler that oversamples a class at most
    # balance_cap times, then a logit bias chosen on validation so no class
    # takes more than max_false_positive of the others (training/operating_point.py).
    balance: bool = described(True, help="Oversample rare classes (at most --balance-cap times their natural share).")
    balance_cap: float = described(4.0, help="Most a rare class is oversampled (1 = natural frequencies).")
    operating_point: bool = described(
        True,
        help="Choose per-class logit offsets on the validation split (folded into the weights; "
        "recorded in metrics.json).",
    )
    max_false_positive: float = described(
        0.05, help="Operating point: the most of the other classes' crops any class may take."
    )
    # Early stopping on validation loss. Optionally the learning rate also drops by plateau_factor after
    # plateau_epochs without improvement; off by default (0): on real photos the validation loss is noisy
    # enough that the drops froze learning by epoch 14, and the cosine decay alone scored 94.7 % against 92.6 %
    # on the held-out crops of the face-mask set.
    patience: int = described(8, help="Early stopping: epochs without a lower validation loss.")
    plateau_epochs: int = 0
    plateau_factor: float = 0.3
    target_accuracy: float = described(1.0, help="Stop as soon as validation accuracy reaches this (1.0 = never).")
    seed: int = described(0, help="Seed for splits, initialisation and augmentation.")
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # Score the classifier on the photos a detector run holds out (same VOC folder, same flags), so the two
    # models of one bundle are judged on photos neither trained on; 0 = a test split by --split.
    heldout: float = described(
        0.0,
        help="Make the test split the photos that 'edgemask detector train --heldout F --split-seed S' holds out "
        "of the same folder (by photo), so neither model of a bundle trains on them; 0 = test by scene, 10 %.",
    )
    split_seed: int = described(
        0,
        help="With --heldout: the detector run's --split-seed; it also seeds the train/val split, so runs with "
        "other --seed values share one validation set.",
    )
    label_map: dict[str, str] = described(
        default_factory=dict, help="Extra label aliases, e.g. 'face=no_mask,chin=mask_incorrect'."
    )
    # Datasets whose crops join the training split only (e.g. synthetic faces beside a small real set):
    # validation, early stopping, the operating point and the test figures stay on `data` alone.
    extra_train: tuple[str, ...] = described(
        (),
        help="A dataset whose crops join the training split only (repeat for several); validation, the operating "
        "point and the test figures stay on --data.",
    )
    crop_faces: bool | None = described(
        None,
        help="ImageFolder: cut the largest face out of whole photos (default: when most images are not square "
        "face crops).",
    )
    crop_margin: float = CROP_MARGIN  # VOC boxes and cut ImageFolder faces; travels to the bundle
    max_image_pixels: int = described(
        DEFAULT_MAX_IMAGE_PIXELS,
        help="Skip dataset images whose header declares more pixels than this (checked before decoding).",
    )
    max_minutes: float = described(0.0, help="Stop after this many minutes (0 = no limit).")
    overwrite: bool = described(False, help="Replace an existing run in --out.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        d["extra_train"] = list(self.extra_train)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "split" in kw:
            kw["split"] = tuple(kw["split"])
        if "extra_train" in kw:
            kw["extra_train"] = tuple(kw["extra_train"])
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


@dataclass
class SynthConfig:
    """Everything :func:`edgemask.data.synth.write_synth_dataset` needs but the output folder.

    The same (n, size, seed, n_scenes) writes byte-identical files. A field's
    ``metadata["help"]`` is the ``edgemask data synth --help`` line.
    """

    n: int = described(6000, help="Number of face crops, spread over the three classes.")
    size: int = described(64, help="Side of each square crop in pixels.")
    seed: int = described(0, help="Random seed; the same seed writes the same files.")
    n_scenes: int = described(40, help="Number of whole scenes with VOC XML boxes (scenes/images, scenes/annotations).")
    overwrite: bool = described(False, help="Replace an existing dataset in --out.")


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

"""Settings of the face detector's training (torch-free, so the CLI can show its defaults cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from edgemask.errors import ConfigError
from edgemask.vision.facedet_decode import DecodeParams


@dataclass
class DetTrainConfig:
    """Settings of ``edgemask detector train`` (the CLI's defaults come from here).

    Attributes:
        data: VOC folders and/or ``data synth`` folders (their scenes/).
        out: run folder.
        arch: a detector from ``list_models("detect")``.
        input_width, input_height: network input (letterboxed frames); multiples of 32.
        crop_width, crop_height: training crop (fully convolutional, so smaller = faster).
        epochs, batch_size, lr, weight_decay: optimisation (AdamW, cosine schedule).
        seed: augmentation and init seed.
        split_seed, heldout: the held-out split of every data set, by image.
        threads: torch threads (0 = edgemask's default).
        resume: continue from OUT/state.pt.
        init: a detector run whose weights training starts from ("" = from scratch).
        image_weights: label -> how much more often an image holding such a face is drawn.
        face_weights: label -> the weight of such a face in the loss (default 1).
        max_minutes: training time budget (0 = none); the learning-rate schedule anneals to end within it.
    """

    data: List[str] = field(default_factory=list)
    out: str = "runs/det"
    arch: str = "facedet"
    input_width: int = 384
    input_height: int = 288
    crop_width: int = 256
    crop_height: int = 192
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    split_seed: int = 0
    heldout: float = 0.2
    threads: int = 0
    resume: bool = False
    max_minutes: float = 0.0
    # Start from another detector run's weights (a fine-tune; the schedule starts afresh) instead of scratch.
    init: str = ""
    # Per ground-truth label, how much more often an image holding such a face is drawn in an epoch
    # (the image's weight is its rarest face's); e.g. {"without_mask": 3} for sets where masks dominate.
    image_weights: Dict[str, float] = field(default_factory=dict)
    # Per ground-truth label, the weight of such a face in the loss (its heatmap peak and box), e.g.
    # {"without_mask": 2}: a missed unmasked face is the costly miss, and masked faces dominate real sets.
    face_weights: Dict[str, float] = field(default_factory=dict)
    decode: Dict[str, Any] = field(default_factory=lambda: DecodeParams().to_dict())

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("give at least one --data folder (a VOC folder or a 'data synth' output)")
        for k in ("input_width", "input_height", "crop_width", "crop_height"):
            v = getattr(self, k)
            if v < 32 or v % 32:
                raise ConfigError(f"--{k.replace('_', '-')} must be a positive multiple of 32, got {v}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1")
        from edgemask.vision.facedet_decode import check_decode

        check_decode(DecodeParams.from_dict(self.decode))
        if not 0.0 <= self.heldout < 1.0:
            raise ConfigError(f"--heldout must be in [0, 1), got {self.heldout}")

    def check_data(self) -> None:
        """Each --data folder has a VOC or 'data synth' layout (cheap: no image is read)."""
        from pathlib import Path

        from edgemask.data.detection import voc_root

        self.validate()
        for p in self.data:
            if voc_root(Path(p)) is None:
                raise ConfigError(
                    f"{p} is neither a VOC folder (annotations/*.xml + images/) nor a 'data synth' "
                    "folder with scenes/; pass e.g. ../shared/data/face-mask-voc or an "
                    "'edgemask data synth' output"
                )

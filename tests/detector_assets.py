"""A tiny trained face detector and a bundle that holds it, shared by the export, backend and service tests.

``train_tiny_detector`` trains a narrow ``facedet`` (128x96 input, 4 k
parameters) for a few seconds on generated 640x480 scenes, with the training
code's own augmentation, targets and loss, and writes a run folder in the
layout of ``edgemask detector train``. It is far from a good detector, but
its heatmap has real peaks on faces, so decoded boxes exist and parity of
boxes between precisions can fail for a real reason. ``make_detector_bundle``
exports it with a tiny classifier into one bundle.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

W, H = 128, 96
ARCH_ARGS = {"input_width": W, "input_height": H, "widths": [8, 12, 16, 24, 32], "fpn": 16}
#: a tiny detector is unsure: decode at a lower threshold than the shipped default, so faces get boxes
DECODE = {"score_threshold": 0.2}


def scenes(n: int, seed: int):
    """``n`` DetImage scenes (640x480, 1-4 faces) from the synthetic generator."""
    from edgemask.data.detection import DetImage
    from edgemask.data.synth import render_scene

    out = []
    i = 0
    while len(out) < n:
        img, objs = render_scene(np.random.default_rng([seed, i]), 640, 480, 4)
        i += 1
        if objs:
            out.append(
                DetImage(f"s{i}", img, np.float32([o["box"] for o in objs]).reshape(-1, 4), [o["label"] for o in objs])
            )
    return out


def train_tiny_detector(out: Path, steps: int = 60, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    from edgemask.detector_config import DetTrainConfig
    from edgemask.models import create_model
    from edgemask.models.registry import resolved_args
    from edgemask.training.detector import augment, detector_loss, make_targets
    from edgemask.utils.io import atomic_write_json
    from edgemask.vision.facedet_decode import DecodeParams, to_input

    torch.manual_seed(seed)
    args = resolved_args("facedet", **ARCH_ARGS)
    model = create_model("facedet", **args)
    cfg = DetTrainConfig(data=["synth"], input_width=W, input_height=H, crop_width=W, crop_height=H)
    ims = scenes(16, seed=seed + 100)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        crops, hs, rs, ms = [], [], [], []
        for i in rng.integers(0, len(ims), 8):
            c, b, _ = augment(rng, ims[int(i)], cfg)
            hm, rg, mk = make_targets(b, H // 4, W // 4, 4)
            crops.append(c)
            hs.append(hm)
            rs.append(rg)
            ms.append(mk)
        loss, _ = detector_loss(
            model.raw(torch.from_numpy(to_input(crops))),
            torch.from_numpy(np.stack(hs)),
            torch.from_numpy(np.stack(rs)),
            torch.from_numpy(np.stack(ms)),
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "weights.safetensors"))
    atomic_write_json(
        out / "model.json",
        {
            "arch": "facedet",
            "arch_args": args,
            "task": "detect",
            "stride": 4,
            "input": {
                "width": W,
                "height": H,
                "channel_order": "RGB",
                "range": [0.0, 1.0],
                "letterbox": "top-left, pad 114",
            },
            "decode": DecodeParams.from_dict(DECODE).to_dict(),
            "data": [{"path": "synth", "images": len(ims)}],
            "split": {"seed": 0, "heldout": 0.0, "by": "image"},
            "train_images": len(ims),
            "epochs_done": 1,
        },
    )
    return out


def make_detector_bundle(tmp: Path, detector_run: Path, **options) -> Path:
    """A tiny classifier (untrained, tests/assets.py's ARCH_ARGS) and ``detector_run`` in one bundle."""
    from assets import ARCH_ARGS, untrained_run

    from edgemask.export import export_bundle

    tmp = Path(tmp)
    out_name = options.pop("out_name", "bundle")
    untrained_run(tmp / "run", ARCH_ARGS, seed=0)
    recipe = tmp / "recipe.toml"
    recipe.write_text('source = "synth"\ncount = 12\nstratified = true\nseed = 0\n')
    kw = dict(
        calibration=str(recipe),
        name="withdet",
        golden_count=4,
        opencv_check=True,
        detector=str(detector_run),
        detector_calibration_count=12,
        detector_golden_count=3,
    )
    kw.update(options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return export_bundle(tmp / "run", tmp / out_name, **kw)

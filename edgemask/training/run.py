"""Run directories: what training writes and how every consumer reads it back.

A run dir holds ``weights.safetensors`` (the best weights), ``model.json``
(architecture, its args, input size, class names, preprocessing) and
``metrics.json``. Weights are safetensors, never pickles, so a run from
someone else can be loaded without executing their code.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgemask.config import CROP_MARGIN, CROP_METHOD
from edgemask.errors import ModelError
from edgemask.models import load_weights
from edgemask.models.registry import EdgeMaskNet
from edgemask.utils.io import atomic_path, atomic_write_json

RUN_FORMAT = "edgemask-run"
RUN_VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    """The contents of ``model.json``."""

    arch: str
    arch_args: dict[str, Any]
    input_size: int
    class_names: list[str]
    mean: list[float]
    std: list[float]
    channel_order: str = "RGB"
    path: str = ""
    operating_point: dict[str, Any] | None = None
    crop_margin: float = CROP_MARGIN  # the face-box margin of the training crops (data/crops.py)

    def to_model_json(self) -> dict[str, Any]:
        extra = {"operating_point": self.operating_point} if self.operating_point else {}
        return {
            **extra,
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "arch": self.arch,
            "arch_args": self.arch_args,
            "input_size": self.input_size,
            "input_shape": [3, self.input_size, self.input_size],
            "class_names": self.class_names,
            "preprocessing": {
                # Pixels are RGB floats in [0,1]; mean/std are applied inside the model.
                "channel_order": self.channel_order,
                "input_range": [0.0, 1.0],
                "layout": "NCHW",
                "resize": "cv2.INTER_AREA to input_size x input_size",
                "mean": self.mean,
                "std": self.std,
                "normalization_in_model": True,
                # Face box -> crop (data/crops.py); export copies it into the bundle for `edgemask run`.
                "crop": CROP_METHOD,
                "crop_margin": self.crop_margin,
            },
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def run_info_for(
    model: EdgeMaskNet, arch: str, arch_args: dict[str, Any], class_names: list[str], crop_margin: float = CROP_MARGIN
) -> RunInfo:
    """The RunInfo that describes ``model``, trained on crops cut with ``crop_margin``."""
    return RunInfo(
        arch=arch,
        arch_args=arch_args,
        input_size=int(model.input_size),
        class_names=list(class_names),
        mean=[float(v) for v in model.normalize.mean.flatten()],
        std=[float(v) for v in model.normalize.std.flatten()],
        crop_margin=float(crop_margin),
    )


def save_run_files(
    run_dir: str | Path, model: torch.nn.Module, info: RunInfo, operating_point: dict[str, Any] | None = None
) -> None:
    """Write ``weights.safetensors`` and ``model.json`` atomically.

    ``operating_point`` (a logit bias already folded into the weights) is
    recorded in model.json for the reader's information.
    """
    from dataclasses import replace

    from safetensors.torch import save_file

    if operating_point is not None:
        info = replace(info, operating_point=operating_point)
    run_dir = Path(run_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / "weights.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": RUN_FORMAT, "arch": info.arch})
    atomic_write_json(run_dir / "model.json", info.to_model_json())


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Parse and validate ``model.json`` of a run dir."""
    run_dir = Path(run_dir)
    mj = run_dir / "model.json"
    if not run_dir.is_dir():
        raise ModelError(f"run directory {run_dir} does not exist; pass the --out folder of 'edgemask train'")
    if not mj.is_file():
        raise ModelError(f"{mj} is missing; {run_dir} is not a finished training run (train it, or --resume it)")
    fix = "re-run 'edgemask train' to regenerate it, or copy the whole run folder again"
    try:
        d = json.loads(mj.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ModelError(f"{mj} is not valid JSON ({type(e).__name__}); {fix}") from None
    except RecursionError:
        raise ModelError(f"{mj} nests too deeply to be a model.json; {fix}") from None
    if not isinstance(d, dict):
        raise ModelError(f"{mj} holds a JSON {_json_kind(d)}, not an object; {fix}")
    if d.get("format") != RUN_FORMAT:
        raise ModelError(f"{mj} has format {d.get('format')!r}, expected {RUN_FORMAT!r}; {fix}")

    def need(obj: dict, key: str, typ: type, where: str = "") -> Any:
        name = f"{where}{key}"
        if key not in obj:
            raise ModelError(f"{mj} lacks the field {name!r}; {fix}")
        v = obj[key]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            want = {str: "a string", dict: "an object", list: "a list", int: "a whole number"}[typ]
            raise ModelError(f"{mj} field {name!r} should be {want}, got the {_json_kind(v)} {str(v)[:40]!r}; {fix}")
        return v

    arch = need(d, "arch", str)
    arch_args = need(d, "arch_args", dict)
    size = need(d, "input_size", int)
    if not 8 <= size <= 4096:
        raise ModelError(f"{mj} field 'input_size' is {size}, not a side in pixels (8..4096); {fix}")
    names = need(d, "class_names", list)
    if len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise ModelError(f"{mj} field 'class_names' should list at least two class names, got {str(names)[:60]}; {fix}")
    pre = need(d, "preprocessing", dict)
    mean, std = need(pre, "mean", list, "preprocessing."), need(pre, "std", list, "preprocessing.")
    for k, vals in (("mean", mean), ("std", std)):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            raise ModelError(f"{mj} field 'preprocessing.{k}' should hold numbers, got {str(vals)[:60]}; {fix}")
    order = pre.get("channel_order", "RGB")
    if order not in ("RGB", "BGR"):
        raise ModelError(f'{mj} field \'preprocessing.channel_order\' should be "RGB" or "BGR", got {order!r}; {fix}')
    margin = pre.get("crop_margin", CROP_MARGIN)  # runs older than the field were cut with the default
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 2.0:
        raise ModelError(
            f"{mj} field 'preprocessing.crop_margin' should be a number from 0 to 2, got {margin!r}; {fix}"
        )
    return RunInfo(
        arch=arch,
        arch_args=dict(arch_args),
        input_size=size,
        class_names=list(names),
        mean=[float(x) for x in mean],
        std=[float(x) for x in std],
        channel_order=order,
        path=str(run_dir),
        crop_margin=float(margin),
    )


def _json_kind(v: Any) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[EdgeMaskNet, RunInfo]:
    """Rebuild the model of a run dir with its best weights, in eval mode.

    Raises:
        ModelError: missing/malformed files, or weights that do not fit the architecture.
    """
    info = read_run_info(run_dir)
    model = load_weights(
        info.arch,
        info.arch_args,
        Path(run_dir) / "weights.safetensors",
        fix="re-run 'edgemask train', or copy the whole run folder again",
        described_by=Path(run_dir) / "model.json",
    )
    model.to(device).eval()
    return model, info

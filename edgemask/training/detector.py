"""Train and evaluate the face detector (``edgemask detector train|eval``).

Run folder::

    OUT/model.json          arch, arch_args, task "detect", decode parameters, data and split
    OUT/weights.safetensors float weights (written atomically after every epoch)
    OUT/state.pt            optimizer + epoch, for --resume (weights_only load)
    OUT/metrics.json        held-out recall per class x size, false boxes per image, AP50
    OUT/config.json         the resolved DetTrainConfig

Targets follow CenterNet: a Gaussian peak at each face centre on the stride-4
heatmap (penalty-reduced focal loss), log width/height and the sub-cell
offset at the centre cell (L1). Augmentation: scale jitter around the
letterbox scale, random crops (biased to hold a face), flips, HSV colour,
blur, grey, and JPEG-like noise.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from edgemask.data.detection import DetImage, read_detection_set, split_images
from edgemask.detector_config import DetTrainConfig
from edgemask.errors import ConfigError
from edgemask.utils.io import atomic_path, atomic_write_json
from edgemask.vision.facedet_decode import (
    DecodeParams,
    check_decode,
    detection_metrics,
    merge_passes,
    pass_canvases,
    to_input,
)

ProgressFn = Callable[[int, int, Dict[str, Any]], None]


# --------------------------------------------------------------------------- augmentation + targets


def _colour(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    hsv[..., 2] = hsv[..., 2] * rng.uniform(0.55, 1.35) + rng.uniform(-20, 20)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.2:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < 0.15:
        g = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        out = np.repeat(g[:, :, None], 3, axis=2)
    if rng.random() < 0.3:
        out = np.clip(out + rng.normal(0, rng.uniform(2, 8), out.shape), 0, 255).astype(np.uint8)
    return out


def augment(rng: np.random.Generator, im: DetImage, cfg: DetTrainConfig) -> tuple:
    """One random training crop: (uint8 (crop_h, crop_w, 3), boxes (G, 4) in crop pixels, their G labels)."""
    import cv2

    h, w = im.rgb.shape[:2]
    base = min(cfg.input_width / w, cfg.input_height / h)  # what the letterbox does at inference
    s = base * math.exp(rng.uniform(math.log(0.6), math.log(1.7)))
    nw, nh = max(8, int(round(w * s))), max(8, int(round(h * s)))
    img = cv2.resize(im.rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    boxes = im.boxes * np.float32([nw / w, nh / h, nw / w, nh / h])
    labels = np.asarray(im.labels, dtype=object)
    cw, ch = cfg.crop_width, cfg.crop_height
    # crop origin: around a random face 70 % of the time, anywhere otherwise; may go past the edges (padding)
    if len(boxes) and rng.random() < 0.7:
        b = boxes[int(rng.integers(len(boxes)))]
        cx, cy = rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])
        x0, y0 = int(cx - rng.uniform(0.1, 0.9) * cw), int(cy - rng.uniform(0.1, 0.9) * ch)
    else:
        x0 = int(rng.integers(min(0, nw - cw), max(0, nw - cw) + 1))
        y0 = int(rng.integers(min(0, nh - ch), max(0, nh - ch) + 1))
    canvas = np.full((ch, cw, 3), int(rng.integers(0, 256)), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(nw, x0 + cw), min(nh, y0 + ch)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    boxes = boxes - np.float32([x0, y0, x0, y0])
    if len(boxes):
        clipped = boxes.copy()
        clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, cw)
        clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, ch)
        area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 1e-6, None), axis=1)
        vis = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1) / area
        boxes, labels = clipped[vis >= 0.5], labels[vis >= 0.5]
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = cw - boxes[:, [2, 0]]
    return _colour(rng, np.ascontiguousarray(canvas)), boxes, list(labels)


def make_targets(
    boxes: np.ndarray, out_h: int, out_w: int, stride: int, weights: Optional[Sequence[float]] = None
) -> tuple:
    """CenterNet targets of one crop: heat (h, w), reg (4, h, w), reg mask (h, w).

    The mask holds each face's loss weight at its centre cell (1 unless ``weights`` gives one per box).
    """
    heat = np.zeros((out_h, out_w), np.float32)
    reg = np.zeros((4, out_h, out_w), np.float32)
    mask = np.zeros((out_h, out_w), np.float32)
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        bw, bh = (x1 - x0) / stride, (y1 - y0) / stride
        if min(bw, bh) < 0.5:  # under 2 px: nothing to learn
            continue
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        ix, iy = min(out_w - 1, int(cx)), min(out_h - 1, int(cy))
        sx, sy = max(0.5, bw / 6.0), max(0.5, bh / 6.0)
        g = np.exp(-((xx - ix) ** 2) / (2 * sx * sx) - ((yy - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat, g, out=heat)
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = (math.log(bw), math.log(bh), cx - ix, cy - iy)
        mask[iy, ix] = 1.0 if weights is None else float(weights[k])
    return heat, reg, mask


def detector_loss(raw, heat, reg, mask):
    """Focal loss on the heatmap + L1 on size/offset at face centres (torch tensors).

    ``mask`` is each face's weight at its centre cell (see :func:`make_targets`); it scales both the face's
    positive heatmap term and its box term, normalised by the number of faces.
    """
    import torch
    import torch.nn.functional as F

    logit = raw[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    n = pos.sum().clamp(min=1.0)
    pos_loss = -(F.logsigmoid(logit) * (1 - p) ** 2 * pos * torch.where(mask > 0, mask, torch.ones_like(mask))).sum()
    neg_loss = -(F.logsigmoid(-logit) * p**2 * (1 - heat) ** 4 * (1 - pos)).sum()
    hm = (pos_loss + neg_loss) / n
    pred = torch.cat([raw[:, 1:3], torch.sigmoid(raw[:, 3:5])], dim=1)
    l1 = (torch.abs(pred - reg) * mask[:, None]).sum() / n
    return hm + l1, {"heat": float(hm.detach()), "box": float(l1.detach())}


# --------------------------------------------------------------------------- run folder


def load_detector_run(run_dir: str | Path):
    """(model in eval mode, model.json dict) of a detector run folder."""
    from edgemask.errors import ModelError
    from edgemask.models import load_weights

    run = Path(run_dir)
    mj = run / "model.json"
    if not mj.is_file() or not (run / "weights.safetensors").is_file():
        raise ModelError(
            f"{run} is not a detector run (no model.json + weights.safetensors); "
            "make one with 'edgemask detector train --data ... --out RUN'"
        )
    fix = "re-run 'edgemask detector train' to regenerate it, or copy the whole run folder again"
    try:
        info = json.loads(mj.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"{mj} is not valid JSON ({type(e).__name__}); {fix}") from None
    if not isinstance(info, dict):
        raise ModelError(f"{mj} holds a JSON {type(info).__name__}, not an object; {fix}")
    if info.get("task") != "detect":
        raise ModelError(
            f"{run} holds a {info.get('task', 'classify')} model, not a face detector; "
            "pass a run of 'edgemask detector train'"
        )
    if not isinstance(info.get("arch"), str) or not isinstance(info.get("arch_args"), dict):
        raise ModelError(f"{mj} lacks or mistypes 'arch' (a string) / 'arch_args' (an object); {fix}")
    model = load_weights(info["arch"], info["arch_args"], run / "weights.safetensors", fix=fix, described_by=mj)
    return model.eval(), info


def torch_heads(model, canvases: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Heads (N, 5, h, w) of letterboxed uint8 canvases through the torch model."""
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(canvases), batch_size):
            outs.append(model(torch.from_numpy(to_input(canvases[i : i + batch_size]))).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 5, 1, 1), np.float32)


def evaluate_images(
    head_fn: Callable[[List[np.ndarray]], np.ndarray],
    images: Sequence[DetImage],
    width: int,
    height: int,
    params: DecodeParams,
    batch_size: int = 16,
) -> Dict[str, Any]:
    """Detect on every image through ``head_fn`` as a device would (letterbox, coarse pass if the decode
    parameters ask for one; see :func:`pass_canvases`) and score the boxes (see detection_metrics)."""
    samples = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        passes = [pass_canvases(im.rgb, width, height, params) for im in chunk]
        heads = head_fn([c for canvases, _ in passes for c in canvases])
        k = 0
        for im, (canvases, scales) in zip(chunk, passes):
            h, w = im.rgb.shape[:2]
            b, s = merge_passes(heads[k : k + len(canvases)], scales, params, (w, h))
            k += len(canvases)
            samples.append((im.boxes, im.labels, b, s))
    return detection_metrics(samples)


def train_detector(cfg: DetTrainConfig, progress: Optional[ProgressFn] = None) -> Dict[str, Any]:
    """Train a detector into ``cfg.out``; returns the held-out metrics (also in metrics.json)."""
    import torch
    from safetensors.torch import save_file

    from edgemask.config import num_threads
    from edgemask.models import create_model, get_model_spec
    from edgemask.models.registry import resolved_args

    cfg.validate()
    spec = get_model_spec(cfg.arch)
    if spec.task != "detect":
        raise ConfigError(f"--arch {cfg.arch} is a classifier; choose a detector: facedet")
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(int(cfg.threads or num_threads()))
    sets = {p: read_detection_set(p) for p in cfg.data}
    train: List[DetImage] = []
    held: Dict[str, List[DetImage]] = {}
    for p, ims in sets.items():
        tr, he = split_images(ims, cfg.split_seed, cfg.heldout)
        train += tr
        held[p] = he
    if not train:
        raise ConfigError("no training image left after the held-out split; lower --heldout or add data")
    arch_args = resolved_args(cfg.arch, input_width=cfg.input_width, input_height=cfg.input_height)
    model = create_model(cfg.arch, **arch_args)
    stride = int(model.stride)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    sched = TimedSchedule(cfg.lr, total, 60.0 * cfg.max_minutes)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    start_epoch = _starting_point(cfg, arch_args, model, opt, sched, state_path)
    info = _run_info(cfg, arch_args, stride, sets, len(train))
    atomic_write_json(out / "config.json", asdict(cfg))
    rng = np.random.default_rng([cfg.seed, start_epoch])
    t_start = time.monotonic()
    oh, ow = cfg.crop_height // stride, cfg.crop_width // stride
    step = start_epoch * steps_per_epoch
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = _epoch_order(rng, train, cfg.image_weights)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            if len(idx) < 2:
                idx = rng.integers(0, len(train), 2)
            crops, hs, rs, ms = [], [], [], []
            for i in idx:
                c, b, labels = augment(rng, train[int(i)], cfg)
                fw = [float(cfg.face_weights.get(lab, 1.0)) for lab in labels] if cfg.face_weights else None
                hm, rg, mk = make_targets(b, oh, ow, stride, fw)
                crops.append(c)
                hs.append(hm)
                rs.append(rg)
                ms.append(mk)
            x = torch.from_numpy(to_input(crops))
            loss, parts = detector_loss(
                model.raw(x),
                torch.from_numpy(np.stack(hs)),
                torch.from_numpy(np.stack(rs)),
                torch.from_numpy(np.stack(ms)),
            )
            for g in opt.param_groups:
                g["lr"] = sched.lr()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total, {"epoch": epoch + 1, "loss": float(loss.detach()), **parts})
        _save(model, opt, sched, epoch + 1, out, info, save_file)
        if sched.done():
            break
    model.eval()
    params = DecodeParams.from_dict(info["decode"])
    metrics: Dict[str, Any] = {
        "epochs_done": epoch + 1,
        "train_seconds": round(time.monotonic() - t_start, 1),
        "heldout": {},
    }
    for p, ims in held.items():
        if ims:
            metrics["heldout"][Path(p).name] = evaluate_images(
                lambda c: torch_heads(model, c), ims, cfg.input_width, cfg.input_height, params
            )
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


#: arch_args that set the input size only (no weight depends on them)
_INPUT_ARGS = ("input_width", "input_height")


def _starting_point(cfg: DetTrainConfig, arch_args: Dict[str, Any], model, opt, sched, state_path: Path) -> int:
    """Load ``--resume`` state or ``--init`` weights into ``model`` (and the optimizer); the epoch to start at."""
    import torch

    if cfg.resume and state_path.is_file():
        st = torch.load(state_path, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        return int(st["epoch"])
    if cfg.init:
        from edgemask.models import load_weights

        init_info = json.loads((Path(cfg.init) / "model.json").read_text(encoding="utf-8"))
        # The detector is fully convolutional: the input size is not in its weights, so a fine-tune may change it.
        shape_args = {k: v for k, v in json.loads(json.dumps(arch_args)).items() if k not in _INPUT_ARGS}
        init_shape = {k: v for k, v in (init_info.get("arch_args") or {}).items() if k not in _INPUT_ARGS}
        if init_info.get("arch") != cfg.arch or init_shape != shape_args:
            raise ConfigError(
                f"--init {cfg.init} is a {init_info.get('arch')} with other layer settings; it must match --arch "
                f"{cfg.arch} and its widths (the input size may differ)"
            )
        fix = "pass a run of 'edgemask detector train' with the same --arch"
        # into the model the optimizer already holds (a new module would leave the optimizer on the old one)
        init_args = {**arch_args, **{k: init_info["arch_args"][k] for k in _INPUT_ARGS if k in init_info["arch_args"]}}
        model.load_state_dict(
            load_weights(cfg.arch, init_args, Path(cfg.init) / "weights.safetensors", fix=fix).state_dict()
        )
    return 0


def _run_info(cfg: DetTrainConfig, arch_args: Dict[str, Any], stride: int, sets: Dict[str, Any], n_train: int) -> dict:
    """model.json of a detector run: what builds, feeds and decodes the model, and what it was trained on."""
    return {
        "arch": cfg.arch,
        "arch_args": arch_args,
        "task": "detect",
        "stride": stride,
        "input": {
            "width": cfg.input_width,
            "height": cfg.input_height,
            "channel_order": "RGB",
            "range": [0.0, 1.0],
            "letterbox": "top-left, pad 114",
        },
        "decode": DecodeParams.from_dict(cfg.decode).to_dict(),
        "data": [{"path": Path(p).name, "images": len(v)} for p, v in sets.items()],
        "split": {"seed": cfg.split_seed, "heldout": cfg.heldout, "by": "image"},
        "train_images": n_train,
        **({"init": Path(cfg.init).name, "image_weights": dict(cfg.image_weights)} if cfg.init else {}),
        **({"face_weights": dict(cfg.face_weights)} if cfg.face_weights else {}),
    }


def _epoch_order(rng: np.random.Generator, train: Sequence[DetImage], image_weights: Dict[str, float]) -> np.ndarray:
    """One epoch's image order: a permutation, or a weighted draw (with replacement) under ``image_weights``."""
    if not image_weights:
        return rng.permutation(len(train))
    w = np.asarray([max([1.0] + [float(image_weights.get(lab, 1.0)) for lab in im.labels]) for im in train])
    return rng.choice(len(train), size=len(train), replace=True, p=w / w.sum())


class TimedSchedule:
    """Warm-up then cosine decay over whichever ends first: ``total_steps`` or ``budget_s`` seconds of training.

    A run stopped by ``--max-minutes`` must still end at a low learning rate
    (a one-cycle schedule cut in the middle leaves the weights at their
    noisiest), so the schedule's progress is the larger of the step fraction
    and the time fraction. The time spent so far travels in state.pt, so
    ``--resume`` keeps the same budget.
    """

    def __init__(self, peak_lr: float, total_steps: int, budget_s: float = 0.0, warmup: float = 0.1):
        self.peak_lr, self.total_steps, self.budget_s, self.warmup = (
            float(peak_lr),
            max(1, total_steps),
            budget_s,
            warmup,
        )
        self.steps = 0
        self.spent_s = 0.0
        self._t0 = time.monotonic()

    def progress(self) -> float:
        p = self.steps / self.total_steps
        if self.budget_s > 0:
            p = max(p, (self.spent_s + time.monotonic() - self._t0) / self.budget_s)
        return min(1.0, p)

    def lr(self) -> float:
        p = self.progress()
        if p < self.warmup:
            return self.peak_lr * (0.04 + 0.96 * p / self.warmup)
        return self.peak_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * (p - self.warmup) / (1.0 - self.warmup))))

    def step(self) -> None:
        self.steps += 1

    def done(self) -> bool:
        return self.progress() >= 1.0

    def state_dict(self) -> Dict[str, float]:
        return {"steps": self.steps, "spent_s": self.spent_s + time.monotonic() - self._t0}

    def load_state_dict(self, st: Dict[str, Any]) -> None:
        self.steps = int(st.get("steps", 0))
        self.spent_s = float(st.get("spent_s", 0.0))
        self._t0 = time.monotonic()


def _save(model, opt, sched, epoch: int, out: Path, info: Dict[str, Any], save_file) -> None:
    import torch

    with atomic_path(out / "weights.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(out / "state.pt") as tmp:
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch}, tmp
        )
    atomic_write_json(out / "model.json", {**info, "epochs_done": epoch})


def evaluate_detector_run(
    run_dir: str | Path, data: Sequence[str], split: str = "auto", decode: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """Metrics of a detector run on each data set.

    ``split``: ``heldout`` (the run's held-out images), ``all``, or ``auto``
    (held-out for a data set the run trained on, by folder name; all otherwise).
    ``decode``: decode parameters to use instead of the run's (e.g. another ``score_threshold``).
    """
    if split not in ("auto", "heldout", "all"):
        raise ConfigError(f"--split must be auto, heldout or all, got {split!r}")
    model, info = load_detector_run(run_dir)
    trained_on = {d["path"] for d in info.get("data", [])}
    sp = info.get("split", {})
    params = DecodeParams.from_dict({**info["decode"], **(decode or {})})
    check_decode(params)
    res: Dict[str, Any] = {}
    for p in data:
        ims = read_detection_set(p)
        use_held = split == "heldout" or (split == "auto" and Path(p).name in trained_on)
        if use_held:
            ims = split_images(ims, int(sp.get("seed", 0)), float(sp.get("heldout", 0.2)))[1]
        if not ims:
            raise ConfigError(f"{p} has no image in the held-out split; pass --split all")
        m = evaluate_images(
            lambda c: torch_heads(model, c), ims, info["input"]["width"], info["input"]["height"], params
        )
        m["split"] = "heldout" if use_held else "all"
        res[Path(p).name] = m
    return res


__all__ = [
    "DetTrainConfig",
    "augment",
    "detector_loss",
    "evaluate_detector_run",
    "evaluate_images",
    "load_detector_run",
    "make_targets",
    "torch_heads",
    "train_detector",
]

"""``train(config) -> TrainResult``: AdamW + warmup/cosine, early stopping, resumable.

Defaults suit a few thousand real crops with a rare class: a capped balanced
sampler, early stopping on validation loss (patience 8) with the learning
rate cut after 3 flat epochs, and an operating point chosen on validation
(see :mod:`edgemask.training.operating_point`).

The whole (small) dataset lives in memory as one uint8 tensor (N,S,S,3);
batches are converted and augmented on the fly, which on 2 cores is much
faster than a DataLoader with worker processes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import torch
from torch import nn

from edgemask.config import TrainConfig, num_threads
from edgemask.errors import ConfigError, ModelError
from edgemask.models import create_model
from edgemask.models.registry import resolved_args
from edgemask.progress import NO_PROGRESS, Progress, staged
from edgemask.training.metrics import classification_metrics
from edgemask.training.run import run_info_for, save_run_files
from edgemask.utils.io import atomic_path, atomic_write_json
from edgemask.utils.results import FolderResult
from edgemask.vision.detectors import face_finder  # --crop-faces: data never imports vision, so it is handed in


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of a uint8 NHWC image tensor, in eval mode, batched: (N,S,S,3) -> (N,K)."""
    from edgemask.data.transforms import to_tensor

    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model(to_tensor(images[i : i + batch_size])))
    return torch.cat(out) if out else torch.empty(0, 0)


def _lr_lambda(total_steps: int, warmup_steps: int, scale: dict[str, float] | None = None) -> Callable[[int], float]:
    # scale["lr_scale"] is the plateau factor (1, then 0.3, 0.09, ...), kept in the training state.
    def f(step: int) -> float:
        k = scale["lr_scale"] if scale is not None else 1.0
        if step < warmup_steps:
            return k * (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return k * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def _save_checkpoint(run_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Model + optimizer tensors in safetensors, the rest in JSON: nothing pickled."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for name, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{idx}.{name}"] = t.detach().contiguous().cpu()
    with atomic_path(run_dir / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(run_dir / "checkpoint.json", {**state, "param_groups": osd["param_groups"]})


def _load_checkpoint(run_dir: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    ck, cj = run_dir / "checkpoint.safetensors", run_dir / "checkpoint.json"
    if not ck.is_file() or not cj.is_file():
        raise ModelError(f"no checkpoint in {run_dir} to resume from; drop --resume to start a new run")
    fix = f"start the run again with --overwrite ({run_dir}/weights.safetensors still holds the best weights so far)"
    try:
        tensors = load_file(str(ck))
    except Exception as e:  # safetensors raises its own error types on a truncated/garbage file
        raise ModelError(f"checkpoint {ck} is damaged or truncated ({type(e).__name__}); {fix}") from None
    try:
        state = json.loads(cj.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"checkpoint {cj} is not valid JSON ({e}); {fix}") from None
    need = {
        "epoch": int,
        "best_acc": float,
        "best_epoch": int,
        "bad_epochs": int,
        "history": list,
        "seconds": float,
        "param_groups": list,
    }
    if not isinstance(state, dict) or any(
        not isinstance(state.get(k), t if t is not float else (int, float)) or isinstance(state.get(k), bool)
        for k, t in need.items()
    ):
        raise ModelError(f"checkpoint {cj} lacks or mistypes its fields ({', '.join(need)}); {fix}")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = v
        opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"checkpoint in {run_dir} does not fit this run's model ({first[:120]}); {fix}") from None
    return state


def _epochs_done(run_dir: Path) -> int:
    """How many epochs the checkpoint of a run records (0 when unreadable)."""
    try:
        n = json.loads((run_dir / "checkpoint.json").read_text()).get("epoch", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return n if isinstance(n, int) else 0


def _finished(run_dir: Path) -> bool:
    """True when metrics.json reports the epochs the checkpoint holds (the run ended)."""
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    done = m.get("epochs_run") if isinstance(m, dict) else None
    return isinstance(done, int) and done >= _epochs_done(run_dir)


def _check_config(cfg: TrainConfig) -> None:
    if not cfg.data:
        raise ConfigError(
            "no training data given; pass --data DIR (a 'data synth' folder, an ImageFolder tree or a VOC folder)"
        )
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"--epochs and --batch-size must be ≥ 1 (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.size < 16:
        raise ConfigError(f"--size {cfg.size} is too small; use 16 or more (64 is the default)")
    if not (cfg.lr > 0):
        raise ConfigError(f"--lr must be positive (got {cfg.lr})")
    if not (cfg.balance_cap >= 1):
        raise ConfigError(f"--balance-cap must be at least 1 (1 = no oversampling; got {cfg.balance_cap})")
    if isinstance(cfg.max_image_pixels, bool) or not isinstance(cfg.max_image_pixels, int) or cfg.max_image_pixels < 1:
        raise ConfigError(
            f"--max-image-pixels must be a whole number ≥ 1, e.g. 50000000 (got {cfg.max_image_pixels!r})"
        )
    if not (0 < cfg.max_false_positive <= 1):
        raise ConfigError(f"--max-false-positive must be in (0, 1], e.g. 0.05 (got {cfg.max_false_positive})")
    if not (0 <= cfg.heldout < 1):
        raise ConfigError(f"--heldout must be in [0, 1), e.g. 0.2 as in 'detector train' (got {cfg.heldout})")
    for extra in cfg.extra_train:
        if not Path(extra).exists():
            raise ConfigError(
                f"--extra-train {extra} does not exist; pass a dataset folder (synth, ImageFolder or VOC)"
            )


@dataclass
class TrainResult(FolderResult):
    """What :func:`train` wrote and measured (also saved as ``metrics.json``).

    Stands for the run folder where a path is expected (``Path(result)``,
    ``result / "model.json"``), as ``train`` returned before this type existed.
    """

    run_dir: Path  # the run folder: weights.safetensors, model.json, metrics.json, ...
    metrics: Dict[str, Any]  # metrics.json as written: best_epoch, epochs_run, stopped, val/test, ...

    @property
    def folder(self) -> Path:
        return self.run_dir

    @property
    def best_epoch(self) -> int:  # epoch whose weights were kept (lowest validation loss)
        return int(self.metrics["best_epoch"])

    @property
    def epochs_run(self) -> int:  # epochs trained, resumed ones included
        return int(self.metrics["epochs_run"])

    @property
    def stopped(self) -> str:  # why training ended: epochs | early_stopping | target_accuracy | max_minutes
        return str(self.metrics["stopped"])

    @property
    def splits(self) -> Dict[str, Dict[str, Any]]:  # classification metrics per split present ("val", "test")
        return {s: self.metrics[s] for s in ("val", "test") if s in self.metrics}


def train(cfg: TrainConfig, progress: Progress | None = None, resume: bool = False) -> TrainResult:
    """Train a classifier and write its run directory.

    Args:
        cfg: the resolved training config (saved as ``config.json``).
        progress: ``progress(stage, done, total, note)``; stages ``load``,
            ``epoch N`` (steps of epoch N) and ``epoch`` (epochs done).
        resume: continue from ``checkpoint.*`` in ``cfg.out``.

    Returns:
        A :class:`TrainResult`. The run directory holds ``weights.safetensors``
        (best validation accuracy), ``model.json``, ``metrics.json``,
        ``config.json``, ``history.json`` and ``splits.json``.

    Raises:
        EdgemaskError: bad data or options. On Ctrl-C a checkpoint is saved
        and ``KeyboardInterrupt`` propagates.
    """
    from edgemask.data import load_dataset
    from edgemask.data.splits import split_heldout_photos, split_indices

    progress = progress or NO_PROGRESS
    _check_config(cfg)
    out = Path(cfg.out)
    cfg, raised = _resolve_config(cfg, out, resume)
    torch.set_num_threads(num_threads())
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    ds = load_dataset(
        cfg.data,
        size=cfg.size,
        label_map=cfg.label_map or None,
        crop_faces=cfg.crop_faces,
        find_faces=face_finder(),
        margin=cfg.crop_margin,
        progress=staged(progress, "load"),
        max_pixels=cfg.max_image_pixels,
    )
    if len(ds.class_names) < 2:
        raise ConfigError(f"{cfg.data} has only the class {ds.class_names}; a classifier needs at least two")
    if cfg.heldout:
        # --split-seed fixes train/val too, so runs of several --seed share one validation set and compare on it
        splits = split_heldout_photos(
            ds.labels, ds.groups, ds.sources, cfg.data, cfg.split, cfg.split_seed, cfg.heldout, cfg.split_seed
        )
    else:
        splits = split_indices(ds.labels, ds.groups, fractions=cfg.split, seed=cfg.seed)
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise ConfigError(f"{cfg.data} has too few images ({len(ds.labels)}) for a train/val split; add data")

    if cfg.extra_train:
        ds, splits = _with_extra_train(ds, splits, cfg, progress)
    images = torch.from_numpy(ds.images)  # (N,S,S,3) uint8
    labels = torch.from_numpy(ds.labels.astype(np.int64))
    k = len(ds.class_names)
    arch_args = resolved_args(cfg.arch, **{**cfg.arch_args, "num_classes": k, "input_size": cfg.size})
    model = create_model(cfg.arch, **arch_args)
    info = run_info_for(model, cfg.arch, arch_args, ds.class_names, crop_margin=cfg.crop_margin)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "epoch": 0,
        "best_acc": -1.0,
        "best_loss": 1e30,
        "best_epoch": 0,
        "bad_epochs": 0,
        "lr_scale": 1.0,
        "history": [],
        "seconds": 0.0,
    }
    if resume:
        state = {**state, **_load_checkpoint(out, model, opt)}
        if raised:  # only once the checkpoint is known good: a refused resume changes nothing
            atomic_write_json(out / "config.json", cfg.to_dict())
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _lr_lambda(total, warm, state), last_epoch=state["epoch"] * steps_per_epoch - 1
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, warm, state))
        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(
            out / "splits.json",
            {
                "dataset": str(cfg.data),
                "format": ds.format,
                "class_names": ds.class_names,
                "fingerprint": _fingerprint(ds.groups),
                **{name: [ds.sources[i] for i in idx] for name, idx in splits.items()},
            },
        )
    fit = _Fit(cfg, out, model, opt, sched, info, images, labels, splits, ds.labels, k, progress)
    try:
        stop_reason = fit.run(state, steps_per_epoch)
    except KeyboardInterrupt:
        _save_checkpoint(out, model, opt, state)
        raise
    metrics = _final_metrics(cfg, out, info, images, ds, splits, state, stop_reason)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "history.json", state["history"])
    return TrainResult(run_dir=out, metrics=metrics)


def _with_extra_train(ds: Any, splits: dict, cfg: TrainConfig, progress: Progress) -> tuple[Any, dict]:
    """``ds`` with the crops of every ``cfg.extra_train`` dataset appended, their indices in the train split only.

    The extra sets are read with ``ds``'s class names (a label outside them is an error, one line); their
    sources are prefixed ``extra<k>:`` in splits.json.
    """
    import dataclasses

    from edgemask.data import load_dataset

    images, labels, sources, groups = [ds.images], [ds.labels], list(ds.sources), list(ds.groups)
    train = [splits["train"]]
    n = len(ds.labels)
    for k, path in enumerate(cfg.extra_train):
        if not Path(path).exists():
            raise ConfigError(f"--extra-train {path} does not exist; pass a dataset folder (synth, ImageFolder or VOC)")
        extra = load_dataset(
            path,
            size=cfg.size,
            label_map=cfg.label_map or None,
            class_names=ds.class_names,
            find_faces=face_finder(),
            margin=cfg.crop_margin,
            progress=staged(progress, "load"),
            max_pixels=cfg.max_image_pixels,
        )
        images.append(extra.images)
        labels.append(extra.labels)
        sources += [f"extra{k}:{s}" for s in extra.sources]
        groups += [f"extra{k}:{g}" for g in extra.groups]
        train.append(np.arange(n, n + len(extra.labels), dtype=splits["train"].dtype))
        n += len(extra.labels)
    merged = dataclasses.replace(
        ds, images=np.concatenate(images), labels=np.concatenate(labels), sources=sources, groups=groups
    )
    return merged, {**splits, "train": np.concatenate(train)}


def _resolve_config(cfg: TrainConfig, out: Path, resume: bool) -> tuple[TrainConfig, bool]:
    """The config to train with, and whether a resume raised the epoch count; refuses what must not run."""
    raised = False
    if resume:
        saved = out / "config.json"
        if not saved.is_file():
            raise ModelError(f"cannot resume: {saved} not found; drop --resume to start a new run in {out}")
        try:
            prev = TrainConfig.from_dict(json.loads(saved.read_text()))
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ModelError(
                f"cannot resume: {saved} is damaged ({type(e).__name__}); start again with --overwrite"
            ) from None
        # The data, model and split must be those of the interrupted run;
        # only the schedule knobs may change. cfg.epochs raises the count only
        # when it is larger than the saved one (the CLI passes 1 when --epochs
        # is not given, which keeps the saved count).
        epochs = cfg.epochs if cfg.epochs > prev.epochs else prev.epochs
        if epochs == prev.epochs and _finished(out):
            raise ConfigError(
                f"the run in {out} is finished ({_epochs_done(out)} of {prev.epochs} epochs ran); "
                f"pass --epochs N with N above {prev.epochs} to train it further, or evaluate it "
                f"with 'edgemask eval {out} --data DIR'"
            )
        cfg = TrainConfig(**{**prev.__dict__, "epochs": epochs, "max_minutes": cfg.max_minutes, "out": cfg.out})
        raised = epochs != prev.epochs
    elif (out / "model.json").exists() or (out / "checkpoint.json").exists():
        if not cfg.overwrite:
            raise ConfigError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --out"
            )
    if not resume:
        # Stored resolved, so that '--resume' works from any working directory.
        resolved = {"data": str(Path(cfg.data).expanduser().resolve())}
        resolved["extra_train"] = tuple(str(Path(p).expanduser().resolve()) for p in cfg.extra_train)
        cfg = TrainConfig(**{**cfg.__dict__, **resolved})
    return cfg, raised


class _Fit:
    """The epoch loop of :func:`train`: what one epoch needs, held once instead of passed around."""

    def __init__(
        self,
        cfg: TrainConfig,
        out: Path,
        model: nn.Module,
        opt: Any,
        sched: Any,
        info: Any,
        images: torch.Tensor,
        labels: torch.Tensor,
        splits: dict,
        ds_labels: np.ndarray,
        k: int,
        progress: Progress,
    ):
        from edgemask.training.operating_point import sample_weights

        self.cfg, self.out, self.model, self.opt, self.sched, self.info = cfg, out, model, opt, sched, info
        self.images, self.labels, self.progress = images, labels, progress
        self.tr = torch.from_numpy(splits["train"])
        self.val_idx = torch.from_numpy(splits["val"])
        # Capped balanced sampler: a rare class is drawn up to balance_cap times
        # its natural share (inverse-frequency loss weights flooded the common
        # classes with false positives on real sets). All ones → plain shuffling.
        draw = sample_weights(ds_labels[splits["train"]], k, cfg.balance_cap if cfg.balance else 1.0)
        self.oversample = bool(np.any(draw != 1.0))
        self.draw_t = torch.from_numpy(draw)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def run(self, state: dict[str, Any], steps_per_epoch: int) -> str:
        """Train from ``state["epoch"] + 1``, updating ``state``; returns why it stopped."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + state["epoch"])
        t0 = time.perf_counter() - state["seconds"]
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            run_loss, seen = self._epoch(epoch, gen, steps_per_epoch)
            val_logits = predict_logits(self.model, self.images[self.val_idx])
            val_y = self.labels[self.val_idx]
            val_acc = float((val_logits.argmax(1) == val_y).float().mean())
            # Plain cross-entropy on the natural class mix: smoother than
            # accuracy on a few hundred crops, so early stopping keeps the
            # right epoch instead of a lucky one.
            val_loss = float(nn.functional.cross_entropy(val_logits, val_y))
            state["epoch"] = epoch
            state["seconds"] = time.perf_counter() - t0
            state["history"].append(
                {
                    "epoch": epoch,
                    "train_loss": run_loss / max(1, seen),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "lr": self.sched.get_last_lr()[0],
                    "seconds": round(state["seconds"], 2),
                }
            )
            state["best_acc"] = max(state["best_acc"], val_acc)
            reached = val_acc >= cfg.target_accuracy
            if val_loss < state["best_loss"] or reached:
                state.update(best_loss=val_loss, best_epoch=epoch, bad_epochs=0)
                save_run_files(self.out, self.model, self.info)
            else:
                state["bad_epochs"] += 1
                if cfg.plateau_epochs and state["bad_epochs"] % cfg.plateau_epochs == 0:
                    state["lr_scale"] *= cfg.plateau_factor
            _save_checkpoint(self.out, self.model, self.opt, state)
            self.progress(
                "epoch", epoch, cfg.epochs, f"val acc {val_acc * 100:.2f}% (best {state['best_acc'] * 100:.2f}%)"
            )
            if reached:
                return "target_accuracy"
            if state["bad_epochs"] >= cfg.patience:
                return "early_stopping"
            if cfg.max_minutes and state["seconds"] > cfg.max_minutes * 60:
                return "max_minutes"
        return "epochs"

    def _epoch(self, epoch: int, gen: torch.Generator, steps_per_epoch: int) -> tuple[float, int]:
        """One pass over the training split; returns (summed loss, images seen)."""
        from edgemask.data.transforms import augment_batch, to_tensor

        cfg, tr = self.cfg, self.tr
        self.model.train()
        if self.oversample:
            perm = tr[torch.multinomial(self.draw_t, len(tr), replacement=True, generator=gen)]
        else:
            perm = tr[torch.randperm(len(tr), generator=gen)]
        run_loss, seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = to_tensor(self.images[idx])  # (B,3,S,S) float in [0,1]
            if cfg.augment:
                x = augment_batch(x, gen, box_jitter=cfg.box_jitter, blur_p=cfg.blur_p, low_light_p=cfg.low_light_p)
            loss = self.loss_fn(self.model(x), self.labels[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            run_loss += loss.item() * len(idx)
            seen += len(idx)
            self.progress(f"epoch {epoch}", step + 1, steps_per_epoch, f"loss {run_loss / seen:.3f}")
        return run_loss, seen


def _final_metrics(
    cfg: TrainConfig,
    out: Path,
    info: Any,
    images: torch.Tensor,
    ds: Any,
    splits: dict,
    state: dict[str, Any],
    stop_reason: str,
) -> dict[str, Any]:
    """metrics.json: computed from the best weights, not the last epoch's (the operating point folded in)."""
    from edgemask.training.run import load_run

    best, _ = load_run(out)
    op = None
    val_idx = torch.from_numpy(splits["val"])
    if cfg.operating_point and len(val_idx):
        from edgemask.training.operating_point import choose_logit_bias, fold_logit_bias, operating_point_record

        bias, op_info = choose_logit_bias(
            predict_logits(best, images[val_idx]).numpy(), ds.labels[splits["val"]], max_fp=cfg.max_false_positive
        )
        if np.any(bias != 0) and fold_logit_bias(best, bias):
            op = operating_point_record(ds.class_names, bias, op_info)
            save_run_files(out, best, info, operating_point=op)
    metrics: dict[str, Any] = {
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped": stop_reason,
        "train_seconds": round(state["seconds"], 2),
        "dataset": str(cfg.data),
        "class_names": ds.class_names,
        "counts": {
            n: {s: int((ds.labels[i] == c).sum()) for s, i in splits.items()} for c, n in enumerate(ds.class_names)
        },
        "skipped": len(ds.skipped),
        "skipped_first": [list(x) for x in ds.skipped[:20]],
        "face_crops": ds.face_crops,
        "operating_point": op or {"logit_bias": None, "method": "argmax (no bias chosen)"},
    }
    for name in ("val", "test"):
        idx = torch.from_numpy(splits[name])
        if len(idx):
            pred = predict_logits(best, images[idx]).argmax(1).numpy()
            metrics[name] = classification_metrics(ds.labels[splits[name]], pred, ds.class_names)
    return metrics


def _fingerprint(groups: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(groups).encode()).hexdigest()[:16]

"""``edgemask attack``: DeepFool alone on a bundle or a training run; the adversarial set saved.

Output folder::

    attack.json                 summary, config, provenance (seed, versions, TF32)
    samples.csv                 per image: source, label, prediction before/after (and after 8-bit storage),
                                ‖r‖₂, ‖r‖∞, ρ, iterations, clean logit margin, logit gap past the boundary at x_adv
    x.npy, x_adv.npy, r.npy     float32 (N, 3, S, S) in [0, 1]: the exact tensors (r = x_adv − x)
    labels.npy                  int64 (N,) ground truth
    adversarial/<class>/*.png   8-bit PNGs of x_adv in ImageFolder layout by ground truth, readable by
                                ``load_dataset``; rounding to 8 bits can undo a small perturbation, so
                                the ``.npy`` files are the exact set and the PNGs what a camera could store
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError, ModelError
from edgemask.progress import NO_PROGRESS, Progress, staged
from edgemask.stability.config import NORMS, AttackConfig, StabilityConfig

TARGETS = ("float", "int8")


def load_attack_target(
    path: str | Path, target: str = "float", device: str = "cpu"
) -> tuple[Any, int, list[str], dict[str, Any]]:
    """The model to attack, its input size and class names, and a description.

    ``path`` is a bundle (``manifest.json``) or a training run (``model.json``).
    ``target="int8"`` attacks the bundle's int8 model through its fake-quant twin.

    Raises:
        ConfigError: unknown target, or int8 asked of a run folder.
        BundleError / ModelError: the folder is neither, or is damaged.
    """
    from edgemask.bundle import MANIFEST_NAME, load_bundle

    if target not in TARGETS:
        raise ConfigError(f"unknown attack target {target!r}; choose one of {', '.join(TARGETS)}")
    p = Path(path)
    if (p / MANIFEST_NAME).is_file():
        bundle = load_bundle(p)
        if target == "int8":
            from edgemask.stability.fakequant import twin_from_bundle

            model = twin_from_bundle(bundle).to(device)
            what = {
                "kind": "bundle",
                "target": "int8",
                "source": "host-emulation",
                "model": bundle.model_entry("int8").file,
                "what": "fake-quant torch twin of the QDQ graph",
            }
        else:
            from edgemask.stability.inputs import load_float_model

            model = load_float_model(bundle, device)
            what = {"kind": "bundle", "target": "float", "source": "engine", "model": "weights.safetensors"}
        what.update(name=bundle.manifest.name, version=bundle.manifest.version, arch=bundle.manifest.arch)
        return model, bundle.input_size, bundle.class_names, what
    if (p / "model.json").is_file():
        if target != "float":
            raise ConfigError(
                f"{p} is a training run; the int8 model exists only in a bundle, so export it first "
                f"('edgemask export {p} --out export/NAME') or use --target float"
            )
        from edgemask.training.run import load_run

        model, info = load_run(p, device=device)
        return (
            model,
            info.input_size,
            list(info.class_names),
            {"kind": "run", "target": "float", "source": "engine", "arch": info.arch, "model": "weights.safetensors"},
        )
    if not p.exists():
        raise ModelError(
            f"{p} does not exist; pass a bundle folder (from 'edgemask export') or a run folder (from 'edgemask train')"
        )
    raise ModelError(
        f"{p} is neither a bundle (no manifest.json) nor a training run (no model.json); pass the "
        "--out folder of 'edgemask export' or 'edgemask train'"
    )


def attack_to_folder(
    path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: StabilityConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run DeepFool on ``cfg.n`` images of ``data_dir`` against a bundle or run; save the adversarial set.

    Args:
        path: a bundle folder or a training run folder.
        data_dir: any dataset layout ``load_dataset`` reads (whole-scene ImageFolders are cut to faces).
        out_dir: the folder to write (see the module docstring).
        cfg: the DeepFool settings (n, norm, overshoot, max_iter, candidates, seed, batch_size, device,
            overwrite) of a :class:`StabilityConfig`; an :class:`AttackConfig` adds ``target`` and
            ``png``. None = ``AttackConfig()``. The study-only fields (alphas, engines, ...) are ignored.
        progress: stages ``load``, ``attack`` and ``png``.

    Returns:
        The content of ``attack.json``.

    Raises:
        ConfigError: bad options, ``out_dir`` exists without ``overwrite``, ``n`` larger than the dataset.
        BundleError / ModelError / DataError: unusable model folder or dataset.
    """
    import torch  # noqa: F401  -- the train extra first: without it, one line before any option is checked

    from edgemask.stability.provenance import host_info, library_versions, resolve_device
    from edgemask.stability.result import to_jsonable
    from edgemask.utils.io import atomic_dir

    cfg = _as_attack_config(cfg)
    progress = progress or NO_PROGRESS
    out = _check_attack_options(cfg, out_dir)
    dev = resolve_device(cfg.device)
    model, size, class_names, what = load_attack_target(path, cfg.target, dev)
    x, y, sources, n_data = _attack_sample(data_dir, size, class_names, cfg, progress)
    res, tf32_before, seconds = _run_deepfool(model, x, y, dev, cfg, progress)
    x_adv = res.x_adv.detach().float().cpu().numpy()
    r = x_adv - x
    summary = res.summary()
    x_adv8, pred8 = _eight_bit_predictions(model, x_adv, dev, cfg.batch_size)
    ok = res.success.cpu().numpy().astype(bool)
    still = (pred8 != res.pred_orig.cpu().numpy()) & ok
    summary["eight_bit_still_adversarial"] = float(still.sum() / ok.sum()) if ok.sum() else None
    info = {
        "format": "edgemask-attack",
        "version": 1,
        "model": what,
        "summary": summary,
        "class_names": class_names,
        "config": _config_record(path, data_dir, cfg, dev),
        "dataset": {"size": n_data, "sampled": len(x), "sample": "stratified by class, seeded"},
        "versions": library_versions(),
        "host": host_info(),
        "tf32": {"before": tf32_before, "during_attack": {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False}},
        "seconds": round(seconds, 2),
        "files": {
            "x": "x.npy",
            "x_adv": "x_adv.npy",
            "r": "r.npy",
            "labels": "labels.npy",
            "samples": "samples.csv",
            "png": "adversarial/" if cfg.png else None,
        },
    }
    info = to_jsonable(info)
    replace = cfg.overwrite or (out.is_dir() and not any(out.iterdir()))
    with atomic_dir(out, overwrite=replace) as tmp:
        np.save(tmp / "x.npy", x)
        np.save(tmp / "x_adv.npy", x_adv)
        np.save(tmp / "r.npy", r)
        np.save(tmp / "labels.npy", y)
        _write_attack_csv(tmp / "samples.csv", res, y, sources, class_names, pred8)
        if cfg.png:
            _write_pngs(tmp / "adversarial", x_adv8, y, class_names, progress)
        (tmp / "attack.json").write_text(json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return info


def _as_attack_config(cfg: StabilityConfig | None) -> AttackConfig:
    """None -> the defaults; a plain StabilityConfig -> the same settings, attacking the float model with PNGs."""
    if cfg is None:
        return AttackConfig()
    if isinstance(cfg, AttackConfig):
        return cfg
    return AttackConfig.from_dict(cfg.to_dict())


def _check_attack_options(cfg: AttackConfig, out_dir: str | Path) -> Path:
    """Raise a ConfigError naming the first bad option (the attack's own wording); return the output folder."""
    if cfg.norm not in NORMS:
        raise ConfigError(f"unknown norm {cfg.norm!r}; choose one of {', '.join(NORMS)} (e.g. --norm l2)")
    if cfg.n < 0:
        raise ConfigError(f"--n must be >= 0 (0 = every image), got {cfg.n}")
    if cfg.batch_size < 0:
        raise ConfigError(f"--batch-size must be >= 0 (0 = automatic), got {cfg.batch_size}")
    if not cfg.overshoot >= 0:
        raise ConfigError(f"--overshoot must be >= 0 (the paper uses 0.02), got {cfg.overshoot}")
    if cfg.max_iter < 1:
        raise ConfigError(f"--max-iter must be an integer >= 1 (default 50), got {cfg.max_iter}")
    if cfg.candidates == 1 or cfg.candidates < 0:
        raise ConfigError(f"--candidates must be 0 (every class) or >= 2, got {cfg.candidates}")
    if cfg.target not in TARGETS:
        raise ConfigError(f"unknown attack target {cfg.target!r}; choose one of {', '.join(TARGETS)}")
    out = Path(out_dir)
    if out.exists() and not cfg.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    return out


def _attack_sample(
    data_dir: str | Path, size: int, class_names: list[str], cfg: AttackConfig, progress: Progress
) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """The seeded stratified sample: x float32 (n, 3, S, S) in [0, 1], labels int64 (n,), sources, dataset size."""
    from edgemask.data import load_dataset
    from edgemask.stability.inputs import stratified_sample, to_nchw_float
    from edgemask.vision.detectors import face_finder  # data never imports vision: a whole-scene folder needs it

    ds = load_dataset(
        data_dir, size=size, class_names=class_names, progress=staged(progress, "load"), find_faces=face_finder()
    )
    if cfg.n > len(ds):
        raise ConfigError(
            f"dataset {data_dir} has only {len(ds)} images but --n is {cfg.n}; lower --n to at most "
            f"{len(ds)} (or --n 0 for all)"
        )
    idx = stratified_sample(ds.labels, cfg.n, cfg.seed)
    return to_nchw_float(ds.images[idx]), ds.labels[idx].astype(np.int64), [ds.sources[i] for i in idx], len(ds)


def _run_deepfool(
    model: Any, x: np.ndarray, y: np.ndarray, dev: str, cfg: AttackConfig, progress: Progress
) -> tuple[Any, Any, float]:
    """DeepFool on (x, y) with TF32 pinned off: (the attack's result, TF32 flags before, seconds)."""
    import torch

    from edgemask.attacks import deepfool
    from edgemask.stability.provenance import tf32_pinned_off

    torch.manual_seed(cfg.seed)
    t = time.perf_counter()
    with tf32_pinned_off() as tf32_before:
        progress("attack", 0, len(x))
        res = deepfool(
            model,
            torch.from_numpy(x).to(dev),
            norm=cfg.norm,
            overshoot=float(cfg.overshoot),
            max_iter=int(cfg.max_iter),
            candidates=cfg.candidates or None,
            clip=(0.0, 1.0),
            labels=torch.from_numpy(y).to(dev),
            batch_size=cfg.batch_size or None,
        )
        progress("attack", len(x), len(x), f"fooled {int(res.success.sum())}/{len(x)}")
    return res, tf32_before, time.perf_counter() - t


def _eight_bit_predictions(model: Any, x_adv: np.ndarray, dev: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """x_adv rounded to 8-bit pixels (what the PNGs hold) and the model's predictions on it (N,).

    Storing as 8 bits can undo a small perturbation: the caller measures how often.
    """
    import torch

    x_adv8 = (np.round(x_adv * 255.0) / 255.0).astype(np.float32)
    with torch.no_grad():
        xb = torch.from_numpy(x_adv8).to(dev)
        step = batch_size or 256
        pred8 = torch.cat([model(xb[i : i + step]).argmax(1) for i in range(0, len(xb), step)]).cpu().numpy()
    return x_adv8, pred8


def _config_record(path: str | Path, data_dir: str | Path, cfg: AttackConfig, dev: str) -> dict[str, Any]:
    """``attack.json``'s ``config``: the settings the attack ran with (the device resolved)."""
    return {
        "path": str(path),
        "data": str(data_dir),
        "n": cfg.n,
        "norm": cfg.norm,
        "overshoot": cfg.overshoot,
        "max_iter": cfg.max_iter,
        "candidates": cfg.candidates,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "target": cfg.target,
        "device": dev,
        "png": cfg.png,
    }


def _write_attack_csv(
    path: Path, res: Any, y: np.ndarray, sources: list[str], class_names: list[str], pred8: np.ndarray
) -> None:
    d = res.to_dict()["samples"]
    cols = [
        "index",
        "source",
        "label",
        "label_name",
        "pred",
        "pred_adv",
        "success",
        "pred_adv_8bit",
        "iterations",
        "l2",
        "linf",
        "rho",
        "margin",
        "margin_adv",
        "zero_grad",
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(len(y)):
            w.writerow(
                [
                    i,
                    sources[i],
                    int(y[i]),
                    class_names[int(y[i])],
                    d["pred_orig"][i],
                    d["pred_adv"][i],
                    d["success"][i],
                    int(pred8[i]),
                    d["iterations"][i],
                    d["l2"][i],
                    d["linf"][i],
                    "" if d["rho"][i] is None else d["rho"][i],
                    d["margin"][i],
                    d["margin_adv"][i],
                    d["zero_grad"][i],
                ]
            )


def _write_pngs(folder: Path, x8: np.ndarray, y: np.ndarray, class_names: list[str], progress: Progress) -> None:
    import cv2

    for c in np.unique(y):  # only classes present: an empty class folder would be an empty class
        (folder / class_names[int(c)]).mkdir(parents=True, exist_ok=True)
    for i in range(len(x8)):
        rgb = np.round(x8[i].transpose(1, 2, 0) * 255.0).astype(np.uint8)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - PNG encoding of a uint8 image does not fail
            raise ConfigError(f"could not encode adversarial image {i} as PNG")
        (folder / class_names[int(y[i])] / f"{i:06d}.png").write_bytes(buf.tobytes())
        if i % 64 == 0:
            progress("png", i + 1, len(x8))
    progress("png", len(x8), len(x8))


__all__ = ["TARGETS", "attack_to_folder", "load_attack_target"]

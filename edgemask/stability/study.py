"""The stability study (DESIGN.md §5): DeepFool on the float model, then every engine.

:func:`run_study` only computes; it returns a :class:`~edgemask.stability.result.StudyResult`
(definitions of every statistic: ``result.DEFINITIONS``) that
:mod:`edgemask.stability.report` renders and :mod:`edgemask.stability.pipeline`
writes. Images ``x`` are float32 NCHW in [0, 1]; normalization lives inside
every model, so the same tensor feeds every engine and clipping is exact.

1. :func:`attack_float`: DeepFool (L2 or L∞) on the float torch model, against
   its own prediction, giving a :class:`~edgemask.stability.result.FloatAttack`.
2. :func:`measure_engine`, for every engine (torch fp32, ONNX Runtime
   fp32/fp16/int8, TensorRT when it can run here, the int8 model's fake-quant
   twin): ``x``, ``x_adv``, the 8-bit ``x_adv``, ``x + α·r`` for each α, and
   norm-matched noise, plus finite-difference local sensitivity.
3. :func:`~edgemask.stability.int8_attack.attack_int8`: DeepFool directly
   against the int8 model through its twin.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemask.errors import ConfigError
from edgemask.progress import NO_PROGRESS, Progress
from edgemask.stability.config import TWIN_BACKEND, StabilityConfig, engine_key, parse_engines
from edgemask.stability.engines import StudySetup, check_engines, default_engines
from edgemask.stability.inputs import load_float_model, looks_like_probabilities, to_nchw_float
from edgemask.stability.int8_attack import attack_int8, choose_twin_mode
from edgemask.stability.metrics import engine_metrics, rate
from edgemask.stability.provenance import host_info, library_versions, resolve_device, tf32_pinned_off
from edgemask.stability.result import FloatAttack, StudyResult
from edgemask.stability.samples import pick_examples, sample_rows


def run_study(
    bundle: Any,
    images: np.ndarray,
    labels: np.ndarray,
    cfg: StabilityConfig,
    progress: Progress | None = None,
    sources: list[str] | None = None,
    dataset: dict[str, Any] | None = None,
) -> StudyResult:
    """Run the whole study on already-sampled images. Computes only; writes nothing.

    Args:
        bundle: a loaded :class:`~edgemask.bundle.Bundle` (or a folder path, loaded with verification).
        images: (N, S, S, 3) uint8 RGB, or (N, 3, S, S) float32 in [0, 1].
        labels: (N,) ground-truth class indices into the bundle's class names.
        cfg: the study's settings (validated here).
        progress: ``progress(stage, done, total, note)`` (:class:`edgemask.progress.Progress`).
        sources: per-image file names, copied into the per-sample table.
        dataset: provenance of the images (path, format, counts) for the report.

    Raises:
        BundleError: the bundle has no float weights or lacks a requested model.
        BackendError: an unknown backend name.
        ConfigError: bad settings, or images that do not match the bundle.
    """
    import torch

    from edgemask.backends import as_bundle

    cfg.validate()
    bundle = as_bundle(bundle)
    x, y = _check_inputs(bundle, images, labels)
    setup = StudySetup(bundle, cfg, resolve_device(cfg.device), cfg.batch_size or 256, progress=progress or NO_PROGRESS)
    specs, warn = _engine_specs(bundle, cfg)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    with tf32_pinned_off() as tf32_before, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        fa = attack_float(setup, x, y, warn)  # 1.
        timings["attack_float"] = time.perf_counter() - t
        warn += _choose_twin(setup, specs, x)
        runs = [measure_engine(setup, spec, fa, y, i, len(specs), warn) for i, spec in enumerate(specs)]  # 2.
        int8_attack, direct = _direct_int8(setup, fa, y, warn, timings)  # 3.
    warn += [
        str(w.message)
        for w in caught
        if "probabilities" in str(w.message) and not any("probabilities" in m for m in warn)
    ][:1]
    preds = {r.key: r.preds for r in runs}
    columns, rows = sample_rows(
        fa, y, bundle.class_names, preds, {r.key: r.sensitivity for r in runs}, cfg, direct, sources
    )
    meta = _meta(setup, dataset or {}, len(x), tf32_before, timings, runs)
    return StudyResult(
        config=cfg.to_dict(),
        meta=meta,
        float_attack=fa.summary,
        engines=[r.entry for r in runs],
        int8_attack=int8_attack,
        twin=setup.twin_info,
        class_names=list(bundle.class_names),
        alphas=[float(a) for a in cfg.alphas],
        rows=rows,
        columns=columns,
        examples=pick_examples(fa, y, preds, bundle.class_names, cfg),
        warnings=warn,
    )


def _check_inputs(bundle: Any, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 NCHW, y int64) after checking them against the bundle's input size and classes."""
    x = to_nchw_float(images)
    y = np.asarray(labels, dtype=np.int64)
    n, size, k = len(x), bundle.input_size, len(bundle.class_names)
    if n == 0:
        raise ConfigError("no images to study; pass a dataset with images of the model's classes")
    if x.shape[2:] != (size, size):
        raise ConfigError(
            f"images are {x.shape[2]}x{x.shape[3]} but the bundle's model takes {size}x{size}; "
            f"load the dataset with size={size}"
        )
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= k)):
        raise ConfigError(f"labels must be {n} class indices in 0..{k - 1}")
    return x, y


def _engine_specs(bundle: Any, cfg: StabilityConfig) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """The engines to measure (asked for, or every one the bundle has) and notes on any left out."""
    specs, notes = parse_engines(cfg.engines), []
    if not specs:
        specs, notes = default_engines(bundle)
    check_engines(bundle, specs)
    return specs, list(notes)


def attack_float(setup: StudySetup, x: np.ndarray, y: np.ndarray, warn: list[str]) -> FloatAttack:
    """DeepFool on the bundle's float torch model, against its own prediction (step 1)."""
    import torch

    from edgemask.attacks import deepfool

    cfg, device, bs, n = setup.cfg, setup.device, setup.batch_size, len(x)
    model = load_float_model(setup.bundle, device)
    xt = torch.from_numpy(x).to(device)
    with torch.no_grad():
        float_logits = torch.cat([model(xt[i : i + bs]) for i in range(0, n, bs)]).float().cpu().numpy()
    if looks_like_probabilities(float_logits):
        warn.append(
            "the float model's outputs look like probabilities (rows >= 0 summing to 1), not logits; "
            "DeepFool linearises logits, so ρ and transfer numbers are unreliable; export the model "
            "without its final softmax"
        )
    setup.progress("attack", 0, n)
    res = deepfool(
        model,
        xt,
        norm=cfg.norm,
        overshoot=float(cfg.overshoot),
        max_iter=int(cfg.max_iter),
        candidates=cfg.candidates or None,
        clip=(0.0, 1.0),
        labels=torch.from_numpy(y).to(device),
        batch_size=cfg.batch_size or None,
    )
    setup.progress("attack", n, n, f"fooled {int(res.success.sum())}/{n}")
    x_adv = res.x_adv.detach().float().cpu().numpy()
    r = x_adv - x  # what was applied: x + 1·r == x_adv
    summary = res.summary()
    summary["source"] = "engine"
    summary["what"] = f"torch {torch.__version__} eager on {device}, bundle weights.safetensors"
    return FloatAttack(
        x=x,
        x_adv=x_adv,
        x_adv8=(np.round(x_adv * 255.0) / 255.0).astype(np.float32),
        r=r,
        r_norm=np.sqrt((r.astype(np.float64) ** 2).reshape(n, -1).sum(1)),
        pred_clean=res.pred_orig.cpu().numpy(),
        pred_adv=res.pred_adv.cpu().numpy(),
        success=res.success.cpu().numpy().astype(bool),
        rho=res.rho.detach().double().cpu().numpy(),
        deepfool=res,
        summary=summary,
    )


def _choose_twin(setup: StudySetup, specs: list[tuple[str, str, str | None]], x: np.ndarray) -> list[str]:
    """Settle the twin's arithmetic (closest to onnxrt:int8 under "auto"); a warning if it is not faithful."""
    cfg, bundle = setup.cfg, setup.bundle
    setup.twin_mode = cfg.twin_mode
    uses_twin = any(s[0] == TWIN_BACKEND for s in specs) or cfg.int8_attack
    if cfg.twin_mode == "auto" and "int8" in bundle.manifest.precisions("onnx") and uses_twin:
        setup.twin_info, setup.twin_mode, _ = choose_twin_mode(bundle, x, setup.batch_size, setup.device)
    elif cfg.twin_mode == "auto":
        setup.twin_mode = "reference"
    chosen = (setup.twin_info or {}).get("agreement", {}).get(setup.twin_mode)
    if chosen and chosen["argmax_agreement"] < 0.99:
        return [
            f"the fake-quant twin ({setup.twin_mode}) agrees with onnxrt:int8 on only "
            f"{100 * chosen['argmax_agreement']:.1f}% of clean predictions (max |Δlogit| "
            f"{chosen['max_abs_diff']:.3g}); twin:int8 and the direct int8 attack describe the QDQ graph, "
            "not this engine"
        ]
    return []


@dataclass
class EngineRun:
    """One engine's outcome: its report entry, per-sample predictions and sensitivities."""

    key: str
    entry: dict[str, Any]  # label + engine_metrics + α-sweep, noise, sensitivity, seconds
    preds: dict[str, np.ndarray]  # clean/adv/adv8 (N,), sweep (A, N; -1 outside F), noise_flips (N,)
    sensitivity: dict[float, np.ndarray]  # scale → (N,) local sensitivity
    noise_ratio: np.ndarray | None  # achieved ‖noise‖/‖r‖ per sample of F, worst trial


def measure_engine(
    setup: StudySetup,
    spec: tuple[str, str, str | None],
    fa: FloatAttack,
    y: np.ndarray,
    index: int,
    count: int,
    warn: list[str],
) -> EngineRun:
    """Step 2 for one engine: clean, x_adv, 8-bit x_adv, the α-sweep and noise on F, local sensitivity."""
    from edgemask.stability.sensitivity import local_sensitivity, summarize

    cfg, bs = setup.cfg, setup.batch_size
    backend, precision, target = spec
    key = engine_key(backend, precision, target)
    t = time.perf_counter()
    setup.progress("engines", index, count, key)
    fidx, x = fa.fooled, fa.x
    noise_ratio: np.ndarray | None = None
    eng = setup.open(backend, precision, target)
    try:
        clean = eng.logits(x, bs)
        if looks_like_probabilities(clean):
            warn.append(
                f"{key} returns probabilities (rows >= 0 summing to 1), not logits; its sensitivity "
                "numbers are in probability units"
            )
        p = {
            "clean": clean.argmax(1),
            "adv": eng.logits(fa.x_adv, bs).argmax(1),
            "adv8": eng.logits(fa.x_adv8, bs).argmax(1),
        }
        # α-sweep and noise on F only (r means nothing where the attack failed).
        sweep = np.full((len(cfg.alphas), len(x)), -1, dtype=np.int64)
        noise_flip = np.zeros(len(x), dtype=np.int64)
        if len(fidx):
            xf, rf = x[fidx], fa.r[fidx]
            for ai, a in enumerate(cfg.alphas):
                # α = 1 is x_adv itself, not x + r (which can differ from it in the last bit).
                xa = fa.x_adv[fidx] if a == 1 else np.clip(xf + np.float32(a) * rf, 0.0, 1.0)
                sweep[ai, fidx] = eng.logits(xa, bs).argmax(1)
            for trial in range(cfg.noise_trials):
                xn, ratio = noise_like(xf, fa.r_norm[fidx], cfg.seed, trial)
                noise_ratio = ratio if noise_ratio is None else np.minimum(noise_ratio, ratio)
                noise_flip[fidx] += eng.logits(xn, bs).argmax(1) != p["clean"][fidx]
        p["sweep"], p["noise_flips"] = sweep, noise_flip
        sens = local_sensitivity(
            lambda z: eng.logits(z, bs), x, clean, tuple(cfg.sensitivity_scales), cfg.sensitivity_trials, cfg.seed
        )
    finally:
        eng.close()
    m = engine_metrics(
        y=y,
        f_clean=fa.pred_clean,
        f_adv=fa.pred_adv,
        f_success=fa.success,
        e_clean=p["clean"],
        e_adv=p["adv"],
        e_adv8=p["adv8"],
        rho=fa.rho,
        class_names=setup.bundle.class_names,
    )
    t_set = fa.success & (p["clean"] == fa.pred_clean)
    m["alpha_sweep"] = [rate(sweep[ai] != p["clean"], t_set)[0] for ai in range(len(cfg.alphas))]
    m["alpha_sweep_n"] = int(t_set.sum())
    m["noise_flip_rate"] = (
        float(noise_flip[t_set].sum()) / (t_set.sum() * cfg.noise_trials) if t_set.sum() and cfg.noise_trials else None
    )
    m["noise_trials"] = cfg.noise_trials
    m["sensitivity"] = {f"{s:g}": summarize(v) for s, v in sens.items()}
    m["seconds"] = round(time.perf_counter() - t, 2)
    entry = {
        "key": key,
        "backend": backend,
        "precision": precision,
        "target": target,
        "source": eng.source,
        "label": eng.label,
        **m,
    }
    setup.progress("engines", index + 1, count, key)
    return EngineRun(key, entry, p, sens, noise_ratio)


def _direct_int8(
    setup: StudySetup, fa: FloatAttack, y: np.ndarray, warn: list[str], timings: dict[str, float]
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """Step 3, when asked for and the bundle has an int8 model."""
    if not setup.cfg.int8_attack:
        return None, {}
    if "int8" not in setup.bundle.manifest.precisions("onnx"):
        warn.append("the bundle has no int8 model, so the direct int8 attack was skipped")
        return None, {}
    t = time.perf_counter()
    out = attack_int8(setup, fa, y)
    timings["attack_int8"] = time.perf_counter() - t
    return out


def _meta(
    setup: StudySetup,
    dataset: dict[str, Any],
    n: int,
    tf32_before: dict[str, bool],
    timings: dict[str, float],
    runs: list[EngineRun],
) -> dict[str, Any]:
    """Provenance of the study for report.json."""
    bundle, cfg = setup.bundle, setup.cfg
    ratios = [r.noise_ratio for r in runs if r.noise_ratio is not None]
    worst = np.minimum.reduce(ratios) if ratios else None
    return {
        "bundle": {
            "name": bundle.manifest.name,
            "version": bundle.manifest.version,
            "path": str(bundle.root),
            "arch": bundle.manifest.arch,
            "input_size": bundle.input_size,
        },
        "dataset": dataset,
        "n": n,
        "seed": cfg.seed,
        "device": setup.device,
        "noise": {
            "trials": cfg.noise_trials,
            "norm_matched": "after clipping, ||clip(x + u) - x||2 = ||r||2",
            "min_achieved_ratio": None if worst is None or not len(worst) else float(worst.min()),
            "n_short": 0 if worst is None else int(np.sum(worst < 0.999)),
        },
        "versions": library_versions(),
        "host": host_info(),
        "tf32": {
            "before": tf32_before,
            "during_study": {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False},
            "pinned_off": True,
        },
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "engines_run": [r.key for r in runs],
    }


def noise_like(x: np.ndarray, norms: np.ndarray, seed: int, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """clip(x + s·u), u Gaussian, s chosen so ‖clip(x + s·u) − x‖₂ = ``norms`` per sample.

    ``r`` is measured after clipping, so the noise must be too: clipping at
    saturated pixels would otherwise leave the noise shorter than ``r`` (by up
    to ~5% on the demo's faces, more on over-exposed photos). The applied norm
    g(s) grows with s while g(s)/s never grows, so ``s ← s·target/g(s)``
    climbs to the target from below without overshooting it. Seeded per trial:
    every engine sees the same noise.

    Returns:
        (N, C, H, W) float32 noisy images, and (N,) achieved ‖applied‖₂ / target
        (1 up to rounding; below 1 only where clipping leaves too little room).
    """
    rng = np.random.default_rng([seed, 4049, trial])
    u = rng.standard_normal(x.shape).astype(np.float32)
    n = len(x)
    target = np.asarray(norms, dtype=np.float64)
    un = np.sqrt((u.astype(np.float64) ** 2).reshape(n, -1).sum(1))
    s = target / np.maximum(un, 1e-12)
    for _ in range(12):
        xn = np.clip(x + u * s.astype(np.float32).reshape(-1, 1, 1, 1), 0.0, 1.0)
        got = np.sqrt(((xn - x).astype(np.float64) ** 2).reshape(n, -1).sum(1))
        ratio = np.where(target > 0, got / np.maximum(target, 1e-300), 1.0)
        short = (ratio < 1 - 1e-4) & (got > 0)
        if not short.any():
            break
        s = np.where(short, s * np.minimum(target / np.maximum(got, 1e-300), 10.0), s)
    return xn.astype(np.float32), ratio


__all__ = ["EngineRun", "attack_float", "measure_engine", "noise_like", "run_study"]

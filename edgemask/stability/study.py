"""The stability study (DESIGN.md §5): DeepFool on the float model, then every engine.

``run_study`` only computes; it returns a :class:`StudyResult` that carries
its statistics, the per-sample table and a few example images, and
serialises to JSON. ``edgemask.stability.report`` renders it.

Steps, on N images ``x`` (float32 NCHW in [0, 1]; normalization lives inside
every model, so the same tensor feeds every engine and clipping is exact):

1. DeepFool (L2 or L∞) on the float torch model, against its own prediction.
   ``r = x_adv − x`` is the perturbation actually applied (overshoot and
   clipping included), so ``x + 1·r`` is exactly ``x_adv``.
2. Every engine (torch fp32, ONNX Runtime fp32/fp16/int8, TensorRT when it
   can run here, and the fake-quant twin of int8, a host emulation) runs on
   ``x``, ``x_adv``, the 8-bit-rounded ``x_adv``, ``x + α·r`` for each α,
   and ``x + u`` for random ``u`` with ``‖u‖₂ = ‖r‖₂``.
3. DeepFool directly against the int8 model through its twin; ρ of those
   perturbations next to the float model's, and whether they fool the real
   int8 engine too.
4. Finite-difference local sensitivity per engine.

Definitions (per engine E; F = samples the float attack fooled):

* clean accuracy: E(x) == ground truth, over all N.
* agreement: E(x) == float(x), over all N.
* transfer rate: over T_E = F ∩ {E(x) == float(x)}, the fraction with
  E(x_adv) != E(x), i.e. E is fooled too.
* adversarial agreement: over F, E(x_adv) == float(x_adv).
* ρ_adv: mean ‖r‖₂/‖x‖₂ over the samples of T_E whose x_adv fooled E.
* α-sweep / noise: over T_E, the fraction with a prediction different from E(x).
  α = 1 is exactly x_adv. The noise u is Gaussian, rescaled so that the
  perturbation actually applied after clipping, clip(x + u) − x, has the same
  ‖·‖₂ as r (which is itself measured after clipping).
* 8-bit: over the samples of T_E that fooled E, the fraction still fooling E
  once x_adv is stored as 8-bit pixels, round(255·x_adv)/255.
* missed alert (no_mask → mask): ground truth no_mask, E(x) == no_mask, and
  E(x_adv) == mask, over the ground-truth-no_mask samples E got right.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemask.errors import BundleError, ConfigError, EdgemaskError
from edgemask.stability.config import (
    TWIN_BACKEND,
    StabilityConfig,
    engine_key,
    parse_engines,
)

# progress(stage, done, total, info): the CLI draws bars from it.
ProgressFn = Callable[[str, int, int, dict[str, Any]], None]

#: The dangerous direction for a mask alarm: an unmasked face read as masked.
ALERT_CLASS, SAFE_CLASS = "no_mask", "mask"


def _noop(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
    pass


# ----------------------------------------------------------------------------- result
@dataclass
class StudyResult:
    """Everything the study measured. Rendering lives in :mod:`edgemask.stability.report`.

    Attributes:
        config: the resolved :class:`StabilityConfig` as a dict.
        meta: provenance: bundle, dataset, seed, library versions, TF32 state, device, timings.
        float_attack: DeepFool summary on the float model.
        engines: one dict per engine: its label (``source``: "engine" or
            "host-emulation", backend, precision, describe()) and its metrics.
        int8_attack: DeepFool directly against the int8 model (twin), or None.
        twin: agreement of the fake-quant twin with the int8 engine, or None.
        class_names: the model's classes.
        alphas: the α grid.
        rows: per-sample table, one dict per image (see ``columns``).
        columns: column order of ``rows``.
        examples: a few adversarial examples with their images (numpy; not in JSON).
        warnings: things the reader must know (softmax-shaped output, skipped engines, ...).
    """

    config: dict[str, Any]
    meta: dict[str, Any]
    float_attack: dict[str, Any]
    engines: list[dict[str, Any]]
    int8_attack: dict[str, Any] | None
    twin: dict[str, Any] | None
    class_names: list[str]
    alphas: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def engine(self, key: str) -> dict[str, Any]:
        """The engine entry named ``key`` (e.g. ``"onnxrt:int8"``)."""
        for e in self.engines:
            if e["key"] == key:
                return e
        raise KeyError(f"no engine {key!r}; have {', '.join(e['key'] for e in self.engines)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-sample table goes to its own file)."""
        return _jsonable({
            "format": "edgemask-stability-report", "version": 1,
            "config": self.config, "meta": self.meta, "class_names": self.class_names, "alphas": self.alphas,
            "float_attack": self.float_attack, "engines": self.engines, "int8_attack": self.int8_attack,
            "twin": self.twin, "warnings": self.warnings, "columns": self.columns,
            "definitions": DEFINITIONS,
        })


DEFINITIONS = {
    "F": "samples the float-model DeepFool attack fooled (float(x_adv) != float(x), re-checked after clipping)",
    "T_E": "F restricted to samples where engine E agreed with float on the clean image",
    "clean_accuracy": "E(x) == ground truth, over all N",
    "agreement": "E(x) == float(x), over all N",
    "transfer_rate": "over T_E, fraction with E(x_adv) != E(x)",
    "adv_agreement": "over F, fraction with E(x_adv) == float(x_adv)",
    "rho_adv": "mean ||r||2/||x||2 over samples of T_E whose x_adv fooled E (count in rho_n)",
    "alpha_sweep": "over T_E, fraction with E(clip(x + alpha*r)) != E(x); r = x_adv - x",
    "noise": "over T_E, fraction with E(clip(x + u)) != E(x), u Gaussian scaled so ||clip(x + u) - x||2 = ||r||2, "
             "averaged over trials",
    "margin_adv": "float logit gap past the boundary at x_adv: max over k != float(x) of f_k(x_adv) - f_float(x)(x_adv); "
                  "an engine whose logits differ from the float model's by more than this can undo the flip",
    "eight_bit": "over the samples of T_E that fooled E, fraction still fooling E after round(255*x_adv)/255",
    "missed_alert": "ground truth no_mask, E(x) == no_mask and E(x_adv) == mask, over ground-truth no_mask samples E got right",
    "sensitivity": "mean over random delta of ||E(x+delta) - E(x)||2 / ||delta||2 with ||delta||2 = scale*||x||2 (logits)",
}


def _jsonable(o: Any) -> Any:
    """numpy → Python, non-finite floats → None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


# ----------------------------------------------------------------------------- inputs
def load_float_model(bundle: Any, device: str = "cpu") -> Any:
    """The bundle's float model in torch, eval mode, from ``weights.safetensors`` + manifest arch.

    Raises:
        BundleError: no float weights in the bundle, or weights that do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from edgemask.models import create_model

    entry = next((m for m in bundle.manifest.models if m.format == "safetensors"), None)
    path = bundle.path(entry.file) if entry is not None else None
    if entry is None or path is None or not path.is_file():
        raise BundleError(f"bundle {bundle.root} has no float weights (weights.safetensors); the stability study "
                          "attacks the float model, so re-export the bundle with 'edgemask export RUN --out "
                          f"{bundle.root} --overwrite'")
    try:
        model = create_model(bundle.manifest.arch, **bundle.manifest.arch_args)
    except EdgemaskError as e:
        raise BundleError(f"bundle {bundle.root}: {e}") from None
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{path} does not load into {bundle.manifest.arch!r} ({first}); re-export the bundle") from None
    return model.to(device).eval()


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices drawn without replacement, classes in proportion to their counts, seeded.

    The same (labels, n, seed) always gives the same sorted indices; n = 0 or
    n = len(labels) gives every index.

    Raises:
        ConfigError: n larger than the number of samples.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n == 0 or n == total:
        return np.arange(total)
    if n > total:
        raise ConfigError(f"the dataset has only {total} images but --n asks for {n}; lower --n to at most {total} "
                          "(or --n 0 for all)")
    rng = np.random.default_rng([seed, 1301])
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / total
    take = np.floor(quota).astype(int)
    # Largest remainders get the leftover slots (ties broken by class order: deterministic).
    for i in np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC (a FaceDataset's images) or float NCHW in [0,1] → contiguous float32 NCHW."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ConfigError(f"uint8 images must be (N, S, S, 3) RGB, got shape {images.shape}")
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"float images must be (N, 3, S, S) in [0, 1], got shape {images.shape}")
    x = np.ascontiguousarray(images.astype(np.float32))
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ConfigError(f"float images must lie in [0, 1] (got {x.min():.3g}..{x.max():.3g}); divide 8-bit pixels by 255")
    return x


def looks_like_probabilities(logits: np.ndarray) -> bool:
    """True when every row is non-negative and sums to 1: a softmax output, not logits."""
    if logits.size == 0:
        return False
    return bool(np.all(logits >= 0) and np.allclose(logits.sum(1), 1.0, atol=1e-3))


# ----------------------------------------------------------------------------- engines
class _Engine:
    """One engine of the study: a Runner, or the fake-quant twin, behind ``logits(x)``."""

    def __init__(self, key: str, backend: str, precision: str, target: str | None, source: str,
                 fn: Callable[[np.ndarray], np.ndarray], label: dict[str, Any], close: Callable[[], None]):
        self.key, self.backend, self.precision, self.target = key, backend, precision, target
        self.source, self._fn, self.label, self.close = source, fn, label, close

    def logits(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        out = [self._fn(np.ascontiguousarray(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def default_engines(bundle: Any) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """torch:fp32, onnxrt at every ONNX precision, opencv:int8, TensorRT engines that can run here, twin:int8.

    opencv:int8 is a second, independent int8 implementation (OpenCV's own int8
    layers, where ONNX Runtime runs the TensorRT-placed QDQ graph as float ops
    on exactly quantized tensors); OpenCV's fp32/fp16 add nothing here, as it
    widens fp16 weights to fp32.

    Returns:
        (engines, notes): notes say which engines were left out and why.
    """
    from edgemask.backends import get_backend

    notes: list[str] = []
    out: list[tuple[str, str, str | None]] = [("torch", "fp32", None)]
    onnx_precisions = bundle.manifest.precisions("onnx")
    out += [("onnxrt", p, None) for p in onnx_precisions]
    if "int8" in onnx_precisions and get_backend("opencv").available()[0]:
        out.append(("opencv", "int8", None))
    trt = [m for m in bundle.manifest.models if m.format == "tensorrt"]
    if trt:
        ok, why = get_backend("tensorrt").available()
        if ok:
            out += [("tensorrt", m.precision, None) for m in trt if ("tensorrt", m.precision, None) not in out]
        else:
            notes.append(f"TensorRT engines in the bundle were not run: {why}")
    if "int8" in onnx_precisions:
        out.append((TWIN_BACKEND, "int8", None))
    return out, notes


def _check_engines(bundle: Any, specs: list[tuple[str, str, str | None]]) -> None:
    """Fail before any work on a backend name the registry does not know, or a model the bundle lacks."""
    from edgemask.backends import get_backend

    for backend, precision, _ in specs:
        if backend == TWIN_BACKEND:
            bundle.model_entry(precision, "onnx")
            continue
        cls = get_backend(backend)      # BackendError listing the valid names
        ok, why = cls.available()
        if not ok:
            from edgemask.errors import NotAvailableError

            raise NotAvailableError(f"engine {engine_key(backend, precision)} cannot run here: {why}")
        if backend in ("onnxrt", "opencv"):
            bundle.model_entry(precision, "onnx")


def _open_engine(bundle: Any, backend: str, precision: str, target: str | None, device: str,
                 twin_mode: str) -> _Engine:
    """Activate one engine. Raises BackendError/BundleError with a fix for bad names or missing models."""
    key = engine_key(backend, precision, target)
    if backend == TWIN_BACKEND:
        from edgemask.stability.fakequant import FakeQuantTwin, twin_logits

        dev = target or device
        twin = FakeQuantTwin(bundle.model_path(precision), mode=twin_mode).eval().to(dev)
        label = {"backend": TWIN_BACKEND, "precision": precision, "emulated": True, "device": str(dev),
                 "mode": twin_mode, "model": bundle.model_entry(precision).file,
                 "what": "fake-quant torch twin executing the bundle's QDQ ONNX graph (host emulation)"}
        return _Engine(key, backend, precision, target, "host-emulation",
                       lambda x: twin_logits(twin, x, len(x) or 1, dev), label, lambda: None)
    from edgemask.backends import get_backend, runner_from_bundle

    cls = get_backend(backend)   # BackendError listing valid names for a typo
    options: dict[str, Any] = {}
    if target:
        if backend == "torch":
            options["device"] = target
        elif backend == "onnxrt":
            options["providers"] = target.split("+")
        else:
            raise ConfigError(f"engine {key!r}: only torch (device) and onnxrt (providers) take an @target")
    elif backend == "torch" and device != "cpu":
        options["device"] = device
    if backend == "tensorrt":
        from edgemask.export.engine import first_use_engine

        options["engine_loader"] = first_use_engine  # a bundle without this box's engine gets one built
    runner = runner_from_bundle(bundle, backend, precision, **options)
    runner.activate()
    label = dict(runner.describe())
    entry = None
    with contextlib.suppress(BundleError):
        entry = bundle.model_entry(precision, "onnx") if backend in ("onnxrt", "opencv") else None
    if entry is not None and entry.quantization:
        # An int8 QDQ graph placed for TensorRT runs on ORT's CPU provider as float ops on
        # exactly-quantized tensors; say so next to its numbers.
        label["quantization"] = entry.quantization
    source = "host-emulation" if getattr(cls, "emulated", False) or label.get("emulated") else "engine"
    if getattr(cls, "fake", False):
        source = "fake"
    return _Engine(key, backend, precision, target, source, runner.infer, label, runner.deactivate)


# ----------------------------------------------------------------------------- provenance
def library_versions() -> dict[str, str | None]:
    """Versions of everything that can change the numbers."""
    import importlib.metadata as md

    import edgemask

    out: dict[str, str | None] = {"edgemask": edgemask.__version__, "python": platform.python_version()}
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "numpy", "onnx", "tensorrt", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            if dist in ("torch", "onnxruntime", "numpy", "onnx"):
                out[dist] = None
    return out


def host_info() -> dict[str, Any]:
    """CPU/GPU description; int8 kernels on x86 depend on whether the CPU has VNNI."""
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system()}
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), None)
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info.update(cpu=model, avx2="avx2" in flags, avx512bw="avx512bw" in flags,
                    vnni=("avx512_vnni" in flags) or ("avx_vnni" in flags))
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except Exception:
        pass
    return info


@contextlib.contextmanager
def tf32_pinned_off() -> Any:
    """Turn TF32 off for the study and restore it after; yields the state before."""
    import torch

    before = {"cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
              "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32)}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before["cuda.matmul.allow_tf32"]
        torch.backends.cudnn.allow_tf32 = before["cudnn.allow_tf32"]


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    return device


# ----------------------------------------------------------------------------- metrics
def _rate(hit: np.ndarray, among: np.ndarray) -> tuple[float | None, int, int]:
    """(fraction, count, denominator) of ``hit`` within the boolean mask ``among``."""
    den = int(among.sum())
    k = int((hit & among).sum())
    return (k / den if den else None), k, den


def _mean(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _median(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def engine_metrics(*, y: np.ndarray, f_clean: np.ndarray, f_adv: np.ndarray, f_success: np.ndarray,
                   e_clean: np.ndarray, e_adv: np.ndarray, e_adv8: np.ndarray, rho: np.ndarray,
                   class_names: list[str]) -> dict[str, Any]:
    """The per-engine numbers of the study from per-sample predictions (see the module docstring).

    Args:
        y: (N,) ground truth; f_*: float model predictions / success; e_*: this engine's predictions.
        rho: (N,) ‖r‖₂/‖x‖₂ of the float attack.
    """
    agree = e_clean == f_clean
    t_set = f_success & agree
    fooled = e_adv != e_clean
    out: dict[str, Any] = {"n": len(y)}
    out["clean_accuracy"], out["clean_correct"], _ = _rate(e_clean == y, np.ones_like(agree))
    out["agreement"], out["agreement_k"], _ = _rate(agree, np.ones_like(agree))
    out["transfer_rate"], out["transfer_k"], out["transfer_n"] = _rate(fooled, t_set)
    out["adv_agreement"], out["adv_agreement_k"], out["adv_agreement_n"] = _rate(e_adv == f_adv, f_success)
    fooled_t = t_set & fooled
    out["rho_adv"] = _mean(rho[fooled_t].astype(np.float64))
    out["rho_adv_median"] = _median(rho[fooled_t].astype(np.float64))
    out["rho_n"] = int(fooled_t.sum())
    out["eight_bit_still_adversarial"], out["eight_bit_k"], out["eight_bit_n"] = _rate(e_adv8 != e_clean, fooled_t)
    # Per ground-truth class, and the flip matrix clean → adversarial over T_E.
    k = len(class_names)
    per_class = {}
    for c, name in enumerate(class_names):
        in_c = y == c
        acc, _, n_c = _rate(e_clean == y, in_c)
        tr, tk, tn = _rate(fooled, t_set & in_c)
        per_class[name] = {"n": n_c, "clean_accuracy": acc, "transfer_rate": tr, "transfer_k": tk, "transfer_n": tn,
                           "rho_adv": _mean(rho[fooled_t & in_c].astype(np.float64))}
    out["per_class"] = per_class
    flips = np.zeros((k, k), dtype=np.int64)
    valid = t_set & (e_clean >= 0) & (e_clean < k) & (e_adv >= 0) & (e_adv < k)
    np.add.at(flips, (e_clean[valid], e_adv[valid]), 1)
    out["flips"] = flips.tolist()   # flips[i][j]: clean prediction i, adversarial prediction j, over T_E
    if ALERT_CLASS in class_names and SAFE_CLASS in class_names:
        a, s = class_names.index(ALERT_CLASS), class_names.index(SAFE_CLASS)
        alerted = (y == a) & (e_clean == a)
        out["missed_alert_rate"], out["missed_alerts"], out["missed_alert_n"] = _rate(e_adv == s, alerted)
    else:
        out["missed_alert_rate"], out["missed_alerts"], out["missed_alert_n"] = None, None, None
    return out


# ----------------------------------------------------------------------------- the study
def run_study(bundle: Any, images: np.ndarray, labels: np.ndarray, cfg: StabilityConfig,
              progress: ProgressFn | None = None, sources: list[str] | None = None,
              dataset: dict[str, Any] | None = None) -> StudyResult:
    """Run the whole study on already-sampled images. Computes only; writes nothing.

    Args:
        bundle: a loaded :class:`~edgemask.bundle.Bundle` (or a folder path, loaded with verification).
        images: (N, S, S, 3) uint8 RGB, or (N, 3, S, S) float32 in [0, 1].
        labels: (N,) ground-truth class indices into the bundle's class names.
        cfg: the study's settings (validated here).
        progress: ``progress(stage, done, total, info)`` callback.
        sources: per-image file names, copied into the per-sample table.
        dataset: provenance of the images (path, format, counts) for the report.

    Raises:
        BundleError: the bundle has no float weights or lacks a requested model.
        BackendError: an unknown backend name.
        ConfigError: bad settings, or images that do not match the bundle.
    """
    import torch

    from edgemask.attacks import deepfool
    from edgemask.backends import as_bundle
    from edgemask.stability.sensitivity import local_sensitivity, summarize

    cfg.validate()
    progress = progress or _noop
    bundle = as_bundle(bundle)
    class_names = bundle.class_names
    x = to_nchw_float(images)
    y = np.asarray(labels, dtype=np.int64)
    n = len(x)
    size = bundle.input_size
    if n == 0:
        raise ConfigError("no images to study; pass a dataset with images of the model's classes")
    if x.shape[2:] != (size, size):
        raise ConfigError(f"images are {x.shape[2]}x{x.shape[3]} but the bundle's model takes {size}x{size}; "
                          f"load the dataset with size={size}")
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= len(class_names))):
        raise ConfigError(f"labels must be {n} class indices in 0..{len(class_names) - 1}")
    device = _resolve_device(cfg.device)
    bs = cfg.batch_size or 256
    warn: list[str] = []
    timings: dict[str, float] = {}
    specs = parse_engines(cfg.engines)
    if not specs:
        specs, notes = default_engines(bundle)
        warn += notes
    _check_engines(bundle, specs)
    torch.manual_seed(cfg.seed)

    with tf32_pinned_off() as tf32_before, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # -- 1. DeepFool on the float model ---------------------------------------
        t = time.perf_counter()
        model = load_float_model(bundle, device)
        xt = torch.from_numpy(x).to(device)
        with torch.no_grad():
            float_logits = torch.cat([model(xt[i:i + bs]) for i in range(0, n, bs)]).float().cpu().numpy()
        if looks_like_probabilities(float_logits):
            warn.append("the float model's outputs look like probabilities (rows >= 0 summing to 1), not logits; "
                        "DeepFool linearises logits, so ρ and transfer numbers are unreliable; export the model "
                        "without its final softmax")
        progress("attack", 0, n, {})
        res = deepfool(model, xt, norm=cfg.norm, overshoot=float(cfg.overshoot), max_iter=int(cfg.max_iter),
                       candidates=cfg.candidates or None,
                       clip=(0.0, 1.0), labels=torch.from_numpy(y).to(device), batch_size=cfg.batch_size or None)
        progress("attack", n, n, {"fooled": int(res.success.sum())})
        x_adv = res.x_adv.detach().float().cpu().numpy()
        r = x_adv - x                                          # what was applied: x + 1·r == x_adv
        f_clean = res.pred_orig.cpu().numpy()
        f_adv = res.pred_adv.cpu().numpy()
        f_success = res.success.cpu().numpy().astype(bool)
        rho = res.rho.detach().double().cpu().numpy()
        float_summary = res.summary()
        float_summary["source"] = "engine"
        float_summary["what"] = f"torch {torch.__version__} eager on {device}, bundle weights.safetensors"
        timings["attack_float"] = time.perf_counter() - t
        fidx = np.flatnonzero(f_success)                        # F
        x_adv8 = (np.round(x_adv * 255.0) / 255.0).astype(np.float32)
        r_norm = np.sqrt((r.astype(np.float64) ** 2).reshape(n, -1).sum(1))

        # -- 2. every engine ------------------------------------------------------
        engines: list[dict[str, Any]] = []
        preds: dict[str, dict[str, np.ndarray]] = {}
        sens_rows: dict[str, dict[float, np.ndarray]] = {}
        twin_info: dict[str, Any] | None = None
        int8_clean: np.ndarray | None = None                    # onnxrt:int8 logits on x (twin check)
        twin_mode = cfg.twin_mode
        twin_specs = [s for s in specs if s[0] == TWIN_BACKEND]
        noise_ratio: np.ndarray | None = None                   # ‖clip(x+u) − x‖₂ / ‖r‖₂ achieved, worst trial
        if twin_mode == "auto" and ("int8" in bundle.manifest.precisions("onnx")) and (twin_specs or cfg.int8_attack):
            twin_info, twin_mode, int8_clean = _choose_twin_mode(bundle, x, bs, device)
        elif twin_mode == "auto":
            twin_mode = "reference"
        chosen = (twin_info or {}).get("agreement", {}).get(twin_mode)
        if chosen and chosen["argmax_agreement"] < 0.99:
            warn.append(f"the fake-quant twin ({twin_mode}) agrees with onnxrt:int8 on only "
                        f"{100 * chosen['argmax_agreement']:.1f}% of clean predictions (max |Δlogit| "
                        f"{chosen['max_abs_diff']:.3g}); twin:int8 and the direct int8 attack describe the QDQ graph, "
                        "not this engine")
        for ei, (backend, precision, target) in enumerate(specs):
            key = engine_key(backend, precision, target)
            t = time.perf_counter()
            progress("engines", ei, len(specs), {"engine": key})
            eng = _open_engine(bundle, backend, precision, target, device, twin_mode)
            try:
                clean = eng.logits(x, bs)
                if looks_like_probabilities(clean):
                    warn.append(f"{key} returns probabilities (rows >= 0 summing to 1), not logits; its sensitivity "
                                "numbers are in probability units")
                p = {"clean": clean.argmax(1), "adv": eng.logits(x_adv, bs).argmax(1),
                     "adv8": eng.logits(x_adv8, bs).argmax(1)}
                # α-sweep and noise on F only (r means nothing where the attack failed).
                sweep = np.full((len(cfg.alphas), n), -1, dtype=np.int64)
                noise_flip = np.zeros(n, dtype=np.int64)
                if len(fidx):
                    xf, rf = x[fidx], r[fidx]
                    for ai, a in enumerate(cfg.alphas):
                        # α = 1 is x_adv itself, not x + r (which can differ from it in the last bit).
                        xa = x_adv[fidx] if a == 1 else np.clip(xf + np.float32(a) * rf, 0.0, 1.0)
                        sweep[ai, fidx] = eng.logits(xa, bs).argmax(1)
                    for trial in range(cfg.noise_trials):
                        xn, ratio = _noise_like(xf, r_norm[fidx], cfg.seed, trial)
                        noise_ratio = ratio if noise_ratio is None else np.minimum(noise_ratio, ratio)
                        noise_flip[fidx] += eng.logits(xn, bs).argmax(1) != p["clean"][fidx]
                p["sweep"] = sweep
                p["noise_flips"] = noise_flip
                sens_rows[key] = local_sensitivity(lambda z, eng=eng: eng.logits(z, bs), x, clean, tuple(cfg.sensitivity_scales),
                                                   cfg.sensitivity_trials, cfg.seed)
                label = eng.label
                source = eng.source
                if backend == "onnxrt" and precision == "int8" and target is None and int8_clean is None:
                    int8_clean = clean
            finally:
                eng.close()
            preds[key] = p
            m = engine_metrics(y=y, f_clean=f_clean, f_adv=f_adv, f_success=f_success, e_clean=p["clean"],
                               e_adv=p["adv"], e_adv8=p["adv8"], rho=rho, class_names=class_names)
            t_set = f_success & (p["clean"] == f_clean)
            m["alpha_sweep"] = [_rate(sweep[ai] != p["clean"], t_set)[0] for ai in range(len(cfg.alphas))]
            m["alpha_sweep_n"] = int(t_set.sum())
            m["noise_flip_rate"] = (float(noise_flip[t_set].sum()) / (t_set.sum() * cfg.noise_trials)
                                    if t_set.sum() and cfg.noise_trials else None)
            m["noise_trials"] = cfg.noise_trials
            m["sensitivity"] = {f"{s:g}": summarize(v) for s, v in sens_rows[key].items()}
            m["seconds"] = round(time.perf_counter() - t, 2)
            engines.append({"key": key, "backend": backend, "precision": precision, "target": target,
                            "source": source, "label": label, **m})
            progress("engines", ei + 1, len(specs), {"engine": key})

        # -- 3. DeepFool directly against the int8 model (through its twin) -------
        int8_attack = None
        direct: dict[str, np.ndarray] = {}
        if cfg.int8_attack and "int8" in bundle.manifest.precisions("onnx"):
            t = time.perf_counter()
            int8_attack, direct = _attack_int8(bundle, x, y, rho, f_success, cfg, device, twin_mode, twin_info, bs,
                                               progress)
            timings["attack_int8"] = time.perf_counter() - t
        elif cfg.int8_attack:
            warn.append("the bundle has no int8 model, so the direct int8 attack was skipped")

    for w in caught:
        msg = str(w.message)
        if "probabilities" in msg and not any("probabilities" in m for m in warn):
            warn.append(msg)

    # -- per-sample table ---------------------------------------------------------
    columns, rows = _rows(x, y, class_names, res, r_norm, rho, preds, sens_rows, cfg, direct, sources)
    examples = _examples(x, x_adv, y, f_clean, f_adv, f_success, preds, class_names, cfg)
    meta = {
        "bundle": {"name": bundle.manifest.name, "version": bundle.manifest.version, "path": str(bundle.root),
                   "arch": bundle.manifest.arch, "input_size": size},
        "dataset": dataset or {},
        "n": n, "seed": cfg.seed, "device": device,
        "noise": {"trials": cfg.noise_trials, "norm_matched": "after clipping, ||clip(x + u) - x||2 = ||r||2",
                  "min_achieved_ratio": None if noise_ratio is None or not len(noise_ratio) else float(noise_ratio.min()),
                  "n_short": 0 if noise_ratio is None else int(np.sum(noise_ratio < 0.999))},
        "versions": library_versions(), "host": host_info(),
        "tf32": {"before": tf32_before, "during_study": {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False},
                 "pinned_off": True},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "engines_run": [e["key"] for e in engines],
    }
    return StudyResult(config=cfg.to_dict(), meta=meta, float_attack=float_summary, engines=engines,
                       int8_attack=int8_attack, twin=twin_info, class_names=list(class_names),
                       alphas=[float(a) for a in cfg.alphas], rows=rows, columns=columns, examples=examples,
                       warnings=warn)


def _noise_like(x: np.ndarray, norms: np.ndarray, seed: int, trial: int) -> tuple[np.ndarray, np.ndarray]:
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


def _choose_twin_mode(bundle: Any, x: np.ndarray, bs: int, device: str) -> tuple[dict[str, Any], str, np.ndarray | None]:
    """Run both twin modes and ONNX Runtime int8 on clean x; keep the mode closer to the engine."""
    from edgemask.stability.fakequant import TWIN_MODES as MODES
    from edgemask.stability.fakequant import FakeQuantTwin, twin_agreement

    try:
        eng = _open_engine(bundle, "onnxrt", "int8", None, device, "reference")
    except EdgemaskError as e:
        return {"mode": "reference", "chosen_by": f"default (onnxrt:int8 not available: {e})"}, "reference", None
    try:
        ort_logits = eng.logits(x, bs)
    finally:
        eng.close()
    agreement = {}
    for mode in MODES:
        twin = FakeQuantTwin(bundle.model_path("int8"), mode=mode).eval().to(device)
        agreement[mode] = twin_agreement(twin, ort_logits, x, bs, device)
    best = min(MODES, key=lambda m: (agreement[m]["max_abs_diff"], MODES.index(m)))
    info = {"mode": best, "chosen_by": "closest logits to onnxrt:int8 on the clean images",
            "agreement": agreement, "engine": "onnxrt:int8"}
    return info, best, ort_logits


def _attack_int8(bundle: Any, x: np.ndarray, y: np.ndarray, rho_float: np.ndarray, f_success: np.ndarray,
                 cfg: StabilityConfig, device: str, mode: str, twin_info: dict[str, Any] | None, bs: int,
                 progress: ProgressFn) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """DeepFool on the fake-quant twin; ρ next to the float model's; checked on the real int8 engine."""
    import torch

    from edgemask.attacks import deepfool
    from edgemask.stability.fakequant import FakeQuantTwin, twin_logits

    n = len(x)
    twin = FakeQuantTwin(bundle.model_path("int8"), mode=mode).eval().to(device)
    progress("int8 attack", 0, n, {})
    res = deepfool(twin, torch.from_numpy(x).to(device), norm=cfg.norm, overshoot=float(cfg.overshoot),
                   max_iter=int(cfg.max_iter), candidates=cfg.candidates or None, clip=(0.0, 1.0),
                   batch_size=cfg.batch_size or None)
    progress("int8 attack", n, n, {"fooled": int(res.success.sum())})
    x_adv = res.x_adv.detach().float().cpu().numpy()
    ok = res.success.cpu().numpy().astype(bool)
    rho = res.rho.detach().double().cpu().numpy()
    out: dict[str, Any] = {"source": "host-emulation", "twin_mode": mode, "model": bundle.model_entry("int8").file,
                           "summary": res.summary()}
    both = ok & f_success
    out["rho_adv_int8"] = _mean(rho[ok])
    out["rho_n_int8"] = int(ok.sum())
    out["rho_adv_float"] = _mean(rho_float[f_success])
    out["rho_n_float"] = int(f_success.sum())
    out["paired_n"] = int(both.sum())
    out["paired_rho_int8"] = _mean(rho[both])
    out["paired_rho_float"] = _mean(rho_float[both])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["paired_ratio_median"] = _median(rho[both] / rho_float[both])
    # Does what fooled the twin fool the real int8 engine? (It must, if the twin is faithful.)
    engine_pred_adv = None
    try:
        eng = _open_engine(bundle, "onnxrt", "int8", None, device, mode)
        try:
            e_clean = eng.logits(x, bs).argmax(1)
            engine_pred_adv = eng.logits(x_adv, bs).argmax(1)
        finally:
            eng.close()
        out["engine_check"] = "onnxrt:int8"
        rate, k, den = _rate(engine_pred_adv != e_clean, ok)
        out["fools_engine_rate"], out["fools_engine_k"], out["fools_engine_n"] = rate, k, den
    except EdgemaskError as e:
        out["engine_check"] = f"not run: {e}"
        e_clean = None
    tw_clean = twin_logits(twin, x, bs, device).argmax(1)
    out["twin_clean_accuracy"] = float(np.mean(tw_clean == y))
    if twin_info is not None:
        out["twin_agreement"] = twin_info.get("agreement", {}).get(mode)
    direct = {"pred": res.pred_orig.cpu().numpy(), "pred_adv": res.pred_adv.cpu().numpy(), "success": ok,
              "rho": rho, "l2": res.l2.detach().double().cpu().numpy()}
    if engine_pred_adv is not None and e_clean is not None:
        direct["fools_engine"] = engine_pred_adv != e_clean
    return out, direct


def _col(key: str) -> str:
    """Engine key → CSV column prefix: ``onnxrt:int8@cuda`` → ``onnxrt_int8_cuda``."""
    return key.replace(":", "_").replace("@", "_").replace("+", "_")


def _rows(x: np.ndarray, y: np.ndarray, class_names: list[str], res: Any, r_norm: np.ndarray, rho: np.ndarray,
          preds: dict[str, dict[str, np.ndarray]], sens: dict[str, dict[float, np.ndarray]], cfg: StabilityConfig,
          direct: dict[str, np.ndarray], sources: list[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    n = len(x)
    x_norm = np.sqrt((x.astype(np.float64) ** 2).reshape(n, -1).sum(1))
    cols = ["index", "source", "label", "label_name", "float_pred", "float_pred_adv", "float_success", "iterations",
            "l2", "linf", "rho", "x_l2", "margin", "margin_adv", "zero_grad"]
    base = {
        "float_pred": res.pred_orig.cpu().numpy(), "float_pred_adv": res.pred_adv.cpu().numpy(),
        "float_success": res.success.cpu().numpy().astype(bool), "iterations": res.iterations.cpu().numpy(),
        "l2": r_norm, "linf": res.linf.detach().double().cpu().numpy(), "rho": rho, "x_l2": x_norm,
        "margin": res.margin.detach().double().cpu().numpy(),
        "margin_adv": res.margin_adv.detach().double().cpu().numpy(), "zero_grad": res.zero_grad.cpu().numpy().astype(bool),
    }
    for key in preds:
        c = _col(key)
        cols += [f"{c}_clean", f"{c}_adv", f"{c}_adv8", f"{c}_fooled", f"{c}_alpha_min", f"{c}_noise_flips"]
        cols += [f"{c}_sens_{s:g}" for s in cfg.sensitivity_scales]
    if direct:
        cols += ["int8_direct_pred", "int8_direct_pred_adv", "int8_direct_success", "int8_direct_l2", "int8_direct_rho"]
        if "fools_engine" in direct:
            cols.append("int8_direct_fools_engine")
    alphas = np.asarray(cfg.alphas, dtype=np.float64)
    order = np.argsort(alphas)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"index": i, "source": sources[i] if sources else "", "label": int(y[i]),
                               "label_name": class_names[int(y[i])]}
        for k, v in base.items():
            row[k] = v[i].item() if hasattr(v[i], "item") else v[i]
        for key, p in preds.items():
            c = _col(key)
            clean = int(p["clean"][i])
            row[f"{c}_clean"] = clean
            row[f"{c}_adv"] = int(p["adv"][i])
            row[f"{c}_adv8"] = int(p["adv8"][i])
            row[f"{c}_fooled"] = bool(p["adv"][i] != clean)
            amin = None
            if base["float_success"][i]:
                for ai in order:
                    if p["sweep"][ai, i] != clean:
                        amin = float(alphas[ai])
                        break
                row[f"{c}_noise_flips"] = int(p["noise_flips"][i])
            else:
                row[f"{c}_noise_flips"] = None
            row[f"{c}_alpha_min"] = amin
            for s in cfg.sensitivity_scales:
                v = sens[key][s][i]
                row[f"{c}_sens_{s:g}"] = float(v) if np.isfinite(v) else None
        if direct:
            row["int8_direct_pred"] = int(direct["pred"][i])
            row["int8_direct_pred_adv"] = int(direct["pred_adv"][i])
            row["int8_direct_success"] = bool(direct["success"][i])
            row["int8_direct_l2"] = float(direct["l2"][i])
            row["int8_direct_rho"] = float(direct["rho"][i])
            if "fools_engine" in direct:
                row["int8_direct_fools_engine"] = bool(direct["fools_engine"][i]) if direct["success"][i] else None
        rows.append(row)
    return cols, rows


def _examples(x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, f_clean: np.ndarray, f_adv: np.ndarray,
              f_success: np.ndarray, preds: dict[str, dict[str, np.ndarray]], class_names: list[str],
              cfg: StabilityConfig) -> list[dict[str, Any]]:
    """Up to ``cfg.examples`` fooled samples, missed alerts (no_mask → mask) first, then seeded random."""
    if cfg.examples == 0 or not f_success.any():
        return []
    idx = np.flatnonzero(f_success)
    first: list[int] = []
    if ALERT_CLASS in class_names and SAFE_CLASS in class_names:
        # Missed alerts as the report counts them: a real no_mask face, alerted on, read as mask.
        a, s = class_names.index(ALERT_CLASS), class_names.index(SAFE_CLASS)
        first = [int(i) for i in idx if y[i] == a and f_clean[i] == a and f_adv[i] == s]
    rest = [int(i) for i in np.random.default_rng([cfg.seed, 77]).permutation(idx) if int(i) not in set(first)]
    chosen = (first[: max(1, cfg.examples // 2)] + rest)[: cfg.examples] if first else rest[: cfg.examples]
    out = []
    for i in chosen:
        out.append({"index": i, "x": x[i], "x_adv": x_adv[i], "label": class_names[y[i]],
                    "float": (class_names[f_clean[i]], class_names[f_adv[i]]),
                    "engines": {k: (class_names[p["clean"][i]], class_names[p["adv"][i]]) for k, p in preds.items()}})
    return out


# ----------------------------------------------------------------------------- entry points
def headline_rows(result: StudyResult) -> list[dict[str, Any]]:
    """One row per engine for summary tables (the CLI's and the demo's)."""
    rows = []
    for e in result.engines:
        rows.append({
            "engine": e["key"], "source": e["source"],
            "clean_accuracy": e["clean_accuracy"], "agreement": e["agreement"],
            "transfer_rate": e["transfer_rate"], "transfer_k": e["transfer_k"], "transfer_n": e["transfer_n"],
            "adv_agreement": e["adv_agreement"], "rho_adv": e["rho_adv"], "rho_n": e["rho_n"],
            "missed_alerts": e["missed_alerts"], "missed_alert_n": e["missed_alert_n"],
        })
    return rows


def load_study_data(data_dir: str | Path, bundle: Any, n: int, seed: int,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """Load a dataset at the bundle's input size and class list; stratified sample of ``n`` (0 = all).

    Returns:
        (uint8 NHWC images, labels, sources, provenance dict).
    """
    from edgemask.data import load_dataset

    ds = load_dataset(data_dir, size=bundle.input_size, class_names=bundle.class_names, progress=progress)
    if n > len(ds):
        raise ConfigError(f"dataset {data_dir} has only {len(ds)} images but --n is {n}; lower --n to at most "
                          f"{len(ds)} (or --n 0 for all)")
    idx = stratified_sample(ds.labels, n, seed)
    info = {"path": str(data_dir), "format": ds.format, "size": len(ds), "counts": ds.class_counts(),
            "sampled": len(idx), "sampled_counts": {c: int(np.sum(ds.labels[idx] == k)) for k, c in enumerate(ds.class_names)},
            "sample": "stratified by class, seeded", "skipped": len(ds.skipped)}
    return ds.images[idx], ds.labels[idx], [ds.sources[i] for i in idx], info


def stability_report(bundle_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                     cfg: StabilityConfig | None = None, progress: ProgressFn | None = None) -> StudyResult:
    """Load a bundle and a dataset, run the study, write the report folder (atomically).

    Writes ``report.json``, ``samples.csv``, ``report.md``, ``report.html`` and
    ``config.json`` into ``out_dir``.

    Raises:
        ConfigError: ``out_dir`` exists (without ``cfg.overwrite``), ``n`` too large, bad settings.
        BundleError, DataError, BackendError: as from the steps.
    """
    from edgemask.bundle import load_bundle
    from edgemask.stability.report import write_report

    cfg = (cfg or StabilityConfig()).validate()
    out = Path(out_dir)
    if out.exists() and not cfg.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    bundle = load_bundle(bundle_dir)
    progress = progress or _noop
    images, labels, sources, info = load_study_data(data_dir, bundle, cfg.n, cfg.seed,
                                                    progress=lambda d, t: progress("load", d, t, {}))
    result = run_study(bundle, images, labels, cfg, progress=progress, sources=sources, dataset=info)
    progress("report", 0, 1, {})
    write_report(result, out, overwrite=True)
    progress("report", 1, 1, {})
    return result


__all__ = ["DEFINITIONS", "StudyResult", "default_engines", "engine_metrics", "headline_rows", "library_versions",
           "load_float_model", "load_study_data", "looks_like_probabilities", "run_study", "stability_report",
           "stratified_sample", "tf32_pinned_off", "to_nchw_float"]

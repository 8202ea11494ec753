"""Numerical parity: every engine on the same inputs, measured against the float model.

Split like Polygraphy's runner/comparator: :func:`run_backends` only runs
engines and collects logits; :func:`compare_outputs` only computes statistics
and pass/fail from logits; :func:`compare_bundle` is the one call the CLI
makes. Results are plain dataclasses with ``to_dict()``; tables live in
:mod:`edgemask.compare.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from edgemask.bundle import PRECISIONS
from edgemask.compare.config import CompareConfig
from edgemask.errors import BackendError, ConfigError
from edgemask.progress import Progress  # called as progress(engine, done, total)

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle


# -- engine specs --------------------------------------------------------------
@dataclass(frozen=True)
class EngineSpec:
    """One engine: a backend at a precision, written ``backend:precision``."""

    backend: str
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}"

    def __str__(self) -> str:
        return self.label


def parse_engines(text: str | Iterable[str | EngineSpec]) -> list[EngineSpec]:
    """Parse ``"torch:fp32,onnxrt:int8,opencv"`` (precision defaults to fp32).

    Raises:
        BackendError: an unknown backend name (the message lists valid ones).
        ConfigError: an unknown precision, or nothing given.
    """
    from edgemask.backends import list_backends

    items = text.split(",") if isinstance(text, str) else list(text)
    specs: list[EngineSpec] = []
    for item in items:
        if isinstance(item, EngineSpec):
            spec = item
        else:
            item = item.strip()
            if not item:
                continue
            backend, _, precision = item.partition(":")
            spec = EngineSpec(backend.strip(), (precision.strip() or "fp32").lower())
        if spec.backend not in list_backends():
            raise BackendError(
                f"unknown backend {spec.backend!r} in engine {spec.label!r}; choose from: {', '.join(list_backends())}"
            )
        if spec.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {spec.precision!r} in engine {spec.label!r}; use one of: {', '.join(PRECISIONS)}"
            )
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ConfigError("no engines given; write them as backend:precision, e.g. 'torch:fp32,onnxrt:int8'")
    return specs


def _spec_of(label: str) -> EngineSpec:
    """``backend:precision`` split without checking the backend is registered (results may come from anywhere)."""
    backend, _, precision = label.partition(":")
    precision = precision or "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(
            f"engine label {label!r} has unknown precision {precision!r}; "
            f"label outputs as backend:precision with one of: {', '.join(PRECISIONS)}"
        )
    return EngineSpec(backend, precision)


def default_engines(bundle: "Bundle") -> list[EngineSpec]:
    """Every engine that can run here on what the bundle holds.

    torch:fp32 (when the bundle has float weights), onnxrt at each ONNX
    precision, opencv at each ONNX precision (a second, independent ONNX
    importer), and tensorrt for each engine file when TensorRT
    is installed. The ``null`` fake is never a default.
    """
    from edgemask.backends import get_backend

    m = bundle.manifest
    onnx_precisions = [p for p in PRECISIONS if p in m.precisions("onnx")]
    wanted: list[EngineSpec] = []
    if "fp32" in m.precisions("safetensors"):
        wanted.append(EngineSpec("torch", "fp32"))
    wanted += [EngineSpec("onnxrt", p) for p in onnx_precisions]
    wanted += [EngineSpec("opencv", p) for p in onnx_precisions]
    wanted += [EngineSpec("tensorrt", p) for p in PRECISIONS if p in m.precisions("tensorrt")]
    return [s for s in wanted if get_backend(s.backend).available()[0]]


def reference_engine(bundle: "Bundle") -> EngineSpec:
    """The float reference: torch:fp32 when it can run here, else onnxrt:fp32."""
    from edgemask.backends import get_backend

    if "fp32" in bundle.manifest.precisions("safetensors") and get_backend("torch").available()[0]:
        return EngineSpec("torch", "fp32")
    return EngineSpec("onnxrt", "fp32")


# -- running -------------------------------------------------------------------
def run_engine(
    bundle: "Bundle",
    images: np.ndarray,
    spec: EngineSpec,
    batch_size: int = 64,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits (N, K) of one engine on ``images``, and its ``describe()``."""
    from edgemask.backends import runner_from_bundle

    runner = runner_from_bundle(bundle, spec.backend, spec.precision, **(options or {}).get(spec.backend, {}))
    n = len(images)
    chunks = []
    with runner:
        for i in range(0, n, batch_size):
            chunks.append(runner.infer(images[i : i + batch_size]))
            if progress:
                progress(spec.label, min(i + batch_size, n), n)
        info = runner.describe()
    return np.concatenate(chunks, axis=0), info


def run_backends(
    bundle: "str | Path | Bundle",
    images: np.ndarray,
    engines: str | Sequence[str | EngineSpec],
    batch_size: int = 64,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Run every engine on the same images.

    Args:
        bundle: a bundle folder or loaded :class:`~edgemask.bundle.Bundle`.
        images: uint8 NHWC RGB, or float32 NCHW in [0, 1], at the bundle's input size.
        engines: specs or ``"backend:precision"`` strings.
        batch_size: images per ``infer()`` call.
        options: per-backend runner options, e.g. ``{"onnxrt": {"providers": ["cuda"]}}``.
        progress: called as ``progress(engine, done, total)``.

    Returns:
        ``{"backend:precision": logits (N, K) float32}`` in the order given.
    """
    from edgemask.backends import as_bundle

    b = as_bundle(bundle)
    return {s.label: run_engine(b, images, s, batch_size, options, progress)[0] for s in parse_engines(engines)}


# -- statistics ----------------------------------------------------------------
def _confusion(rows: np.ndarray, cols: np.ndarray, k: int) -> list[list[int]]:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (rows, cols), 1)
    return cm.tolist()


@dataclass
class EngineStats:
    """How one engine's logits compare with the reference's (and the labels)."""

    engine: str
    backend: str
    precision: str
    is_reference: bool
    agreement: float  # top-1 equal to the reference's, fraction
    max_abs_diff: float  # max |Δlogit| over all samples and classes
    mean_abs_diff: float
    accuracy: float | None  # vs labels, None without labels
    per_class_recall: dict[str, float | None] | None
    confusion: list[list[int]] | None  # rows = label, cols = this engine's prediction
    confusion_vs_reference: list[list[int]]  # rows = reference prediction, cols = this engine's
    tolerance: dict[str, float]
    passed: bool
    reason: str  # one line: why it failed, or what it met
    describe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class ComparisonResult:
    """Every engine's statistics on one set of inputs."""

    reference: str
    n: int
    class_names: list[str]
    has_labels: bool
    engines: list[EngineStats]
    config: dict[str, Any]
    source: str = ""  # where the images came from

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.engines)

    @property
    def failures(self) -> list[EngineStats]:
        return [e for e in self.engines if not e.passed]

    def engine(self, label: str) -> EngineStats:
        for e in self.engines:
            if e.engine == label:
                return e
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reference": self.reference,
            "n": self.n,
            "source": self.source,
            "class_names": list(self.class_names),
            "has_labels": self.has_labels,
            "config": dict(self.config),
            "engines": [e.to_dict() for e in self.engines],
        }


def check_tolerance(
    precision: str, max_abs_diff: float, agreement: float, config: CompareConfig | None = None
) -> tuple[bool, str]:
    """Whether an engine meets its precision's rule (see :class:`CompareConfig`), and a one-line why."""
    cfg = config or CompareConfig()
    rule = cfg.rule(precision)
    if not (math.isfinite(max_abs_diff) and math.isfinite(agreement)):
        return False, "non-finite logits (NaN or inf)"
    diff_ok = max_abs_diff <= rule.get("max_abs_diff", -1.0)
    agree_ok = agreement >= rule.get("min_agreement", 2.0)
    d = f"max |Δlogit| {max_abs_diff:.3g}"
    a = f"agreement {agreement * 100:.2f}%"
    if precision == "fp32":
        return diff_ok, f"{d} {'<=' if diff_ok else '>'} {rule['max_abs_diff']:g}"
    if precision == "fp16":
        if diff_ok or agree_ok:
            return True, (f"{d} <= {rule['max_abs_diff']:g}" if diff_ok else f"{a} >= {rule['min_agreement'] * 100:g}%")
        return False, f"{d} > {rule['max_abs_diff']:g} and {a} < {rule['min_agreement'] * 100:g}%"
    return agree_ok, f"{a} {'>=' if agree_ok else '<'} {rule['min_agreement'] * 100:g}%"


def compare_outputs(
    outputs: dict[str, np.ndarray],
    *,
    reference: str | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    config: CompareConfig | None = None,
    details: dict[str, dict[str, Any]] | None = None,
    source: str = "",
) -> ComparisonResult:
    """Statistics of each engine's logits against the reference's.

    Args:
        outputs: ``{"backend:precision": logits (N, K)}``, all on the same inputs.
        reference: the float engine to measure against; default torch:fp32,
            else onnxrt:fp32, else the first fp32 engine.
        labels: (N,) int ground truth, for accuracy and confusion matrices.
        class_names: K names (default ``class0..``).
        config: tolerances.
        details: per engine, its runner's ``describe()`` (copied into the result).
        source: where the inputs came from (for the report).

    Raises:
        ConfigError: outputs of different shapes, labels of the wrong length, no fp32 reference.
    """
    cfg = config or CompareConfig()
    if not outputs:
        raise ConfigError("compare_outputs() needs at least one engine's outputs")
    specs = {label: _spec_of(label) for label in outputs}
    if reference is None:
        candidates = ["torch:fp32", "onnxrt:fp32"] + [k for k, s in specs.items() if s.precision == "fp32"]
        reference = next((c for c in candidates if c in outputs), None)
        if reference is None:
            raise ConfigError("no fp32 engine to compare against; add torch:fp32 or onnxrt:fp32 to the engines")
    if reference not in outputs:
        raise ConfigError(f"reference engine {reference!r} is not among the outputs ({', '.join(outputs)})")
    ref = np.asarray(outputs[reference], dtype=np.float64)
    if ref.ndim != 2:
        raise ConfigError(f"logits must be (N, K); {reference} gave shape {ref.shape}")
    n, k = ref.shape
    names = list(class_names) if class_names is not None else [f"class{i}" for i in range(k)]
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names for {k} logits per sample")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (n,):
            raise ConfigError(f"{labels.shape[0] if labels.ndim else 0} labels for {n} samples")
    ref_pred = ref.argmax(1)
    stats: list[EngineStats] = []
    for label, logits in outputs.items():
        out = np.asarray(logits, dtype=np.float64)
        if out.shape != ref.shape:
            raise ConfigError(
                f"{label} gave logits of shape {out.shape}, the reference {reference} {ref.shape}; "
                "they did not run on the same inputs"
            )
        spec = specs[label]
        pred = out.argmax(1)
        diff = np.abs(out - ref)
        max_d = float(diff.max()) if diff.size else 0.0
        if not np.isfinite(out).all():
            max_d = float("inf")
        agreement = float((pred == ref_pred).mean()) if n else 1.0
        is_ref = label == reference
        if is_ref:
            ok, why, tol = True, "reference", {}
        else:
            tol = cfg.rule(spec.precision)
            ok, why = check_tolerance(spec.precision, max_d, agreement, cfg)
        acc = recall = cm = None
        if labels is not None:
            acc = float((pred == labels).mean()) if n else 0.0
            cm = _confusion(labels, pred, k)
            # None (JSON null) for a class absent from the labels.
            recall = {names[i]: (cm[i][i] / sum(cm[i]) if sum(cm[i]) else None) for i in range(k)}
        stats.append(
            EngineStats(
                engine=label,
                backend=spec.backend,
                precision=spec.precision,
                is_reference=is_ref,
                agreement=agreement,
                max_abs_diff=max_d,
                mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
                accuracy=acc,
                per_class_recall=recall,
                confusion=cm,
                confusion_vs_reference=_confusion(ref_pred, pred, k),
                tolerance=tol,
                passed=ok,
                reason=why,
                describe=dict((details or {}).get(label, {})),
            )
        )
    # Reference first, then the order given.
    stats.sort(key=lambda s: not s.is_reference)
    return ComparisonResult(
        reference=reference,
        n=int(n),
        class_names=names,
        has_labels=labels is not None,
        engines=stats,
        config=cfg.to_dict(),
        source=source,
    )


# -- the one call --------------------------------------------------------------
def select_images(n_total: int, max_images: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_images`` samples, spread over the dataset (sorted; all when 0)."""
    if max_images <= 0 or max_images >= n_total:
        return np.arange(n_total)
    # Datasets are often stored class by class; a seeded subset keeps every class.
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:max_images])


def compare_bundle(
    bundle: "str | Path | Bundle",
    data: str | Path | None = None,
    engines: str | Sequence[str | EngineSpec] | None = None,
    config: CompareConfig | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    label_map: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> ComparisonResult:
    """Run every engine of a bundle on a dataset and compare them with the float model.

    Args:
        bundle: a bundle folder (verified on load) or a loaded Bundle.
        data: any dataset layout ``edgemask.data.load_dataset`` reads (an
            ImageFolder of whole photos is cut to faces); when None, the
            bundle's golden inputs (no labels, so no accuracy).
        engines: specs or ``"backend:precision"`` strings; default
            :func:`default_engines`. The reference (torch:fp32, else
            onnxrt:fp32) is added when missing.
        config: tolerances, batch size, ``max_images``.
        options: per-backend runner options.
        label_map: extra dataset label aliases.
        progress: ``progress(engine, done, total)``; the engine ``"load"`` reports image loading.

    Returns:
        The comparison; ``.passed`` is False when an engine exceeds its tolerance.

    Raises:
        BundleError, DataError, BackendError: a damaged bundle, unreadable data,
            an engine that cannot run here.
    """
    from edgemask.backends import as_bundle

    cfg = config or CompareConfig()
    b = as_bundle(bundle)
    specs = parse_engines(engines) if engines is not None else default_engines(b)
    if not specs:
        raise BackendError("no engine can run this bundle here; install onnxruntime ('pip install onnxruntime')")
    ref = reference_engine(b)
    if ref not in specs:
        specs.insert(0, ref)
    labels = None
    if data is None:
        golden = (b.manifest.golden or {}).get("inputs")
        if not golden:
            raise ConfigError(f"bundle {b.manifest.name!r} has no golden inputs; pass --data with a dataset folder")
        images = np.load(b.path(golden), allow_pickle=False)
        source = f"{b.manifest.name}:{golden}"
    else:
        from edgemask.data import load_dataset
        from edgemask.vision.detectors import face_finder  # data never imports vision: whole scenes need it

        load_progress = (lambda done, total: progress("load", done, total)) if progress else None
        ds = load_dataset(
            data,
            size=b.input_size,
            class_names=b.class_names,
            label_map=label_map,
            progress=load_progress,
            find_faces=face_finder(),
        )
        images, labels = ds.images, ds.labels
        source = str(data)
    idx = select_images(len(images), cfg.max_images, cfg.seed)
    images = images[idx]
    labels = labels[idx] if labels is not None else None
    outputs: dict[str, np.ndarray] = {}
    details: dict[str, dict[str, Any]] = {}
    for s in specs:
        outputs[s.label], details[s.label] = run_engine(b, images, s, cfg.batch_size, options, progress)
    return compare_outputs(
        outputs,
        reference=ref.label,
        labels=labels,
        class_names=b.class_names,
        config=cfg,
        details=details,
        source=source,
    )

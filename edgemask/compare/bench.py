"""Latency and throughput of every engine of a bundle, with the machine they ran on.

Batch-1 latency is what a camera loop feels (one face at a time); batch-N
throughput is what an offline evaluation or a crowded frame gets. Both are
measured after warm-up (first calls allocate, pick kernels, page in
weights) with the garbage collector paused, and reported with the thread
count, the load average and library versions, because numbers from a
shared 2-core machine are meaningless without them.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from edgemask.compare.compare import EngineSpec, default_engines, parse_engines
from edgemask.compare.config import BenchConfig
from edgemask.errors import NotAvailableError
from edgemask.progress import Progress  # called as progress(engine, done, total)

if TYPE_CHECKING:  # pragma: no cover
    from edgemask.bundle import Bundle


_VERSIONED = (
    "numpy",
    "torch",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python-headless",
    "opencv-python",
    "tensorrt",
    "edgemask",
)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86: "model name"; ARM (Jetson): "model name" or only "Hardware"/"CPU part".
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: OS, CPU, cores, threads, load, library versions."""
    from importlib import metadata

    from edgemask.config import num_threads

    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count() or 1
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = []
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "threads": num_threads(),
        "load_average": load,
        "versions": versions,
    }


@dataclass
class EngineBench:
    """Timings of one engine (milliseconds; throughput in images per second)."""

    engine: str
    backend: str
    precision: str
    skipped: str = ""  # why it did not run (not available here), else ""
    p50_ms: float = float("nan")  # batch-1 engine time (inside the backend)
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    min_ms: float = float("nan")
    call_p50_ms: float = float("nan")  # batch-1 infer() incl. input validation: what a caller sees
    batch: int = 0
    batch_ms: float = float("nan")  # median time of one batch-N call
    per_image_ms: float = float("nan")  # batch_ms / batch
    throughput_ips: float = float("nan")
    describe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # NaN is not JSON: timings of a skipped engine become null.
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(self).items()}


@dataclass
class BenchResult:
    """Every engine's timings, the settings and the machine."""

    bundle: str
    engines: list[EngineBench]
    config: dict[str, Any]
    machine: dict[str, Any]

    def engine(self, label: str) -> EngineBench:
        for e in self.engines:
            if e.engine == label:
                return e
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "config": dict(self.config),
            "machine": dict(self.machine),
            "engines": [e.to_dict() for e in self.engines],
        }


def _timed_calls(
    runner: Any, x: np.ndarray, n: int, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Call ``runner.infer(x)`` n times; (call ms, engine ms) per call."""
    calls, engine = np.empty(n), np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        runner.infer(x)
        calls[i] = (time.perf_counter() - t0) * 1e3
        engine[i] = runner.latencies_ms[-1]  # read per call: the runner keeps only its newest latencies
        if progress and (i + 1) % 10 == 0:
            progress(i + 1)
    return calls, engine


def bench_engine(
    bundle: "Bundle",
    spec: EngineSpec,
    config: BenchConfig | None = None,
    options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> EngineBench:
    """Time one engine of a bundle: batch-1 latency percentiles, then batch-N throughput."""
    from edgemask.backends import runner_from_bundle

    runner = runner_from_bundle(bundle, spec.backend, spec.precision, **(options or {}))
    return bench_runner(runner, spec.label, config, progress)


def bench_runner(
    runner: Any, label: str | None = None, config: BenchConfig | None = None, progress: Progress | None = None
) -> EngineBench:
    """Time any (inactive) Runner; it is activated and deactivated here.

    Inputs are random float32 NCHW pixels at the runner's input size, the
    same for every engine (seeded by ``config.seed``).
    """
    cfg = config or BenchConfig()
    label = label or f"{runner.name}:{runner.precision}"
    rng = np.random.default_rng(cfg.seed)
    s = runner.input_size
    x1 = rng.random((1, 3, s, s), dtype=np.float32)  # (1,3,S,S) in [0,1)
    xn = rng.random((cfg.batch, 3, s, s), dtype=np.float32)  # (N,3,S,S)
    res = EngineBench(label, runner.name, runner.precision, batch=cfg.batch)
    warm_n = max(2, cfg.warmup // 5)  # batch-N warm-up: new shapes allocate and re-plan
    total = cfg.warmup + cfg.iters + warm_n + cfg.batch_iters
    done = 0

    def tick(k: int) -> None:
        if progress:
            progress(label, done + k, total)

    gc_was_enabled = gc.isenabled()
    with runner:
        gc.disable()  # a collection in the middle of a timed call would land in p99
        try:
            for _ in range(cfg.warmup):
                runner.infer(x1)
            done += cfg.warmup
            calls, engine = _timed_calls(runner, x1, cfg.iters, tick)
            done += cfg.iters
            for _ in range(warm_n):
                runner.infer(xn)
            done += warm_n
            batch_calls, _ = _timed_calls(runner, xn, cfg.batch_iters, tick)
            tick(cfg.batch_iters)
        finally:
            if gc_was_enabled:
                gc.enable()
        res.describe = runner.describe()
    res.p50_ms, res.p99_ms = (float(v) for v in np.percentile(engine, [50, 99]))
    res.mean_ms, res.min_ms = float(engine.mean()), float(engine.min())
    res.call_p50_ms = float(np.median(calls))
    res.batch_ms = float(np.median(batch_calls))
    res.per_image_ms = res.batch_ms / cfg.batch
    res.throughput_ips = cfg.batch * cfg.batch_iters / (float(batch_calls.sum()) / 1e3)
    return res


def bench_bundle(
    bundle: "str | Path | Bundle",
    engines: str | Sequence[str | EngineSpec] | None = None,
    config: BenchConfig | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
    *,
    batch: int | None = None,
    warmup: int | None = None,
    iters: int | None = None,
) -> BenchResult:
    """Time every engine of a bundle on random inputs.

    Args:
        bundle: a bundle folder or a loaded Bundle.
        engines: specs or ``"backend:precision"`` strings; default every
            engine that can run here (:func:`~edgemask.compare.default_engines`).
            An engine asked for but not available here is reported as skipped.
        config: batch size, warm-up and iteration counts.
        options: per-backend runner options, e.g. ``{"torch": {"device": "cuda"}}``.
        progress: ``progress(engine, calls_done, calls_total)``.
        batch, warmup, iters: shortcuts overriding ``config``.

    Returns:
        Per engine p50/p99 batch-1 latency and batch-N throughput, plus machine info.
    """
    from dataclasses import replace

    from edgemask.backends import as_bundle

    cfg = config or BenchConfig()
    overrides = {k: v for k, v in (("batch", batch), ("warmup", warmup), ("iters", iters)) if v is not None}
    if overrides:
        cfg = replace(cfg, **overrides)
    b = as_bundle(bundle)
    specs = parse_engines(engines) if engines is not None else default_engines(b)
    results = []
    for spec in specs:
        try:
            results.append(bench_engine(b, spec, cfg, (options or {}).get(spec.backend), progress))
        except NotAvailableError as e:
            results.append(EngineBench(spec.label, spec.backend, spec.precision, skipped=str(e), batch=cfg.batch))
    return BenchResult(bundle=str(b.root), engines=results, config=cfg.to_dict(), machine=machine_info())

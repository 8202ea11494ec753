"""Numerical parity and speed of a bundle's engines.

``compare_bundle`` runs every engine on the same images and measures each
against the float model (accuracy, top-1 agreement, max/mean |Δlogit|,
confusion matrices, pass/fail against :class:`CompareConfig` tolerances);
``bench_bundle`` times batch-1 latency and batch-N throughput. Both return
result objects with ``to_dict()``; :mod:`edgemask.compare.render` draws tables.

Example::

    from edgemask.compare import compare_bundle, bench_bundle
    res = compare_bundle("export/default", data="data/synth")
    print(res.passed, [(e.engine, e.agreement) for e in res.engines])
    print(bench_bundle("export/default", engines="torch:fp32,onnxrt:fp32").to_dict())

Importing this package pulls in numpy only; engines are imported when run.
"""

from edgemask.compare.bench import BenchResult, EngineBench, bench_bundle, bench_engine, bench_runner, machine_info
from edgemask.compare.compare import (
    ComparisonResult,
    EngineSpec,
    EngineStats,
    check_tolerance,
    compare_bundle,
    compare_outputs,
    default_engines,
    parse_engines,
    reference_engine,
    run_backends,
    run_engine,
)
from edgemask.compare.config import BenchConfig, CompareConfig

__all__ = [
    "BenchConfig",
    "BenchResult",
    "CompareConfig",
    "ComparisonResult",
    "EngineBench",
    "EngineSpec",
    "EngineStats",
    "bench_bundle",
    "bench_engine",
    "bench_runner",
    "check_tolerance",
    "compare_bundle",
    "compare_outputs",
    "default_engines",
    "machine_info",
    "parse_engines",
    "reference_engine",
    "run_backends",
    "run_engine",
]

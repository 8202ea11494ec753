"""Torch eager vs ONNX Runtime (fp32/fp16/int8) vs OpenCV DNN: batch-1 latency and batch-32 throughput.

Usage::

    python benchmarks/backend_latency.py [BUNDLE] [--iters 300] [--batch 32] [--json]

Without BUNDLE it builds one in a temporary folder: a small synthetic dataset,
the default ``seed_cnn`` at 64×64 trained for a couple of epochs (latency
does not depend on how well it is trained), exported with
``edgemask.export.export_bundle``. It also exports a second int8 model with
ONNX Runtime's CPU Q/DQ placement (``int8_target="cpu"``): the bundle's
default int8 model puts Q/DQ where TensorRT wants them, which ONNX Runtime's
CPU provider runs as an emulation, so both are timed.

A third int8 model is quantized here, for this benchmark only, with ONNX
Runtime's own CPU defaults (uint8 asymmetric activations, int8 per-channel
weights: the U8S8 kernels x86 runs fastest). Bundles do not ship it, because
TensorRT requires symmetric int8 activations; it shows what the CPU could do.

Targets checked at the end: ONNX Runtime fp32 batch-1 p50 ≤ ¼ of torch
eager's, and int8 not slower than fp32 per image at batch 32.
Thread count: ``EDGEMASK_NUM_THREADS`` (default: every core).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# Run from a checkout without installing: make the package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENGINES = ["torch:fp32", "onnxrt:fp32", "onnxrt:fp16", "onnxrt:int8", "opencv:fp32"]


def build_bundle(work: Path, epochs: int = 2, n: int = 900) -> tuple[Path, Path]:
    """Train the default seed_cnn briefly and export it twice (int8 for TensorRT, int8 for ORT's CPU kernels)."""
    import warnings

    from edgemask.config import TrainConfig
    from edgemask.data.synth import write_synth_dataset
    from edgemask.export import export_bundle
    from edgemask.training import train

    warnings.simplefilter("ignore", DeprecationWarning)
    if (work / "bundle" / "manifest.json").is_file() and (work / "bundle-int8-cpu" / "manifest.json").is_file():
        print(f"reusing the bundles in {work}", file=sys.stderr)
        return work / "bundle", work / "bundle-int8-cpu"
    print(f"building a bundle in {work} (synthetic data, {epochs} epochs) ...", file=sys.stderr)
    write_synth_dataset(work / "data", n=n, size=64, seed=0, n_scenes=0)
    run = train(TrainConfig(data=str(work / "data"), out=str(work / "run"), size=64, epochs=epochs, max_minutes=3.0))
    bundle = export_bundle(run, work / "bundle", name="bench")
    cpu_int8 = export_bundle(run, work / "bundle-int8-cpu", precisions=("int8",), int8_target="cpu", name="bench-cpu")
    return bundle, cpu_int8


def u8_asym_int8(bundle_dir: Path, out: Path) -> Path:
    """Quantize the bundle's fp32 ONNX with ORT's CPU defaults, calibrated on its golden inputs."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if out.is_file():
        return out
    from edgemask.backends import as_bundle

    b = as_bundle(bundle_dir)
    x = np.load(b.path(b.manifest.golden["inputs"]), allow_pickle=False)  # (G,3,S,S) float32

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": x[i : i + 8]} for i in range(0, len(x), 8)])

        def get_next(self):
            return next(self._it, None)

    quantize_static(
        str(b.model_path("fp32")),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def _median_of(label: str, runs: list):
    """One EngineBench whose every timing is the median over rounds."""
    import dataclasses

    import numpy as np

    out = dataclasses.replace(runs[0], engine=label)
    for f in ("p50_ms", "p99_ms", "mean_ms", "min_ms", "call_p50_ms", "batch_ms", "per_image_ms", "throughput_ips"):
        setattr(out, f, float(np.median([getattr(r, f) for r in runs])))
    out.describe = {**runs[0].describe, "rounds": len(runs)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", help="bundle folder (default: build one)")
    ap.add_argument(
        "--work", help="where to build the bundles, or reuse them from an earlier run (default: a temporary folder)"
    )
    ap.add_argument("--iters", type=int, default=300, help="timed batch-1 calls per engine")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the throughput run")
    ap.add_argument("--batch-iters", type=int, default=30, help="timed batch-N calls per engine")
    ap.add_argument("--warmup", type=int, default=30, help="untimed calls before each timed run")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs when building the bundle")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="time every engine this many times, interleaved, and report each number's median "
        "(a busy shared machine hits engines unevenly)",
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    from rich.console import Console

    from edgemask.backends import as_bundle
    from edgemask.backends.onnxrt import OnnxRuntimeRunner
    from edgemask.compare import BenchConfig, EngineSpec, bench_engine, bench_runner, machine_info
    from edgemask.compare.bench import BenchResult
    from edgemask.compare.render import bench_table, machine_lines

    tmp = None
    cpu_int8 = None
    if args.bundle:
        bundle_dir = Path(args.bundle)
    else:
        work = Path(args.work) if args.work else Path(tmp := tempfile.mkdtemp(prefix="edgemask-bench-"))
        bundle_dir, cpu_int8 = build_bundle(work, epochs=args.epochs)
    cfg = BenchConfig(batch=args.batch, warmup=args.warmup, iters=args.iters, batch_iters=args.batch_iters)
    bundle = as_bundle(bundle_dir)
    have = set(bundle.manifest.precisions("onnx"))
    plan = [(bundle, EngineSpec("torch", "fp32"), "torch:fp32")]
    plan += [(bundle, EngineSpec(*label.split(":")), label) for label in ENGINES[1:] if label.split(":")[1] in have]
    if cpu_int8 is not None:
        plan.append((as_bundle(cpu_int8), EngineSpec("onnxrt", "int8"), "onnxrt:int8 cpu-QDQ"))
    extra = None
    if "fp32" in have and bundle.manifest.golden:
        extra = u8_asym_int8(bundle_dir, (cpu_int8 or bundle_dir).parent / "model.int8-u8asym.onnx")
        plan.append((None, extra, "onnxrt:int8 u8-asym"))
    runs: dict[str, list] = {label: [] for _, _, label in plan}
    for k in range(args.rounds):
        for b, spec, label in plan:
            print(f"round {k + 1}/{args.rounds}: timing {label} ...", file=sys.stderr)
            if b is None:  # a model file outside any bundle
                runner = OnnxRuntimeRunner(spec, bundle.input_size, len(bundle.class_names), "int8")
                runs[label].append(bench_runner(runner, label, cfg))
            else:
                runs[label].append(bench_engine(b, spec, cfg))
    rows = [_median_of(label, rs) for label, rs in runs.items()]
    result = BenchResult(
        bundle=str(bundle_dir), engines=rows, config={**cfg.to_dict(), "rounds": args.rounds}, machine=machine_info()
    )

    by = {e.engine: e for e in rows}
    targets = {}
    if "torch:fp32" in by and "onnxrt:fp32" in by:
        ratio = by["onnxrt:fp32"].p50_ms / by["torch:fp32"].p50_ms
        targets["ort_fp32_b1_over_torch"] = {"ratio": ratio, "target": 0.25, "met": ratio <= 0.25}
    for label in ("onnxrt:int8", "onnxrt:int8 cpu-QDQ", "onnxrt:int8 u8-asym"):
        if label in by and "onnxrt:fp32" in by:
            ratio = by[label].per_image_ms / by["onnxrt:fp32"].per_image_ms
            targets[f"{label} b{cfg.batch} over fp32"] = {"ratio": ratio, "target": 1.0, "met": ratio <= 1.0}

    if args.json:
        print(json.dumps({**result.to_dict(), "targets": targets}, indent=2))
    else:
        con = Console(width=max(100, Console().width))
        con.print(bench_table(result))
        for line in machine_lines(result.machine):
            con.print(line, highlight=False, soft_wrap=True)
        for name, t in targets.items():
            verdict = "[green]met[/]" if t["met"] else "[red]not met[/]"
            con.print(f"{name}: {t['ratio']:.3f} (target ≤ {t['target']:g}) {verdict}")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

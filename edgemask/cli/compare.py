"""``edgemask compare`` (numerical parity of a bundle's engines) and ``edgemask bench`` (their speed)."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from edgemask.cli._common import console, err_console, fail, parse_label_map, progress_bar, progress_callback, run_cli
from edgemask.compare.config import BenchConfig, CompareConfig

_C = CompareConfig()
_B = BenchConfig()
_ENGINES_HELP = (
    "Engines as backend:precision, comma-separated, e.g. 'torch:fp32,onnxrt:fp32,onnxrt:fp16,onnxrt:int8,"
    "opencv:fp32'. Default: every engine that can run here for the bundle's precisions."
)
_DEVICE_HELP = "cpu, or cuda: torch on the GPU and ONNX Runtime with its CUDA execution provider."


def _device_options(device: str) -> dict[str, dict[str, Any]]:
    """Per-backend runner options for ``--device``."""
    from edgemask.errors import ConfigError

    if device == "cpu":
        return {}
    if device == "cuda":
        return {"torch": {"device": "cuda"}, "onnxrt": {"providers": ["cuda"]}}
    raise ConfigError(f"--device {device!r} is not supported; use cpu or cuda")


def _save(path: str | None, data: dict[str, Any]) -> None:
    if path:
        from edgemask.utils.io import atomic_write_json

        atomic_write_json(path, data)
        err_console.print(f"result written to [bold]{path}[/]")


def compare_cmd(
    bundle: str = typer.Argument(..., help="Bundle folder written by 'edgemask export' (its hashes are verified)."),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        "-d",
        help="Dataset in any layout 'train' reads (labels give accuracy). Default: the bundle's golden inputs, without labels.",
    ),
    engines: Optional[str] = typer.Option(None, "--engines", "-e", help=_ENGINES_HELP),
    n: int = typer.Option(
        _C.max_images, "--n", help="Use at most this many images, spread over the dataset (0 = all)."
    ),
    batch_size: int = typer.Option(_C.batch_size, help="Images per inference call."),
    fp32_tol: float = typer.Option(
        _C.fp32_max_abs_diff, help="fp32 engines: largest allowed max |Δlogit| vs the float reference."
    ),
    fp16_tol: float = typer.Option(_C.fp16_max_abs_diff, help="fp16 engines pass with max |Δlogit| up to this ..."),
    fp16_agreement: float = typer.Option(
        _C.fp16_min_agreement, help="... or with at least this top-1 agreement (fraction)."
    ),
    int8_agreement: float = typer.Option(
        _C.int8_min_agreement, help="int8 engines: least top-1 agreement with the float model (fraction)."
    ),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
    label_map: Optional[str] = typer.Option(None, help="Extra dataset label aliases, e.g. 'face=no_mask'."),
    confusion: bool = typer.Option(False, "--confusion", help="Also print per-engine confusion matrices."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON (for scripts)."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Also write the result (with its config) to this JSON file."
    ),
) -> None:
    """Run every engine on the same images and check it against the float model.

    Prints accuracy, top-1 agreement with the float model (torch fp32, or
    onnxrt fp32 without torch), max/mean logit difference and a verdict per
    engine. Exits 1 when any engine exceeds its precision's tolerance.
    """
    with run_cli():
        from edgemask.compare import compare_bundle

        cfg = CompareConfig(
            fp32_max_abs_diff=fp32_tol,
            fp16_max_abs_diff=fp16_tol,
            fp16_min_agreement=fp16_agreement,
            int8_min_agreement=int8_agreement,
            batch_size=batch_size,
            max_images=n,
        )
        with progress_bar(transient=True) as bar:
            result = compare_bundle(
                bundle,
                data=data,
                engines=engines,
                config=cfg,
                options=_device_options(device),
                label_map=parse_label_map(label_map),
                progress=progress_callback(bar, {"load": "loading images"}),
            )
        _save(out, result.to_dict())
        if json_out:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            from edgemask.compare.render import comparison_table, confusion_tables

            console.print(comparison_table(result))
            if confusion:
                for t in confusion_tables(result):
                    console.print(t)
    if not result.passed:
        bad = "; ".join(f"{e.engine} ({e.reason})" for e in result.failures)
        fail(f"{len(result.failures)} engine(s) exceeded their tolerance: {bad}")
    if not json_out:
        err_console.print(f"[green]all {len(result.engines)} engines within tolerance[/]")


def bench_cmd(
    bundle: str = typer.Argument(..., help="Bundle folder written by 'edgemask export'."),
    engines: Optional[str] = typer.Option(None, "--engines", "-e", help=_ENGINES_HELP),
    batch: int = typer.Option(_B.batch, help="Images per call for the throughput run."),
    warmup: int = typer.Option(_B.warmup, help="Untimed calls before each timed run."),
    iters: int = typer.Option(_B.iters, help="Timed batch-1 calls (for p50/p99)."),
    batch_iters: int = typer.Option(_B.batch_iters, help="Timed batch-N calls."),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON (for scripts)."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Also write the result (with its config and machine info) to this JSON file."
    ),
) -> None:
    """Time each engine: batch-1 latency p50/p99 and batch-N throughput, after warm-up.

    Thread count ('EDGEMASK_NUM_THREADS', default all cores), CPU model,
    load average and library versions are printed with the numbers.
    """
    with run_cli():
        from edgemask.compare import bench_bundle

        cfg = BenchConfig(batch=batch, warmup=warmup, iters=iters, batch_iters=batch_iters)
        with progress_bar(transient=True) as bar:
            result = bench_bundle(
                bundle,
                engines=engines,
                config=cfg,
                options=_device_options(device),
                progress=progress_callback(bar, {"load": "loading images"}),
            )
        _save(out, result.to_dict())
        if json_out:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        from edgemask.compare.render import bench_table, machine_lines

        console.print(bench_table(result))
        for line in machine_lines(result.machine):
            console.print(line, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    app.command("bench")(bench_cmd)

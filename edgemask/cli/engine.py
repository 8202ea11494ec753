"""``edgemask engine build`` and ``edgemask engine check-qdq``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgemask.cli._common import console, err_console, run_cli
from edgemask.cli.options import device_option, engine_option, parse_batch


def build_cmd(
    bundle: Path = typer.Argument(..., help="Bundle folder written by 'edgemask export'."),
    device: str = device_option(..., short=True),
    precision: str = engine_option("precision"),
    int8_mode: str = engine_option("int8_mode"),
    dla_core: Optional[int] = engine_option("dla_core"),
    batch: str = engine_option("batch"),
    workspace: Optional[int] = engine_option("workspace"),
    timing_cache: Optional[Path] = engine_option("timing_cache"),
    no_timing_cache: bool = engine_option("no_timing_cache"),
    print_trtexec: bool = typer.Option(
        False,
        "--print-trtexec",
        help="Print the equivalent trtexec command and exit without building (no TensorRT needed).",
    ),
    tensorrt: Optional[str] = typer.Option(
        None,
        "--tensorrt",
        help="With --print-trtexec: plan for this TensorRT (e.g. 11.4; 11 has no --fp16/--int8). Default: the profile's.",
    ),
    verbose: bool = engine_option("verbose"),
    model: str = typer.Option(
        "all",
        "--model",
        help="classifier, detector (the bundle's face detector), or all: "
        "the classifier and, when the bundle has one, the detector.",
    ),
) -> None:
    """Build TensorRT engines for DEVICE and add them to the bundle (run it on the device).

    With a face detector in the bundle, its engine is built too (--model all, the default), by the same builder.

    Python: edgemask.export.engine.build_engine(bundle, device, precision, part="classifier"|"detector")
    """
    with run_cli():
        from edgemask.errors import ConfigError
        from edgemask.export.engine import bundle_parts

        # The keywords plan_engine_build and build_engine share.
        plan = {"dla_core": dla_core, "int8_mode": int8_mode, "batch": parse_batch(batch), "workspace_mib": workspace}
        parts = bundle_parts(bundle, model)
        if tensorrt and not print_trtexec:
            raise ConfigError("--tensorrt only goes with --print-trtexec; a build uses this machine's TensorRT")
        if print_trtexec:
            _print_trtexec(bundle, device, precision, parts, plan, tensorrt, False if no_timing_cache else timing_cache)
            return
        _build(bundle, device, precision, parts, plan, False if no_timing_cache else (timing_cache or True), verbose)


def _warn(w: str) -> None:
    err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


def _print_trtexec(bundle, device, precision, parts, plan, tensorrt, timing_cache) -> None:
    """``--print-trtexec``: each part's plan warnings, then its trtexec command line (no TensorRT needed).

    ``timing_cache``: a file, None for the device's default one, False for none.
    """
    from edgemask.bundle.engines import default_timing_cache
    from edgemask.devices import load_profile
    from edgemask.errors import ConfigError
    from edgemask.export.engine import engine_build_command, plan_engine_build

    if tensorrt and not load_profile(device).accepts_tensorrt(tensorrt):
        raise ConfigError(
            f"device {device!r} does not run TensorRT {tensorrt} (it runs {load_profile(device).tensorrt_text()})"
        )
    for part in parts:
        p = plan_engine_build(bundle, device, precision, tensorrt_version=tensorrt, part=part, **plan)
        for w in p.warnings:
            _warn(w)
        tc = None if timing_cache is False else (timing_cache or default_timing_cache(p.device, p.tensorrt))
        typer.echo(engine_build_command(p, timing_cache=tc))


def _build(bundle, device, precision, parts, plan, timing_cache, verbose: bool) -> None:
    """Build each part's engine into the bundle, one line per engine built."""
    from edgemask.backends.tensorrt.builder import require_build_gpu
    from edgemask.export.engine import build_engine, plan_engine_build
    from edgemask.utils.warn import once_each

    warn = once_each(_warn, [])
    # The plans' warnings first, then "no TensorRT here" (one line, exit 1), and only
    # then a spinner: on a terminal a spinner drawn earlier would be left behind.
    for part in parts:  # every plan (and its bundle errors) before TensorRT is imported
        for w in plan_engine_build(bundle, device, precision, part=part, **plan).warnings:
            warn(w)
    require_build_gpu()  # no TensorRT, or TensorRT without a GPU: one line
    for part in parts:
        with console.status(f"building {precision} {part} engine for {device} (minutes on a Jetson)"):
            result = build_engine(
                bundle,
                device,
                precision,
                timing_cache=timing_cache,
                verbose=verbose,
                on_warning=warn,
                part=part,
                **plan,
            )
        e = result.entry
        console.print(
            f"[green]built[/] {part} {result.path} ({e.precision}, TensorRT {e.tensorrt_version}, "
            f"compute capability {e.compute_capability}, {result.built.build_seconds:.1f} s)",
            highlight=False,
        )


def check_qdq_cmd(
    target: Path = typer.Argument(..., help="An int8 ONNX file, or a bundle folder (its model.int8.onnx is checked)."),
    device: Optional[str] = device_option(
        None, "check against its TensorRT. Default: the strictest rules (TensorRT 8.x).", short=True
    ),
    tensorrt: Optional[str] = typer.Option(
        None, "--tensorrt", help="Check against this TensorRT version (e.g. 8.5, 10.3); overrides --device."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Tell, without a GPU, whether TensorRT's explicit quantization accepts an INT8 QDQ model.

    Exit code 1 when it would not build. Python:
    edgemask.export.qdq_check.check_qdq_for_tensorrt(path, "10.3")
    """
    with run_cli():
        from rich.markup import escape

        from edgemask.devices import load_profile
        from edgemask.export.qdq_check import check_bundle_int8, check_qdq_for_tensorrt

        version = tensorrt or (load_profile(device).tensorrt if device else None)
        report = check_bundle_int8(target, version) if target.is_dir() else check_qdq_for_tensorrt(target, version)
        if as_json:
            typer.echo(report.to_json())
        else:
            for i in report.issues:
                color = "red" if i.severity == "error" else "yellow"
                console.print(
                    f"[{color}]{i.severity}[/] " + escape(f"[{i.code}] {i.node}: {i.message}"),
                    highlight=False,
                    soft_wrap=True,
                )
            console.print(
                ("[green]" if report.passed else "[red]") + escape(report.summary()) + "[/]",
                highlight=False,
                soft_wrap=True,
            )
        if not report.passed:
            raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    engine_app = typer.Typer(help="TensorRT engines: build per device, check INT8 QDQ models.", no_args_is_help=True)
    engine_app.command("build")(build_cmd)
    engine_app.command("check-qdq")(check_qdq_cmd)
    app.add_typer(engine_app, name="engine")

"""``edgemask engine build`` and ``edgemask engine check-qdq``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgemask.cli._common import console, err_console, run_cli

PRECISION = "fp16"
INT8_MODE = "auto"
BATCH = "1,8,32"


def _parse_batch(text: str) -> tuple[int, int, int]:
    from edgemask.errors import ConfigError

    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ConfigError(f"--batch {text!r} is not MIN,OPT,MAX (e.g. 1,8,32)")
    return parts  # type: ignore[return-value]


def build_cmd(
    bundle: Path = typer.Argument(..., help="Bundle folder written by 'edgemask export'."),
    device: str = typer.Option(..., "--device", "-d", help="Device profile ('edgemask devices list')."),
    precision: str = typer.Option(
        PRECISION,
        "--precision",
        "-p",
        help="fp32, fp16 or int8; lowered with a warning when the device does not run it fast.",
    ),
    int8_mode: str = typer.Option(
        INT8_MODE,
        "--int8-mode",
        help="qdq: explicit INT8 from model.int8.onnx; calibrator: implicit INT8 from the fp32 model and the calibration cache; auto: qdq if it passes the QDQ check.",
    ),
    dla_core: Optional[int] = typer.Option(
        None, "--dla-core", help="Build for this DLA core (GPU fallback on). Default: GPU."
    ),
    batch: str = typer.Option(BATCH, "--batch", help="Dynamic batch profile MIN,OPT,MAX."),
    workspace: Optional[int] = typer.Option(
        None, "--workspace", help="Builder workspace in MiB. Default: the profile's."
    ),
    timing_cache: Optional[Path] = typer.Option(
        None,
        "--timing-cache",
        help="Timing cache file to load and update. Default: one per device in the engine cache.",
    ),
    no_timing_cache: bool = typer.Option(False, "--no-timing-cache", help="Build without a timing cache."),
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
    verbose: bool = typer.Option(False, "--verbose", help="TensorRT verbose log."),
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
        from edgemask.bundle.engines import default_timing_cache
        from edgemask.errors import ConfigError
        from edgemask.export.engine import build_engine, bundle_parts, engine_build_command, plan_engine_build

        b = _parse_batch(batch)
        parts = bundle_parts(bundle, model)
        if tensorrt and not print_trtexec:
            raise ConfigError("--tensorrt only goes with --print-trtexec; a build uses this machine's TensorRT")
        if print_trtexec:
            from edgemask.devices import load_profile

            if tensorrt and not load_profile(device).accepts_tensorrt(tensorrt):
                raise ConfigError(
                    f"device {device!r} does not run TensorRT {tensorrt} (it runs "
                    f"{load_profile(device).tensorrt_text()})"
                )
            for part in parts:
                plan = plan_engine_build(
                    bundle,
                    device,
                    precision,
                    dla_core=dla_core,
                    int8_mode=int8_mode,
                    batch=b,
                    workspace_mib=workspace,
                    tensorrt_version=tensorrt,
                    part=part,
                )
                for w in plan.warnings:
                    err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
                tc = None if no_timing_cache else (timing_cache or default_timing_cache(plan.device, plan.tensorrt))
                typer.echo(engine_build_command(plan, timing_cache=tc))
            return
        tc_opt = False if no_timing_cache else (timing_cache or True)

        def warn(w: str) -> None:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)

        # The plan's warnings first, then "no TensorRT here" (one line, exit 1), and only
        # then a spinner: on a terminal a spinner drawn earlier would be left behind.
        from edgemask.backends.tensorrt.builder import require_build_gpu
        from edgemask.utils.warn import once_each

        seen: list = []
        warn = once_each(warn, seen)
        for part in parts:  # every plan (and its bundle errors) before TensorRT is imported
            for w in plan_engine_build(
                bundle,
                device,
                precision,
                dla_core=dla_core,
                int8_mode=int8_mode,
                batch=b,
                workspace_mib=workspace,
                part=part,
            ).warnings:
                warn(w)
        require_build_gpu()  # no TensorRT, or TensorRT without a GPU: one line
        for part in parts:
            with console.status(f"building {precision} {part} engine for {device} (minutes on a Jetson)"):
                result = build_engine(
                    bundle,
                    device,
                    precision,
                    dla_core=dla_core,
                    int8_mode=int8_mode,
                    batch=b,
                    workspace_mib=workspace,
                    timing_cache=tc_opt,
                    verbose=verbose,
                    on_warning=warn,
                    part=part,
                )
            e = result.entry
            console.print(
                f"[green]built[/] {part} {result.path} ({e.precision}, TensorRT {e.tensorrt_version}, "
                f"compute capability {e.compute_capability}, {result.built.build_seconds:.1f} s)",
                highlight=False,
            )


def check_qdq_cmd(
    target: Path = typer.Argument(..., help="An int8 ONNX file, or a bundle folder (its model.int8.onnx is checked)."),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        "-d",
        help="Check against this device's TensorRT. Default: the strictest rules (TensorRT 8.x).",
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

"""``edgemask devices list|show|detect``: the device profiles in devices/."""

from __future__ import annotations

import json

import typer

from edgemask.cli._common import console, err_console, run_cli


def list_cmd() -> None:
    """List the device profiles (JetPack, TensorRT, compute capability, fast precisions, DLA).

    A broken profile does not hide the others: they are listed, then one
    error line per broken file, and the exit code is 1.
    Python: edgemask.devices.list_profiles(), load_profile(name)
    """
    with run_cli():
        from rich.table import Table

        from edgemask.devices import list_profiles, load_profile
        from edgemask.errors import ConfigError

        t = Table(title="device profiles")
        for col in ("name", "JetPack", "L4T", "TensorRT", "CC", "fast precisions", "DLA", "max opset", "description"):
            t.add_column(col)
        broken: list[str] = []
        for name in list_profiles():
            try:
                p = load_profile(name)
            except ConfigError as e:
                broken.append(str(e))
                continue
            t.add_row(
                p.name,
                p.jetpack or "-",
                p.l4t or "-",
                p.tensorrt or "-",
                p.compute_capability or "auto",
                ", ".join(p.fast_precisions),
                str(p.dla_cores),
                str(p.max_onnx_opset),
                p.description,
            )
        console.print(t)
        for msg in broken:
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        if broken:
            raise typer.Exit(code=1)


def show_cmd(
    name: str = typer.Argument(..., help="Profile name, e.g. jetson-orin-nano ('edgemask devices list')."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
) -> None:
    """Show every field of one device profile and where it was read from.

    Python: edgemask.devices.load_profile(name).to_dict()
    """
    with run_cli():
        from edgemask.devices import load_profile

        p = load_profile(name)
        d = p.to_dict()
        if as_json:
            typer.echo(json.dumps(d, indent=2))
            return
        width = max(len(k) for k in d)
        for k, v in d.items():
            if isinstance(v, list):
                v = ", ".join(v)
            console.print(
                f"[bold]{k:<{width}}[/]  {v if v not in ('', None) else '-'}", highlight=False, soft_wrap=True
            )


def detect_cmd() -> None:
    """Print the profile name that matches this machine.

    Python: edgemask.devices.detect_profile_name()
    """
    with run_cli():
        from edgemask.devices import detect_profile_name

        typer.echo(detect_profile_name())


def register(app: typer.Typer) -> None:
    devices_app = typer.Typer(help="Device profiles (devices/*.toml): what each target runs.", no_args_is_help=True)
    devices_app.command("list")(list_cmd)
    devices_app.command("show")(show_cmd)
    devices_app.command("detect")(detect_cmd)
    app.add_typer(devices_app, name="devices")

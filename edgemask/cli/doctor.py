"""``edgemask doctor``: checks this machine (cameras, GStreamer, CUDA/TensorRT, JetPack, engine cache, a bundle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgemask.cli._common import console, run_cli

_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def doctor_cmd(
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", "-b", help="Also check this bundle: hashes, int8 QDQ model, engines for this device."
    ),
    device: Optional[str] = typer.Option(
        None, "--device", "-d", help="Device profile to check against. Default: detected."
    ),
    camera_probe: bool = typer.Option(
        True, "--camera-probe/--no-camera-probe", help="Open each /dev/video* with OpenCV and read a frame."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check that this machine can run edgemask: each check is pass/warn/fail/skip with a fix.

    Exit code 1 when a check fails. Python: edgemask.doctor.run_doctor(bundle, device)
    """
    with run_cli():
        from rich.markup import escape
        from rich.table import Table

        from edgemask.devices import load_profile
        from edgemask.doctor import run_doctor, worst_status

        if device:
            load_profile(device)  # an unknown name is a one-line error listing the known ones
        checks = run_doctor(bundle=bundle, device=device, probe_cameras=camera_probe)
        if as_json:
            typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
        else:
            t = Table(title="edgemask doctor", show_lines=False)
            for col in ("check", "status", "detail", "fix"):
                t.add_column(col, overflow="fold")
            for c in checks:
                s = _STYLE[c.status]
                t.add_row(escape(c.name), f"[{s}]{c.status}[/]", escape(c.detail), escape(c.fix))
            console.print(t)
        worst = worst_status(checks)
        if worst == "fail" or (strict and worst == "warn"):
            raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)

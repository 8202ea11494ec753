"""``edgemask export`` and ``edgemask bundle verify|show``."""

from __future__ import annotations

from typing import Optional

import typer

from edgemask.cli._common import console, err_console, progress_bar, progress_callback, run_cli
from edgemask.cli.options import comma_list, config_from_params, from_field, out_option, overwrite_option
from edgemask.config import field_help
from edgemask.export.config import ExportConfig

_STAGE_LABELS = {
    "load": "loading run + recipe",
    "calibration set": "selecting calibration images",
    "fp32": "fp32 ONNX export + check",
    "opencv": "OpenCV DNN check",
    "fp16": "fp16 conversion",
    "int8": "int8 calibration + QDQ",
    "detector scenes": "detector: calibration scenes",
    "detector fp32": "detector: fp32 ONNX + parity",
    "detector fp16": "detector: fp16 + parity",
    "detector int8": "detector: int8 QDQ + parity",
    "write": "golden set, manifest, verify",
}


def _opt(name: str, *param_decls: str, **kw):
    """The ``export`` option of ExportConfig field ``name``: its default and its help."""
    return from_field(ExportConfig, name, *param_decls, **kw)


# One line per option: default and --help text are the ExportConfig field's; parameters named
# like a field go into the config as parsed (config_from_params).
def export_cmd(
    ctx: typer.Context,
    run: str = typer.Argument(..., help=field_help(ExportConfig, "run")),
    out: str = out_option(ExportConfig),
    precisions: str = _opt("precisions", "--precision", "-p", default=",".join(ExportConfig().precisions)),
    calibration: str = _opt("calibration", "--calibration", "-c"),
    method: str = _opt("method", "--calibration-method"),
    int8_target: str = _opt("int8_target", "--int8-target"),
    percentile: float = _opt("percentile"),
    opset: Optional[int] = _opt("opset"),
    device: Optional[str] = _opt("device", "--device"),
    engine: bool = _opt("engine", "--engine"),
    name: Optional[str] = _opt("name"),
    golden_count: int = _opt("golden_count"),
    probe_count: int = _opt("probe_count"),
    opencv_check: bool = _opt("opencv_check"),
    simplify: bool = _opt("simplify"),
    trt_cache_version: int = _opt("trt_cache_version"),
    overwrite: bool = overwrite_option(ExportConfig),
    detector: Optional[str] = _opt("detector", "--detector"),
    detector_calibration: str = _opt("detector_calibration", "--detector-calibration"),
    detector_calibration_count: int = _opt("detector_calibration_count", "--detector-calibration-count"),
    detector_golden_count: int = _opt("detector_golden_count", "--detector-golden-count"),
) -> None:
    """Export a trained run as a bundle: ONNX fp32/fp16/int8 (QDQ), calibration table, golden set, manifest.

    With --device the export targets one device profile; with --engine it
    also builds that device's TensorRT engines (run it on the device).
    With --detector the bundle also holds the learned face detector, which
    'edgemask run' then uses by default.

    Python: edgemask.export.export_bundle(RUN, OUT, ExportConfig(precisions=("fp32", "fp16", "int8")));
    for a device: export_bundle(RUN, OUT, ExportConfig(device="jetson-orin-nano", engine=True))
    """
    with run_cli():
        from edgemask.export.bundle_writer import export_bundle

        cfg = config_from_params(ExportConfig, ctx.params, precisions=comma_list(precisions))
        said: list[str] = []  # warnings known early are said at once: they must precede a refusal

        def warn(w: str) -> None:
            said.append(w)
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False)

        with progress_bar(transient=True) as bar:  # the summary table replaces it; an error stays one line
            result = export_bundle(
                run, out, cfg, progress_callback(bar, _STAGE_LABELS), on_warning=warn if device else None
            )
        _print_export(result, said)


def _print_export(result, said: list[str]) -> None:
    """The bundle's tables, the warnings not ``said`` yet, its calibration and where it went."""
    from edgemask.bundle.show import detector_table, models_table

    m = result.manifest
    console.print(models_table(m, title=f"bundle {m.name} v{m.version} (opset {m.opset})"))
    if m.detector is not None:
        console.print(detector_table(m))
    for w in result.warnings:
        if w not in said:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if m.calibration:
        c = m.calibration
        console.print(
            f"calibration: recipe [bold]{c['recipe']}[/], {c['count']} images, {c['method']}; "
            f"table {c['table']}, TensorRT cache {c['cache']}"
        )
    console.print(
        f"bundle written to [bold]{result.bundle}[/] ({len(m.files) + 1} files); "
        f"check it with 'edgemask bundle verify {result.bundle}'"
    )


bundle_app = typer.Typer(help="Inspect, verify, sign and pack exported bundles.", no_args_is_help=True)


@bundle_app.command("verify")
def verify_cmd(
    path: str = typer.Argument(..., help="Bundle folder (holding manifest.json)."),
    trusted: str = typer.Option(None, "--trusted", help="Folder of trusted *.pub keys: also check the signature."),
    installed_version: int = typer.Option(
        None, "--installed-version", help="With --trusted: refuse a bundle older than this version."
    ),
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a bundle older than --installed-version."
    ),
) -> None:
    """Check the manifest and the SHA-256 and size of every file; exit 1 listing the problems."""
    with run_cli():
        from edgemask.bundle import load_manifest, verify_bundle

        m = load_manifest(path)
        if trusted is not None:
            from edgemask.bundle.signing import verify_signature

            v = verify_signature(path, trusted, installed_version=installed_version, allow_downgrade=allow_downgrade)
            console.print(
                f"[green]ok[/]: bundle {v.name} v{v.version} signed by trusted key {v.key_id}, "
                f"{len(m.files)} files match their SHA-256",
                highlight=False,
            )
            return
        problems = verify_bundle(path)
        if not problems:  # the files are the ones hashed; are they what the manifest says they are?
            from edgemask.bundle.bundle import model_problems

            problems = model_problems(path)
        if problems:
            for p in problems:
                err_console.print(f"[red]✗[/] {p}", highlight=False)
            err_console.print(
                f"[bold red]error:[/] bundle {path} has {len(problems)} problem(s); re-export it or copy it again",
                highlight=False,
            )
            raise typer.Exit(code=1)
        console.print(
            f"[green]ok[/]: bundle {m.name} v{m.version}, {len(m.files)} files match their SHA-256", highlight=False
        )


@bundle_app.command("sign")
def sign_cmd(
    path: str = typer.Argument(..., help="Bundle folder (holding manifest.json)."),
    key: str = typer.Option(..., "--key", help="Private key file made by 'edgemask keys generate'."),
) -> None:
    """Sign the bundle's manifest (which holds every file's SHA-256) with an Ed25519 key."""
    with run_cli():
        from edgemask.bundle.signing import SIGNATURE_NAME, sign_bundle

        kid = sign_bundle(path, key)
        console.print(f"signed {path} with key {kid} ({SIGNATURE_NAME})", highlight=False)


@bundle_app.command("pack")
def pack_cmd(
    path: str = typer.Argument(..., help="Bundle folder (holding manifest.json), signed or not."),
    out: str = typer.Option(..., "--out", "-o", help="Package file to write, e.g. mask-v3.embundle."),
) -> None:
    """Pack a bundle into one deterministic file (manifest + signature first) to send to boxes.

    Python: edgemask.bundle.pack.pack_bundle(BUNDLE, OUT)
    """
    with run_cli():
        from edgemask.bundle.pack import pack_bundle, pack_members, package_sha256

        n = len(pack_members(path))
        p = pack_bundle(path, out)
        console.print(
            f"packed {n} files into {p} ({p.stat().st_size} bytes, sha256 {package_sha256(p)})", highlight=False
        )


@bundle_app.command("unpack")
def unpack_cmd(
    package: str = typer.Argument(..., help="A file made by 'edgemask bundle pack'."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to unpack into (must be empty or absent)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Unpack a package (only the files its manifest lists; no links, no paths outside --out).

    Python: edgemask.bundle.pack.unpack_bundle(PACKAGE, OUT)
    """
    with run_cli():
        from edgemask.bundle.pack import unpack_bundle

        d = unpack_bundle(package, out, overwrite=overwrite)
        console.print(f"unpacked into {d}; check it with 'edgemask bundle verify {d} --trusted DIR'", highlight=False)


@bundle_app.command("show")
def show_cmd(
    path: str = typer.Argument(..., help="Bundle folder (holding manifest.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON instead of tables."),
) -> None:
    """Print a bundle's models, precisions, opset, sizes, preprocessing, calibration and files."""
    with run_cli():
        from edgemask.bundle import load_manifest
        from edgemask.bundle.show import manifest_renderables

        m = load_manifest(path)
        if json_out:
            typer.echo(m.to_json(), nl=False)
            return
        for r in manifest_renderables(m):
            console.print(r)


keys_app = typer.Typer(help="Signing keys for bundles (Ed25519).", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate_cmd(out: str = typer.Option("keys", "--out", help="Folder for <id>.key and <id>.pub.")) -> None:
    """Make an Ed25519 key pair: keep <id>.key secret, copy <id>.pub into each box's trusted folder."""
    with run_cli():
        from edgemask.bundle.signing import generate_key

        kp = generate_key(out)
        console.print(f"key {kp.key_id}: private {kp.private_path}, public {kp.public_path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.add_typer(bundle_app, name="bundle")
    app.add_typer(keys_app, name="keys")


__all__ = ["register"]

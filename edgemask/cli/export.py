"""``edgemask export`` and ``edgemask bundle verify|show``."""

from __future__ import annotations

from typing import Optional

import typer

from edgemask.cli._common import console, err_console, progress_bar, progress_callback, run_cli
from edgemask.export.config import CALIBRATION_METHODS, DEFAULT_OPSET, ExportConfig

_D = ExportConfig()

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


def export_cmd(
    run: str = typer.Argument(
        ..., help="Run directory written by 'edgemask train' (weights.safetensors + model.json)."
    ),
    out: str = typer.Option(_D.out, "--out", "-o", help="Bundle folder to write, e.g. export/mask-v1."),
    precision: str = typer.Option(
        ",".join(_D.precisions), "--precision", "-p", help="Comma-separated precisions to ship: fp32, fp16, int8."
    ),
    calibration: str = typer.Option(
        _D.calibration,
        "--calibration",
        "-c",
        help="Calibration recipe: a name from calibration/ (or $EDGEMASK_CALIBRATION_DIR) or a .toml path.",
    ),
    calibration_method: str = typer.Option(
        _D.method, "--calibration-method", help=f"int8 activation calibration: {', '.join(CALIBRATION_METHODS)}."
    ),
    int8_target: str = typer.Option(
        _D.int8_target,
        "--int8-target",
        help="Q/DQ placement of the int8 model: tensorrt (Conv/Gemm inputs; for TensorRT, "
        "exact emulation on ONNX Runtime) or cpu (ONNX Runtime integer kernels, 7-bit weights).",
    ),
    percentile: float = typer.Option(_D.percentile, help="Percentile for --calibration-method percentile."),
    opset: Optional[int] = typer.Option(
        None,
        help=f"Target ONNX opset (11..18); default {DEFAULT_OPSET}, or with --device the "
        "profile's maximum (13 for TensorRT 8.2 / JetPack 4.6).",
    ),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        help="Target device profile ('edgemask devices list'): "
        "lowers the opset to what its TensorRT reads and warns about precisions it "
        "does not run fast (INT8 on a Jetson Nano).",
    ),
    engine: bool = typer.Option(
        False,
        "--engine",
        help="Also build TensorRT engines for --device into the bundle "
        "(needs TensorRT: run it on the device; checked before exporting).",
    ),
    name: Optional[str] = typer.Option(None, help="Bundle name in the manifest (default: the --out folder name)."),
    golden_count: int = typer.Option(_D.golden_count, help="Golden input images stored for on-device self-tests."),
    probe_count: int = typer.Option(
        _D.probe_count,
        help="Images attacked with DeepFool on the float model for the "
        "stability probe a box runs after install (0 = none).",
    ),
    opencv_check: bool = typer.Option(
        _D.opencv_check, help="Also load the fp32 model with OpenCV's DNN module and compare."
    ),
    simplify: bool = typer.Option(
        _D.simplify, help="Simplify the fp32 graph with onnxslim/onnxsim if one is installed."
    ),
    trt_cache_version: int = typer.Option(
        _D.trt_cache_version, help="TensorRT version in the legacy calibration cache header (8.2.1 → 8201)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the bundle in --out (its version goes up by one)."
    ),
    detector: Optional[str] = typer.Option(
        None,
        "--detector",
        help="Run folder of 'edgemask detector train': its face "
        "detector goes into the same bundle at the same precisions.",
    ),
    detector_calibration: str = typer.Option(
        _D.detector_calibration,
        "--detector-calibration",
        help="Scenes that calibrate the detector's int8 model (whole frames, "
        "letterboxed): synth, or a VOC / 'data synth' folder.",
    ),
    detector_calibration_count: int = typer.Option(
        _D.detector_calibration_count, "--detector-calibration-count", help="Scenes in the detector's calibration set."
    ),
    detector_golden_count: int = typer.Option(
        _D.detector_golden_count, "--detector-golden-count", help="Golden scenes stored for the detector's self-tests."
    ),
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
        from edgemask.bundle.show import models_table
        from edgemask.export.bundle_writer import export_bundle

        cfg = ExportConfig(
            run=run,
            out=out,
            precisions=tuple(precision.split(",")),
            calibration=calibration,
            method=calibration_method,
            int8_target=int8_target,
            percentile=percentile,
            opset=opset,
            name=name,
            golden_count=golden_count,
            probe_count=probe_count,
            opencv_check=opencv_check,
            simplify=simplify,
            trt_cache_version=trt_cache_version,
            overwrite=overwrite,
            detector=detector,
            detector_calibration=detector_calibration,
            detector_calibration_count=detector_calibration_count,
            detector_golden_count=detector_golden_count,
            device=device,
            engine=engine,
        )
        said: list[str] = []  # warnings known early are said at once: they must precede a refusal

        def warn(w: str) -> None:
            said.append(w)
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False)

        with progress_bar(transient=True) as bar:  # the summary table replaces it; an error stays one line
            result = export_bundle(
                run, out, cfg, progress_callback(bar, _STAGE_LABELS), on_warning=warn if device else None
            )
        m = result.manifest
        console.print(models_table(m, title=f"bundle {m.name} v{m.version} (opset {m.opset})"))
        if m.detector is not None:
            from edgemask.bundle.show import detector_table

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

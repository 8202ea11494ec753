"""``edgemask data synth`` and ``edgemask data summary``."""

from __future__ import annotations

from typing import Optional

import typer

from edgemask.cli._common import console, parse_label_map, progress_bar, run_cli
from edgemask.cli.options import config_from_params, from_field, overwrite_option
from edgemask.config import DEFAULT_MAX_IMAGE_PIXELS, SynthConfig, TrainConfig

SUMMARY_SHOWN_SKIPS = 20  # skipped files `data summary` lists one by one

FORMATS_HELP = """\
Three dataset layouts are read; the layout is detected automatically.

  ImageFolder: ROOT/with_mask/*.png, ROOT/without_mask/*.jpg, ...
    one folder per class, face crops inside (any depth).
  VOC (the Kaggle face-mask set): ROOT/annotations/*.xml + ROOT/images/
    each <object> (<name> + <bndbox>) becomes one square face crop.
  synth: ROOT/dataset.json + ROOT/crops/<class>/*.png
    written by 'edgemask data synth'.

Classes: mask, no_mask, mask_incorrect. Common spellings are understood
(with_mask, without_mask, mask_weared_incorrect, masked, unmasked, ...);
map others with --label-map, e.g. --label-map face=no_mask,chin=mask_incorrect
"""


def synth_cmd(
    ctx: typer.Context,
    out: str = typer.Option(
        ..., "--out", "-o", help="Folder to write (dataset.json, crops/<class>/, crops.jsonl, scenes/)."
    ),
    n: int = from_field(SynthConfig, "n", "--n"),
    size: int = from_field(SynthConfig, "size", "--size"),
    seed: int = from_field(SynthConfig, "seed", "--seed"),
    n_scenes: int = from_field(SynthConfig, "n_scenes", "--scenes"),
    overwrite: bool = overwrite_option(SynthConfig),
) -> None:
    """Write a synthetic face-mask dataset (offline, no download).

    The crops form an ImageFolder (crops/mask, crops/no_mask,
    crops/mask_incorrect) that 'edgemask train --data OUT' reads directly;
    scenes/ is a small VOC set in the Kaggle layout for detector tests.

    Python: edgemask.data.synth.write_synth_dataset(OUT, SynthConfig(n=6000)), or write_synth_dataset(OUT, n=6000)
    """
    with run_cli():
        from rich.table import Table

        from edgemask.data.synth import write_synth_dataset

        with progress_bar(transient=True) as bar:
            task = bar.add_task("synthesizing faces", total=n, info="")
            info = write_synth_dataset(
                out,
                config_from_params(SynthConfig, ctx.params),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        counts = dict(info.get("counts") or {})
        t = Table(title=f"synthetic {size}x{size} crops")
        t.add_column("class")
        t.add_column("crops", justify="right")
        for name, c in counts.items():
            t.add_row(str(name), str(c))
        t.add_row("[bold]all[/]", f"[bold]{sum(int(c) for c in counts.values())}[/]")
        console.print(t)
        console.print(
            f"written to [bold]{out}[/] (crops/ = ImageFolder, scenes/ = VOC); next: edgemask train --data {out}",
            soft_wrap=True,
        )


def summary_cmd(
    path: str = typer.Argument(
        ..., help="Dataset folder: ImageFolder, VOC (annotations/ + images/) or synth (dataset.json)."
    ),
    size: int = typer.Option(TrainConfig().size, "--size", help="Side the crops are resized to (as training would)."),
    label_map: Optional[str] = typer.Option(
        None, "--label-map", help="Extra label spellings, LABEL=CLASS pairs: 'face=no_mask,mask_chin=mask_incorrect'."
    ),
    seed: int = typer.Option(TrainConfig().seed, "--seed", help="Split seed (the one you will train with)."),
    crop_faces: Optional[bool] = typer.Option(
        None,
        "--crop-faces/--no-crop-faces",
        help="ImageFolder: cut the largest face out of whole photos (default: when most images are not square face crops).",
    ),
    max_image_pixels: int = typer.Option(
        DEFAULT_MAX_IMAGE_PIXELS,
        help="Skip images whose header declares more pixels than this (checked before decoding).",
    ),
) -> None:
    """Count images per class and train/val/test split, and list what was skipped.

    Loads the dataset exactly as 'edgemask train' does (same detection, labels,
    duplicate-aware 80/10/10 split), so problems show up before a long run.
    """
    with run_cli():
        from rich.table import Table

        from edgemask.data import load_dataset, split_indices, summary
        from edgemask.vision.detectors import face_finder

        with progress_bar(transient=True) as bar:
            task = bar.add_task("reading images", total=None, info="")
            ds = load_dataset(
                path,
                size=size,
                label_map=parse_label_map(label_map) or None,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                crop_faces=crop_faces,
                find_faces=face_finder(),
                max_pixels=max_image_pixels,
            )
        splits = split_indices(ds.labels, ds.groups, seed=seed)
        s = summary(ds, splits)

        console.print(
            f"[bold]{path}[/]: {s['format']} layout, {s['n_samples']} crops resized to {size}x{size}",
            highlight=False,
            soft_wrap=True,
        )
        t = Table()
        t.add_column("class")
        for col in ("train", "val", "test", "total"):
            t.add_column(col, justify="right")
        for name in s["classes"]:
            t.add_row(name, *(str(s["counts"][col][name]) for col in ("train", "val", "test", "total")))
        t.add_row(
            "[bold]all[/]", *(f"[bold]{sum(s['counts'][col].values())}[/]" for col in ("train", "val", "test", "total"))
        )
        console.print(t)
        dup = s["n_duplicates"]
        console.print(
            f"{s['n_groups']} distinct images; {dup} duplicate{'s' if dup != 1 else ''} "
            f"(each kept in one split); split seed {seed}",
            highlight=False,
            soft_wrap=True,
        )
        from edgemask.data.facecrop import report_line

        if report_line(ds.face_crops):
            console.print(report_line(ds.face_crops), highlight=False, soft_wrap=True, markup=False)
        if s["warning"]:
            console.print(f"[yellow]warning:[/] {s['warning']}", highlight=False, soft_wrap=True)
        if ds.skipped:
            console.print(f"[yellow]skipped {len(ds.skipped)} file(s)/box(es):[/]", highlight=False)
            for f, reason in ds.skipped[:SUMMARY_SHOWN_SKIPS]:
                console.print(f"  {f}: {reason}", highlight=False, soft_wrap=True, markup=False)
            if len(ds.skipped) > SUMMARY_SHOWN_SKIPS:
                console.print(f"  ... and {len(ds.skipped) - SUMMARY_SHOWN_SKIPS} more", highlight=False)
        else:
            console.print("nothing skipped", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-app (``synth``, ``summary``) to the root app."""
    # A fresh sub-app per call, so registering on several apps (tests) never
    # duplicates commands.
    data_app = typer.Typer(
        name="data",
        help="Make a synthetic dataset, or inspect any dataset before training.\n\n" + FORMATS_HELP,
        no_args_is_help=True,
    )
    data_app.command("synth")(synth_cmd)
    data_app.command("summary")(summary_cmd)
    app.add_typer(data_app, name="data")

"""``edgemask detector train|eval``: the learned face detector."""

from __future__ import annotations

from typing import List

import typer

from edgemask.cli._common import console, err_console, progress_bar, run_cli
from edgemask.detector_config import DetTrainConfig
from edgemask.vision.facedet_decode import DecodeParams

_D = DetTrainConfig()
_DEC = DecodeParams()
_SCORE_HELP = "Decode: a heatmap peak at least this high is a face (recorded in the run, exported to the bundle)."
_MIN_SIDE_HELP = (
    "Decode: drop boxes whose shorter side is under this many frame pixels (too small to tell a mask on; "
    "recorded in the run, exported to the bundle)."
)
_COARSE_HELP = (
    "Decode: also run the frame shrunk to this fraction of the input and keep its large boxes, so a face "
    "filling most of the frame is found (0 = one pass, half the detector work; recorded in the run, exported to the bundle)."
)
app = typer.Typer(
    help="Train and evaluate the learned face detector (any VOC box counts as a face).", no_args_is_help=True
)


def recall_table(name: str, m: dict):
    """A rich table: recall per ground-truth class x size bucket, false boxes per image, AP50."""
    from rich.table import Table

    from edgemask.vision.facedet_decode import SIZE_BUCKETS

    t = Table(title=f"{name} ({m.get('split', '')}): {m['images']} images, {m['faces']} faces, IoU >= {m['iou']}")
    t.add_column("class")
    for b, _, _ in SIZE_BUCKETS:
        t.add_column(f"recall {b} px", justify="right")
    t.add_column("recall >= 24 px", justify="right")
    for lab in sorted(m["recall"]):
        cells = []
        for b, _, _ in SIZE_BUCKETS:
            n = m["counts"][lab].get(b, 0)
            cells.append(f"{m['recall'][lab][b] * 100:.1f}% ({n})" if n else "-")
        big = m["recall_min_side"][lab]
        t.add_row(lab, *cells, "-" if big != big else f"{big * 100:.1f}%")
    t.caption = f"false boxes per image {m['false_per_image']:.3f}; AP50 {m['ap50'] * 100:.1f}%"
    return t


def _parse_label_weights(items: List[str], option: str) -> dict:
    from edgemask.errors import ConfigError

    out = {}
    for item in items:
        label, _, w = item.partition("=")
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if not label.strip() or not weight > 0:
            raise ConfigError(f"{option} {item!r} should be LABEL=W with W > 0, e.g. without_mask=3")
        out[label.strip()] = weight
    return out


@app.command("train")
def train_cmd(
    data: List[str] = typer.Option(
        ..., "--data", "-d", help="VOC folder or 'data synth' folder (its scenes/); repeat for several."
    ),
    out: str = typer.Option(
        _D.out, "--out", "-o", help="Run folder to write (model.json, weights.safetensors, metrics.json)."
    ),
    arch: str = typer.Option(_D.arch, help="Detector architecture."),
    epochs: int = typer.Option(_D.epochs, help="Epochs over the training images."),
    batch_size: int = typer.Option(_D.batch_size, help="Crops per step."),
    lr: float = typer.Option(_D.lr, help="Peak AdamW learning rate (one-cycle schedule)."),
    input_width: int = typer.Option(_D.input_width, help="Network input width (frames are letterboxed to it)."),
    input_height: int = typer.Option(_D.input_height, help="Network input height."),
    heldout: float = typer.Option(_D.heldout, help="Fraction of every data set's images held out (by image, seeded)."),
    split_seed: int = typer.Option(_D.split_seed, help="Seed of the held-out split."),
    seed: int = typer.Option(_D.seed, help="Initialisation and augmentation seed."),
    max_minutes: float = typer.Option(
        _D.max_minutes, help="Training time budget in minutes (0 = none): the learning rate anneals to end within it."
    ),
    init: str = typer.Option(
        _D.init, help="Start from this detector run's weights (a fine-tune with a fresh schedule); empty = scratch."
    ),
    image_weight: List[str] = typer.Option(
        [],
        "--image-weight",
        metavar="LABEL=W",
        help="Draw images holding a LABEL face W times as often, e.g. without_mask=3 (repeat for several).",
    ),
    face_weight: List[str] = typer.Option(
        [],
        "--face-weight",
        metavar="LABEL=W",
        help="Weigh each LABEL face W times in the loss, e.g. without_mask=2 (repeat for several).",
    ),
    score_threshold: float = typer.Option(_DEC.score_threshold, help=_SCORE_HELP),
    min_side: float = typer.Option(_DEC.min_side, help=_MIN_SIDE_HELP),
    coarse: float = typer.Option(_DEC.coarse, help=_COARSE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/state.pt."),
) -> None:
    """Train the face detector on VOC boxes and synthetic scenes; report held-out recall."""
    with run_cli():
        from edgemask.training.detector import train_detector

        cfg = DetTrainConfig(
            data=list(data),
            out=out,
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            input_width=input_width,
            input_height=input_height,
            heldout=heldout,
            split_seed=split_seed,
            seed=seed,
            max_minutes=max_minutes,
            init=init,
            image_weights=_parse_label_weights(image_weight, "--image-weight"),
            face_weights=_parse_label_weights(face_weight, "--face-weight"),
            resume=resume,
            decode={**_DEC.to_dict(), "score_threshold": score_threshold, "min_side": min_side, "coarse": coarse},
        )
        cfg.check_data()  # a wrong --data fails before the progress bar appears
        with progress_bar() as bar:
            task = bar.add_task("training", total=1, info="")

            def cb(step: int, total: int, info: dict) -> None:
                bar.update(task, completed=step, total=total, info=f"epoch {info['epoch']} loss {info['loss']:.3f}")

            try:
                m = train_detector(cfg, progress=cb)
            except KeyboardInterrupt:
                err_console.print(f"[yellow]interrupted: last epoch saved in {out}; continue with --resume[/]")
                raise typer.Exit(130) from None
        for name, mm in m["heldout"].items():
            mm["split"] = "heldout"
            console.print(recall_table(name, mm))
        console.print(f"{m['epochs_done']} epochs, {m['train_seconds']:.0f} s; run written to [bold]{out}[/]")


@app.command("eval")
def eval_cmd(
    run: str = typer.Argument(..., help="Run folder of 'edgemask detector train'."),
    data: List[str] = typer.Option(..., "--data", "-d", help="VOC or 'data synth' folder; repeat for several."),
    split: str = typer.Option("auto", help="heldout, all, or auto (held-out for a set the run trained on)."),
    score_threshold: float = typer.Option(None, help="Decode threshold to score at (default: the run's)."),
    min_side: float = typer.Option(None, help="Smallest box side to keep, frame px (default: the run's)."),
    coarse: float = typer.Option(None, help="Coarse-pass fraction, 0 = one pass (default: the run's)."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Recall per class and face size, false boxes per image and AP50 of a detector run."""
    with run_cli():
        from edgemask.training.detector import evaluate_detector_run

        given = (("score_threshold", score_threshold), ("min_side", min_side), ("coarse", coarse))
        override = {k: v for k, v in given if v is not None}
        res = evaluate_detector_run(run, data, split=split, decode=override)
        if json_out:
            import json

            typer.echo(json.dumps(res, indent=2))
            return
        for name, m in res.items():
            console.print(recall_table(name, m))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="detector")

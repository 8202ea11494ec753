"""``edgemask train`` and ``edgemask eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgemask.cli._common import console, err_console, parse_label_map, progress_bar, progress_callback, run_cli
from edgemask.config import TrainConfig

_D = TrainConfig()


def metrics_table(m: dict, title: str):
    """A rich table of accuracy and per-class precision/recall (+ confusion)."""
    from rich.table import Table

    t = Table(title=f"{title}: accuracy {m['accuracy'] * 100:.2f}% on {m['n']} images")
    t.add_column("class")
    for c in ("precision", "recall", "f1", "support"):
        t.add_column(c, justify="right")
    names = m["class_names"]
    for n in names:
        pc = m["per_class"][n]
        t.add_row(
            n,
            f"{pc['precision'] * 100:.1f}%",
            f"{pc['recall'] * 100:.1f}%",
            f"{pc['f1'] * 100:.1f}%",
            str(pc["support"]),
        )
    t.caption = "confusion (rows truth, cols predicted): " + "; ".join(
        f"{names[i]}: {row}" for i, row in enumerate(m["confusion"])
    )
    return t


def _stamp(path: Path):
    """(inode, size, mtime_ns) of a file, None if it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


_TRAIN_STAGES = {"load": "loading images", "epoch": "epochs"}


def train_with_progress(cfg: TrainConfig, resume: bool = False):
    """Run training with rich progress bars; a Ctrl-C says whether a checkpoint was saved."""
    from edgemask.training import train

    with progress_bar() as bar:
        draw = progress_callback(bar, _TRAIN_STAGES, renamed=("epoch ",))  # "epoch 3": one bar, replaced per epoch
        state = {"loaded": False}

        def cb(stage: str, done: int, total: int, note: str = "") -> None:
            if stage == "load":
                state["loaded"] = done >= total
            draw(stage, done, total, note)

        ck = Path(cfg.out) / "checkpoint.json"
        before = _stamp(ck)  # a checkpoint from an earlier session must not count as saved now
        try:
            return train(cfg, progress=cb, resume=resume)
        except KeyboardInterrupt:
            # train() writes a checkpoint only once the images are loaded, atomically (a new
            # inode), so a changed stamp after loading is this session's save.
            after = _stamp(ck)
            saved = state["loaded"] and after is not None and after != before
            bar.stop()
            if saved:
                err_console.print(
                    f"interrupted: checkpoint saved in {cfg.out}; continue with "
                    f"'edgemask train --out {cfg.out} --resume'",
                    style="yellow",
                    markup=False,
                )
            else:
                where = "while loading images" if not state["loaded"] else "before the first checkpoint"
                err_console.print(
                    f"interrupted {where}; nothing new was saved in {cfg.out}", style="yellow", markup=False
                )
            raise typer.Exit(130) from None


def train_cmd(
    data: Optional[str] = typer.Option(
        None,
        "--data",
        "-d",
        help="Dataset: a 'data synth' folder, an ImageFolder tree (class folders) or a PASCAL VOC folder (images/ + annotations/). Not needed with --resume.",
    ),
    out: str = typer.Option(
        _D.out,
        "--out",
        "-o",
        help="Run directory to write (weights.safetensors, model.json, metrics.json, config.json).",
    ),
    arch: str = typer.Option(_D.arch, help="Architecture; see 'edgemask models'."),
    epochs: Optional[int] = typer.Option(
        None,
        help=f"Maximum number of epochs [default: {_D.epochs}; with --resume: the saved count, raised when given larger].",
    ),
    batch_size: int = typer.Option(_D.batch_size, help="Mini-batch size."),
    lr: float = typer.Option(_D.lr, help="Peak AdamW learning rate (linear warm-up, then cosine decay)."),
    weight_decay: float = typer.Option(_D.weight_decay, help="AdamW weight decay."),
    size: int = typer.Option(_D.size, help="Input side in pixels; crops are resized to size×size."),
    patience: int = typer.Option(
        _D.patience, help="Early stopping: epochs without a lower validation loss (the learning rate drops after 3)."
    ),
    target_accuracy: float = typer.Option(
        _D.target_accuracy, help="Stop as soon as validation accuracy reaches this (1.0 = never)."
    ),
    augment: bool = typer.Option(_D.augment, help="Random flips, small affine and colour jitter."),
    balance: bool = typer.Option(
        _D.balance, help="Oversample rare classes (at most --balance-cap times their natural share)."
    ),
    balance_cap: float = typer.Option(
        _D.balance_cap, help="Most a rare class is oversampled (1 = natural frequencies)."
    ),
    operating_point: bool = typer.Option(
        _D.operating_point,
        help="Choose per-class logit offsets on the validation split (folded into the weights; recorded in metrics.json).",
    ),
    max_false_positive: float = typer.Option(
        _D.max_false_positive, help="Operating point: the most of the other classes' crops any class may take."
    ),
    seed: int = typer.Option(_D.seed, help="Seed for splits, initialisation and augmentation."),
    label_map: Optional[str] = typer.Option(None, help="Extra label aliases, e.g. 'face=no_mask,chin=mask_incorrect'."),
    crop_faces: Optional[bool] = typer.Option(
        None,
        "--crop-faces/--no-crop-faces",
        help="ImageFolder: cut the largest face out of whole photos (default: when most images are not square face crops).",
    ),
    max_image_pixels: int = typer.Option(
        _D.max_image_pixels,
        help="Skip dataset images whose header declares more pixels than this (checked before decoding).",
    ),
    max_minutes: float = typer.Option(_D.max_minutes, help="Stop after this many minutes (0 = no limit)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted run in --out from its last checkpoint."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
) -> None:
    """Train a mask / no_mask / mask_incorrect classifier.

    A dataset with only two of the classes (e.g. WithMask/WithoutMask) trains
    a two-class model. Ctrl-C saves a checkpoint; --resume continues it.
    """
    with run_cli():
        if epochs is None:
            # On resume, 1 keeps the saved count (train() only ever raises it).
            epochs = 1 if resume else _D.epochs
        cfg = TrainConfig(
            data=data or "",
            out=out,
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            size=size,
            patience=patience,
            target_accuracy=target_accuracy,
            augment=augment,
            balance=balance,
            balance_cap=balance_cap,
            operating_point=operating_point,
            max_false_positive=max_false_positive,
            seed=seed,
            crop_faces=crop_faces,
            label_map=parse_label_map(label_map),
            max_image_pixels=max_image_pixels,
            max_minutes=max_minutes,
            overwrite=overwrite,
        )
        if resume and not data:
            cfg.data = "(from checkpoint)"
        result = train_with_progress(cfg, resume=resume)
        m = result.metrics
        for split, sm in result.splits.items():
            console.print(metrics_table(sm, f"{split} split"))
        from edgemask.data.facecrop import report_line

        if report_line(m.get("face_crops")):
            console.print(report_line(m.get("face_crops")), highlight=False, soft_wrap=True, markup=False)
        if m.get("skipped"):
            first = (m.get("skipped_first") or [[None, None]])[0]
            console.print(
                f"skipped {m['skipped']} file(s)/box(es) of the dataset"
                + (f" (first: {first[0]}: {first[1]})" if first[0] else "")
                + f"; 'edgemask data summary {m.get('dataset', 'DIR')}' lists them all",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        op = m.get("operating_point") or {}
        if op.get("logit_bias"):
            console.print(
                "operating point (chosen on val, folded into the weights): logit bias "
                + ", ".join(f"{n} {v:+.2f}" for n, v in op["logit_bias"].items())
            )
        console.print(
            f"best epoch {result.best_epoch} of {result.epochs_run} ({result.stopped}), "
            f"{m['train_seconds']:.0f} s; run written to [bold]{result.run_dir}[/]"
        )


def eval_cmd(
    run: str = typer.Argument(..., help="Run directory written by 'edgemask train'."),
    data: str = typer.Option(..., "--data", "-d", help="Any dataset layout 'train' accepts."),
    split: str = typer.Option(
        "auto",
        help="train/val/test of the run's own split (same dataset only), 'all', or 'auto' (test for the training set, all otherwise).",
    ),
    label_map: Optional[str] = typer.Option(None, help="Extra label aliases, e.g. 'face=no_mask'."),
    crop_faces: Optional[bool] = typer.Option(
        None,
        "--crop-faces/--no-crop-faces",
        help="ImageFolder: cut the largest face out of whole photos (default: when most images are not square face crops).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Report accuracy, per-class precision/recall and the confusion matrix of a run."""
    with run_cli():
        from edgemask.training import evaluate_run

        m = evaluate_run(run, data, split=split, label_map=parse_label_map(label_map), crop_faces=crop_faces)
        if json_out:
            import json

            typer.echo(json.dumps(m, indent=2))
        else:
            console.print(metrics_table(m, f"{data} ({m['split']})"))
            from edgemask.data.facecrop import report_line

            if report_line(m.get("face_crops")):
                console.print(report_line(m.get("face_crops")), highlight=False, soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)

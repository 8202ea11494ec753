"""``edgemask train`` and ``edgemask eval``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgemask.cli._common import console, err_console, parse_label_map, progress_bar, progress_callback, run_cli
from edgemask.cli.options import config_from_params, from_field, out_option, overwrite_option
from edgemask.config import TrainConfig, field_help


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


def _opt(name: str, *param_decls: str, **kw):
    """The ``train`` option of TrainConfig field ``name``: its default and its help."""
    return from_field(TrainConfig, name, *param_decls, **kw)


_EPOCHS_HELP = (
    f"{field_help(TrainConfig, 'epochs')} \\[default: {TrainConfig().epochs}; with --resume: the saved count, "
    "raised when given larger]"
)  # "\\[": rich would read "[default: ...]" as a markup tag and drop it


# One line per option: default and --help text are the TrainConfig field's; parameters named
# like a field go into the config as parsed (config_from_params).
def train_cmd(
    ctx: typer.Context,
    data: Optional[str] = _opt("data", "--data", "-d", default=None),
    out: str = out_option(TrainConfig),
    arch: str = _opt("arch"),
    epochs: Optional[int] = _opt("epochs", default=None, help=_EPOCHS_HELP),
    batch_size: int = _opt("batch_size"),
    lr: float = _opt("lr"),
    weight_decay: float = _opt("weight_decay"),
    size: int = _opt("size"),
    patience: int = _opt("patience"),
    target_accuracy: float = _opt("target_accuracy"),
    augment: bool = _opt("augment"),
    balance: bool = _opt("balance"),
    balance_cap: float = _opt("balance_cap"),
    operating_point: bool = _opt("operating_point"),
    max_false_positive: float = _opt("max_false_positive"),
    seed: int = _opt("seed"),
    heldout: float = _opt("heldout"),
    split_seed: int = _opt("split_seed"),
    label_map: Optional[str] = _opt("label_map", default=None),
    extra_train: Optional[List[str]] = _opt("extra_train", default=None, metavar="DIR"),
    crop_faces: Optional[bool] = _opt("crop_faces", "--crop-faces/--no-crop-faces"),
    max_image_pixels: int = _opt("max_image_pixels"),
    max_minutes: float = _opt("max_minutes"),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted run in --out from its last checkpoint."
    ),
    overwrite: bool = overwrite_option(TrainConfig),
) -> None:
    """Train a mask / no_mask / mask_incorrect classifier.

    A dataset with only two of the classes (e.g. WithMask/WithoutMask) trains
    a two-class model. Ctrl-C saves a checkpoint; --resume continues it.
    """
    with run_cli():
        cfg = config_from_params(
            TrainConfig,
            ctx.params,
            # Without --data, --resume takes the dataset from the checkpoint (train() refuses it otherwise).
            data=data or ("(from checkpoint)" if resume else ""),
            # On resume, 1 keeps the saved count (train() only ever raises it).
            epochs=epochs if epochs is not None else (1 if resume else TrainConfig().epochs),
            label_map=parse_label_map(label_map),
            extra_train=tuple(extra_train or ()),
        )
        result = train_with_progress(cfg, resume=resume)
        _print_training(result)


def _print_training(result) -> None:
    """Per-split metrics tables, what was skipped or cut, the operating point and where the run went."""
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

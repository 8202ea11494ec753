"""``edgemask demo``: the whole flow on synthetic data, offline, with defaults."""

from __future__ import annotations

from typing import Any, Dict, Optional

import typer

from edgemask.cli._common import console, progress_bar, progress_callback, run_cli
from edgemask.config import DemoConfig

_D = DemoConfig()
_STAGES = {"synth": "synthesizing faces", "heldout": "held-out faces", "load": "loading images", "epoch": "epochs"}


def demo(
    out: str = typer.Option(
        _D.out, "--out", "-o", help="Folder for everything the demo writes (data/, run/, bundle/, report/)."
    ),
    n: int = typer.Option(_D.n, help="Number of synthetic face crops."),
    size: int = typer.Option(_D.size, help="Crop side in pixels (32 for a quick try; the targets are for 64)."),
    epochs: int = typer.Option(_D.epochs, help="Maximum training epochs."),
    arch: str = typer.Option(_D.arch, help="Architecture; see 'edgemask models'."),
    seed: int = typer.Option(_D.seed, help="Seed for data, training and attacks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous demo in --out."),
) -> None:
    """Synthesize data, train, evaluate, export, quantize and measure stability.

    Runs offline with no download; on a 2-core CPU it takes a few minutes.
    Prints a summary table and where every output went.
    """
    from rich.table import Table

    from edgemask.demo import run_demo

    with run_cli():
        cfg = DemoConfig(out=out, n=n, size=size, epochs=epochs, arch=arch, seed=seed)
        with progress_bar() as bar:
            summary = run_demo(cfg, progress=progress_callback(bar, _STAGES, renamed=("epoch ",)), overwrite=overwrite)

        t = Table(title="edgemask demo")
        t.add_column("stage")
        t.add_column("result")
        t.add_column("seconds", justify="right")
        t.add_column("output")
        st = summary.stages
        t.add_row(
            "synth",
            ", ".join(f"{k} {v}" for k, v in st["synth"]["counts"].items()),
            f"{st['synth']['seconds']:.0f}",
            st["synth"]["path"],
        )
        tr = st["train"]
        t.add_row(
            "train",
            f"test accuracy {tr['test_accuracy'] * 100:.2f}%; recall "
            + ", ".join(f"{k} {v * 100:.1f}%" for k, v in tr["recall"].items()),
            f"{tr['seconds']:.0f}",
            tr["path"],
        )
        h = st["heldout"]
        t.add_row(
            "held-out",
            f"accuracy {h['accuracy'] * 100:.2f}% on fresh synthetic faces (seed {h['seed']})",
            f"{h['seconds']:.0f}",
            h["path"],
        )
        rf = st["real_faces"]
        t.add_row(
            "real faces",
            "; ".join(
                f"{k.replace('_', ' ')} → {v['expected']} {v['rate'] * 100:.0f}% of {v['n']}"
                for k, v in rf["checks"].items()
            ),
            f"{rf['seconds']:.0f}",
            "photos shipped with scikit-image",
        )
        ex = st["export"]
        t.add_row(
            "export",
            "; ".join(
                f"{k} acc {v['accuracy'] * 100:.2f}% agree {v['agreement'] * 100:.2f}%"
                for k, v in ex["engines"].items()
                if v.get("accuracy") is not None and v.get("agreement") is not None
            )
            + ("" if ex["passed"] else " [red](tolerance exceeded)[/]"),
            f"{ex['seconds']:.0f}",
            ex["path"],
        )
        t.add_row(
            "stability",
            "DeepFool on float → every engine (table below)",
            f"{st['stability']['seconds']:.0f}",
            st["stability"]["path"],
        )
        console.print(t)
        print_pretrained(summary.pretrained)
        from edgemask.cli.stability import print_headline

        print_headline(summary.study)
        console.print(f"report: [bold]{st['stability']['path']}/report.html[/] (open in a browser)")
        console.print(f"total {summary.seconds:.0f} s; summary in [bold]{out}/summary.json[/]")


def print_pretrained(figures: Optional[Dict[str, Any]]) -> None:
    """The shipped bundle's model-card figures, labelled as such, beside the demo's own; nothing without a card."""
    if not figures:
        return
    from rich.table import Table

    def pct(v: Any) -> str:
        return "–" if v is None else f"{v * 100:.1f}%"

    cls, det = figures.get("classifier") or {}, figures.get("detector") or {}
    t = Table(
        title="shipped pretrained bundle, real held-out photos",
        caption="copied from the card, not re-run; the demo's own figures above are of a model trained on "
        "synthetic faces",
    )
    # One column per detector class (VOC label names shortened), so the table fits 80 columns.
    labels = sorted({k for d in det.values() for k in (d or {}).get("recall_min_side", {})})
    short = {"with_mask": "masked", "without_mask": "unmasked", "mask_weared_incorrect": "incorrect"}
    heads = ["", "accuracy", "no_mask→mask"] + [short.get(k, k) for k in labels] + ["false/img"]
    for h in heads:
        t.add_column(h, justify="left" if not h else "right", no_wrap=True)
    for p in dict.fromkeys([*cls, *det]):  # fp32, fp16, int8: the order pretrained_figures keeps
        c, d = cls.get(p) or {}, det.get(p) or {}
        recall = d.get("recall_min_side") or {}
        t.add_row(
            p,
            pct(c.get("accuracy")),
            pct(c.get("no_mask_called_mask")),
            *(pct(recall.get(k)) for k in labels),
            "–" if d.get("false_per_image") is None else f"{d['false_per_image']:.2f}",
        )
    t.caption = (
        "classifier: accuracy, unmasked faces called mask; detector: recall of faces >= 24 px per class, false "
        "boxes per image. Copied from its model card, not re-run; the demo's own figures above are of a model trained "
        "on synthetic faces."
    )
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

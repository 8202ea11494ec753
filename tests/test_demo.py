"""``edgemask demo`` end to end at a tiny size: every stage runs and writes what the README says."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from edgemask.cli.demo import register

# The fields edgemask.rebuild_pretrained.make_card writes, with made-up figures.
FAKE_CARD = {
    "name": "pretrained-test",
    "held_out": "20 % of the photos by image for the detector; a 10 % test split for the classifier.",
    "classes": ["mask", "no_mask", "mask_incorrect"],
    "classifier": {
        "crops": 50,
        "counts": {"mask": 20, "no_mask": 20, "mask_incorrect": 10},
        "fp32": {"accuracy": 0.9412, "recall": {}, "no_mask_called_mask": 0.025},
        "int8": {"accuracy": 0.9301, "recall": {}, "no_mask_called_mask": 0.05},
    },
    "detector": {
        "images": 40,
        "fp32": {"recall_min_side": {"mask": 0.875, "no_mask": 0.912}, "false_per_image": 0.15, "ap50": 0.8},
        "int8": {"recall_min_side": {"mask": 0.85, "no_mask": 0.9}, "false_per_image": 0.2, "ap50": 0.78},
    },
}
LABEL = "shipped pretrained bundle, real held-out photos"


def _card(monkeypatch, card):
    import edgemask.pretrained

    monkeypatch.setattr(edgemask.pretrained, "model_card", lambda: card)


def test_pretrained_figures_come_from_the_card_and_print_beside_the_demo(monkeypatch):
    from edgemask.cli.demo import print_pretrained
    from edgemask.demo import pretrained_figures

    _card(monkeypatch, None)
    assert pretrained_figures() is None  # an install without a card: nothing to show
    _card(monkeypatch, FAKE_CARD)
    p = pretrained_figures()
    assert p["name"] == "pretrained-test" and p["held_out"] == FAKE_CARD["held_out"]
    assert p["classifier"] == {
        "fp32": {"accuracy": 0.9412, "no_mask_called_mask": 0.025},
        "int8": {"accuracy": 0.9301, "no_mask_called_mask": 0.05},
    }
    assert p["detector"]["int8"] == {"recall_min_side": {"mask": 0.85, "no_mask": 0.9}, "false_per_image": 0.2}

    from rich.console import Console

    import edgemask.cli.demo as cli_demo

    for figures, shown in ((None, False), (p, True)):
        con = Console(record=True, width=200)
        monkeypatch.setattr(cli_demo, "console", con)
        print_pretrained(figures)
        text = con.export_text()
        assert (LABEL in text) is shown, text
    for cell in ("94.1%", "2.5%", "87.5%", "91.2%", "0.15", "93.0%", "5.0%", "0.20", "Copied from its model card"):
        assert cell in text, (cell, text)


@pytest.mark.slow
def test_tiny_demo_writes_every_output_and_prints_the_summary(tmp_path, monkeypatch):
    import edgemask.config as config

    _card(monkeypatch, FAKE_CARD)  # as if the pretrained bundle shipped: its card figures print beside the demo's

    # the stability and held-out sizes are not CLI options: shrink them for the test
    monkeypatch.setattr(config.DemoConfig, "heldout_n", 60)
    monkeypatch.setattr(config.DemoConfig, "stability_n", 12)
    app = typer.Typer()
    register(app)
    out = tmp_path / "demo"
    res = CliRunner().invoke(
        app, ["--out", str(out), "--n", "240", "--size", "32", "--epochs", "2"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    for rel in (
        "data/dataset.json",
        "run/weights.safetensors",
        "run/metrics.json",
        "heldout/dataset.json",
        "bundle/manifest.json",
        "bundle/model.int8.onnx",
        "report/report.json",
        "report/report.html",
        "report/report.md",
        "report/samples.csv",
        "summary.json",
    ):
        assert (out / rel).is_file(), rel
    s = json.loads((out / "summary.json").read_text())
    assert set(s["stages"]) == {"synth", "train", "heldout", "real_faces", "export", "stability"}
    assert set(s["stages"]["real_faces"]["checks"]) == {
        "lfw_heldout",
        "astronaut_no_mask",
        "astronaut_mask",
        "astronaut_mask_incorrect",
    }
    assert s["stages"]["export"]["passed"] in (True, False) and "onnxrt:int8" in s["stages"]["export"]["engines"]
    for word in ("synth", "train", "held-out", "real faces", "export", "stability", "report.html", "summary.json"):
        assert word in res.stdout, word
    assert s["pretrained"]["classifier"]["fp32"] == {"accuracy": 0.9412, "no_mask_called_mask": 0.025}
    assert s["pretrained"]["detector"]["fp32"]["false_per_image"] == 0.15
    assert LABEL in res.stdout and "94.1%" in res.stdout
    # a second run into the same folder refuses, with a one-line error naming --overwrite
    again = CliRunner().invoke(app, ["--out", str(out), "--n", "240", "--size", "32"])
    assert again.exit_code == 1 and "--overwrite" in again.output and "Traceback" not in again.output

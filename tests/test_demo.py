"""``edgemask demo`` end to end at a tiny size: every stage runs and writes what the README says."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from edgemask.cli.demo import register

pytestmark = pytest.mark.slow


def test_tiny_demo_writes_every_output_and_prints_the_summary(tmp_path, monkeypatch):
    import edgemask.config as config

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
    # a second run into the same folder refuses, with a one-line error naming --overwrite
    again = CliRunner().invoke(app, ["--out", str(out), "--n", "240", "--size", "32"])
    assert again.exit_code == 1 and "--overwrite" in again.output and "Traceback" not in again.output

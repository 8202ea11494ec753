"""``edgemask stability`` / ``edgemask attack``: bad input gives one clear line and exit 1; attack saves its set."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


def _err(res) -> str:
    return " ".join(res.output.split())


def test_help_shows_defaults(cli):
    res = cli("stability", "--help")
    assert res.exit_code == 0
    out = _err(res)
    for word in (
        "--n",
        "1000",
        "--norm",
        "l2",
        "--engines",
        "--alphas",
        "--overshoot",
        "0.02",
        "--twin-mode",
        "transfer rate",
        "Example: edgemask stability",
    ):
        assert word in out, word
    # rich must not swallow "[@target]" as a markup tag (seen on a wide terminal, where nothing is cut)
    import typer
    from typer.testing import CliRunner

    from edgemask.cli.stability import register

    app = typer.Typer()
    register(app)
    wide = CliRunner().invoke(app, ["stability", "--help"], env={"COLUMNS": "250"})
    assert "backend:precision[@target]" in _err(wide)
    res = cli("attack", "--help")
    assert res.exit_code == 0 and "Example: edgemask attack" in _err(res) and "--target" in _err(res)


def test_unknown_norm(cli, tiny_bundle, tiny_data, tmp_path):
    res = cli("stability", tiny_bundle, "--data", tiny_data, "--out", tmp_path / "r", "--norm", "l3")
    assert res.exit_code == 1
    assert "unknown norm 'l3'" in _err(res) and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_dataset_smaller_than_n(cli, tiny_bundle, tiny_data, tmp_path):
    res = cli("stability", tiny_bundle, "--data", tiny_data, "--out", tmp_path / "r", "--n", "500")
    assert res.exit_code == 1
    msg = _err(res)
    assert "only 36 images" in msg and "lower --n" in msg and "--n 0" in msg
    assert not (tmp_path / "r").exists()


def test_bundle_without_float_weights(cli, tiny_bundle, tiny_data, tmp_path):
    """A consistent bundle (hashes fine) whose manifest lists no safetensors model."""
    from edgemask.bundle import load_manifest

    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    (b / "weights.safetensors").unlink()
    m = load_manifest(b)
    m.models = [e for e in m.models if e.format != "safetensors"]
    m.files.pop("weights.safetensors", None)
    (b / "manifest.json").write_text(m.to_json())
    res = cli("stability", b, "--data", tiny_data, "--out", tmp_path / "r", "--n", "6")
    assert res.exit_code == 1
    assert "no float weights" in _err(res) and "re-export" in _err(res)


def test_unknown_engine_and_bad_engine_spec(cli, tiny_bundle, tiny_data, tmp_path):
    res = cli("stability", tiny_bundle, "--data", tiny_data, "--out", tmp_path / "r", "--n", "6", "--engines", "onnxrt")
    assert res.exit_code == 1 and "backend:precision" in _err(res)
    res = cli(
        "stability",
        tiny_bundle,
        "--data",
        tiny_data,
        "--out",
        tmp_path / "r",
        "--n",
        "6",
        "--engines",
        "tensorflow:fp32",
        "--no-int8-attack",
    )
    assert res.exit_code == 1 and "unknown backend 'tensorflow'" in _err(res) and "onnxrt" in _err(res)
    from edgemask.backends import get_backend

    if not get_backend("tensorrt").available()[0]:  # the usual CPU-only case: refused before any work
        res = cli(
            "stability",
            tiny_bundle,
            "--data",
            tiny_data,
            "--out",
            tmp_path / "r",
            "--n",
            "6",
            "--engines",
            "onnxrt:fp32,tensorrt:int8",
            "--no-int8-attack",
        )
        assert res.exit_code == 1 and "cannot run here" in _err(res)
    assert not (tmp_path / "r").exists()


def test_existing_output_needs_overwrite(cli, tiny_bundle, tiny_data, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = cli("stability", tiny_bundle, "--data", tiny_data, "--out", out, "--n", "6")
    assert res.exit_code == 1 and "--overwrite" in _err(res)
    assert (out / "keep.txt").read_text() == "x"


def test_small_study_with_chosen_engines(cli, tiny_bundle, tiny_data, tmp_path):
    out = tmp_path / "r"
    res = cli(
        "stability",
        tiny_bundle,
        "--data",
        tiny_data,
        "--out",
        out,
        "--n",
        "9",
        "--engines",
        "onnxrt:fp32,twin:int8",
        "--no-int8-attack",
        "--alphas",
        "1,2",
        "--noise-trials",
        "1",
        "--sensitivity-scales",
        "0.01",
        "--norm",
        "linf",
        "--candidates",
        "2",
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert [e["key"] for e in rep["engines"]] == ["onnxrt:fp32", "twin:int8"]
    assert rep["int8_attack"] is None and rep["alphas"] == [1.0, 2.0] and rep["float_attack"]["norm"] == "linf"
    assert rep["config"]["candidates"] == 2
    assert rep["meta"]["dataset"]["sampled"] == 9 and sum(rep["meta"]["dataset"]["sampled_counts"].values()) == 9
    out_text = _err(res)
    assert "onnxrt:fp32" in out_text and "twin:int8" in out_text and "host-emulation" in out_text
    assert "past the float model's boundary" in out_text


def test_attack_on_a_run_saves_the_adversarial_set(cli, tiny_run, tiny_data, tmp_path):
    from edgemask.data import load_dataset

    out = tmp_path / "adv"
    res = cli("attack", tiny_run, "--data", tiny_data, "--out", out, "--n", "12")
    assert res.exit_code == 0, res.output
    info = json.loads((out / "attack.json").read_text())
    assert info["model"]["kind"] == "run" and info["summary"]["n"] == 12
    x, xa, r = (np.load(out / f"{k}.npy") for k in ("x", "x_adv", "r"))
    assert x.shape == (12, 3, 32, 32) and x.dtype == np.float32
    assert np.allclose(x + r, xa, atol=1e-6) and xa.min() >= 0 and xa.max() <= 1
    lines = (out / "samples.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("index,source,label")
    from edgemask.stability.report import read_samples_csv

    for row in read_samples_csv(out / "samples.csv"):
        assert (float(row["margin_adv"]) > 0) == (row["success"] == "True")
    # the PNGs are an ImageFolder load_dataset reads back, labels by ground truth
    ds = load_dataset(out / "adversarial", size=32, class_names=["mask", "no_mask", "mask_incorrect"])
    assert len(ds) == 12
    assert np.array_equal(np.sort(ds.labels), np.sort(np.load(out / "labels.npy")))


def test_attack_int8_target_needs_a_bundle(cli, tiny_run, tiny_bundle, tiny_data, tmp_path):
    res = cli("attack", tiny_run, "--data", tiny_data, "--out", tmp_path / "a", "--n", "6", "--target", "int8")
    assert res.exit_code == 1 and "export it first" in _err(res)
    res = cli(
        "attack", tiny_bundle, "--data", tiny_data, "--out", tmp_path / "b", "--n", "6", "--target", "int8", "--no-png"
    )
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "b" / "attack.json").read_text())
    assert info["model"]["source"] == "host-emulation" and not (tmp_path / "b" / "adversarial").exists()
    res = cli("attack", tmp_path, "--data", tiny_data, "--out", tmp_path / "c", "--n", "6")
    assert res.exit_code == 1 and "neither a bundle" in _err(res)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (["--norm", "l1"], "unknown norm"),
        (["--n", "-1"], "--n"),
        (["--overshoot", "-0.5"], "--overshoot"),
        (["--max-iter", "0"], "--max-iter"),
        (["--target", "fp16"], "float, int8"),
        (["--n", "500"], "only 36 images"),
        (["--candidates", "1"], "--candidates"),
    ],
)
def test_attack_bad_options(cli, tiny_run, tiny_data, tmp_path, bad, says):
    res = cli("attack", tiny_run, "--data", tiny_data, "--out", tmp_path / "a", *bad)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert says in _err(res) and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (["--max-iter", "0"], "--max-iter"),
        (["--overshoot", "1.5"], "--overshoot"),
        (["--alphas", "1,-2"], "--alphas"),
        (["--noise-trials", "-1"], "--noise-trials"),
        (["--sensitivity-scales", "2"], "--sensitivity-scales"),
        (["--device", "tpu"], "--device"),
        (["--examples", "-1"], "--examples"),
        (["--twin-mode", "fast"], "--twin-mode"),
        (["--candidates", "1"], "--candidates"),
    ],
)
def test_stability_bad_options_name_the_flag(cli, tiny_bundle, tiny_data, tmp_path, bad, says):
    res = cli("stability", tiny_bundle, "--data", tiny_data, "--out", tmp_path / "r", "--n", "6", *bad)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert says in _err(res) and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()

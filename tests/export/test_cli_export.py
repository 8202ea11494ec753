"""``edgemask export`` and ``edgemask bundle verify|show`` through Typer's test runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgemask.cli.export import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def exported(app, runner, tiny_run, tiny_recipe, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cli") / "export" / "mask-v1"
    res = runner.invoke(
        app,
        [
            "export",
            str(tiny_run),
            "--out",
            str(out),
            "--precision",
            "fp32,fp16,int8",
            "--calibration",
            str(tiny_recipe),
            "--calibration-method",
            "minmax",
            "--opset",
            "17",
        ],
        env={"COLUMNS": "200"},
    )
    return out, res


def _one_error_line(res) -> str:
    """The CLI's contract for user errors: exit 1, one 'error:' line, no traceback."""
    assert res.exit_code == 1, res.output
    text = res.stderr
    assert "Traceback" not in text and "Traceback" not in res.stdout
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    return lines[0]


def test_export_writes_bundle_and_prints_table(exported):
    out, res = exported
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").is_file()
    for word in (
        "model.fp32.onnx",
        "model.fp16.onnx",
        "model.int8.onnx",
        "max |Δlogit| vs torch",
        "agreement",
        "size KiB",
        "calibration: recipe tiny",
    ):
        assert word in res.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["name"] == "mask-v1" and m["opset"] == 17


def test_bundle_verify_ok_then_tampered(app, runner, exported, tmp_path):
    out, _ = exported
    res = runner.invoke(app, ["bundle", "verify", str(out)])
    assert res.exit_code == 0 and "ok" in res.stdout and "files match" in res.stdout
    bad = Path(shutil.copytree(out, tmp_path / "bad"))
    p = bad / "model.fp16.onnx"
    p.write_bytes(p.read_bytes()[:-10])
    (bad / "calibration" / "cache.txt").write_text("TRT-0-EntropyCalibration2\n")
    res = runner.invoke(app, ["bundle", "verify", str(bad)])
    assert res.exit_code == 1
    assert "model.fp16.onnx: size" in res.stderr and "calibration/cache.txt" in res.stderr
    assert "2 problem(s)" in res.stderr and "Traceback" not in res.stderr


def test_bundle_verify_broken_manifest_is_one_line(app, runner, exported, tmp_path):
    out, _ = exported
    bad = Path(shutil.copytree(out, tmp_path / "bad"))
    d = json.loads((bad / "manifest.json").read_text())
    del d["files"]
    (bad / "manifest.json").write_text(json.dumps(d))
    assert "missing the field 'files'" in _one_error_line(runner.invoke(app, ["bundle", "verify", str(bad)]))
    assert "does not exist" in _one_error_line(runner.invoke(app, ["bundle", "verify", str(tmp_path / "nope")]))


def test_bundle_show_tables_and_json(app, runner, exported):
    out, _ = exported
    res = runner.invoke(app, ["bundle", "show", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in (
        "mask-v1",
        "seed_cnn",
        "mask, no_mask, mask_incorrect",
        "opset",
        "17",
        "model.int8.onnx",
        "QDQ minmax",
        "calibration",
        "images sha256",
        "golden/inputs.npy",
        "resolved_config.json",
    ):
        assert word in res.stdout, word
    res = runner.invoke(app, ["bundle", "show", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["format"] == "edgemask-bundle"


@pytest.mark.parametrize(
    "args,match",
    [
        (["--precision", "fp32,int4"], "unknown precision 'int4'"),
        (["--calibration-method", "kl"], "unknown calibration method"),
        (["--opset", "8"], "opset 8"),
        (["--calibration", "no-such-recipe"], "unknown calibration recipe"),
    ],
)
def test_bad_options_exit_1_with_one_line(app, runner, tiny_run, tmp_path, args, match):
    res = runner.invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "b"), *args])
    assert match in _one_error_line(res)
    assert not (tmp_path / "b").exists()


def test_missing_run_and_recipe_pointing_at_nothing(app, runner, tiny_run, tmp_path, recipe_file):
    res = runner.invoke(app, ["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "b")])
    assert "does not exist" in _one_error_line(res)
    recipe = recipe_file(tmp_path / "r.toml", source=str(tmp_path / "no-data"))
    res = runner.invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "b"), "--calibration", str(recipe)])
    assert "fix its 'source'" in _one_error_line(res)
    assert not (tmp_path / "b").exists()


def test_existing_bundle_needs_overwrite(app, runner, exported, tiny_run, tiny_recipe):
    out, _ = exported
    res = runner.invoke(app, ["export", str(tiny_run), "--out", str(out), "--calibration", str(tiny_recipe)])
    assert "--overwrite" in _one_error_line(res)


def test_help_shows_defaults(app, runner):
    res = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for word in (
        "--precision",
        "fp32,fp16,int8",
        "--calibration-method",
        "minmax",
        "--opset",
        "17",
        "--int8-target",
        "tensorrt",
        "--overwrite",
    ):
        assert word in res.stdout, word


# --------------------------------------------------------------------------- --device / --engine
def test_device_export_lowers_the_opset_and_warns(app, runner, tiny_run, tiny_recipe, tmp_path):
    out = tmp_path / "nano"
    res = runner.invoke(
        app,
        [
            "export",
            str(tiny_run),
            "--out",
            str(out),
            "--precision",
            "fp32,int8",
            "--calibration",
            str(tiny_recipe),
            "--device",
            "jetson-nano",
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "manifest.json").read_text())["opset"] == 13  # TensorRT 8.2's parser
    assert "no fast INT8" in res.stderr and "still ships" in res.stderr
    assert (out / "model.int8.onnx").is_file()


def test_device_export_errors_come_before_any_work(app, runner, tiny_run, tiny_recipe, tmp_path, monkeypatch):
    import sys

    base = ["export", str(tiny_run), "--calibration", str(tiny_recipe)]
    for args, match in [
        (["--device", "jetson-nanoo"], "did you mean 'jetson-nano'"),
        (["--device", "jetson-nano", "--opset", "17"], "at most 13"),
        (["--engine"], "--engine needs --device"),
        (["--device", "x86-cpu", "--engine"], "x86-cpu has no TensorRT"),
    ]:
        out = tmp_path / "b"
        assert match in _one_error_line(runner.invoke(app, [*base, "--out", str(out), *args])), args
        assert not out.exists()
    # --engine without TensorRT: the precision warning, then a one-line refusal, and no bundle at all
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "orin"
    res = runner.invoke(app, [*base, "--out", str(out), "--device", "jetson-orin-nano", "--engine"])
    assert res.exit_code == 1 and "TensorRT is not importable here" in res.stderr and "Traceback" not in res.output
    assert not out.exists()
    # --engine with TensorRT but no GPU (trt.Builder raises): the same one line, before export and calibration
    from fake_tensorrt import FakeTensorRT

    import edgemask.backends.tensorrt.cuda_api as cuda_api

    monkeypatch.setattr(cuda_api, "cuda_device_problem", lambda binding_only=False: None)
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("10.3.0.26", builder_fails=True))
    res = runner.invoke(app, [*base, "--out", str(out), "--device", "jetson-orin-nano", "--engine"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: TensorRT 10.3.0.26 is installed but no CUDA device")
    assert not out.exists()


def test_export_for_device_builds_engines_after_the_bundle(tiny_run, tiny_recipe, tmp_path, monkeypatch):
    """The library call: export at the profile's opset, then hand every precision to the engine builder."""
    import edgemask.backends.tensorrt.builder as B
    import edgemask.export.engine as E
    from edgemask.export.for_device import export_for_device

    calls = []
    monkeypatch.setattr(B, "require_build_gpu", lambda trt=None: object())
    monkeypatch.setattr(
        E,
        "build_engines_for_bundle",
        lambda path, device, precisions, on_warning=None, **kw: (
            calls.append(
                (json.loads((Path(path) / "manifest.json").read_text())["opset"], device, list(precisions), kw)
            )
            or ["built"]
        ),
    )
    seen = []
    r = export_for_device(
        tiny_run,
        tmp_path / "xnx",
        "jetson-xavier-nx",
        precisions="fp16,int8",
        engine=True,
        calibration=str(tiny_recipe),
        on_warning=seen.append,
        engine_options={"dla_core": 0},
    )
    assert r.opset == 17 and r.engines == ["built"] and r.device == "jetson-xavier-nx"
    assert calls == [(17, "jetson-xavier-nx", ["fp16", "int8"], {"dla_core": 0})] and seen == []

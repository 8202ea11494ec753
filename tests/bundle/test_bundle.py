"""export_bundle: the bundle folder, its manifest, verification, versions, and failures that leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgemask.bundle import load_bundle, load_manifest, verify_bundle
from edgemask.errors import BundleError, ConfigError, EdgemaskError, ExportError, ModelError
from edgemask.export import export_bundle

CLASSES = ["mask", "no_mask", "mask_incorrect"]
TINY_ARGS = dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16)
RUN_MARGIN = 0.25  # not the default, so the manifest can only have it from the run


def _make_run(run_dir: Path) -> Path:
    import torch

    from edgemask.models import create_model
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files

    torch.manual_seed(3)
    model = create_model("seed_cnn", **TINY_ARGS).eval()
    info = run_info_for(model, "seed_cnn", resolved_args("seed_cnn", **TINY_ARGS), CLASSES, crop_margin=RUN_MARGIN)
    save_run_files(run_dir, model, info)
    return run_dir


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    run = _make_run(root / "run")
    recipe = root / "small.toml"
    recipe.write_text('source = "synth"\ncount = 24\nstratified = true\nseed = 7\n')
    bundle = export_bundle(run, root / "export" / "b", calibration=str(recipe), name="tiny")
    return {"root": root, "run": run, "recipe": recipe, "bundle": bundle}


def _no_leftovers(parent: Path) -> None:
    """atomic_dir builds in '.<name>.*.partial' siblings (and parks the old one as '.<name>.old-*')."""
    if parent.exists():
        assert not [p.name for p in parent.iterdir() if p.name.endswith(".partial") or ".old-" in p.name]


def test_layout_and_manifest_fields(env):
    b: Path = env["bundle"]
    files = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files == [
        "calibration/cache.txt",
        "calibration/recipe.toml",
        "calibration/table.json",
        "golden/inputs.npy",
        "golden/outputs.fp32.npy",
        "manifest.json",
        "model.fp16.onnx",
        "model.fp32.onnx",
        "model.int8.onnx",
        "probe/inputs.npy",
        "resolved_config.json",
        "weights.safetensors",
    ]
    m = load_manifest(b)
    assert (m.name, m.version, m.arch, m.opset) == ("tiny", 1, "seed_cnn", 17)
    assert m.class_names == CLASSES and m.input.shape == ["N", 3, 32, 32] and m.input.channel_order == "RGB"
    assert m.preprocessing.normalization_in_model and len(m.preprocessing.mean) == 3
    # the run's crop margin travels to the bundle, for `edgemask run` to crop like training did
    assert (m.preprocessing.crop, m.preprocessing.crop_margin) == ("square, shifted inside the image", RUN_MARGIN)
    assert m.arch_args["widths"] == [8, 16]
    assert set(m.files) == set(files) - {"manifest.json"}  # every file but the manifest, hashed
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 0 for v in m.files.values())
    assert {"edgemask", "torch", "onnx", "onnxruntime", "numpy", "python"} <= set(m.producer)
    assert [(e.precision, e.format) for e in m.models] == [
        ("fp32", "safetensors"),
        ("fp32", "onnx"),
        ("fp16", "onnx"),
        ("int8", "onnx"),
    ]
    assert all(e.opset == 17 for e in m.models if e.format == "onnx")
    fp32, fp16, int8 = (m.model(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.extra["max_abs_diff_vs_torch"] < 1e-4 and fp16.extra["max_abs_diff_vs_torch"] < 1e-2
    assert fp32.extra["opencv"]["ok"] is True and fp32.extra["opencv"]["agreement"] == 1.0
    q = int8.quantization
    assert q["format"] == "QDQ" and q["symmetric"] and q["per_channel"] and q["method"] == "minmax"
    assert q["target"] == "tensorrt" and q["calibration_images"] == 24
    assert 0.0 <= int8.extra["agreement_vs_fp32_calibration_set"] <= 1.0
    assert m.golden["tolerance"] == {"fp32": 1e-4, "fp16": 1e-2, "int8": None} and m.golden["count"] == 16
    c = m.calibration
    assert c["recipe"] == "small" and c["count"] == 24 and c["per_class"] == {k: 8 for k in CLASSES}
    assert c["recipe_sha256"] == __import__("hashlib").sha256(env["recipe"].read_bytes()).hexdigest()
    assert len(c["images_sha256"]) == 64 and c["cache_header"] == "TRT-8201-EntropyCalibration2"
    cfg = json.loads((b / "resolved_config.json").read_text())
    assert cfg["precisions"] == ["fp32", "fp16", "int8"] and cfg["opset"] == 17 and cfg["method"] == "minmax"


def test_golden_set_reproduces_with_onnxruntime(env):
    from edgemask.export.onnx_export import ort_logits

    bundle = load_bundle(env["bundle"])
    m = bundle.manifest
    x = np.load(bundle.path(m.golden["inputs"]))
    ref = np.load(bundle.path(m.golden["outputs"]))
    assert x.shape == (16, 3, 32, 32) and x.dtype == np.float32 and ref.shape == (16, 3)
    for p in ("fp32", "fp16"):
        assert np.max(np.abs(ort_logits(bundle.model_path(p), x) - ref)) <= m.golden["tolerance"][p]
    # golden images are not the calibration images
    assert not set(m.golden["sources"]) & set(json.loads(bundle.path("calibration/table.json").read_text())["images"])


def test_fresh_bundle_verifies(env):
    assert verify_bundle(env["bundle"]) == []


def test_tampered_truncated_and_missing_files_are_reported(env, tmp_path):
    from edgemask.export.onnx_export import load_onnx

    b = Path(shutil.copytree(env["bundle"], tmp_path / "b"))
    data = bytearray((b / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.int8.onnx").write_bytes(bytes(data))
    fp32 = b / "model.fp32.onnx"
    fp32.write_bytes(fp32.read_bytes()[:1000])
    (b / "golden" / "inputs.npy").unlink()
    problems = verify_bundle(b)
    assert any(p.startswith("model.int8.onnx: SHA-256") for p in problems)
    assert any(p.startswith("model.fp32.onnx: size") and "truncated" in p for p in problems)
    assert "golden/inputs.npy: missing" in problems
    with pytest.raises(BundleError, match="failed verification"):
        load_bundle(b)
    with pytest.raises(ExportError, match="truncated or corrupted"):
        load_onnx(fp32)


def test_manifest_missing_field_or_wrong_hash(env, tmp_path):
    b = Path(shutil.copytree(env["bundle"], tmp_path / "b"))
    d = json.loads((b / "manifest.json").read_text())
    d["files"]["model.fp16.onnx"]["sha256"] = "0" * 64
    (b / "manifest.json").write_text(json.dumps(d))
    assert [p for p in verify_bundle(b) if p.startswith("model.fp16.onnx")]
    del d["class_names"]
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="missing the field 'class_names'"):
        verify_bundle(b)


def test_overwrite_bumps_version_and_refuses_without_flag(env, tmp_path):
    out = Path(shutil.copytree(env["bundle"], tmp_path / "b"))
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match="--overwrite"):
        export_bundle(env["run"], out, calibration=str(env["recipe"]), precisions="fp32")
    assert (out / "manifest.json").read_bytes() == before
    export_bundle(
        env["run"], out, calibration=str(env["recipe"]), precisions="fp32", overwrite=True, opencv_check=False
    )
    m = load_manifest(out)
    assert m.version == 2 and m.precisions() == ["fp32"] and m.calibration is None
    assert not (out / "model.int8.onnx").exists() and verify_bundle(out) == []
    _no_leftovers(tmp_path)


def test_int8_only_bundle_leaves_out_fp32_onnx(env, tmp_path):
    (tmp_path / "q").mkdir()  # an existing empty folder is fine without --overwrite
    out = export_bundle(
        env["run"], tmp_path / "q", calibration=str(env["recipe"]), precisions=["int8"], opencv_check=False, opset=13
    )
    m = load_manifest(out)
    assert m.precisions() == ["int8"] and "model.fp32.onnx" not in m.files and m.opset == 13
    assert not (out / "model.fp32.onnx").exists() and verify_bundle(out) == []


def test_failure_midway_leaves_nothing_and_keeps_old_bundle(env, tmp_path, monkeypatch):
    import edgemask.export.quantize as quantize

    def boom(*a, **k):
        raise ExportError("simulated quantizer failure; nothing to fix")

    monkeypatch.setattr(quantize, "int8_from_onnx", boom)
    out = tmp_path / "export" / "new"
    with pytest.raises(ExportError, match="simulated"):
        export_bundle(env["run"], out, calibration=str(env["recipe"]), opencv_check=False)
    assert not out.exists()
    _no_leftovers(out.parent)
    old = Path(shutil.copytree(env["bundle"], tmp_path / "export" / "old"))
    with pytest.raises(ExportError, match="simulated"):
        export_bundle(env["run"], old, calibration=str(env["recipe"]), opencv_check=False, overwrite=True)
    assert load_manifest(old).version == 1 and verify_bundle(old) == []
    _no_leftovers(old.parent)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"precisions": "fp32,int4"}, ConfigError, "unknown precision 'int4'"),
        ({"precisions": ""}, ConfigError, "no precision"),
        ({"method": "kl"}, ConfigError, "minmax, entropy, percentile"),
        ({"opset": 9}, ConfigError, "opset 9"),
        ({"calibration": "no-such-recipe"}, ConfigError, "unknown calibration recipe"),
        ({"int8_target": "gpu"}, ConfigError, "int8 target"),
        ({"golden_count": 0}, ConfigError, "golden_count"),
        ({"bogus_option": 1}, ConfigError, "unknown export option"),
    ],
)
def test_bad_options_fail_before_writing(env, tmp_path, kwargs, error, match):
    kw = {"calibration": str(env["recipe"]), **kwargs}
    with pytest.raises(error, match=match):
        export_bundle(env["run"], tmp_path / "out" / "b", **kw)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_inputs_name_the_fix(env, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export_bundle(tmp_path / "nowhere", tmp_path / "b1", calibration=str(env["recipe"]))
    half = Path(shutil.copytree(env["run"], tmp_path / "half"))
    (half / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match="weights.safetensors is missing"):
        export_bundle(half, tmp_path / "b2", calibration=str(env["recipe"]))
    pointing_nowhere = tmp_path / "r.toml"
    pointing_nowhere.write_text(f'source = "{(tmp_path / "no-data").as_posix()}"\ncount = 8\n')
    with pytest.raises(ConfigError, match="does not exist"):
        export_bundle(env["run"], tmp_path / "b3", calibration=str(pointing_nowhere))
    (tmp_path / "empty" / "with_mask").mkdir(parents=True)
    empty = tmp_path / "e.toml"
    empty.write_text(f'source = "{(tmp_path / "empty").as_posix()}"\ncount = 8\n')
    with pytest.raises(EdgemaskError, match="no usable images|empty"):
        export_bundle(env["run"], tmp_path / "b4", calibration=str(empty))
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an edgemask bundle"):
        export_bundle(env["run"], tmp_path / "occupied", calibration=str(env["recipe"]), overwrite=True)
    assert (tmp_path / "occupied" / "notes.txt").read_text() == "mine"
    for name in ("b1", "b2", "b3", "b4"):
        assert not (tmp_path / name).exists()
    _no_leftovers(tmp_path)

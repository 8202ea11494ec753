"""Calibration recipes: search, parsing, image selection, and the table / TensorRT cache formats."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from edgemask.errors import ConfigError, DataError, ExportError
from edgemask.export.calibration import (
    ENV_DIR,
    calibration_search_dirs,
    find_recipe,
    images_sha256,
    list_recipes,
    load_recipe,
    read_trt_cache,
    select_images,
    stratified_indices,
    synth_images,
    trt_cache_text,
    write_table,
    write_trt_cache,
)

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["mask", "no_mask", "mask_incorrect"]


def test_default_recipe_ships_with_documented_values():
    r = load_recipe("default")
    assert Path(r.path).resolve() == (REPO / "calibration" / "default.toml").resolve()
    assert (r.source, r.count, r.stratified, r.seed) == ("synth", 256, True, 1234)
    assert r.sha256 == hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
    assert {"default", "imagefolder-example"} <= set(list_recipes())


def test_example_recipe_points_at_a_dataset_and_fails_clearly_when_absent(tmp_path, monkeypatch):
    r = load_recipe("imagefolder-example")
    assert r.source != "synth" and r.label_map  # documents label_map too
    monkeypatch.chdir(tmp_path)  # relative sources resolve against the working directory
    with pytest.raises(ConfigError, match=r"does not exist.*fix its 'source'"):
        select_images(r, CLASSES, 32)


def test_search_order_env_dir_first_then_checkout(tmp_path, monkeypatch, recipe_file):
    override = recipe_file(tmp_path / "env" / "default.toml", count=5)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "env"))
    assert calibration_search_dirs()[0] == tmp_path / "env"
    assert find_recipe("default") == override
    assert load_recipe("default").count == 5
    monkeypatch.delenv(ENV_DIR)
    assert load_recipe("default").count == 256


def test_recipe_by_path_and_name_errors(tmp_path, recipe_file):
    p = recipe_file(tmp_path / "mine.toml", count=9, seed=3)
    r = load_recipe(str(p))
    assert (r.name, r.count, r.seed) == ("mine", 9, 3)
    with pytest.raises(ConfigError, match="unknown calibration recipe 'nope'; known recipes: .*default"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize(
    "text,match",
    [
        ("source = synth\n", "not valid TOML"),
        ('source = "synth"\ncuont = 3\n', "unknown field.*cuont"),
        ('source = "synth"\ncount = "many"\n', "'count' should be int"),
        ('source = "synth"\nstratified = 1\n', "'stratified' should be bool"),
        ('source = "synth"\ncount = 0\n', "count 0 is out of range"),
        ("count = 10\n", "has no 'source'"),
        ('source = "  "\n', "source is empty"),
    ],
)
def test_malformed_recipes_are_config_errors(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_recipe(str(p))


def test_stratified_indices_balanced_deterministic_and_exhaustive():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3)
    a = stratified_indices(labels, 30, seed=1)
    assert len(a) == len(set(a.tolist())) == 30
    assert np.bincount(labels[a], minlength=3).tolist() == [14, 13, 3]  # the small class gives all it has
    assert np.array_equal(a, stratified_indices(labels, 30, seed=1))
    assert not np.array_equal(a, stratified_indices(labels, 30, seed=2))
    assert len(stratified_indices(labels, 1000, seed=1)) == len(labels)
    b = stratified_indices(labels, 10, seed=1, exclude=a.tolist())
    assert not set(b.tolist()) & set(a.tolist())
    u = stratified_indices(labels, 20, seed=1, stratified=False)
    assert len(set(u.tolist())) == 20


def test_synth_images_are_seeded_balanced_and_prefix_stable():
    a = synth_images(CLASSES, 32, 9, seed=4)
    assert a.images.shape == (9, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.per_class == {"mask": 3, "no_mask": 3, "mask_incorrect": 3}
    assert a.generator == "edgemask.data.synth.render_face"
    assert a.images_sha256 == synth_images(CLASSES, 32, 9, seed=4).images_sha256
    assert a.images_sha256 != synth_images(CLASSES, 32, 9, seed=5).images_sha256
    assert np.array_equal(synth_images(CLASSES, 32, 4, seed=4).images, a.images[:4])
    x = a.as_nchw_float()
    assert x.shape == (9, 3, 32, 32) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert images_sha256(a.images) == a.images_sha256


def test_synth_source_refuses_classes_it_cannot_draw():
    with pytest.raises(ConfigError, match="synth calibration source only draws"):
        synth_images(["mask", "cat"], 32, 4, seed=0)


def _imagefolder(root: Path, per_class: dict[str, int]) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / cls / f"{i}.png"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    return root


def test_dataset_source_selects_stratified_and_excludes_golden(tmp_path, recipe_file):
    data = _imagefolder(tmp_path / "faces", {"with_mask": 6, "without_mask": 6})
    recipe = load_recipe(str(recipe_file(tmp_path / "r.toml", source=str(data), count=4, seed=1)))
    cal = select_images(recipe, ["mask", "no_mask"], 24)
    assert cal.images.shape == (4, 24, 24, 3) and cal.per_class == {"mask": 2, "no_mask": 2}
    assert all(s.endswith(".png") for s in cal.sources) and cal.generator is None
    golden = select_images(recipe, ["mask", "no_mask"], 24, count=4, seed=2, exclude_sources=cal.sources)
    assert not set(golden.sources) & set(cal.sources)
    again = select_images(recipe, ["mask", "no_mask"], 24)
    assert again.sources == cal.sources and again.images_sha256 == cal.images_sha256


def test_empty_dataset_source_is_a_data_error(tmp_path, recipe_file):
    (tmp_path / "empty" / "with_mask").mkdir(parents=True)
    recipe = load_recipe(str(recipe_file(tmp_path / "r.toml", source=str(tmp_path / "empty"))))
    with pytest.raises(DataError):
        select_images(recipe, CLASSES, 32)


def test_trt_cache_text_format_and_roundtrip(tmp_path):
    table = {
        "input": {"amax": 1.0, "in_fp32_graph": True},
        "/conv/Relu_output_0": {"amax": 6.35, "in_fp32_graph": True},
        "renamed_by_ort": {"amax": 2.0, "in_fp32_graph": False},
    }
    text = trt_cache_text(table, version=8502)
    lines = text.splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2"
    assert lines[1] == "input: 3c010204"  # 1/127 as big-endian float32 bits, as TensorRT writes it
    assert lines[2] == f"/conv/Relu_output_0: {struct.pack('>f', 6.35 / 127).hex()}"
    assert len(lines) == 3  # tensors absent from the fp32 graph are left out
    header, scales = read_trt_cache(write_trt_cache(tmp_path / "cache.txt", table, 8502).read_text())
    assert header == lines[0] and scales["/conv/Relu_output_0"] == pytest.approx(6.35 / 127, rel=1e-7)
    with pytest.raises(ExportError):
        read_trt_cache("garbage\n")
    with pytest.raises(ExportError, match="malformed"):
        read_trt_cache("TRT-8201-EntropyCalibration2\nx: zz\n")


def test_write_table_json(tmp_path):
    path = write_table(tmp_path / "t.json", {"input": {"amax": 1.0}}, {"method": "minmax", "count": 3})
    d = json.loads(path.read_text())
    assert d["format"] == "edgemask-calibration-table" and d["version"] == 1
    assert d["method"] == "minmax" and d["tensors"] == {"input": {"amax": 1.0}}

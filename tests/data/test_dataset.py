"""load_dataset: format detection, class forcing, errors, and the `edgemask data` CLI."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgemask.data import LabelResolver, detect_format, load_dataset, normalize_label
from edgemask.errors import ConfigError, DataError

# ---------------------------------------------------------------- detection


def test_detects_synth_layout_and_reads_its_crops(synth_layout):
    fmt, folder = detect_format(synth_layout)
    assert fmt == "synth" and folder == synth_layout / "crops"
    ds = load_dataset(synth_layout, size=16)
    assert ds.format == "synth"
    assert ds.class_names == ["mask", "no_mask", "mask_incorrect"]
    assert np.bincount(ds.labels).tolist() == [4, 4, 4]
    # Sources are relative to the dataset root the user gave.
    assert ds.sources[0] == "crops/mask/000000.png"
    assert ds.root == str(synth_layout)
    # Colours survive: mask crops are red (RGB).
    assert tuple(ds.images[0, 8, 8]) == (255, 0, 0)


def test_synth_scenes_folder_reads_as_voc(synth_layout):
    ds = load_dataset(synth_layout / "scenes", size=16)
    assert ds.format == "voc"
    assert ds.class_names == ["mask", "mask_incorrect"]
    assert ds.sources == ["images/scene_0000.png#0", "images/scene_0000.png#1"]


def test_detects_voc_and_imagefolder(voc, imagefolder):
    assert detect_format(voc) == ("voc", voc)
    assert detect_format(imagefolder) == ("imagefolder", imagefolder)


def test_foreign_dataset_json_falls_through_to_imagefolder(imagefolder):
    (imagefolder / "dataset.json").write_text('{"format": "something-else"}')
    assert detect_format(imagefolder)[0] == "imagefolder"


def test_unknown_layout_names_all_three(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path)
    msg = str(e.value)
    assert "ImageFolder" in msg and "VOC" in msg and "synth" in msg and "\n" not in msg


@pytest.mark.parametrize("case", ["missing", "file", "loose_images", "annotations_only", "synth_without_crops"])
def test_layout_errors_say_how_to_fix(tmp_path, files, case):
    p = tmp_path / "d"
    if case == "file":
        p = tmp_path / "d.zip"
        p.write_bytes(b"PK")
    elif case == "loose_images":
        files.write_image(p / "a.png", files.solid(files.RED_BGR))
    elif case == "annotations_only":
        (p / "annotations").mkdir(parents=True)
        (p / "annotations" / "a.xml").write_text("<annotation/>")
    elif case == "synth_without_crops":
        p.mkdir()
        (p / "dataset.json").write_text('{"format": "edgemask-synth"}')
    with pytest.raises(DataError) as e:
        load_dataset(p)
    hint = {
        "missing": "does not exist",
        "file": "extract",
        "loose_images": "one subfolder per class",
        "annotations_only": "no images/",
        "synth_without_crops": "no crops/",
    }[case]
    assert hint in str(e.value)


# ---------------------------------------------------------------- labels and classes


def test_normalize_and_aliases():
    assert normalize_label(" With-Mask ") == "with_mask"
    assert normalize_label("mask  worn__incorrectly") == "mask_worn_incorrectly"
    r = LabelResolver()
    got = r(["WithMask", "without mask", "Mask-Weared-Incorrect", "partial_mask", "none", "good"], "test")
    assert got == {
        "WithMask": "mask",
        "without mask": "no_mask",
        "Mask-Weared-Incorrect": "mask_incorrect",
        "partial_mask": "mask_incorrect",
        "none": "no_mask",
        "good": "mask",
    }


def test_label_map_to_a_non_class_is_a_config_error():
    with pytest.raises(ConfigError, match="not a class"):
        LabelResolver({"face": "dog"})


def test_class_names_forces_order_for_a_model(imagefolder):
    ds = load_dataset(imagefolder, size=16, class_names=["no_mask", "mask", "mask_incorrect"])
    assert ds.class_names == ["no_mask", "mask", "mask_incorrect"]
    lab = dict(zip(ds.sources, ds.labels.tolist()))
    assert lab["with_mask/m0.png"] == 1 and lab["without_mask/n0.png"] == 0


def test_class_names_missing_a_dataset_class_is_an_error(imagefolder):
    with pytest.raises(DataError, match="does not know") as e:
        load_dataset(imagefolder, size=16, class_names=["mask", "mask_incorrect"])
    assert "no_mask (3 samples)" in str(e.value)


def test_bad_options_are_config_errors(imagefolder):
    with pytest.raises(ConfigError):
        load_dataset(imagefolder, size=0)
    with pytest.raises(ConfigError):
        load_dataset(imagefolder, margin=-1)
    with pytest.raises(ConfigError):
        load_dataset(imagefolder, class_names=["mask", "cat"])


def test_import_is_light():
    import subprocess

    code = (
        "import sys, edgemask.data; bad = [m for m in ('cv2', 'torch') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli():
    from edgemask.cli.data import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_summary_prints_table_and_skips(cli, imagefolder):
    (imagefolder / "with_mask" / "bad.png").write_bytes(b"junk")
    r = CliRunner().invoke(cli, ["data", "summary", str(imagefolder), "--size", "16"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "mask" in out and "no_mask" in out and "train" in out and "test" in out
    assert "with_mask/bad.png" in out and "corrupt" in out
    # 3 groups per class: one each in val and test, one in train.
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("no_mask"))
    assert [c.strip() for c in row.split("│") if c.strip()] == ["no_mask", "1", "1", "1", "3"]
    assert "too few samples" in r.output  # the warning (classes under 10)


def test_cli_summary_label_map(cli, imagefolder, files):
    files.write_image(imagefolder / "face" / "x.png", files.solid(files.BLUE_BGR))
    r = CliRunner().invoke(
        cli, ["data", "summary", str(imagefolder), "--size", "16", "--label-map", "face=mask_incorrect"]
    )
    assert r.exit_code == 0, r.output
    assert "mask_incorrect" in r.stdout


@pytest.mark.parametrize("args", [["/nonexistent/edgemask-data"], ["{tmp}"], ["{tmp}", "--label-map", "oops"]])
def test_cli_summary_bad_input_one_line_exit_1(cli, tmp_path, args):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = CliRunner().invoke(cli, ["data", "summary", *args])
    assert r.exit_code == 1
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.output


def test_cli_synth_calls_the_generator(cli, tmp_path, monkeypatch):
    calls = {}

    def fake_write(out, cfg=None, progress=None, **overrides):  # write_synth_dataset's signature
        from dataclasses import asdict, replace

        from edgemask.config import SynthConfig

        cfg = replace(cfg or SynthConfig(), **overrides)
        calls.update(out=str(out), **asdict(cfg))
        for i in range(1, cfg.n + 1):
            progress(i, cfg.n)
        return {"format": "edgemask-synth", "counts": {"mask": 5, "no_mask": 3, "mask_incorrect": 2}}

    fake = types.ModuleType("edgemask.data.synth")
    fake.write_synth_dataset = fake_write
    monkeypatch.setitem(sys.modules, "edgemask.data.synth", fake)
    out = tmp_path / "s"
    r = CliRunner().invoke(
        cli, ["data", "synth", "--out", str(out), "--n", "10", "--size", "32", "--scenes", "2", "--overwrite"]
    )
    assert r.exit_code == 0, r.output
    assert calls == {"out": str(out), "n": 10, "size": 32, "seed": 0, "n_scenes": 2, "overwrite": True}
    assert "mask_incorrect" in r.stdout
    total = next(line for line in r.stdout.splitlines() if line.strip("│ ").startswith("all"))
    assert [c.strip() for c in total.split("│") if c.strip()] == ["all", "10"]


def test_cli_help_teaches_layouts(cli):
    r = CliRunner().invoke(cli, ["data", "--help"])
    assert r.exit_code == 0
    assert "annotations/*.xml" in r.stdout and "dataset.json" in r.stdout
    r = CliRunner().invoke(cli, ["data", "synth", "--help"])
    assert "6000" in r.stdout and "default" in r.stdout.lower()

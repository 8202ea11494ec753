"""ImageFolder importer: real PNG/JPEG files in class folders."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgemask.data import load_dataset
from edgemask.errors import DataError


def test_aliases_two_classes_nested_and_rgb(imagefolder):
    ds = load_dataset(imagefolder, size=16)
    assert ds.format == "imagefolder"
    # Two class folders → two classes, canonical names in canonical order.
    assert ds.class_names == ["mask", "no_mask"]
    assert ds.images.shape == (6, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # The nested file is found, and sources are relative POSIX paths.
    assert "with_mask/nested/m2.png" in ds.sources
    assert all(not s.startswith("/") for s in ds.sources)
    # BGR on disk → RGB in memory: with_mask is red, without_mask green.
    for img, lab in zip(ds.images, ds.labels):
        centre = img[8, 8]
        assert tuple(centre) == ((255, 0, 0) if lab == 0 else (0, 255, 0))
    assert ds.skipped == []


def test_order_is_sorted_and_deterministic(imagefolder):
    a = load_dataset(imagefolder, size=16)
    b = load_dataset(imagefolder, size=16)
    assert a.sources == b.sources
    assert np.array_equal(a.images, b.images)
    assert a.sources == [
        "with_mask/m0.png",
        "with_mask/m1.png",
        "with_mask/nested/m2.png",
        "without_mask/n0.png",
        "without_mask/n1.png",
        "without_mask/n2.png",
    ]


def test_groups_are_file_hashes_and_duplicates_share_one(imagefolder, files):
    dup = (imagefolder / "with_mask" / "m0.png").read_bytes()
    (imagefolder / "without_mask" / "copy_of_m0.png").write_bytes(dup)
    ds = load_dataset(imagefolder, size=16)
    g = dict(zip(ds.sources, ds.groups))
    assert g["with_mask/m0.png"] == hashlib.sha256(dup).hexdigest()
    assert g["without_mask/copy_of_m0.png"] == g["with_mask/m0.png"]
    assert len(set(ds.groups)) == len(ds.groups) - 1


def test_bad_files_are_skipped_with_reasons(imagefolder, files):
    (imagefolder / "with_mask" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (imagefolder / "with_mask" / "empty.jpg").write_bytes(b"")
    (imagefolder / "without_mask" / "notes.txt").write_text("not an image")
    (imagefolder / "without_mask" / ".DS_Store").write_bytes(b"\0\0")  # OS junk: ignored silently
    calls = []
    ds = load_dataset(imagefolder, size=16, progress=lambda d, t: calls.append((d, t)))
    assert len(ds) == 6
    reasons = dict(ds.skipped)
    assert set(reasons) == {"with_mask/corrupt.png", "with_mask/empty.jpg", "without_mask/notes.txt"}
    assert "corrupt" in reasons["with_mask/corrupt.png"]
    assert reasons["with_mask/empty.jpg"] == "empty file"
    assert "not an image" in reasons["without_mask/notes.txt"]
    # One progress call per image file (8 candidates), ending at total.
    assert calls[-1] == (8, 8) and len(calls) == 8


def test_formats_case_and_gray(tmp_path, files):
    root = tmp_path / "d"
    files.write_image(root / "Masked" / "a.JPG", files.solid(files.RED_BGR, 40, 40))
    files.write_image(root / "Masked" / "b.bmp", files.solid(files.RED_BGR, 8, 8))
    files.write_image(root / "no-mask" / "c.png", np.full((12, 12), 200, np.uint8))  # grayscale
    files.write_image(root / "no-mask" / "d.webp", files.solid(files.GREEN_BGR, 16, 16))
    ds = load_dataset(root, size=8)
    assert ds.class_names == ["mask", "no_mask"]
    assert len(ds) == 4 and ds.images.shape == (4, 8, 8, 3)
    gray = ds.images[ds.sources.index("no-mask/c.png")]
    assert np.all(gray == 200)


def test_unknown_class_folder_names_label_map_option(imagefolder, files):
    files.write_image(imagefolder / "face" / "x.png", files.solid(files.BLUE_BGR))
    with pytest.raises(DataError) as e:
        load_dataset(imagefolder, size=16)
    msg = str(e.value)
    assert "'face'" in msg and "--label-map" in msg and "no_mask" in msg
    assert "\n" not in msg


def test_label_map_fixes_unknown_folder(imagefolder, files):
    files.write_image(imagefolder / "face" / "x.png", files.solid(files.BLUE_BGR))
    ds = load_dataset(imagefolder, size=16, label_map={"face": "mask_incorrect"})
    assert ds.class_names == ["mask", "no_mask", "mask_incorrect"]
    assert ds.labels[ds.sources.index("face/x.png")] == 2


def test_label_map_overrides_builtin_alias(imagefolder):
    ds = load_dataset(imagefolder, size=16, label_map={"With-Mask": "no_mask"})
    assert ds.class_names == ["no_mask"]


def test_only_bad_files_is_an_error(tmp_path):
    (tmp_path / "with_mask").mkdir()
    (tmp_path / "with_mask" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="no usable images"):
        load_dataset(tmp_path, size=16)

"""VOC (Kaggle face-mask) importer: real PNGs + XML annotations."""

from __future__ import annotations

import numpy as np
import pytest

from edgemask.data import load_dataset
from edgemask.data.crops import square_crop
from edgemask.data.voc import clamp_box
from edgemask.errors import DataError


def test_kaggle_layout_crops_each_box(voc):
    ds = load_dataset(voc, size=16, margin=0.0)
    assert ds.format == "voc"
    assert ds.class_names == ["mask", "no_mask"]
    assert ds.sources == [
        "images/maksssksksss0.png#0",
        "images/maksssksksss0.png#1",
        "images/maksssksksss1.png#0",
        "images/maksssksksss1.png#1",
    ]
    assert ds.labels.tolist() == [0, 1, 0, 1]
    # margin 0: the crop is exactly the coloured square, converted to RGB.
    assert np.all(ds.images[0] == (255, 0, 0))
    assert np.all(ds.images[1] == (0, 255, 0))
    assert ds.skipped == []


def test_margin_adds_context(voc):
    ds = load_dataset(voc, size=16, margin=0.25)
    # 20 px box + 25% per side = 30 px square: the border is the gray background.
    img = ds.images[0]
    assert tuple(img[8, 8]) == (255, 0, 0)
    assert tuple(img[0, 8]) == (128, 128, 128)


def test_same_face_in_duplicate_images_shares_a_group(voc):
    ds = load_dataset(voc, size=16, margin=0.0)
    # The two scenes differ only at pixel (0, 0), outside every crop: their
    # identical faces join the two photos, and each photo's crops join too.
    assert len(set(ds.groups)) == 1


def _scenes(root, files, n):
    """n distinct photos with three faces each (mask, no_mask, mask_incorrect)."""
    for k in range(n):
        img = files.scene()
        img[12:14, 12:14] = (k, k, k)  # a mark inside each box: every face differs from every other photo's
        img[42:44, 62:64] = (k, 0, k)
        img[65:67, 15:17] = (0, k, k)
        files.write_image(root / "images" / f"s{k}.png", img)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"s{k}.xml").write_text(
            files.voc_xml(
                f"s{k}.png",
                [
                    ("with_mask", (10, 10, 30, 30)),
                    ("without_mask", (60, 40, 80, 60)),
                    ("mask_weared_incorrect", (10, 55, 30, 75)),
                ],
            )
        )
    return root


def test_crops_of_one_photo_never_straddle_splits(tmp_path, files):
    from edgemask.data import split_indices

    ds = load_dataset(_scenes(tmp_path / "v", files, 30), size=16, margin=0.0)
    assert len(ds) == 90 and len(set(ds.groups)) == 30  # one group per photo
    s = split_indices(ds.labels, ds.groups, seed=0)
    where = {}
    for name, idx in s.items():
        for i in idx:
            where.setdefault(ds.sources[i].split("#")[0], set()).add(name)
    assert all(len(v) == 1 for v in where.values()), where
    assert all(len(s[k]) for k in ("train", "val", "test"))


def test_bad_annotations_are_skipped_with_reasons(voc, files):
    ann, img = voc / "annotations", voc / "images"
    (ann / "broken.xml").write_text("<annotation><filename>x.png</filename><object>")
    (ann / "empty.xml").write_text("")
    (ann / "evil.xml").write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><annotation/>')
    (ann / "lonely.xml").write_text(files.voc_xml("missing.png", [("with_mask", (1, 1, 20, 20))]))
    files.write_image(img / "boxes.png", files.scene())
    (ann / "boxes.xml").write_text(
        files.voc_xml(
            "boxes.png",
            [
                ("with_mask", (200, 200, 260, 260)),  # outside the 100x80 image
                ("without_mask", (30, 10, 10, 30)),  # inverted
                ("with_mask", (10, 10, 12, 30)),  # 2 px wide
                ("with_mask", (-10, 5, 30, 30)),  # partly outside: clamped, kept
                ("with_mask", ("a", 1, 2, 3)),  # not a number
            ],
        )
    )
    files.write_image(img / "corrupt.png", files.scene())
    (img / "corrupt.png").write_bytes(b"\x89PNG broken")
    (ann / "corrupt.xml").write_text(files.voc_xml("corrupt.png", [("with_mask", (10, 10, 30, 30))]))
    files.write_image(img / "unannotated.png", files.scene())

    ds = load_dataset(voc, size=16)
    assert len(ds) == 5  # 4 good boxes + the clamped one
    assert "images/boxes.png#3" in ds.sources
    reasons = dict(ds.skipped)
    assert "malformed XML" in reasons["annotations/broken.xml"]
    assert reasons["annotations/empty.xml"] == "empty file"
    assert "DOCTYPE" in reasons["annotations/evil.xml"]
    assert "not found" in reasons["annotations/lonely.xml"]
    assert "outside" in reasons["annotations/boxes.xml#0"]
    assert "inverted" in reasons["annotations/boxes.xml#1"]
    assert "smaller than 4 px" in reasons["annotations/boxes.xml#2"]
    assert "non-numeric" in reasons["annotations/boxes.xml#4"]
    assert "corrupt" in reasons["images/corrupt.png"]
    assert "no annotation" in reasons["images/unannotated.png"]


def test_image_found_by_stem_when_extension_differs(voc, files):
    files.write_image(voc / "images" / "photo.jpg", files.scene())
    (voc / "annotations" / "photo.xml").write_text(files.voc_xml("photo.png", [("with_mask", (10, 10, 30, 30))]))
    ds = load_dataset(voc, size=16)
    assert "images/photo.jpg#0" in ds.sources


def test_filename_cannot_escape_images_dir(voc, files):
    files.write_image(voc / "secret.png", files.scene())
    (voc / "annotations" / "zz.xml").write_text(files.voc_xml("../secret.png", [("with_mask", (10, 10, 30, 30))]))
    ds = load_dataset(voc, size=16)
    assert not any("secret" in s for s in ds.sources)
    assert "not found" in dict(ds.skipped)["annotations/zz.xml"]


def test_unknown_object_name_is_an_error_naming_label_map(voc, files):
    (voc / "annotations" / "odd.xml").write_text(files.voc_xml("maksssksksss0.png", [("helmet", (10, 10, 30, 30))]))
    with pytest.raises(DataError) as e:
        load_dataset(voc, size=16)
    assert "'helmet'" in str(e.value) and "--label-map" in str(e.value)
    ds = load_dataset(voc, size=16, label_map={"helmet": "mask_incorrect"})
    assert ds.class_names == ["mask", "no_mask", "mask_incorrect"]


def test_uppercase_pascal_dirs(tmp_path, files):
    files.write_image(tmp_path / "JPEGImages" / "a.jpg", files.scene())
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        files.voc_xml("a.jpg", [("mask_weared_incorrect", (10, 10, 30, 30))])
    )
    ds = load_dataset(tmp_path, size=16)
    assert ds.format == "voc" and ds.class_names == ["mask_incorrect"]


def test_square_crop_shifts_inside_and_pads_only_when_too_big():
    img = np.arange(100 * 80, dtype=np.int32).reshape(80, 100)[..., None].repeat(3, axis=2).astype(np.float32)
    # A box at the left edge: the square is shifted right, not cut.
    c = square_crop(img, (0, 30, 20, 50), margin=0.5)
    assert c.shape == (40, 40, 3)
    assert np.array_equal(c, img[20:60, 0:40])
    # Square bigger than the whole image: padded (edge-replicated) to stay square.
    c = square_crop(img, (10, 0, 90, 80), margin=0.25)  # 80 px * 1.5 = 120 px
    assert c.shape == (120, 120, 3)
    assert np.array_equal(c[20:100, 10:110], img)  # centred on the box centre (50, 40)
    assert np.array_equal(c[0, 10:110], img[0])  # replicated top edge


def test_clamp_box():
    assert clamp_box((-5, -5, 10, 10), 50, 50) == ((0.0, 0.0, 10.0, 10.0), None)
    box, why = clamp_box((60, 60, 70, 70), 50, 50)
    assert box is None and "outside" in why


def test_box_sides_are_keyed_like_the_crops(voc):
    from edgemask.data.voc import box_sides

    ds = load_dataset(voc, size=16, margin=0.0)
    sides = box_sides(voc)
    assert set(ds.sources) <= set(sides)
    assert all(v == 20.0 for v in sides.values())  # the fixture's boxes are 20 px squares
    with pytest.raises(DataError, match="not a VOC dataset"):
        box_sides(voc / "images")

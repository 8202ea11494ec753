"""Bad datasets, images and VOC XML through ``edgemask data summary`` / ``train``: one line each, nothing written.

Every case builds a small hostile folder (or damages a copy of the shared
synth set), runs the installed console script, and is judged by
``badinput_helpers.run_case``. The table in README.md lists the cases;
``tally.py`` runs the same cases against any checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from badinput_helpers import EXE, Case, Work, run_case

pytestmark = pytest.mark.skipif(not EXE.is_file(), reason=f"console script {EXE} not installed (pip install -e .)")


def _png(w: int = 24, h: int = 24, seed: int = 0) -> bytes:
    import cv2
    import numpy as np

    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _folder(*files: str, data: bytes | None = None):
    """setup: an ImageFolder ``{tmp}/ds`` with these files (``with_mask/a.png`` ...) holding ``data``."""

    def setup(w: Work) -> None:
        for rel in files:
            p = w.path("ds") / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_png() if data is None else data)

    return setup


def _fifo_only(w: Work) -> None:
    (w.path("ds") / "with_mask").mkdir(parents=True)
    os.mkfifo(w.path("ds") / "with_mask" / "a.png")
    os.mkfifo(w.path("ds") / "with_mask" / "b.jpg")


def _device_only(w: Work) -> None:
    (w.path("ds") / "with_mask").mkdir(parents=True)
    os.symlink("/dev/zero", w.path("ds") / "with_mask" / "zero.png")


def _bomb_only(w: Work) -> None:
    from hostile_files import png_bomb_bytes

    (w.path("ds") / "with_mask").mkdir(parents=True)
    (w.path("ds") / "with_mask" / "huge.png").write_bytes(png_bomb_bytes(20000, 20000))


def _voc(xml: str, image: bytes | None = None, image_name: str = "a.png"):
    """setup: a VOC folder ``{tmp}/voc`` with one annotation and one image."""

    def setup(w: Work) -> None:
        (w.path("voc") / "annotations").mkdir(parents=True)
        (w.path("voc") / "images").mkdir()
        (w.path("voc") / "annotations" / "a.xml").write_text(xml)
        (w.path("voc") / "images" / image_name).write_bytes(_png(100, 80) if image is None else image)

    return setup


def _ann(
    box: str = "<xmin>10</xmin><ymin>10</ymin><xmax>40</xmax><ymax>40</ymax>",
    name: str = "with_mask",
    size: str = "<size><width>100</width><height>80</height><depth>3</depth></size>",
) -> str:
    return (
        f"<annotation><filename>a.png</filename>{size}<object><name>{name}</name>"
        f"<bndbox>{box}</bndbox></object></annotation>"
    )


def _voc_bomb_image(w: Work) -> None:
    from hostile_files import png_bomb_bytes

    _voc(_ann(), image=png_bomb_bytes(20000, 20000))(w)


def _entity_bomb(w: Work) -> None:
    from hostile_files import XML_ENTITY_BOMB

    _voc(XML_ENTITY_BOMB)(w)
    (w.path("voc") / "annotations" / "a.xml").write_text(XML_ENTITY_BOMB)


def _dataset_json(text: str):
    def setup(w: Work) -> None:
        (w.copy("data") / "dataset.json").write_text(text)

    return setup


SUMMARY = ["data", "summary"]
DS = "{tmp}/ds"
VOC = "{tmp}/voc"

CASES = [
    # -- datasets (ImageFolder layout and paths)
    Case(
        "data-only-fifos",
        "datasets",
        "every image of the class folder is a FIFO",
        SUMMARY + [DS],
        ["no usable images", "FIFO", "data summary"],
        _fifo_only,
        absent=[],
        unchanged=[DS],
        timeout=30,
    ),
    Case(
        "data-only-device",
        "datasets",
        "the only image is a symlink to /dev/zero",
        SUMMARY + [DS],
        ["no usable images", "character device"],
        _device_only,
        absent=[],
        unchanged=[DS],
        timeout=30,
    ),
    Case(
        "data-only-png-bomb",
        "images",
        "the only image: a 1.6 MB PNG declaring 20000×20000",
        SUMMARY + [DS],
        ["no usable images", "above the cap", "--max-image-pixels"],
        _bomb_only,
        absent=[],
        unchanged=[DS],
        timeout=60,
    ),
    Case(
        "data-all-corrupt",
        "images",
        "every image is PNG magic + junk",
        SUMMARY + [DS],
        ["no usable images", "corrupt"],
        _folder("with_mask/a.png", "no_mask/b.png", data=b"\x89PNG\r\n\x1a\njunk"),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-all-empty",
        "images",
        "every image is a 0-byte file",
        SUMMARY + [DS],
        ["no usable images", "empty file"],
        _folder("with_mask/a.png", "no_mask/b.jpg", data=b""),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-not-an-image-format",
        "images",
        "a TIFF saved as .png",
        SUMMARY + [DS],
        ["no usable images", "not a PNG, JPEG, BMP, GIF or WebP"],
        _folder("with_mask/a.png", data=b"II*\x00" + b"\x00" * 200),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-unknown-class-folder",
        "datasets",
        "class folders named cats/ and dogs/",
        SUMMARY + [DS],
        ["unknown label", "--label-map"],
        _folder("cats/a.png", "dogs/b.png"),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-missing-folder",
        "datasets",
        "a dataset path that does not exist",
        SUMMARY + ["{tmp}/nope"],
        ["does not exist"],
        absent=["{tmp}/nope"],
    ),
    Case(
        "data-zip-not-folder",
        "datasets",
        "an archive passed as the dataset",
        SUMMARY + ["{tmp}/ds.zip"],
        ["extract the archive"],
        lambda w: w.path("ds.zip").write_bytes(b"PK\x03\x04"),
        absent=[],
    ),
    Case(
        "data-loose-images",
        "datasets",
        "images directly in the root, no class folders",
        SUMMARY + [DS],
        ["one subfolder per class"],
        _folder("a.png", "b.png"),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-max-pixels-zero",
        "CLI values",
        "`--max-image-pixels 0`",
        SUMMARY + [DS, "--max-image-pixels", "0"],
        ["pixel cap", "--max-image-pixels"],
        _folder("with_mask/a.png", "no_mask/b.png"),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-size-too-small",
        "CLI values",
        "`data summary --size 2`",
        SUMMARY + [DS, "--size", "2"],
        ["8 to 1024"],
        _folder("with_mask/a.png", "no_mask/b.png"),
        absent=[],
        unchanged=[DS],
    ),
    Case(
        "data-label-map-bad-class",
        "CLI values",
        "`--label-map cats=dog`",
        SUMMARY + [DS, "--label-map", "cats=dog"],
        ["not a class", "--label-map"],
        _folder("cats/a.png"),
        absent=[],
        unchanged=[DS],
    ),
    # -- dataset.json of a synth folder
    Case(
        "dataset-json-invalid",
        "datasets",
        "`dataset.json` is not JSON (synth folder)",
        SUMMARY + ["{data}"],
        ["dataset.json", "edgemask data synth", "crops"],
        _dataset_json("{broken"),
        absent=[],
        unchanged=["{data}"],
    ),
    Case(
        "dataset-json-list",
        "datasets",
        "`dataset.json` holds a JSON list",
        SUMMARY + ["{data}"],
        ["dataset.json", "edgemask data synth", "crops"],
        _dataset_json("[1, 2, 3]"),
        absent=[],
        unchanged=["{data}"],
    ),
    Case(
        "dataset-json-no-format",
        "datasets",
        "`dataset.json` without its `format` field, beside crops/",
        SUMMARY + ["{data}"],
        ["dataset.json", "format", "edgemask data synth"],
        _dataset_json('{"n": 60}'),
        absent=[],
        unchanged=["{data}"],
    ),
    Case(
        "dataset-json-bad-version",
        "datasets",
        '`dataset.json` with `version: "two"`',
        SUMMARY + ["{data}"],
        ["dataset.json", "version", "edgemask data synth"],
        _dataset_json('{"format": "edgemask-synth", "version": "two"}'),
        absent=[],
        unchanged=["{data}"],
    ),
    Case(
        "train-dataset-json-invalid",
        "datasets",
        "`train` on a synth folder whose dataset.json is broken",
        ["train", "--data", "{data}", "--epochs", "1", "--out", "{tmp}/out"],
        ["dataset.json", "edgemask data synth"],
        _dataset_json("{broken"),
        unchanged=["{data}"],
    ),
    # -- VOC XML
    Case(
        "voc-malformed-xml",
        "XML",
        "the only annotation is cut off mid-tag",
        SUMMARY + [VOC],
        ["no usable images", "malformed XML"],
        _voc("<annotation><object><name>with_mask</na"),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-entity-bomb",
        "XML",
        "a billion-laughs DOCTYPE in the annotation",
        SUMMARY + [VOC],
        ["no usable images", "DOCTYPE"],
        _entity_bomb,
        absent=[],
        unchanged=[VOC],
        timeout=60,
    ),
    Case(
        "voc-wrong-root",
        "XML",
        "an XML file whose root is not <annotation>",
        SUMMARY + [VOC],
        ["no usable images", "not a VOC annotation"],
        _voc("<svg><object/></svg>"),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-box-outside",
        "XML",
        "the only box lies outside the image (no <size> either)",
        SUMMARY + [VOC],
        ["no usable images", "outside the 100x80 image"],
        _voc(_ann("<xmin>500</xmin><ymin>500</ymin><xmax>600</xmax><ymax>600</ymax>", size="")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-box-inverted",
        "XML",
        "xmin > xmax (negative width)",
        SUMMARY + [VOC],
        ["no usable images", "inverted box"],
        _voc(_ann("<xmin>40</xmin><ymin>10</ymin><xmax>10</xmax><ymax>40</ymax>")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-box-zero",
        "XML",
        "a zero-area box",
        SUMMARY + [VOC],
        ["no usable images", "empty or inverted box"],
        _voc(_ann("<xmin>10</xmin><ymin>10</ymin><xmax>10</xmax><ymax>10</ymax>")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-box-negative",
        "XML",
        "a box at negative coordinates, 2 px inside",
        SUMMARY + [VOC],
        ["no usable images", "smaller than 4 px"],
        _voc(_ann("<xmin>-30</xmin><ymin>-30</ymin><xmax>2</xmax><ymax>2</ymax>")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-box-not-a-number",
        "XML",
        "`<xmin>ten</xmin>`",
        SUMMARY + [VOC],
        ["no usable images", "non-numeric"],
        _voc(_ann("<xmin>ten</xmin><ymin>10</ymin><xmax>40</xmax><ymax>40</ymax>")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-unknown-label",
        "XML",
        "object name `face`",
        SUMMARY + [VOC],
        ["unknown label", "--label-map face="],
        _voc(_ann(name="face")),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-image-missing",
        "XML",
        "the annotation names an image that is not there",
        SUMMARY + [VOC],
        ["no usable images", "not found"],
        _voc(_ann(), image_name="other.bmp"),
        absent=[],
        unchanged=[VOC],
    ),
    Case(
        "voc-image-bomb",
        "images",
        "the VOC image is a PNG declaring 20000×20000",
        SUMMARY + [VOC],
        ["no usable images", "above the cap"],
        _voc_bomb_image,
        absent=[],
        unchanged=[VOC],
        timeout=60,
    ),
]


@pytest.fixture(scope="module")
def shared(badinput_shared):
    return badinput_shared


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_input(case: Case, tmp_path: Path, shared):
    if ("fifo" in case.id or "device" in case.id) and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    verdict, why = run_case(case, tmp_path, shared)
    assert verdict == "clean", f"{case.id}: {verdict}: {why}"

"""Hostile dataset files: FIFOs, devices and image bombs are skipped, never opened or decoded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgemask.data import load_dataset
from edgemask.data.imagefile import Unreadable, header_size, image_shape, read_image_file

EXE = Path(sys.executable).with_name("edgemask")
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")


def _img(h=37, w=53):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "ext, params",
    [
        (".png", []),
        (".jpg", []),
        (".bmp", []),
        (".gif", []),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    ],  # 101 = lossless VP8L
    ids=["png", "jpeg", "bmp", "gif", "webp-lossy", "webp-lossless"],
)
def test_header_size_of_every_format_opencv_writes(ext, params):
    ok, buf = cv2.imencode(ext, _img(), params)
    if not ok:
        pytest.skip(f"this OpenCV cannot write {ext}")
    fmt, w, h = header_size(io.BytesIO(buf.tobytes()))
    assert (w, h) == (53, 37), fmt


def test_header_size_of_pillow_variants():
    Image = pytest.importorskip("PIL.Image")
    img = _img()
    for fmt, kw in [
        ("JPEG", {"progressive": True, "exif": b"Exif\x00\x00" + b"\x00" * 3000}),
        ("WEBP", {"lossless": False}),
        ("GIF", {}),
        ("BMP", {}),
    ]:
        b = io.BytesIO()
        Image.fromarray(img).save(b, fmt, **kw)
        assert header_size(io.BytesIO(b.getvalue()))[1:] == (53, 37), fmt
    b = io.BytesIO()  # with alpha Pillow writes the extended VP8X header
    Image.fromarray(np.dstack([img, img[..., :1]])).save(b, "WEBP")
    assert header_size(io.BytesIO(b.getvalue()))[1:] == (53, 37)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 6 + b"\xff\xd9", "JPEG without a frame header"),
        (b"GIF89a\x01", "truncated GIF"),
        (b"II*\x00" + b"\x00" * 40, "not a PNG, JPEG, BMP, GIF or WebP"),
    ],
)
def test_bad_headers_are_named(data, words):
    with pytest.raises(Unreadable) as e:
        header_size(io.BytesIO(data))
    assert words in str(e.value) and "corrupt" in str(e.value)


def test_png_bomb_is_skipped_from_its_header_and_never_decoded(imagefolder, png_bomb, monkeypatch):
    bomb = imagefolder / "with_mask" / "huge.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    assert bomb.stat().st_size < 2_000_000
    import edgemask.data.imagefile as imf

    real = imf.decode_image
    seen = []

    def spy(data):
        seen.append(len(data))
        assert len(data) != bomb.stat().st_size, "the image bomb reached the decoder"
        return real(data)

    monkeypatch.setattr(imf, "decode_image", spy)
    ds = load_dataset(imagefolder, size=16)
    reasons = dict(ds.skipped)
    assert "20000x20000 = 400.0 MP, above the cap of 50.0 MP" in reasons["with_mask/huge.png"]
    assert len(ds) == 6 and seen  # the other images did reach it


def test_pixel_cap_is_configurable(imagefolder):
    ds = load_dataset(imagefolder, size=16, max_pixels=500)  # the 20x20 red crops pass, the 24x30 green do not
    reasons = dict(ds.skipped)
    assert len(ds) == 3 and "above the cap of 500 pixels" in reasons["without_mask/n0.png"]
    from edgemask.errors import ConfigError

    with pytest.raises(ConfigError, match="pixel cap"):
        load_dataset(imagefolder, max_pixels=0)


@needs_fifo
@pytest.mark.timeout(60)
def test_fifo_device_and_broken_link_in_an_imagefolder_are_skipped_unopened(imagefolder):
    os.mkfifo(imagefolder / "with_mask" / "pipe.png")
    os.mkfifo(imagefolder / "without_mask" / "pipe.txt")
    os.symlink("/dev/zero", imagefolder / "with_mask" / "zero.png")
    os.symlink("nowhere.png", imagefolder / "with_mask" / "dangling.png")
    ds = load_dataset(imagefolder, size=16)
    reasons = dict(ds.skipped)
    assert len(ds) == 6
    assert reasons["with_mask/pipe.png"].startswith("a FIFO (named pipe), not a regular file")
    assert reasons["without_mask/pipe.txt"].startswith("a FIFO")
    assert reasons["with_mask/zero.png"].startswith("a character device")
    assert reasons["with_mask/dangling.png"].startswith("cannot read")


@needs_fifo
@pytest.mark.timeout(60)
def test_fifos_in_a_voc_folder_are_listed_as_skipped(voc):
    os.mkfifo(voc / "annotations" / "pipe.xml")
    os.mkfifo(voc / "images" / "pipe.png")
    ds = load_dataset(voc, size=16)
    reasons = dict(ds.skipped)
    assert len(ds) == 4
    assert reasons["annotations/pipe.xml"].startswith("a FIFO") and reasons["images/pipe.png"].startswith("a FIFO")


def test_voc_image_bomb_is_skipped(voc, png_bomb):
    (voc / "images" / "maksssksksss0.png").write_bytes(png_bomb(12000, 12000))
    ds = load_dataset(voc, size=16)
    assert len(ds) == 2 and "above the cap" in dict(ds.skipped)["images/maksssksksss0.png"]


def test_image_shape_reads_headers_only(tmp_path, files, png_bomb):
    files.write_image(tmp_path / "a.jpg", files.solid(files.RED_BGR, 30, 40))
    (tmp_path / "b.png").write_bytes(png_bomb(9000, 9000))
    assert image_shape(tmp_path / "a.jpg") == (30, 40)
    assert image_shape(tmp_path / "b.png") is None  # above the cap
    assert read_image_file(tmp_path / "nope.png").skip.startswith("cannot read")


@needs_fifo
@pytest.mark.skipif(not EXE.is_file(), reason="console script not installed")
def test_data_summary_on_a_fifo_and_a_bomb_ends_quickly_in_little_memory(imagefolder, png_bomb):
    """As a user runs it: before the fix this hung forever on the FIFO, then decoded 1.2 GB."""
    os.mkfifo(imagefolder / "with_mask" / "pipe.png")
    (imagefolder / "with_mask" / "huge.png").write_bytes(png_bomb(20000, 20000))
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", OMP_NUM_THREADS="1")
    log = imagefolder.parent / "summary.log"
    with open(log, "wb") as f:
        p = subprocess.Popen(
            [str(EXE), "data", "summary", str(imagefolder), "--size", "16"],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    deadline = time.monotonic() + 60
    while True:  # os.wait4 gives this child's own peak memory
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError("edgemask data summary hung (on the FIFO?)")
        time.sleep(0.1)
    p.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    assert p.returncode == 0 and "Traceback" not in text, text
    assert "skipped 2 file(s)" in text and "with_mask/pipe.png: a FIFO" in text and "400.0 MP, above the cap" in text
    assert usage.ru_maxrss < 800_000, f"peak {usage.ru_maxrss} KiB: the bomb was decoded"  # KiB on Linux

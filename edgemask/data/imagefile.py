"""Reading dataset files without trusting them.

A dataset folder from elsewhere can hurt a reader in two ways that a corrupt
file cannot:

* a name that is not a regular file. ``read()`` on a FIFO blocks forever
  (``edgemask data summary`` used to hang on one), ``/dev/zero`` never ends,
  a socket cannot be read. Such entries are told apart by ``stat`` and
  skipped without ever being opened; the file that is opened is checked
  again through its descriptor, so a swap between the two calls is caught.
* a small file that declares a huge picture. A 1.2 MB PNG of 20000×20000
  decodes into 1.2 GB. Width and height are read from the header first
  (PNG IHDR, JPEG SOF, BMP, GIF, WebP; a few dozen bytes, nothing decoded)
  and an image above the pixel cap is skipped with its size in the reason.

Everything here reports a reason string instead of raising, because the
importers skip what they cannot use and list it (``edgemask data summary``).
The parser is our own, so it behaves the same on the device runtime (OpenCV
and numpy only) and on a workstation with Pillow.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Tuple

import numpy as np

from edgemask.config import DEFAULT_MAX_IMAGE_PIXELS

#: The formats whose header we can read; anything else is not decoded at all.
HEADER_FORMATS = "PNG, JPEG, BMP, GIF or WebP"
#: Annotation XML larger than this is refused unread: a face-mask annotation is a few KB.
MAX_XML_BYTES = 8 * 1024 * 1024
# No image stores more than 8 bytes per pixel (16-bit RGBA, uncompressed);
# a file far beyond that for the cap is not worth reading into memory.
_MAX_BYTES_PER_PIXEL = 8
_SLACK_BYTES = 16 * 1024 * 1024


class Unreadable(Exception):
    """A file that is skipped; ``args[0]`` says why, for the skip list."""


def not_regular_reason(path: Path | str) -> Optional[str]:
    """Why ``path`` must not be opened (not a regular file, or cannot be stat'ed), else None.

    Symlinks are followed: a link to a regular file is read like one, a link
    to a FIFO or a device is skipped like them.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return _mode_reason(st.st_mode)


def _mode_reason(mode: int) -> Optional[str]:
    if stat.S_ISREG(mode):
        return None
    what = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return f"{what}, not a regular file; skipped without opening it"


def _open_regular(path: Path | str) -> Tuple[BinaryIO, int]:
    """Open a regular file for reading; (file object, size). Raises Unreadable."""
    reason = not_regular_reason(path)
    if reason:
        raise Unreadable(reason)
    # O_NONBLOCK: should the name have become a FIFO since the stat, open()
    # returns at once instead of waiting for a writer; fstat then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        reason = _mode_reason(st.st_mode)
        if reason:
            raise Unreadable(reason)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, int(st.st_size)


def read_small_file(path: Path | str, max_bytes: int = MAX_XML_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; Unreadable otherwise (e.g. annotation XML)."""
    f, size = _open_regular(path)
    with f:
        if size > max_bytes:
            raise Unreadable(
                f"file of {size / 2**20:.1f} MiB, far larger than an annotation can be "
                f"(limit {max_bytes / 2**20:.0f} MiB); not read"
            )
        try:
            return f.read(max_bytes + 1)[: max_bytes + 1]
        except OSError as e:
            raise Unreadable(f"cannot read: {e.strerror or e}") from None


# --------------------------------------------------------------------------- headers


def _need(buf: bytes, n: int, fmt: str) -> bytes:
    if len(buf) < n:
        raise Unreadable(f"corrupt or unsupported image (truncated {fmt} header)")
    return buf


def _jpeg_size(f: BinaryIO) -> Tuple[int, int]:
    """(width, height) from the first SOFn segment; walks the marker segments with seeks."""
    f.seek(2)
    for _ in range(100_000):  # a bound on segments, against a crafted file
        b = f.read(1)
        stray = 0
        while b and b != b"\xff" and stray < 64:  # a few stray bytes between segments: tolerated, as decoders do
            b, stray = f.read(1), stray + 1
        while b == b"\xff":  # markers may be padded with 0xFF fill bytes
            b = f.read(1)
        if not b:
            break
        m = b[0]
        if m in (0x01, 0xD8) or 0xD0 <= m <= 0xD7:  # stand-alone markers carry no length
            continue
        if m in (0xD9, 0xDA):  # end of image, or entropy-coded data before any frame header
            break
        seg = f.read(2)
        if len(seg) < 2:
            break
        (length,) = struct.unpack(">H", seg)
        if length < 2:
            break
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15 but DHT, JPG, DAC
            sof = f.read(5)
            if len(sof) < 5:
                break
            h, w = struct.unpack(">HH", sof[1:5])
            return w, h
        f.seek(length - 2, os.SEEK_CUR)
    raise Unreadable("corrupt or unsupported image (JPEG without a frame header)")


def header_size(f: BinaryIO) -> Tuple[str, int, int]:
    """(format, width, height) declared by an image file's header; nothing is decoded.

    Raises:
        Unreadable: not one of :data:`HEADER_FORMATS`, or a truncated header.
    """
    f.seek(0)
    head = f.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        _need(head, 24, "PNG")
        if head[12:16] != b"IHDR":
            raise Unreadable("corrupt or unsupported image (PNG without an IHDR header)")
        w, h = struct.unpack(">II", head[16:24])
        return "PNG", w, h
    if head.startswith(b"\xff\xd8"):
        w, h = _jpeg_size(f)
        return "JPEG", w, h
    if head[:6] in (b"GIF87a", b"GIF89a"):
        _need(head, 10, "GIF")
        w, h = struct.unpack("<HH", head[6:10])
        return "GIF", w, h
    if head.startswith(b"BM"):
        _need(head, 26, "BMP")
        (dib,) = struct.unpack("<I", head[14:18])
        if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            w, h = struct.unpack("<HH", head[18:22])
        else:
            w, h = struct.unpack("<ii", head[18:26])
        return "BMP", abs(w), abs(h)  # a negative height means rows stored top-down
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        _need(head, 30, "WebP")
        chunk = head[12:16]
        if chunk == b"VP8 ":  # lossy: 14-bit sizes after the start code 9d 01 2a
            if head[23:26] != b"\x9d\x01\x2a":
                raise Unreadable("corrupt or unsupported image (WebP VP8 without a start code)")
            w, h = struct.unpack("<HH", head[26:30])
            return "WebP", w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L":  # lossless: signature 0x2f, then 14 bits each of width-1, height-1
            if head[20] != 0x2F:
                raise Unreadable("corrupt or unsupported image (WebP VP8L without its signature)")
            (bits,) = struct.unpack("<I", head[21:25])
            return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
            w = int.from_bytes(head[24:27], "little") + 1
            h = int.from_bytes(head[27:30], "little") + 1
            return "WebP", w, h
        raise Unreadable("corrupt or unsupported image (WebP of an unknown kind)")
    raise Unreadable(f"corrupt or unsupported image (not a {HEADER_FORMATS} file)")


# --------------------------------------------------------------------------- images


@dataclass
class ImageRead:
    """What :func:`read_image_file` found: the bytes and pixels, or why the file was skipped."""

    data: Optional[bytes] = None  # the file's bytes (for the content hash)
    bgr: Optional[np.ndarray] = None  # (H, W, 3) uint8 BGR
    skip: Optional[str] = None  # set when bgr is None

    @property
    def ok(self) -> bool:
        return self.bgr is not None


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` as an int ≥ 1, or a ConfigError naming the option."""
    from edgemask.errors import ConfigError

    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ConfigError(
            f"the image pixel cap must be a whole number ≥ 1 (got {max_pixels!r}); "
            f"e.g. --max-image-pixels {DEFAULT_MAX_IMAGE_PIXELS}"
        )
    return max_pixels


def _mp(n: int) -> str:
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n} pixels"


def image_shape(path: Path | str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Optional[Tuple[int, int]]:
    """(height, width) from the header of a usable image file, else None (nothing decoded)."""
    try:
        f, _ = _open_regular(path)
    except Unreadable:
        return None
    with f:
        try:
            _, w, h = header_size(f)
        except (Unreadable, OSError, struct.error):
            return None
    if w < 1 or h < 1 or w * h > max_pixels:
        return None
    return h, w


def decode_image(data: bytes) -> np.ndarray | None:
    """Decode image bytes to an (H, W, 3) uint8 BGR array, or None if corrupt.

    Gray and 16-bit images come back as 8-bit, 3-channel; alpha is dropped.
    """
    import cv2

    if not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR: always 3 channels, 8 bit; also applies JPEG EXIF rotation.
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return img


def read_image_file(path: Path | str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageRead:
    """Read and decode one image file, refusing what could hang or exhaust memory.

    Order: ``stat`` (a FIFO, device or socket is never opened) → open and
    ``fstat`` → header size (above ``max_pixels``, or not a format we can
    size, is skipped undecoded) → read → decode.

    Returns:
        An :class:`ImageRead`; ``skip`` holds the reason when nothing usable came out.
    """
    try:
        f, size = _open_regular(path)
    except Unreadable as e:
        return ImageRead(skip=str(e.args[0]))
    with f:
        if size == 0:
            return ImageRead(data=b"", skip="empty file")
        try:
            fmt, w, h = header_size(f)
        except Unreadable as e:
            return ImageRead(skip=str(e.args[0]))
        except (OSError, struct.error) as e:
            return ImageRead(skip=f"cannot read: {getattr(e, 'strerror', None) or e}")
        if w < 1 or h < 1:
            return ImageRead(skip=f"corrupt image ({fmt} header declares an empty {w}x{h} picture)")
        if w * h > max_pixels:
            return ImageRead(
                skip=f"{fmt} header declares {w}x{h} = {_mp(w * h)}, above the cap of {_mp(max_pixels)}; "
                "not decoded (raise it with --max-image-pixels / max_image_pixels)"
            )
        if size > max_pixels * _MAX_BYTES_PER_PIXEL + _SLACK_BYTES:
            return ImageRead(
                skip=f"file of {size / 2**20:.0f} MiB is larger than any image under the pixel cap; not read"
            )
        try:
            f.seek(0)
            data = f.read()
        except OSError as e:
            return ImageRead(skip=f"cannot read: {e.strerror or e}")
    img = decode_image(data)
    if img is None:
        return ImageRead(data=data, skip="corrupt or unsupported image (OpenCV could not decode it)")
    return ImageRead(data=data, bgr=img)


__all__ = [
    "HEADER_FORMATS",
    "ImageRead",
    "MAX_XML_BYTES",
    "Unreadable",
    "check_max_pixels",
    "decode_image",
    "header_size",
    "image_shape",
    "not_regular_reason",
    "read_image_file",
    "read_small_file",
]

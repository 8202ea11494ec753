"""Root fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

# Determinism and speed on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def tensorrt_unavailable_reason() -> str | None:
    """Why tests marked ``tensorrt`` cannot run here (one line), or None when TensorRT can build here.

    TensorRT that is not installed, that fails to import, or that imports on a
    machine where no CUDA device answers (its Builder cannot be made) all skip;
    the reason is edgemask's own one-line message.
    """
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed here (it ships with JetPack; on x86 pip install 'edgemask[tensorrt-cu12]')"
    from edgemask.backends.tensorrt.builder import require_build_gpu
    from edgemask.errors import NotAvailableError

    try:
        require_build_gpu()
    except NotAvailableError as e:
        return str(e)
    except Exception as e:  # a broken install (OSError from a missing .so, ...)
        return f"TensorRT does not import here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("tensorrt")]
    if not marked:
        return  # TensorRT is looked at only when a test needs it
    reason = tensorrt_unavailable_reason()
    if reason:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def backends_bundle(tmp_path_factory):
    """The tiny trained bundle of tests/backends (fp32, fp16, int8), built once per session.

    Read-only: copy it before changing anything. Without torch (.ci/run's
    Python 3.8 job) it is the copy the main interpreter exported, see
    tests/bundle_cache.py.
    """
    from bundle_cache import builders, test_bundle

    return test_bundle("backends", builders()["backends"], tmp_path_factory)


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:  # the device-runtime job (Python 3.8, no train extra) has no torch
        import torch
    except ModuleNotFoundError:
        pass
    else:
        torch.manual_seed(0)
    yield


@pytest.fixture
def fake_trt(monkeypatch):
    """Installs a ``FakeTensorRT`` of the given version as the ``tensorrt`` module; returns it."""
    import sys

    from fake_tensorrt import FakeTensorRT

    def install(version="10.3.0.26", **kw):
        fake = FakeTensorRT(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install


def png_bomb_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A valid black RGB PNG of width×height that is small on disk (~1.6 MB at 20000×20000).

    Decoded it takes width*height*3 bytes (1.2 GB at 20000×20000): the image
    bomb a dataset reader must refuse from the header alone. Built in
    milliseconds: after a zlib full flush the compressor starts afresh, so
    every further black row compresses to the same bytes and is repeated.
    """
    import struct
    import zlib

    row = b"\0" * (width * 3 + 1)  # filter byte 0 + black pixels
    c = zlib.compressobj(9)
    first = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)  # starts with the zlib header
    same = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)[:-4]  # the final block, without this object's checksum
    total = len(row) * height  # all zero bytes: adler32 = (total mod 65521) << 16 | 1
    body = first + same * (height - 1) + end + struct.pack(">I", ((total % 65521) << 16) | 1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.fixture
def png_bomb():
    """``png_bomb(width, height) -> bytes``: see :func:`png_bomb_bytes`."""
    return png_bomb_bytes

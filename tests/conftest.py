"""Root fixtures shared by every test area; the assets themselves are made in tests/assets.py."""

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
    from assets import make_tiny_bundle
    from bundle_cache import test_bundle

    return test_bundle("backends", make_tiny_bundle, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_bundle(backends_bundle):
    """A read-only tiny bundle (copy it before changing anything): ``backends_bundle``.

    The backend and compare tests use it; the service, stability and export
    areas override ``tiny_bundle`` with bundles of their own.
    """
    return backends_bundle


@pytest.fixture(scope="session")
def images():
    """``images(n, seed=0)`` -> (uint8 NHWC at the tiny bundle's size, labels) it classifies well."""
    from assets import tiny_images

    return tiny_images


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


@pytest.fixture
def png_bomb():
    """``png_bomb(width, height) -> bytes``: see :func:`hostile_files.png_bomb_bytes`."""
    from hostile_files import png_bomb_bytes

    return png_bomb_bytes


# --------------------------------------------------------------------------- the learned face detector


@pytest.fixture(scope="session")
def tiny_detector_run(tmp_path_factory):
    """A narrow facedet (128x96) trained for a few seconds on generated scenes (tests/detector_assets.py)."""
    # Training it needs the train extra (torch; scikit-image for the generated faces): on the
    # device-runtime install (the Python 3.8 CI job) the tests that use it skip.
    for mod in ("torch", "skimage", "onnx"):
        pytest.importorskip(mod, reason=f"the fixture detector is trained and exported with the train extra ({mod})")
    from detector_assets import train_tiny_detector

    return train_tiny_detector(tmp_path_factory.mktemp("tiny_detector") / "det")


@pytest.fixture(scope="session")
def detector_bundle(tmp_path_factory, tiny_detector_run):
    """A tiny classifier and ``tiny_detector_run`` exported into one bundle at fp32, fp16 and int8 (read-only use)."""
    from detector_assets import make_detector_bundle

    return make_detector_bundle(tmp_path_factory.mktemp("detector_bundle"), tiny_detector_run)

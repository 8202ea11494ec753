"""Fixtures of the service tests; the servers and fakes live in ``service_fakes``."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_fakes import (
    CLASS_NAMES,
    Mosquitto,
    WebhookServer,
    mosquitto_binary,
    write_video,
)


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", 40)


@pytest.fixture
def webhook():
    s = WebhookServer()
    yield s
    s.close()


@pytest.fixture
def broker(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def make_service_bundle(root: Path) -> Path:
    """A real exported bundle (untrained 3-class seed_cnn at 32×32, fp32 ONNX only) at ``root / "bundle"``."""
    import torch

    from edgemask.export import export_bundle
    from edgemask.models import create_model
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files

    root = Path(root)
    args = dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16)
    torch.manual_seed(3)
    model = create_model("seed_cnn", **args).eval()
    save_run_files(root / "run", model, run_info_for(model, "seed_cnn", resolved_args("seed_cnn", **args), CLASS_NAMES))
    recipe = root / "recipe.toml"
    recipe.write_text('source = "synth"\ncount = 8\nstratified = true\nseed = 7\n')
    return export_bundle(root / "run", root / "bundle", calibration=str(recipe), precisions="fp32", opencv_check=False)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The bundle of :func:`make_service_bundle` (prebuilt on the Python 3.8 job: tests/bundle_cache.py)."""
    from bundle_cache import test_bundle

    return test_bundle("service", make_service_bundle, tmp_path_factory)

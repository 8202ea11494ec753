"""Fixtures of the service tests; the servers and fakes live in ``service_fakes``."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_fakes import (
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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """``assets.make_service_bundle`` (prebuilt on the Python 3.8 job: tests/bundle_cache.py)."""
    from assets import make_service_bundle
    from bundle_cache import test_bundle

    return test_bundle("service", make_service_bundle, tmp_path_factory)

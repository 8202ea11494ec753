"""Fixtures of the vision tests; the helpers live in ``vision_media``."""

from __future__ import annotations

from pathlib import Path

import pytest
from vision_media import write_video


@pytest.fixture
def video_mp4(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", 24)

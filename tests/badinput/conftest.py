"""The one tiny dataset, trained run and bundle every bad-input case copies (made once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # hostile_files.py lives in tests/

from badinput_helpers import EXE, make_shared  # noqa: E402


@pytest.fixture(scope="session")
def badinput_shared(tmp_path_factory):
    if not EXE.is_file():
        pytest.skip(f"console script {EXE} not installed (pip install -e .)")
    return make_shared(tmp_path_factory.mktemp("badinput-shared"))

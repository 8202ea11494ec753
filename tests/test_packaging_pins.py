"""The TensorRT extras cannot install a TensorRT the code does not support (8.5 up to, not including, 12)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.8 runtime job
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _bounds(spec: str) -> dict[str, str]:
    return dict(re.findall(r"(>=|<=|<|==|~=|>)\s*([0-9][0-9.]*)", spec))


def test_every_tensorrt_requirement_stops_below_12():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    trt = {name: req for name, reqs in extras.items() for req in reqs if re.match(r"^tensorrt(-cu\d+)?\b", req)}
    assert set(trt) == {"tensorrt", "tensorrt-cu12", "tensorrt-cu13"}, trt
    for name, req in trt.items():
        b = _bounds(req)
        assert b.get("<") == "12", (name, req)  # no TensorRT 12 until the code knows it
        assert tuple(int(x) for x in b[">="].split(".")) >= (8, 5), (name, req)
    # the CUDA binding of each CUDA-major extra matches that major
    for name, major in (("tensorrt-cu12", "12"), ("tensorrt-cu13", "13")):
        cuda = [r for r in extras[name] if r.startswith("cuda-python")]
        assert len(cuda) == 1 and _bounds(cuda[0])["<"] == str(int(major) + 1), cuda


def test_the_wheel_carries_the_pretrained_bundle(tmp_path):
    """`pip install edgemask` on a camera box must bring the shipped bundle that `edgemask run` defaults to."""
    import subprocess
    import zipfile

    import pytest

    from edgemask.pretrained import BUNDLE_DIR, default_bundle

    if default_bundle() is None:
        pytest.skip("this checkout ships no pretrained bundle yet (python -m edgemask.rebuild_pretrained --install)")
    root = PYPROJECT.parent
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("edgemask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"edgemask/pretrained/default/{p.relative_to(BUNDLE_DIR).as_posix()}"
        for p in BUNDLE_DIR.rglob("*")
        if p.is_file()
    }
    assert shipped <= names, sorted(shipped - names)[:5]
    assert {"edgemask/pretrained/card.json", "edgemask/pretrained/MODEL_CARD.md"} <= names

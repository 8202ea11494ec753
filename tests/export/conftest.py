"""Shared fixtures of the export tests (tiny run, its ONNX, calibration images, recipes).

NOTE: reconstructed from the fixtures' uses after the original file was
overwritten by mistake (see the engine helper's report); the export helper
should compare it with their version and restore theirs if it differs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from assets import CLASS_NAMES

CLASSES = CLASS_NAMES
TINY_ARGS = dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16)


def _synth_data(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) float32 synthetic faces in [0, 1] and their int64 labels."""
    from edgemask.export.calibration import synth_images

    s = synth_images(CLASSES, size, n, seed=seed)
    return s.as_nchw_float(), s.labels


def _make_run(run_dir: Path, model) -> Path:
    from assets import save_run

    return save_run(run_dir, model, TINY_ARGS, CLASSES)


@pytest.fixture(scope="session", name="synth_data")
def synth_data_fixture():
    """``synth_data(n, size, seed)`` -> ((N, 3, S, S) float32, (N,) labels)."""
    return _synth_data


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """An untrained (seeded) 3-class seed_cnn at 32×32 saved as a run dir."""
    from assets import untrained_run

    return untrained_run(tmp_path_factory.mktemp("export_run") / "run", TINY_ARGS, seed=0)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The tiny seed_cnn trained for a few seconds on synthetic faces."""
    import torch

    from edgemask.models import create_model

    x, y = _synth_data(300, 32, seed=11)
    torch.manual_seed(0)
    model = create_model("seed_cnn", **TINY_ARGS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(8):
        for idx in torch.randperm(len(xt), generator=g).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return _make_run(tmp_path_factory.mktemp("export_trained") / "run", model.eval())


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run`` as an fp32 ONNX file (opset 17, dynamic batch)."""
    from edgemask.export.onnx_export import onnx_from_torch
    from edgemask.training.run import load_run

    model, _ = load_run(tiny_run)
    path = tmp_path_factory.mktemp("export_onnx") / "model.fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        onnx_from_torch(model, path, input_size=32, simplify=False)
    return path


@pytest.fixture(scope="session")
def calib_images() -> np.ndarray:
    """32 synthetic faces, (32, 3, 32, 32) float32 in [0, 1]."""
    return _synth_data(32, 32, seed=5)[0]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def recipe_file():
    """``recipe_file(path, **fields)`` writes a calibration recipe TOML (source defaults to synth)."""

    def write(path: Path, **fields) -> Path:
        fields = {"source": "synth", "count": 16, "stratified": True, "seed": 7, **fields}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items()))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """A 24-image synthetic calibration recipe, small enough for CLI tests."""
    path = tmp_path_factory.mktemp("export_recipe") / "tiny.toml"
    path.write_text('source = "synth"\ncount = 24\nstratified = true\nseed = 7\n')
    return path

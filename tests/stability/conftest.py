"""Fixtures for the stability tests: a tiny trained model, its bundle, a tiny dataset, one study.

Everything is 32×32 and session-scoped: the model trains for ~2 s on
synthetic crops, the bundle is made by the real ``export_bundle`` (fp32,
fp16, int8 QDQ) with a 24-image calibration recipe, and one study over 24
images is shared by the report tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from assets import CLASS_NAMES

CLASSES = CLASS_NAMES
TINY_ARGS = {"num_classes": 3, "input_size": 32, "widths": (8, 16), "hidden": 16, "dropout": 0.0}
STUDY_N = 24


def synth_xy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) float32 synthetic faces in [0, 1] and their labels."""
    from edgemask.export.calibration import synth_images

    s = synth_images(CLASSES, 32, n, seed=seed)
    return s.as_nchw_float(), s.labels


def train_tiny(seed: int = 0, n: int = 480, epochs: int = 8):
    """A tiny seed_cnn trained for a couple of seconds, in eval mode."""
    import torch

    from edgemask.models import create_model

    x, y = synth_xy(n, seed=11)
    torch.manual_seed(seed)
    model = create_model("seed_cnn", **TINY_ARGS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def make_run(run_dir: Path, model) -> Path:
    from assets import save_run

    return save_run(run_dir, model, TINY_ARGS, CLASSES)


@pytest.fixture(scope="session", name="synth_xy")
def synth_xy_fixture():
    """``synth_xy(n, seed)`` -> ((N, 3, 32, 32) float32 faces, (N,) labels)."""
    return synth_xy


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("stab_run") / "run", train_tiny())


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """A real bundle of the tiny run: weights.safetensors, fp32, fp16 and int8 (QDQ) ONNX."""
    from edgemask.export import export_bundle

    root = tmp_path_factory.mktemp("stab_bundle")
    recipe = root / "tiny.toml"
    recipe.write_text('source = "synth"\ncount = 24\nstratified = true\nseed = 7\n')
    return export_bundle(
        tiny_run, root / "bundle", calibration=str(recipe), golden_count=4, opencv_check=False, simplify=False
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A synth dataset of 36 crops (12 per class) at 32×32."""
    from edgemask.data.synth import write_synth_dataset

    out = tmp_path_factory.mktemp("stab_data") / "data"
    write_synth_dataset(out, n=36, size=32, seed=1, n_scenes=0)
    return out


@pytest.fixture(scope="session")
def study_dir(tiny_bundle, tiny_data, tmp_path_factory) -> Path:
    """One report written through the CLI (n=24, default engines, direct int8 attack)."""
    import typer
    from typer.testing import CliRunner

    from edgemask.cli.stability import register

    app = typer.Typer()
    register(app)
    out = tmp_path_factory.mktemp("stab_report") / "report"
    res = CliRunner().invoke(
        app,
        [
            "stability",
            str(tiny_bundle),
            "--data",
            str(tiny_data),
            "--n",
            str(STUDY_N),
            "--out",
            str(out),
            "--noise-trials",
            "2",
            "--batch-size",
            "16",
            "--examples",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture()
def cli():
    """``cli(*args) -> Result`` for the stability and attack commands."""
    import typer
    from typer.testing import CliRunner

    from edgemask.cli.stability import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])

"""--extra-train: a second dataset joins the training split only; validation and test stay on --data."""

from __future__ import annotations

import json

import pytest

from edgemask.config import TrainConfig
from edgemask.errors import ConfigError


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    from edgemask.data.synth import write_synth_dataset

    root = tmp_path_factory.mktemp("extra")
    write_synth_dataset(root / "main", n=60, size=32, seed=1, n_scenes=0)
    write_synth_dataset(root / "extra", n=45, size=32, seed=2, n_scenes=0)
    return root


def test_extra_crops_go_to_the_train_split_only(two_sets, tmp_path):
    from edgemask.training import train

    cfg = TrainConfig(
        data=str(two_sets / "main"), extra_train=(str(two_sets / "extra"),), out=str(tmp_path / "r"), size=32, epochs=1
    )
    train(cfg)
    splits = json.loads((tmp_path / "r" / "splits.json").read_text())
    extra = [s for s in splits["train"] if s.startswith("extra0:")]
    assert len(extra) == 45
    assert not any(s.startswith("extra") for s in splits["val"] + splits["test"])
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == 60 + 45
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert sum(c["test"] + c["val"] for c in metrics["counts"].values()) == len(splits["val"]) + len(splits["test"])
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["extra_train"] == [str((two_sets / "extra").resolve())]


def test_a_missing_extra_set_is_one_line(two_sets, tmp_path):
    from edgemask.training import train

    cfg = TrainConfig(
        data=str(two_sets / "main"), extra_train=(str(tmp_path / "nope"),), out=str(tmp_path / "r"), size=32
    )
    with pytest.raises(ConfigError, match="--extra-train .* does not exist"):
        train(cfg)

"""train --heldout: the classifier's test split is the photos a detector run with the same flags never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgemask.config import TrainConfig
from edgemask.errors import ConfigError


@pytest.fixture(scope="module")
def scenes_voc(tmp_path_factory):
    from edgemask.data.synth import write_synth_dataset

    root = tmp_path_factory.mktemp("heldout")
    write_synth_dataset(root / "synth", n=3, size=32, seed=4, n_scenes=40)
    return root / "synth" / "scenes"  # a VOC folder: annotations/*.xml + images/


def test_test_split_is_the_detectors_heldout_photos(scenes_voc, tmp_path):
    from edgemask.data.detection import read_detection_set, split_images
    from edgemask.training import train

    cfg = TrainConfig(data=str(scenes_voc), out=str(tmp_path / "r"), size=32, epochs=1, heldout=0.3, split_seed=5)
    train(cfg)
    splits = json.loads((tmp_path / "r" / "splits.json").read_text())
    photos = {k: {s.split("#")[0] for s in splits[k]} for k in ("train", "val", "test")}
    held = {im.name.split("/", 1)[1] for im in split_images(read_detection_set(scenes_voc), 5, 0.3)[1]}
    cut = photos["train"] | photos["val"] | photos["test"]  # photos with at least one face crop
    assert held & cut and photos["test"] == held & cut
    assert not (photos["train"] | photos["val"]) & held
    assert photos["val"], "the photos left over still give a validation split"
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (saved["heldout"], saved["split_seed"]) == (0.3, 5)


def test_heldout_split_unit():
    from edgemask.data.detection import is_heldout
    from edgemask.data.splits import split_heldout_photos

    sources = [f"images/p{i // 3}.jpg#{i % 3}" for i in range(300)]  # 100 photos, 3 faces each
    labels = np.arange(300) % 3
    groups = [s.split("#")[0] for s in sources]
    s = split_heldout_photos(labels, groups, sources, "some/set", (0.8, 0.1, 0.1), seed=0, heldout=0.2)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(300))
    want = [i for i, src in enumerate(sources) if is_heldout("set/" + src.split("#")[0], 0, 0.2)]
    assert s["test"].tolist() == want
    for k in ("train", "val"):  # crops of one photo stay together
        assert not {groups[i] for i in s[k]} & {groups[i] for i in s["test"]}
    assert 0.05 < len(s["val"]) / (len(s["train"]) + len(s["val"])) < 0.2


def test_bad_heldout_is_one_line(scenes_voc, tmp_path):
    from edgemask.training import train

    with pytest.raises(ConfigError, match="--heldout must be in"):
        train(TrainConfig(data=str(scenes_voc), out=str(tmp_path / "r"), size=32, epochs=1, heldout=1.5))

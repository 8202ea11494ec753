import json

import pytest
import torch

from edgemask.config import TrainConfig
from edgemask.errors import ConfigError, ModelError
from edgemask.training import evaluate_run, load_run, train

SMALL = {"widths": [8, 16, 32], "hidden": 32}


def _cfg(data, out, **kw):
    base = dict(
        data=str(data),
        out=str(out),
        arch="seed_cnn",
        arch_args=SMALL,
        size=32,
        epochs=6,
        batch_size=32,
        lr=5e-3,
        patience=10,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_short_training_run_learns_the_task(synth_small, tmp_path):
    run = train(_cfg(synth_small, tmp_path / "run"))
    for f in ("weights.safetensors", "model.json", "metrics.json", "config.json", "history.json", "splits.json"):
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    # Chance is 33%; six epochs on 240 tiny crops reliably clear 60%.
    assert m["val"]["accuracy"] >= 0.6, m["val"]
    assert m["class_names"] == ["mask", "no_mask", "mask_incorrect"]
    assert sum(sum(r) for r in m["val"]["confusion"]) == m["val"]["n"]
    info = json.loads((run / "model.json").read_text())
    assert info["arch_args"]["widths"] == [8, 16, 32] and info["input_size"] == 32
    assert info["preprocessing"]["normalization_in_model"] is True
    # The saved weights are the best epoch's: reloading reproduces the val accuracy.
    mv = evaluate_run(run, synth_small, split="val")
    assert mv["accuracy"] == pytest.approx(m["val"]["accuracy"])


def test_same_seed_same_weights(synth_small, tmp_path):
    a = train(_cfg(synth_small, tmp_path / "a", epochs=1, augment=True))
    b = train(_cfg(synth_small, tmp_path / "b", epochs=1, augment=True))
    ma, _ = load_run(a)
    mb, _ = load_run(b)
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_interrupt_saves_checkpoint_and_resume_continues(synth_small, tmp_path):
    out = tmp_path / "run"
    calls = {"n": 0}

    def boom(stage, done, total, note=""):
        if stage == "epoch" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(synth_small, out, epochs=4), progress=boom)
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 2
    assert not (out / "metrics.json").exists()
    run = train(_cfg(synth_small, out, epochs=4), resume=True)
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    del calls


def test_existing_run_is_not_overwritten_silently(synth_small, tmp_path):
    out = train(_cfg(synth_small, tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(_cfg(synth_small, out, epochs=1))
    train(_cfg(synth_small, out, epochs=1, overwrite=True))


def test_resume_without_checkpoint_is_clear(tmp_path):
    with pytest.raises(ModelError, match="drop --resume"):
        train(_cfg("x", tmp_path / "nothing"), resume=True)


def test_two_class_dataset_trains_a_two_class_model(tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for folder, colour in (("WithMask", (200, 60, 40)), ("WithoutMask", (60, 160, 220))):
        d = tmp_path / "ds" / folder
        d.mkdir(parents=True)
        for i in range(30):
            img = np.clip(rng.normal(colour, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(d / f"{i}.png"), img)
    run = train(_cfg(tmp_path / "ds", tmp_path / "run", epochs=3))
    model, info = load_run(run)
    assert info.class_names == ["mask", "no_mask"]
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    m = json.loads((run / "metrics.json").read_text())
    assert m["val"]["accuracy"] >= 0.8


def test_bad_options_are_config_errors(synth_small, tmp_path):
    with pytest.raises(ConfigError):
        train(_cfg(synth_small, tmp_path / "r", epochs=0))
    with pytest.raises(ConfigError):
        train(TrainConfig(data="", out=str(tmp_path / "r")))
    with pytest.raises(ModelError, match="seed_cnn"):
        train(_cfg(synth_small, tmp_path / "r2", arch="nope", arch_args={}))

"""The pretrained recipe's choices that need no training: which classifier seed ships, and the card's text."""

from __future__ import annotations

import json

import pytest


def _run(folder, val_after=None, val=None, seed=0, missed=0):
    """A finished run: validation accuracy (plain / after the operating point), ``missed`` of 50 unmasked called mask."""
    folder.mkdir(parents=True)
    v = {"class_names": ["mask", "no_mask"], "confusion": [[50, 0], [missed, 50 - missed]]}
    if val is not None:
        v["accuracy"] = val
    m = {"val": v}
    if val_after is not None:
        m["operating_point"] = {"val_after": {"accuracy": val_after}}
    (folder / "metrics.json").write_text(json.dumps(m))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))


def test_the_seed_that_misses_fewest_unmasked_faces_ships_then_the_most_accurate(tmp_path, monkeypatch):
    from edgemask import rebuild_pretrained as rb

    monkeypatch.setitem(rb.RECIPE["classifier"], "seeds", [0, 1, 2, 3])
    _run(tmp_path / "cls", val_after=0.93, val=0.99, missed=1)  # the operating point's accuracy counts
    _run(tmp_path / "cls-seed1", val_after=0.96, seed=1, missed=3)  # most accurate, but misses more unmasked faces
    _run(tmp_path / "cls-seed2", val=0.94, seed=2, missed=1)  # no operating point: its plain accuracy
    _run(tmp_path / "cls-seed3", val_after=0.92, seed=3, missed=1)
    chosen = rb.build_classifier(tmp_path, tmp_path / "voc-unused", fresh=False)  # finished runs are reused
    assert chosen == tmp_path / "cls-seed2"
    assert rb.training_summary([], chosen)["classifier"]["val_no_mask_called_mask"] == pytest.approx(0.02)


def test_the_card_names_the_detector_decode():
    from edgemask.rebuild_pretrained import _decode_line

    line = _decode_line({"detector_input": [448, 320], "detector_decode": {"score_threshold": 0.35, "min_side": 16}})
    assert "448x320" in line and "0.35" in line and "16" in line and "second pass" not in line
    dec = {"score_threshold": 0.35, "min_side": 16, "coarse": 0.5, "coarse_min_side": 96}
    line = _decode_line({"detector_input": [448, 320], "detector_decode": dec})
    assert "second pass sees the frame at 0.5 of that scale" in line and "96+ input px" in line
    assert _decode_line({}) == ""


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_a_missing_run_is_trained_not_guessed(tmp_path, monkeypatch, seeds):
    """A seed without a finished run goes to training (here: stopped at its call) instead of being skipped."""
    from edgemask import rebuild_pretrained as rb
    from edgemask import training

    monkeypatch.setitem(rb.RECIPE["classifier"], "seeds", seeds)
    _run(tmp_path / "cls", val_after=0.9)
    calls = []

    def fake_train(cfg, *a, **k):
        calls.append(cfg.seed)
        raise RuntimeError("would train")

    monkeypatch.setattr(training, "train", fake_train)
    if len(seeds) == 1:
        assert rb.build_classifier(tmp_path, tmp_path / "voc", fresh=False) == tmp_path / "cls"
        assert calls == []
    else:
        with pytest.raises(RuntimeError, match="would train"):
            rb.build_classifier(tmp_path, tmp_path / "voc", fresh=False)
        assert calls == [1]

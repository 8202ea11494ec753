import json

import pytest
import torch

from edgemask.errors import ModelError
from edgemask.models import create_model
from edgemask.models.registry import resolved_args
from edgemask.training.run import load_run, run_info_for, save_run_files


def _save(tmp_path):
    args = resolved_args("seed_cnn", num_classes=3, input_size=32, widths=(8, 16), hidden=8)
    m = create_model("seed_cnn", **args).eval()
    save_run_files(tmp_path, m, run_info_for(m, "seed_cnn", args, ["mask", "no_mask", "mask_incorrect"]))
    return m


def test_round_trip_is_exact(tmp_path):
    m = _save(tmp_path)
    back, info = load_run(tmp_path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m(x), back(x))
    assert info.class_names == ["mask", "no_mask", "mask_incorrect"] and not back.training


def test_missing_and_damaged_files_are_clear(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_run(tmp_path / "nope")
    _save(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match="safetensors"):
        load_run(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_run(tmp_path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    _save(tmp_path)
    d = json.loads((tmp_path / "model.json").read_text())
    d["arch_args"]["hidden"] = 16
    (tmp_path / "model.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="does not match"):
        load_run(tmp_path)


def test_crop_margin_is_recorded_and_old_runs_read_the_default(tmp_path):
    from edgemask.training.run import read_run_info

    args = resolved_args("seed_cnn", num_classes=3, input_size=32, widths=(8, 16), hidden=8)
    m = create_model("seed_cnn", **args).eval()
    save_run_files(tmp_path, m, run_info_for(m, "seed_cnn", args, ["mask", "no_mask"], crop_margin=0.3))
    assert read_run_info(tmp_path).crop_margin == 0.3
    d = json.loads((tmp_path / "model.json").read_text())
    del d["preprocessing"]["crop_margin"]  # a run from before the field
    (tmp_path / "model.json").write_text(json.dumps(d))
    assert read_run_info(tmp_path).crop_margin == 0.15
    d["preprocessing"]["crop_margin"] = "wide"
    (tmp_path / "model.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="'preprocessing.crop_margin' should be a number from 0 to 2"):
        read_run_info(tmp_path)

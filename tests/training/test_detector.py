"""The learned face detector: a short training run on tiny synthetic scenes, the CLI, the real-data split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemask.data.detection import is_heldout, read_detection_set, split_images
from edgemask.vision.facedet_decode import DecodeParams

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "face-mask-voc"


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    from edgemask.data.synth import write_synth_dataset

    out = tmp_path_factory.mktemp("detsynth") / "synth"
    write_synth_dataset(out, n=3, n_scenes=10, seed=5)
    return out


def _ap(model, ims, w, h):
    from edgemask.training.detector import evaluate_images, torch_heads

    return evaluate_images(lambda c: torch_heads(model, c), ims, w, h, DecodeParams(score_threshold=0.05))


def test_detector_learns_faces_on_tiny_scenes_in_seconds(tiny_scenes, tmp_path):
    import torch

    from edgemask.models import create_model
    from edgemask.training.detector import DetTrainConfig, load_detector_run, train_detector

    cfg = DetTrainConfig(
        data=[str(tiny_scenes)],
        out=str(tmp_path / "run"),
        input_width=160,
        input_height=128,
        crop_width=160,
        crop_height=128,
        epochs=40,
        batch_size=8,
        lr=1e-2,
        heldout=0.0,
    )
    train_detector(cfg)
    model, info = load_detector_run(tmp_path / "run")
    assert info["task"] == "detect" and info["input"] == {**info["input"], "width": 160, "height": 128}
    ims = read_detection_set(tiny_scenes)
    trained = _ap(model, ims, 160, 128)
    torch.manual_seed(0)
    untrained = _ap(create_model("facedet", input_width=160, input_height=128).eval(), ims, 160, 128)
    # 40 steps on 10 scenes: far from a good detector, but it must have found the faces it saw
    assert trained["ap50"] >= 0.05 and trained["ap50"] > 5 * untrained["ap50"], (trained["ap50"], untrained["ap50"])
    assert np.mean(list(trained["recall_min_side"].values())) >= 0.2, trained["recall_min_side"]


def test_cli_train_then_eval(tiny_scenes, tmp_path):
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    run = tmp_path / "r"
    r = CliRunner().invoke(
        app,
        [
            "detector",
            "train",
            "--data",
            str(tiny_scenes),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--input-width",
            "160",
            "--input-height",
            "128",
            "--heldout",
            "0.3",
            "--score-threshold",
            "0.2",
            "--min-side",
            "10",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "false boxes per image" in r.output
    import json

    decode = json.loads((run / "model.json").read_text())["decode"]
    assert (decode["score_threshold"], decode["min_side"]) == (0.2, 10)
    for f in ("model.json", "weights.safetensors", "metrics.json", "config.json", "state.pt"):
        assert (run / f).is_file()
    r = CliRunner().invoke(app, ["detector", "eval", str(run), "--data", str(tiny_scenes), "--json"])
    assert r.exit_code == 0, r.output
    assert '"split": "heldout"' in r.output and '"ap50"' in r.output
    # a higher threshold at eval time can only find fewer boxes
    strict = CliRunner().invoke(
        app, ["detector", "eval", str(run), "--data", str(tiny_scenes), "--json", "--score-threshold", "0.99"]
    )
    assert strict.exit_code == 0, strict.output
    before, after = json.loads(r.output), json.loads(strict.output)
    name = next(iter(before))
    assert after[name]["false_per_image"] <= before[name]["false_per_image"]
    assert after[name]["ap50"] <= before[name]["ap50"] + 1e-9
    bad = CliRunner().invoke(app, ["detector", "eval", str(run), "--data", str(tiny_scenes), "--min-side", "-3"])
    assert bad.exit_code == 1 and "--min-side must be" in bad.output
    r = CliRunner().invoke(app, ["detector", "eval", str(tmp_path / "nope"), "--data", str(tiny_scenes)])
    assert r.exit_code == 1 and "not a detector run" in r.output


def test_cli_refuses_a_folder_that_is_no_dataset(tmp_path):
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    r = CliRunner().invoke(app, ["detector", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "neither a VOC folder" in r.output
    assert not (tmp_path / "r").exists()


def test_split_is_by_image_seeded_and_stable():
    names = [f"set/images/{i}.jpg" for i in range(2000)]
    held = [n for n in names if is_heldout(n, 0, 0.2)]
    assert 0.17 < len(held) / len(names) < 0.23
    assert held == [n for n in names if is_heldout(n, 0, 0.2)]
    assert held != [n for n in names if is_heldout(n, 1, 0.2)]
    # a subset of the files keeps each file's side
    assert [n for n in names[:100] if is_heldout(n, 0, 0.2)] == [n for n in held if n in names[:100]]


@pytest.mark.skipif(
    not REAL.is_dir(), reason="real VOC photos absent (../shared/data/face-mask-voc is not in a fresh clone)"
)
def test_real_voc_set_reads_every_photo_and_splits_by_image():
    ims = read_detection_set(REAL)
    assert len(ims) == 607
    labels = {lab for im in ims for lab in im.labels}
    assert labels == {"with_mask", "without_mask", "mask_weared_incorrect"}
    train, held = split_images(ims, 0, 0.2)
    assert len(train) + len(held) == 607 and 0.15 < len(held) / 607 < 0.25
    assert not {im.name for im in train} & {im.name for im in held}
    for im in ims[:20]:
        h, w = im.rgb.shape[:2]
        assert (im.boxes[:, 2] <= w).all() and (im.boxes[:, 3] <= h).all()


def test_detection_images_are_rgb_like_the_frames_the_detector_sees(tmp_path):
    """A pure-red photo must come out red in channel 0: training on BGR broke the detector on live RGB frames."""
    import cv2

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[:, :, 2] = 255  # red, in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "images" / "red.png"), bgr)
    (tmp_path / "annotations" / "red.xml").write_text(
        "<annotation><filename>red.png</filename><size><width>80</width><height>60</height><depth>3</depth></size>"
        "<object><name>without_mask</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>40</xmax><ymax>40</ymax>"
        "</bndbox></object></annotation>"
    )
    (im,) = read_detection_set(tmp_path)
    assert im.rgb[..., 0].min() == 255 and im.rgb[..., 2].max() == 0


def test_image_weights_draw_images_with_rare_faces_more_often():
    from edgemask.data.detection import DetImage
    from edgemask.training.detector import _epoch_order

    z = np.zeros((4, 4, 3), np.uint8)
    box = np.zeros((1, 4), np.float32)
    train = [DetImage(f"m{i}", z, box, ["with_mask"]) for i in range(9)] + [DetImage("u", z, box, ["without_mask"])]
    rng = np.random.default_rng(0)
    assert sorted(_epoch_order(rng, train, {})) == list(range(10))  # no weights: a permutation
    drawn = np.concatenate([_epoch_order(rng, train, {"without_mask": 9.0}) for _ in range(200)])
    assert 0.4 < np.mean(drawn == 9) < 0.6  # weight 9 against nine images of weight 1: about half the draws


def test_init_from_another_run_must_match_its_layers_but_not_its_input_size(tiny_scenes, tmp_path):
    import json

    from edgemask.errors import ConfigError
    from edgemask.training.detector import DetTrainConfig, train_detector

    small = dict(crop_width=160, crop_height=128, epochs=1, batch_size=4, heldout=0.0)
    train_detector(
        DetTrainConfig(data=[str(tiny_scenes)], out=str(tmp_path / "a"), input_width=160, input_height=128, **small)
    )
    # a run whose layers differ (another FPN width) cannot start the fine-tune
    other = tmp_path / "other"
    other.mkdir()
    info = json.loads((tmp_path / "a" / "model.json").read_text())
    info["arch_args"]["fpn"] = 48
    (other / "model.json").write_text(json.dumps(info))
    cfg = DetTrainConfig(
        data=[str(tiny_scenes)], out=str(tmp_path / "b"), input_width=160, input_height=128, init=str(other), **small
    )
    with pytest.raises(ConfigError, match="--init .* must match"):
        train_detector(cfg)

    # the detector is fully convolutional: a fine-tune at another input size starts from the same weights
    def fine_tune(out: str, width: int, height: int) -> None:
        init = str(tmp_path / "a")
        cfg = DetTrainConfig(
            data=[str(tiny_scenes)], out=str(tmp_path / out), input_width=width, input_height=height, init=init, **small
        )
        train_detector(cfg)

    fine_tune("w", 192, 160)
    got = json.loads((tmp_path / "w" / "model.json").read_text())["input"]
    assert (got["width"], got["height"]) == (192, 160)
    fine_tune("c", 160, 128)
    from safetensors.numpy import load_file

    a, c = (
        load_file(str(tmp_path / "a" / "weights.safetensors")),
        load_file(str(tmp_path / "c" / "weights.safetensors")),
    )
    w = "head.1.weight"
    assert not np.array_equal(a[w], c[w]), "the fine-tune did not train the weights it started from"
    import torch

    from edgemask.models import create_model

    torch.manual_seed(1)
    fresh = create_model("facedet", input_width=160, input_height=128).state_dict()[w].numpy()
    assert np.abs(c[w] - a[w]).mean() < np.abs(c[w] - fresh).mean(), "the fine-tune did not start from --init"


def test_face_weights_scale_a_faces_loss_and_follow_it_through_augment():
    import torch

    from edgemask.data.detection import DetImage
    from edgemask.detector_config import DetTrainConfig
    from edgemask.training.detector import augment, detector_loss, make_targets

    boxes = np.float32([[8, 8, 24, 24], [40, 8, 56, 24]])
    _, _, plain = make_targets(boxes, 16, 16, 4)
    _, _, weighed = make_targets(boxes, 16, 16, 4, [1.0, 3.0])
    assert sorted(plain[plain > 0]) == [1.0, 1.0] and sorted(weighed[weighed > 0]) == [1.0, 3.0]

    heat, reg, _ = make_targets(boxes, 16, 16, 4)
    raw = torch.zeros(1, 5, 16, 16)  # every peak at 0.5, every box off: both faces cost the same
    t = [torch.from_numpy(a[None]) for a in (heat, reg)]
    base, _ = detector_loss(raw, t[0], t[1], torch.from_numpy(plain[None]))
    more, _ = detector_loss(raw, t[0], t[1], torch.from_numpy(weighed[None]))
    twice, _ = detector_loss(raw, t[0], t[1], torch.from_numpy(3 * plain[None]))
    assert base < more < twice  # one face of two weighed 3: between weight 1 and weight 3 for both

    rgb = np.zeros((96, 128, 3), np.uint8)
    im = DetImage("a", rgb, np.float32([[10, 10, 40, 40], [90, 50, 120, 80]]), ["with_mask", "without_mask"])
    cfg = DetTrainConfig(crop_width=128, crop_height=96, input_width=128, input_height=96)
    for seed in range(20):  # crops drop faces out of view: the labels must drop with their boxes
        _, b, labels = augment(np.random.default_rng(seed), im, cfg)
        assert len(b) == len(labels) and set(labels) <= {"with_mask", "without_mask"}


@pytest.mark.parametrize("option", ["--face-weight", "--image-weight"])
def test_cli_bad_label_weight_is_one_line(tmp_path, option):
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    args = ["detector", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), option, "without_mask=0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and f"{option} 'without_mask=0' should be LABEL=W" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()

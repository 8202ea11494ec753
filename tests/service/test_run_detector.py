"""``edgemask run`` with the bundle's learned detector: the default when the bundle has one, and --detector errors.

Alerts, tracker and vote are those of every other detector (tests/service/test_loop.py); here the
question is which detector runs, that it finds faces in synthetic scenes, and the one-line errors.
"""

from __future__ import annotations

import json

import cv2
import pytest
import typer
from typer.testing import CliRunner

from edgemask.cli.run import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory):
    """Six 640x480 synthetic scenes with 1-4 faces each, as a folder of photos (each its own scene)."""
    pytest.importorskip("skimage", reason="the synthetic scenes are drawn with the train extra (scikit-image)")
    from detector_assets import scenes

    d = tmp_path_factory.mktemp("scenes") / "photos"
    d.mkdir()
    ims = scenes(6, seed=41)
    for i, im in enumerate(ims):
        cv2.imwrite(str(d / f"{i:02d}.png"), cv2.cvtColor(im.rgb, cv2.COLOR_RGB2BGR))
    return d, sum(len(im.boxes) for im in ims)


def run(app, *args):
    r = CliRunner().invoke(app, ["run", *args, "--headless", "--log-level", "error"])
    return r.exit_code, r.output


def one_line_error(code, out):
    assert code == 1, out
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


@pytest.mark.slow  # the session detector bundle
def test_run_uses_the_bundle_detector_by_default_and_finds_faces(app, detector_bundle, scene_folder, tmp_path):
    folder, n_faces = scene_folder
    events = tmp_path / "events.jsonl"
    code, out = run(
        app,
        "--source",
        str(folder),
        "--bundle",
        str(detector_bundle),
        "--min-face",
        "0",
        "--events",
        str(events),
        "--state-dir",
        str(tmp_path / "s"),
        "--json",
    )
    assert code == 0, out
    s = json.loads(out[out.index("{") :])
    assert s["detector"]["detector"] == "bundle" and s["detector"]["backend"] == "onnxrt"
    # A detector trained for seconds: its recall varies with the thread count (1/12 to 5/12 seen), so
    # the test asks that the bundle detector ran and found faces, not how many (benchmarks/detector_recall.py).
    assert s["frames"] == 6 and 1 <= s["faces"] <= 3 * n_faces, (s["faces"], n_faces)
    faces = [json.loads(ln) for ln in events.read_text().splitlines() if '"face"' in ln]
    assert faces and {f["item"] for f in faces} <= {f"{i:02d}.png" for i in range(6)}
    assert all(f["class"] in ("mask", "no_mask", "mask_incorrect") for f in faces)
    # the classifier on a fake backend: the detector still runs the bundle's model (ONNX Runtime), at int8 here
    code, out = run(
        app,
        "--source",
        str(folder),
        "--bundle",
        str(detector_bundle),
        "--backend",
        "null",
        "--detector-precision",
        "int8",
        "--min-face",
        "0",
        "--state-dir",
        str(tmp_path / "s"),
        "--json",
    )
    assert code == 0, out
    s = json.loads(out[out.index("{") :])
    assert s["detector"]["detector"] == "bundle" and s["detector"]["precision"] == "int8" and s["faces"] > 0
    # --detector picks another one
    code, out = run(
        app,
        "--source",
        str(folder),
        "--bundle",
        str(detector_bundle),
        "--detector",
        "haar",
        "--state-dir",
        str(tmp_path / "s"),
        "--json",
    )
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["detector"]["detector"] == "haar"


@pytest.mark.slow
def test_detector_choice_errors_are_one_line(app, detector_bundle, tiny_bundle, scene_folder, tmp_path):
    folder, _ = scene_folder
    base = ["--source", str(folder), "--state-dir", str(tmp_path / "s")]
    line = one_line_error(*run(app, *base, "--bundle", str(tiny_bundle), "--detector", "bundle"))
    assert "has no face detector" in line and "--detector DET_RUN" in line
    line = one_line_error(*run(app, *base, "--backend", "null", "--detector", "bundle"))
    assert "--detector bundle needs --bundle DIR" in line
    line = one_line_error(*run(app, *base, "--bundle", str(detector_bundle), "--detector", "hog"))
    assert "unknown --detector 'hog'; choose one of: auto, bundle, haar, haar-fusion, yunet, yunet:FILE, none" in line
    line = one_line_error(
        *run(app, *base, "--bundle", str(detector_bundle), "--detector", f"yunet:{tmp_path / 'nope.onnx'}")
    )
    assert "nope.onnx does not exist" in line and "YuNet" in line
    line = one_line_error(*run(app, *base, "--bundle", str(detector_bundle), "--detector", "yunet"))
    assert "--detector yunet:FILE" in line
    line = one_line_error(*run(app, *base, "--bundle", str(detector_bundle), "--detector-precision", "int4"))
    assert "unknown --detector-precision 'int4'" in line
    # --face-model stays the older spelling of yunet:FILE (auto = the bundle's detector wins over it)
    line = one_line_error(
        *run(
            app,
            *base,
            "--bundle",
            str(detector_bundle),
            "--detector",
            "yunet",
            "--face-model",
            str(tmp_path / "nope.onnx"),
        )
    )
    assert "--face-model" in line and "nope.onnx does not exist" in line


def test_classifier_only_bundle_keeps_the_haar_fusion_default(app, tiny_bundle, scene_folder, tmp_path):
    folder, _ = scene_folder
    code, out = run(
        app,
        "--source",
        str(folder),
        "--bundle",
        str(tiny_bundle),
        "--max-frames",
        "2",
        "--state-dir",
        str(tmp_path / "s"),
        "--json",
    )
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["detector"]["detector"] == "haar-fusion"

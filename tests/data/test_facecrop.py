"""ImageFolder photos that are not face crops: the largest face is cut out; counts are reported."""

from __future__ import annotations

import cv2
import numpy as np
from assets import scene_folder

from edgemask.data import load_dataset
from edgemask.vision.detectors import face_finder


def test_whole_scene_imagefolder_is_cropped_and_counted(tmp_path):
    root = scene_folder(tmp_path / "photos")
    ds = load_dataset(root, size=32, find_faces=face_finder())  # auto: 4 of 7 images are not square face crops
    fc = ds.face_crops
    assert fc["mode"] == "auto-on"
    assert (fc["cropped"], fc["kept_whole"], fc["skipped"]) == (3, 3, 1), fc
    assert fc["no_face"] == ["without_mask/no_face.png"]
    assert "without_mask/no_face.png" in dict(ds.skipped)
    assert len(ds) == 6
    # The cut scene looks like the face crop, not like the whole photo squashed.
    i_scene = ds.sources.index("without_mask/scene_square.png")
    i_crop = ds.sources.index("without_mask/crop.png")
    whole = cv2.resize(
        cv2.cvtColor(cv2.imread(str(root / "without_mask/scene_square.png")), cv2.COLOR_BGR2RGB),
        (32, 32),
        interpolation=cv2.INTER_AREA,
    )
    d_crop = np.abs(ds.images[i_scene].astype(int) - ds.images[i_crop]).mean()
    d_whole = np.abs(ds.images[i_scene].astype(int) - whole).mean()
    assert d_crop < d_whole, (d_crop, d_whole)


def test_crop_faces_off_and_auto_off(tmp_path, imagefolder):
    root = scene_folder(tmp_path / "photos")
    ds = load_dataset(root, size=32, crop_faces=False)
    assert ds.face_crops is None and len(ds) == 7
    auto = load_dataset(imagefolder, size=16, find_faces=face_finder())  # square crops: nothing to cut
    assert auto.face_crops["mode"] == "auto-off" and len(auto) == 6


def test_data_summary_reports_the_counts(tmp_path):
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    root = scene_folder(tmp_path / "photos")
    r = CliRunner().invoke(app, ["data", "summary", str(root), "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "3 cropped to their largest face, 3 kept whole, 1 skipped (no face found)" in " ".join(r.output.split())
    assert "no_face.png" in r.output

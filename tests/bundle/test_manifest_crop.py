"""preprocessing.crop_margin in the manifest: round trip, old bundles, bad values (issue 12)."""

from __future__ import annotations

import json
import shutil

import pytest

from edgemask.bundle import load_manifest
from edgemask.bundle.manifest import BundleManifest
from edgemask.config import CROP_MARGIN
from edgemask.errors import BundleError


@pytest.fixture
def manifest_dict(backends_bundle):
    return json.loads((backends_bundle / "manifest.json").read_text())


def test_crop_margin_round_trips(manifest_dict):
    manifest_dict["preprocessing"]["crop_margin"] = 0.3
    m = BundleManifest.from_dict(manifest_dict)
    assert m.preprocessing.crop_margin == 0.3 and m.preprocessing.crop == "square, shifted inside the image"
    again = BundleManifest.from_dict(json.loads(m.to_json()))
    assert again == m and again.to_dict()["preprocessing"]["crop_margin"] == 0.3


def test_a_manifest_from_before_the_field_loads_with_the_default(manifest_dict):
    del manifest_dict["preprocessing"]["crop_margin"], manifest_dict["preprocessing"]["crop"]
    pre = BundleManifest.from_dict(manifest_dict).preprocessing
    assert (pre.crop_margin, pre.crop) == (CROP_MARGIN, "square, shifted inside the image")
    assert CROP_MARGIN == 0.15  # what every bundle made before the field was trained with


@pytest.mark.parametrize(
    "value, says",
    [
        ("0.15", "should be a finite number, got string '0.15'"),
        (None, "should be a finite number, got null"),
        (True, "should be a finite number, got boolean"),
        (-0.1, "should lie in [0, 2]"),
        (5, "should lie in [0, 2]"),
    ],
)
def test_a_bad_crop_margin_is_one_line_naming_the_field(backends_bundle, tmp_path, value, says):
    b = tmp_path / "b"
    shutil.copytree(backends_bundle, b)
    d = json.loads((b / "manifest.json").read_text())
    d["preprocessing"]["crop_margin"] = value
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError) as e:
        load_manifest(b)
    msg = str(e.value)
    assert "\n" not in msg and "'preprocessing.crop_margin'" in msg and says in msg and "re-export" in msg, msg


def test_the_crop_must_be_a_description(manifest_dict):
    manifest_dict["preprocessing"]["crop"] = ""
    with pytest.raises(BundleError, match="'preprocessing.crop' should be a non-empty string"):
        BundleManifest.from_dict(manifest_dict)

"""The service crops faces with the bundle's margin (preprocessing.crop_margin) unless --crop-margin is given."""

from __future__ import annotations

import json
import shutil

import pytest
from service_fakes import BoxDetector

import edgemask.vision.crops as vision_crops
from edgemask.service.config import RunConfig, Secrets
from edgemask.service.loop import run_service


@pytest.fixture
def bundle_with_margin(tiny_bundle, tmp_path):
    """A copy of the service bundle whose manifest says crop_margin 0.4 (the manifest itself is not hashed)."""
    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, b)
    d = json.loads((b / "manifest.json").read_text())
    d["preprocessing"]["crop_margin"] = 0.4
    (b / "manifest.json").write_text(json.dumps(d))
    return b


def _run(tmp_path, video, bundle, monkeypatch, **kw):
    margins = []
    real = vision_crops.face_crops

    def spy(bgr, boxes, size, margin):
        margins.append(margin)
        return real(bgr, boxes, size, margin)

    monkeypatch.setattr(vision_crops, "face_crops", spy)  # what FaceClassifier.classify imports
    cfg = RunConfig(
        source=str(video),
        bundle=str(bundle),
        backend="onnxrt",
        headless=True,
        max_frames=3,
        log_alerts=False,
        state_dir=str(tmp_path / "state"),
        **kw,
    )
    s = run_service(cfg, detector=BoxDetector([(50, 50, 130, 140)]), install_signal_handlers=False, secrets=Secrets())
    saved = json.loads((tmp_path / "state" / "run_config.json").read_text())["config"]
    return s, margins, saved


def test_the_service_crops_with_the_bundles_margin(tmp_path, video, bundle_with_margin, monkeypatch):
    s, margins, saved = _run(tmp_path, video, bundle_with_margin, monkeypatch)
    assert s.faces == 3 and margins == [0.4] * 3
    assert saved["crop_margin"] == 0.4  # run_config.json records the margin used, not "from the bundle"


def test_crop_margin_option_overrides_the_bundle(tmp_path, video, bundle_with_margin, monkeypatch):
    _, margins, saved = _run(tmp_path, video, bundle_with_margin, monkeypatch, crop_margin=0.1)
    assert margins == [0.1] * 3 and saved["crop_margin"] == 0.1


def test_validate_resolves_the_margin_from_the_bundle(bundle_with_margin, tmp_path):
    cfg = RunConfig(source="x.mp4", bundle=str(bundle_with_margin))
    assert cfg.crop_margin is None
    cfg.validate()
    assert cfg.crop_margin == 0.4
    no_bundle = RunConfig(source="x.mp4", backend="null")
    no_bundle.validate()
    assert no_bundle.crop_margin == 0.15
    missing = RunConfig(source="x.mp4", bundle=str(tmp_path / "nowhere"))
    missing.validate()  # opening the bundle reports that, later, in one line
    assert missing.crop_margin is None

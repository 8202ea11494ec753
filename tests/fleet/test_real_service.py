"""The agent against the real `edgemask run`: /healthz reports the model's hash, and the switch waits for it."""

from __future__ import annotations

import json
import sys
import urllib.request

import numpy as np
import pytest
from fleet_helpers import SERVICE, make_box, stop_service

from edgemask.fleet import agent
from edgemask.fleet.agent_config import config_toml, load_agent_config
from edgemask.fleet.layout import Layout


@pytest.mark.slow
def test_upgrade_waits_for_the_real_service_to_report_the_new_model(tmp_path, fleet):
    import cv2

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(20):
        w.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    w.release()
    box = make_box(tmp_path / "box", fleet["trusted"])
    lay = Layout.at(box["root"])
    cfg = load_agent_config(lay)
    cfg.restart = [sys.executable, str(SERVICE), "restart-real", str(box["root"]), str(box["port"]), str(video)]
    cfg.health_timeout_s = 60.0
    lay.config.write_text(config_toml(cfg))
    try:
        r1 = agent.install(box["root"], package=str(fleet["packages"][1]))
        r2 = agent.install(box["root"], package=str(fleet["packages"][2]))
        assert r2["health"]["ok"] and r2["action"] == "installed"
        h = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{box['port']}/healthz", timeout=5).read())
        assert h["model"]["version"] == 2 and h["inferences"] >= 1 and h["frames"] > 0
        assert h["model"]["manifest_sha256"].startswith(r2["release"].split("-", 1)[1])
        assert r1["release"] != r2["release"]
    finally:
        stop_service(box["root"])

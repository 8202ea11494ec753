"""The report folder: every file there, strict JSON, a self-contained HTML page with its plots."""

from __future__ import annotations

import json
import re

from edgemask.stability.report import REPORT_FILES


def test_report_files_exist_and_agree(study_dir):
    for name in REPORT_FILES:
        assert (study_dir / name).is_file() and (study_dir / name).stat().st_size > 0, name
    assert not [p.name for p in study_dir.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    rep = json.loads((study_dir / "report.json").read_text())
    cfg = json.loads((study_dir / "config.json").read_text())
    assert cfg == rep["config"] and cfg["n"] == 24 and cfg["noise_trials"] == 2
    md = (study_dir / "report.md").read_text()
    for e in rep["engines"]:
        assert f"| {e['key']} | {e['source']} |" in md
    assert "no_mask→mask" in md and "Provenance" in md and "host-emulation" in md
    assert "TF32" in md and "seed" in md


def test_html_is_self_contained_with_plots(study_dir):
    page = (study_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # no external references of any kind
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", page)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(imgs) == 4  # ρ histograms, α-sweep, sensitivity, examples
    import base64

    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    for title in (
        "Engines",
        "α-sweep",
        "Random noise",
        "8-bit",
        "directly against the int8 model",
        "Local sensitivity",
    ):
        assert title in page


def test_markdown_renders_without_optional_sections():
    from edgemask.stability.report import render_markdown
    from edgemask.stability.result import StudyResult

    fa = {
        "norm": "l2",
        "n": 0,
        "fooling_rate": None,
        "n_success": 0,
        "mean_rho": None,
        "median_rho": None,
        "median_l2": None,
        "median_linf": None,
        "mean_iterations": None,
        "n_zero_grad": 0,
    }
    meta = {
        "bundle": {"name": "b", "version": 1, "arch": "seed_cnn", "input_size": 32},
        "n": 0,
        "seed": 0,
        "device": "cpu",
        "tf32": {"before": {}},
        "versions": {},
        "host": {},
    }
    r = StudyResult(
        config={"overshoot": 0.02, "max_iter": 50},
        meta=meta,
        float_attack=fa,
        engines=[],
        int8_attack=None,
        twin=None,
        class_names=["mask", "no_mask"],
        alphas=[1.0],
        warnings=["something odd"],
    )
    md = render_markdown(r)
    assert "something odd" in md and "directly against the int8" not in md

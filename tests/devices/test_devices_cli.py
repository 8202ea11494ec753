"""``edgemask devices list|show|detect``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from edgemask.cli import devices as devices_cli


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    devices_cli.register(app)
    return app


def test_list_and_show():
    r = CliRunner()
    res = r.invoke(_app(), ["devices", "list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    for name in ("jetson-nano", "jetson-orin-nx-16gb", "x86-cuda"):
        assert name in res.output
    res = r.invoke(_app(), ["devices", "show", "jetson-agx-orin", "--json"])
    d = json.loads(res.output)
    assert res.exit_code == 0 and d["dla_cores"] == 2 and d["tensorrt"] == "10.3" and d["compute_capability"] == "8.7"
    res = r.invoke(_app(), ["devices", "show", "jetson-nano"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "5.3" in res.output and "fp32, fp16" in res.output
    res = r.invoke(_app(), ["devices", "detect"])
    assert res.exit_code == 0 and res.output.strip() in {"x86-cpu", "x86-cuda"} | {
        p.stem for p in (Path(__file__).resolve().parents[2] / "devices").glob("jetson-*.toml")
    }


def test_bad_names_and_broken_profiles_are_one_line_errors(tmp_path):
    r = CliRunner()
    res = r.invoke(_app(), ["devices", "show", "orin-nanoo"])
    assert res.exit_code == 1 and "unknown device 'orin-nanoo'" in res.output and "jetson-orin-nano" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 3  # one (wrapped) line
    (tmp_path / "broken.toml").write_text('name = "broken"\ndescription = "x"\nkind = "x86"\n')
    res = r.invoke(_app(), ["devices", "show", "broken"], env={"EDGEMASK_DEVICES_DIR": str(tmp_path)})
    assert res.exit_code == 1 and "missing the field 'software.jetpack'" in res.output
    res = r.invoke(_app(), ["devices", "list"], env={"EDGEMASK_DEVICES_DIR": str(tmp_path), "COLUMNS": "250"})
    assert res.exit_code == 1 and "broken.toml" in res.output and "missing the field" in res.output
    assert "jetson-orin-nano" in res.output  # one broken file does not hide the good profiles
    assert "Traceback" not in res.output

"""edgemask doctor: parsers, every check on this machine, a pretend Jetson, a bundle, and the CLI."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from edgemask import doctor as D


def test_parsers():
    assert D.parse_nv_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64") \
        == "R35.4.1"
    assert D.parse_nv_tegra_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref") == "R32.7.1"
    assert D.parse_nv_tegra_release("garbage") is None
    assert D.parse_nvpmodel("NV Fan Mode:quiet\nNV Power Mode: MAXN_SUPER\n2") == "MAXN_SUPER"
    assert D.parse_nvpmodel("NV Power Mode: 15W\n1") == "15W"
    assert D.opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.16.3)\n")
    assert not D.opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    assert not D.opencv_has_gstreamer("no such line")


def test_doctor_on_this_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    checks = D.run_doctor(probe_cameras=False)
    names = [c.name for c in checks]
    for n in ("python", "device profile", "tensorrt", "onnxruntime", "opencv gstreamer", "cameras", "engine cache"):
        assert n in names
    assert all(c.status in D.STATUSES and c.detail for c in checks)
    assert all(c.fix for c in checks if c.status in ("warn", "fail")), [c for c in checks if not c.fix]
    cache = next(c for c in checks if c.name == "engine cache")
    assert cache.status == "pass" and (tmp_path / "cache").is_dir()
    json.dumps([c.to_dict() for c in checks])


def test_unwritable_engine_cache_fails_with_a_fix(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(blocker / "engines"))
    [c] = D.check_engine_cache()
    assert c.status == "fail" and "EDGEMASK_ENGINE_CACHE" in c.fix


def test_pretend_jetson(monkeypatch, tmp_path):
    from edgemask.devices import load_profile

    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(D, "NV_TEGRA_RELEASE", rel)
    monkeypatch.setattr(D, "_run", lambda cmd, timeout=5.0: (0, "NV Power Mode: 15W\n1"))
    checks = {c.name: c for c in D.check_jetson(load_profile("jetson-orin-nano"))}
    assert checks["jetpack/l4t"].status == "pass" and "R36.4.3" in checks["jetpack/l4t"].detail
    assert checks["power mode"].status == "warn" and "nvpmodel" in checks["power mode"].fix
    xavier = {c.name: c for c in D.check_jetson(load_profile("jetson-xavier-nx"))}
    assert xavier["jetpack/l4t"].status == "warn" and "expects R35.4" in xavier["jetpack/l4t"].detail
    monkeypatch.setattr(D, "_run", lambda cmd, timeout=5.0: (127, "nvpmodel not found"))
    assert {c.name: c for c in D.check_jetson(load_profile("jetson-nano"))}["power mode"].status == "warn"
    monkeypatch.setattr(D, "NV_TEGRA_RELEASE", tmp_path / "absent")
    [c] = D.check_jetson(load_profile("jetson-nano"))
    assert c.status == "fail" and "--device" in c.fix
    assert D.check_jetson(load_profile("x86-cpu"))[0].status == "skip"


def test_jetson_profile_on_a_pc_needs_tensorrt(monkeypatch):
    from edgemask.devices import load_profile

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    nano = load_profile("jetson-nano")
    trt = {c.name: c for c in D.check_tensorrt(nano)}
    assert trt["tensorrt"].status == "fail" and "JetPack" in trt["tensorrt"].fix
    assert {c.name: c for c in D.check_tensorrt(load_profile("x86-cpu"))}["tensorrt"].status == "skip"
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0.26"))
    trt = {c.name: c for c in D.check_tensorrt(nano)}
    assert trt["tensorrt"].status == "warn" and "expects 8.2" in trt["tensorrt"].detail


def _bundle_with_engine(root, entry_kw):
    from edgemask.bundle import BundleManifest, InputSpec, ModelEntry, Preprocessing
    from edgemask.utils.io import sha256_file

    root.mkdir()
    e = ModelEntry(**{"file": "model.jetson-orin-nano.fp16.trt10.3.engine", "precision": "fp16", "format": "tensorrt",
                      "device": "jetson-orin-nano", "tensorrt_version": "10.3.0.26", "compute_capability": "8.7",
                      "extra": {}, **entry_kw})
    (root / e.file).write_bytes(b"engine")
    m = BundleManifest(name="b", version=1, created="2026-01-01T00:00:00+00:00", arch="seed_cnn", arch_args={},
                       class_names=["a", "b", "c"], input=InputSpec(shape=["N", 3, 32, 32]), preprocessing=Preprocessing(),
                       models=[e], files={e.file: {"sha256": sha256_file(root / e.file), "bytes": 6}}, producer={})
    (root / "manifest.json").write_text(m.to_json())
    return root


def test_bundle_checks(monkeypatch, tmp_path):
    from edgemask.devices import load_profile

    orin = load_profile("jetson-orin-nano")
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0.26"))
    good = {c.name: c for c in D.check_bundle(_bundle_with_engine(tmp_path / "good", {}), orin)}
    assert good["bundle hashes"].status == "pass"
    assert good["engine model.jetson-orin-nano.fp16.trt10.3.engine"].status == "pass"
    old = _bundle_with_engine(tmp_path / "old", {"tensorrt_version": "8.6.2.3"})
    c = {c.name: c for c in D.check_bundle(old, orin)}["engine model.jetson-orin-nano.fp16.trt10.3.engine"]
    assert c.status == "fail" and "built with TensorRT 8.6.2.3" in c.detail
    assert c.fix.startswith("edgemask engine build") and "--device jetson-orin-nano" in c.fix
    (old / "model.jetson-orin-nano.fp16.trt10.3.engine").write_bytes(b"tampered")
    assert {c.name: c for c in D.check_bundle(old, orin)}["bundle hashes"].status == "fail"
    other = {c.name: c for c in D.check_bundle(_bundle_with_engine(tmp_path / "x", {}), load_profile("jetson-agx-orin"))}
    assert other["engines"].status == "warn" and "--device jetson-agx-orin" in other["engines"].fix
    assert D.check_bundle(tmp_path / "nothing", orin)[0].status == "fail"
    cpu = {c.name: c for c in D.check_bundle(tmp_path / "good", load_profile("x86-cpu"))}
    assert cpu["engines"].status == "skip" and "runs no TensorRT" in cpu["engines"].detail
    assert "jetson-orin-nano" in cpu["engines"].detail  # says which devices its engines are for


def test_unknown_jetson_board(monkeypatch):
    from edgemask.devices import profiles

    monkeypatch.setattr(profiles, "jetson_model", lambda: "NVIDIA Jetson TX1")
    [c], profile = D.check_profile(None)
    assert c.status == "fail" and "has no device profile" in c.detail and "--device" in c.fix and profile is None
    [c], profile = D.check_profile("jetson-nano")  # an explicit profile still works
    assert c.status == "pass" and profile.name == "jetson-nano"


def test_a_crashing_probe_becomes_a_fail(monkeypatch):
    def boom():
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(D, "check_python", boom)
    c = D.run_doctor(probe_cameras=False)[0]
    assert (c.name, c.status) == ("python", "fail") and "probe exploded" in c.detail


def _app():
    import typer

    from edgemask.cli import doctor as doctor_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    doctor_cli.register(app)
    return app


def test_doctor_cli(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    monkeypatch.setenv("EDGEMASK_ENGINE_CACHE", str(tmp_path / "cache"))
    r = CliRunner()
    res = r.invoke(_app(), ["doctor", "--no-camera-probe", "--json", "--device", "x86-cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {"name", "status", "detail", "fix"} <= set(data[0])
    res = r.invoke(_app(), ["doctor", "--no-camera-probe", "--device", "x86-cpu", "--strict"])
    assert res.exit_code == (1 if any(c["status"] == "warn" for c in data) else 0)
    if not D.NV_TEGRA_RELEASE.exists():  # on a PC, checking against a Jetson profile fails
        res = r.invoke(_app(), ["doctor", "--no-camera-probe", "--device", "jetson-nano"])
        assert res.exit_code == 1 and "jetson" in res.output
    res = r.invoke(_app(), ["doctor", "--no-camera-probe", "--device", "nope"])
    assert res.exit_code == 1 and "unknown device 'nope'" in res.output and "jetson-nano" in res.output
    assert "edgemask doctor" not in res.output  # refused before any check ran


@pytest.mark.camera
@pytest.mark.skipif(not __import__("glob").glob("/dev/video*"), reason="no camera (/dev/video*) on this machine")
def test_cameras_are_probed():
    [c] = D.check_cameras(probe=True)
    assert c.status == "pass", c.detail

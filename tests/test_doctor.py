"""edgemask doctor: parsers, every check on this machine, a pretend Jetson, a bundle, and the CLI."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from edgemask import doctor as D


def test_parsers():
    assert (
        D.parse_nv_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64")
        == "R35.4.1"
    )
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


# nvidia-l4t-core as dpkg records it (other packages around it, one removed older entry).
DPKG_STATUS = """Package: libc6
Status: install ok installed
Version: 2.31-0ubuntu9.9

Package: nvidia-l4t-core
Status: deinstall ok config-files
Version: 32.7.1-20220219090432

Package: nvidia-l4t-core
Status: install ok installed
Priority: standard
Architecture: arm64
Version: 35.4.1-20230801124926
Description: NVIDIA Core Package
"""

RELEASES = {  # /etc/nv_tegra_release of each JetPack line
    "4.6": "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n",
    "5": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
    "6": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n",
}


def test_l4t_from_the_l4t_core_package():
    assert D.parse_l4t_core_version(DPKG_STATUS) == "R35.4.1"
    assert (
        D.parse_l4t_core_version(
            DPKG_STATUS.replace("Package: nvidia-l4t-core\nStatus: install", "Package: x\nStatus: install")
        )
        is None
    )
    assert (
        D.parse_l4t_core_version("Package: nvidia-l4t-core\nStatus: install ok installed\nVersion: 36.4.3-2025\n")
        == "R36.4.3"
    )
    assert D.parse_l4t_core_version("") is None
    assert [
        D.jetpack_of(v).name if D.jetpack_of(v) else None for v in ("R32.7.1", "R35.4.1", "R36.4", "R38.2", None)
    ] == ["JetPack 4.6", "JetPack 5", "JetPack 6", None, None]


def _fake_l4t(monkeypatch, tmp_path, release: str | None, dpkg: str | None) -> None:
    rel, st = tmp_path / "nv_tegra_release", tmp_path / "status"
    for path, text in ((rel, release), (st, dpkg)):
        if text is not None:
            path.write_text(text)
    monkeypatch.setattr(D, "NV_TEGRA_RELEASE", rel)
    monkeypatch.setattr(D, "DPKG_STATUS", st)
    monkeypatch.setattr(D, "_run", lambda cmd, timeout=5.0: (0, "NV Power Mode: MAXN\n0"))


@pytest.mark.parametrize(
    "jetpack, profile, python, status, words",
    [
        ("6", "jetson-orin-nano", (3, 10), "pass", ["JetPack 6", "Python 3.10"]),
        (
            "6",
            "jetson-orin-nano",
            (3, 8),
            "warn",
            ["built for Python 3.10", "this is Python 3.8", "--system-site-packages"],
        ),
        ("5", "jetson-xavier-nx", (3, 8), "pass", ["JetPack 5", "Python 3.8", "8.5"]),
        ("5", "jetson-xavier-nx", (3, 11), "warn", ["built for Python 3.8", "/usr/bin/python3 (3.8)"]),
        (
            "4.6",
            "jetson-nano",
            (3, 8),
            "warn",
            [
                "JetPack 4.6 ships Python 3.6",
                "does not support",
                "not the tensorrt backend",
                "L4T r32.7 container with Python 3.8+",
                "docs/jetson.md#jetpack-46",
            ],
        ),
    ],
)
def test_jetpack_python_per_jetpack(monkeypatch, tmp_path, jetpack, profile, python, status, words):
    from edgemask.devices import load_profile

    _fake_l4t(monkeypatch, tmp_path, RELEASES[jetpack], None)
    checks = {c.name: c for c in D.check_jetson(load_profile(profile), python_version=python)}
    assert checks["jetpack/l4t"].status == "pass", checks["jetpack/l4t"]
    c = checks["jetpack python"]
    assert c.status == status, c
    text = f"{c.detail} {c.fix}"
    for w in words:
        assert w in text, (w, text)


def test_jetson_found_from_dpkg_without_the_release_file(monkeypatch, tmp_path):
    """Containers and trimmed images may lack /etc/nv_tegra_release; dpkg still knows nvidia-l4t-core."""
    from edgemask.devices import load_profile

    _fake_l4t(monkeypatch, tmp_path, None, DPKG_STATUS)
    checks = {c.name: c for c in D.check_jetson(load_profile("jetson-xavier-nx"), python_version=(3, 8))}
    assert checks["jetpack/l4t"].status == "pass" and "R35.4.1" in checks["jetpack/l4t"].detail
    assert "nvidia-l4t-core" in checks["jetpack/l4t"].detail and checks["jetpack python"].status == "pass"
    other = tmp_path / "pc"
    other.mkdir()
    _fake_l4t(monkeypatch, other, None, DPKG_STATUS.replace("nvidia-l4t-core", "nvidia-l4t-kernel"))  # an x86 Ubuntu
    assert [c.status for c in D.check_jetson(load_profile("x86-cpu"))] == ["skip"]
    [c] = D.check_jetson(load_profile("jetson-xavier-nx"))
    assert c.status == "fail" and "nvidia-l4t-core" in c.detail


def test_unknown_l4t_release_is_a_warning(monkeypatch, tmp_path):
    _fake_l4t(monkeypatch, tmp_path, "# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64\n", None)
    c = {c.name: c for c in D.check_jetson(None)}["jetpack python"]
    assert c.status == "warn" and "R38.2.0" in c.detail and "(4.6, 5, 6)" in c.detail


@pytest.mark.parametrize(
    "python, status", [((3, 6, 9), "fail"), ((3, 8, 18), "pass"), ((3, 10, 12), "pass"), ((3, 12, 3), "pass")]
)
def test_python_versions(python, status):
    [c] = D.check_python(python)
    assert c.status == status and f"Python {'.'.join(map(str, python))}" in c.detail
    assert ("train extra needs 3.10+" in c.detail) == (python[:2] == (3, 8))
    if status == "fail":
        assert "docs/jetson.md" in c.fix


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
    e = ModelEntry(
        **{
            "file": "model.jetson-orin-nano.fp16.trt10.3.engine",
            "precision": "fp16",
            "format": "tensorrt",
            "device": "jetson-orin-nano",
            "tensorrt_version": "10.3.0.26",
            "compute_capability": "8.7",
            "extra": {},
            **entry_kw,
        }
    )
    (root / e.file).write_bytes(b"engine")
    m = BundleManifest(
        name="b",
        version=1,
        created="2026-01-01T00:00:00+00:00",
        arch="seed_cnn",
        arch_args={},
        class_names=["a", "b", "c"],
        input=InputSpec(shape=["N", 3, 32, 32]),
        preprocessing=Preprocessing(),
        models=[e],
        files={e.file: {"sha256": sha256_file(root / e.file), "bytes": 6}},
        producer={},
    )
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
    other = {
        c.name: c for c in D.check_bundle(_bundle_with_engine(tmp_path / "x", {}), load_profile("jetson-agx-orin"))
    }
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

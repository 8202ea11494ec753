"""Packed bundles: deterministic, round-trip, and unsafe or damaged archives refused."""

from __future__ import annotations

import io
import tarfile

import pytest

from edgemask.bundle.pack import pack_bundle, pack_members, unpack_bundle
from edgemask.bundle.signing import verify_signature
from edgemask.errors import BundleError


def test_pack_is_deterministic_and_round_trips(fleet, tmp_path):
    b2 = fleet["bundles"][2]
    a = pack_bundle(b2, tmp_path / "a.embundle")
    b = pack_bundle(b2, tmp_path / "b.embundle")
    assert a.read_bytes() == b.read_bytes()
    names = tarfile.open(a).getnames()
    assert names[:2] == ["manifest.json", "manifest.sig"] and names == pack_members(b2)
    assert "probe/inputs.npy" in names and "golden/inputs.npy" in names
    out = unpack_bundle(a, tmp_path / "u")
    v = verify_signature(out, fleet["trusted"])
    assert v.version == 2


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in members:
            ti = tarfile.TarInfo(name)
            if kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if kind != "link" else None)
    return buf.getvalue()


@pytest.mark.parametrize(
    "case,match",
    [
        ("dotdot", "plain relative path"),
        ("absolute", "plain relative path"),
        ("symlink", "not a regular file"),
        ("unlisted", "not listed"),
        ("oversize", "the manifest says"),
        ("not_first", "does not start with"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(fleet, tmp_path, case, match):
    manifest = (fleet["bundles"][2] / "manifest.json").read_bytes()
    model = (fleet["bundles"][2] / "model.fp32.onnx").read_bytes()
    members = {
        "dotdot": [("manifest.json", manifest, "f"), ("../evil", b"x", "f")],
        "absolute": [("manifest.json", manifest, "f"), ("/tmp/evil", b"x", "f")],
        "symlink": [("manifest.json", manifest, "f"), ("model.fp32.onnx", b"", "link")],
        "unlisted": [("manifest.json", manifest, "f"), ("extra.sh", b"x", "f")],
        "oversize": [("manifest.json", manifest, "f"), ("model.fp32.onnx", model + b"x", "f")],
        "not_first": [("model.fp32.onnx", model, "f"), ("manifest.json", manifest, "f")],
    }[case]
    pkg = tmp_path / "p.embundle"
    pkg.write_bytes(_tar(members))
    with pytest.raises(BundleError, match=match):
        unpack_bundle(pkg, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["p.embundle"]


def test_truncated_package_is_refused(fleet, tmp_path):
    with pytest.raises(BundleError, match="truncated|damaged|lacks"):
        unpack_bundle(fleet["bad"]["truncated"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_probe_set_is_in_the_manifest(fleet):
    from edgemask.bundle import load_manifest

    p = load_manifest(fleet["bundles"][1]).probe
    assert p["count"] >= 1 and p["inputs"] == "probe/inputs.npy" and p["attack"]["name"] == "deepfool"
    assert len(p["float_pred_adv"]) == len(p["float_pred_clean"]) == len(p["margin_clean"]) == p["count"]
    # every kept probe really fooled the float model
    assert all(a != c for a, c in zip(p["float_pred_adv"], p["float_pred_clean"]))


def test_pack_and_unpack_commands(fleet, tmp_path):
    from typer.testing import CliRunner

    from edgemask.cli.main import app

    r = CliRunner().invoke(app, ["bundle", "pack", str(fleet["bundles"][1]), "--out", str(tmp_path / "x.embundle")])
    assert r.exit_code == 0, r.output
    assert "sha256" in r.output
    r = CliRunner().invoke(app, ["bundle", "unpack", str(tmp_path / "x.embundle"), "--out", str(tmp_path / "u")])
    assert r.exit_code == 0 and (tmp_path / "u" / "manifest.sig").is_file()
    r = CliRunner().invoke(app, ["bundle", "unpack", str(tmp_path / "missing"), "--out", str(tmp_path / "v")])
    assert r.exit_code == 1 and "error:" in r.output and "Traceback" not in r.output

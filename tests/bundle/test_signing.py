"""Ed25519 bundle signatures: sign, verify, and refuse tampered, truncated, wrong-key, unsigned and older bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from edgemask.bundle.manifest import BundleManifest, InputSpec, ModelEntry, Preprocessing  # noqa: E402
from edgemask.bundle.signing import SIGNATURE_NAME, generate_key, sign_bundle, verify_signature  # noqa: E402
from edgemask.errors import BundleError  # noqa: E402
from edgemask.utils.io import sha256_file  # noqa: E402


def _bundle(d: Path, version: int = 2) -> Path:
    d.mkdir(parents=True)
    (d / "model.fp32.onnx").write_bytes(bytes(range(256)) * 40)
    files = {"model.fp32.onnx": {"sha256": sha256_file(d / "model.fp32.onnx"), "bytes": 10240}}
    m = BundleManifest(
        name="tiny",
        version=version,
        created="2026-12-02T00:00:00Z",
        arch="seed_cnn",
        arch_args={},
        class_names=["mask", "no_mask"],
        input=InputSpec(),
        preprocessing=Preprocessing(),
        models=[ModelEntry(file="model.fp32.onnx", precision="fp32", format="onnx")],
        files=files,
        producer={},
    )
    (d / "manifest.json").write_text(m.to_json())
    return d


@pytest.fixture()
def signed(tmp_path):
    kp = generate_key(tmp_path / "keys")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(kp.public_path, trusted)
    b = _bundle(tmp_path / "b")
    assert sign_bundle(b, kp.private_path) == kp.key_id
    return {"bundle": b, "trusted": trusted, "kp": kp, "tmp": tmp_path}


def test_a_signed_bundle_verifies_and_names_its_key(signed):
    v = verify_signature(signed["bundle"], signed["trusted"])
    assert (v.name, v.version, v.key_id) == ("tiny", 2, signed["kp"].key_id)
    assert oct(signed["kp"].private_path.stat().st_mode & 0o777) == "0o600"


def test_a_flipped_byte_in_a_model_file_is_refused(signed):
    p = signed["bundle"] / "model.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="do not match"):
        verify_signature(signed["bundle"], signed["trusted"])


def test_a_truncated_model_file_is_refused(signed):
    p = signed["bundle"] / "model.fp32.onnx"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(BundleError, match="truncated"):
        verify_signature(signed["bundle"], signed["trusted"])


def test_an_edited_manifest_breaks_the_signature(signed):
    mp = signed["bundle"] / "manifest.json"
    d = json.loads(mp.read_text())
    d["version"] = 99
    mp.write_text(json.dumps(d, indent=2) + "\n")
    with pytest.raises(BundleError, match="does not match manifest.json"):
        verify_signature(signed["bundle"], signed["trusted"])


def test_an_untrusted_key_and_a_missing_signature_are_refused(signed):
    other = generate_key(signed["tmp"] / "other")
    sign_bundle(signed["bundle"], other.private_path)
    with pytest.raises(BundleError, match="not among the trusted keys"):
        verify_signature(signed["bundle"], signed["trusted"])
    (signed["bundle"] / SIGNATURE_NAME).unlink()
    with pytest.raises(BundleError, match="not signed"):
        verify_signature(signed["bundle"], signed["trusted"])


def test_rotation_trusts_both_keys_and_an_empty_folder_trusts_none(signed):
    new = generate_key(signed["tmp"] / "new")
    shutil.copy(new.public_path, signed["trusted"])
    sign_bundle(signed["bundle"], new.private_path)
    assert verify_signature(signed["bundle"], signed["trusted"]).key_id == new.key_id
    empty = signed["tmp"] / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no trusted keys"):
        verify_signature(signed["bundle"], empty)


def test_an_older_version_is_refused_unless_allowed(signed):
    with pytest.raises(BundleError, match="downgrade"):
        verify_signature(signed["bundle"], signed["trusted"], installed_version=3)
    assert verify_signature(signed["bundle"], signed["trusted"], installed_version=3, allow_downgrade=True).version == 2
    assert verify_signature(signed["bundle"], signed["trusted"], installed_version=2).version == 2


def test_cli_keys_sign_verify_as_a_user(tmp_path):
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("edgemask"))
    b = _bundle(tmp_path / "b")
    out = subprocess.run([exe, "keys", "generate", "--out", str(tmp_path / "k")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    key = next((tmp_path / "k").glob("*.key"))
    trusted = tmp_path / "t"
    trusted.mkdir()
    shutil.copy(key.with_suffix(".pub"), trusted)
    assert subprocess.run([exe, "bundle", "sign", str(b), "--key", str(key)], capture_output=True).returncode == 0
    ok = subprocess.run([exe, "bundle", "verify", str(b), "--trusted", str(trusted)], capture_output=True, text=True)
    assert ok.returncode == 0 and "signed by trusted key" in ok.stdout
    bad = subprocess.run(
        [exe, "bundle", "verify", str(b), "--trusted", str(trusted), "--installed-version", "5"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "downgrade" in bad.stderr and "Traceback" not in bad.stderr

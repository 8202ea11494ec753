"""Fleet fixtures: real exported + signed + packed bundles, install roots ("boxes") with a service to restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fleet_helpers import make_box, stop_service

pytest.importorskip("cryptography")

TINY_ARGS = dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16)


def _rehash_and_sign(bundle: Path, key: Path, version: int | None = None) -> None:
    from edgemask.bundle.signing import sign_bundle
    from edgemask.utils.io import sha256_file

    m = json.loads((bundle / "manifest.json").read_text())
    for rel in m["files"]:
        m["files"][rel] = {"sha256": sha256_file(bundle / rel), "bytes": (bundle / rel).stat().st_size}
    if version is not None:
        m["version"] = version
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    sign_bundle(bundle, key)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    """Keys, bundles v1/v2 (signed, packed), and refused variants of v2."""
    from assets import untrained_run

    from edgemask.bundle.pack import pack_bundle
    from edgemask.bundle.signing import generate_key, sign_bundle
    from edgemask.export import export_bundle

    root = tmp_path_factory.mktemp("fleet")
    run = untrained_run(root / "run", TINY_ARGS, seed=0)
    recipe = root / "r.toml"
    recipe.write_text('source = "synth"\ncount = 24\nstratified = true\nseed = 7\n')
    key = generate_key(root / "keys")
    other = generate_key(root / "other-keys")
    trusted = root / "trusted"
    trusted.mkdir()
    shutil.copy(key.public_path, trusted)
    out = root / "export" / "tiny"
    b = {}
    for v in (1, 2):
        export_bundle(
            run,
            out,
            calibration=str(recipe),
            precisions="fp32",
            opencv_check=False,
            simplify=False,
            overwrite=v > 1,
            name="tiny",
        )
        b[v] = root / f"b{v}"
        shutil.copytree(out, b[v])
        sign_bundle(b[v], key.private_path)
    pk = {v: pack_bundle(b[v], root / f"tiny-v{v}.embundle") for v in (1, 2)}
    # refused variants of v2
    bad = {}
    unsigned = root / "unsigned"
    shutil.copytree(b[2], unsigned)
    (unsigned / "manifest.sig").unlink()
    bad["unsigned"] = pack_bundle(unsigned, root / "unsigned.embundle")
    wrong = root / "wrongkey"
    shutil.copytree(b[2], wrong)
    sign_bundle(wrong, other.private_path)
    bad["wrong_key"] = pack_bundle(wrong, root / "wrongkey.embundle")
    import tarfile

    data = bytearray(pk[2].read_bytes())
    with tarfile.open(pk[2]) as tar:  # a byte inside the packed model file
        at = tar.getmember("model.fp32.onnx").offset_data + 2048
    data[at] ^= 0x01
    bad["flipped_byte"] = root / "flipped.embundle"
    bad["flipped_byte"].write_bytes(bytes(data))
    raw = pk[2].read_bytes()
    bad["truncated"] = root / "truncated.embundle"
    bad["truncated"].write_bytes(raw[: len(raw) * 2 // 3])
    forged = root / "forged"  # manifest changed after signing (a model hash swapped), signature kept
    shutil.copytree(b[2], forged)
    m = json.loads((forged / "manifest.json").read_text())
    m["version"] = 9
    (forged / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    bad["forged_manifest"] = pack_bundle(forged, root / "forged.embundle")
    # a validly signed v3 whose golden outputs this box cannot reproduce: the self-test must refuse it
    badgold = root / "badgold"
    shutil.copytree(b[2], badgold)
    g = np.load(badgold / "golden" / "outputs.fp32.npy")
    np.save(badgold / "golden" / "outputs.fp32.npy", g + 1.0)
    _rehash_and_sign(badgold, key.private_path, version=3)
    selftest_fail = pack_bundle(badgold, root / "badgold.embundle")
    # v3 that is fine (for the rollout after a failed one)
    b3 = root / "b3"
    shutil.copytree(b[2], b3)
    _rehash_and_sign(b3, key.private_path, version=3)
    pk[3] = pack_bundle(b3, root / "tiny-v3.embundle")
    return {
        "root": root,
        "key": key,
        "other": other,
        "trusted": trusted,
        "bundles": b,
        "packages": pk,
        "bad": bad,
        "selftest_fail": selftest_fail,
    }


@pytest.fixture()
def box(tmp_path, fleet):
    b = make_box(tmp_path / "box", fleet["trusted"])
    yield b
    stop_service(b["root"])

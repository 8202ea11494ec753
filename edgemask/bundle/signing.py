"""Ed25519 signatures over a bundle's exact manifest bytes.

The manifest holds the SHA-256 and size of every other file, so one signature
over ``manifest.json`` as stored (no re-serialisation) covers the whole bundle.
The signature lives beside it in ``manifest.sig`` (JSON: key id, algorithm,
base64 signature, and the name/version it was made for) because a signature
cannot sit inside the bytes it signs.

Keys: ``<key_id>.key`` (PKCS#8 PEM private key, mode 0600) and ``<key_id>.pub``
(raw 32-byte public key, base64, one line). The key id is the first 16 hex
digits of SHA-256 over the raw public key. A box trusts every ``*.pub`` in its
trusted folder, so a key is rotated by adding the new one before removing the
old. There is no X.509 and no expiry on the device path: a clock-less box can
still verify.

Needs ``cryptography`` (``pip install 'edgemask[fleet]'``); imported lazily so
the rest of the package does not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from edgemask.bundle.bundle import verify_bundle
from edgemask.bundle.manifest import MANIFEST_NAME, load_manifest
from edgemask.errors import BundleError
from edgemask.utils.io import atomic_write_bytes, atomic_write_text

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "ed25519"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BundleError(
            "signing needs the 'cryptography' package; install it with pip install 'edgemask[fleet]'"
        ) from None
    return serialization, ed25519


def key_id_of(raw_public: bytes) -> str:
    """Key id: first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    private_path: Path
    public_path: Path


def generate_key(out_dir: str | os.PathLike) -> KeyPair:
    """Make a new Ed25519 key pair in ``out_dir`` as ``<id>.key`` + ``<id>.pub``."""
    serialization, ed25519 = _crypto()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv = ed25519.Ed25519PrivateKey.generate()
    raw_pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = key_id_of(raw_pub)
    pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path = out / f"{kid}.key"
    pub_path = out / f"{kid}.pub"
    atomic_write_bytes(key_path, pem)
    os.chmod(key_path, 0o600)
    atomic_write_text(pub_path, base64.b64encode(raw_pub).decode("ascii") + "\n")
    return KeyPair(kid, key_path, pub_path)


def _load_private(path: Path):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise BundleError(f"signing key {path} not found; make one with 'edgemask keys generate --out DIR'") from None
    except (ValueError, TypeError) as e:
        raise BundleError(
            f"{path} is not an unencrypted PEM private key ({e}); make one with 'edgemask keys generate'"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key; make one with 'edgemask keys generate'")
    return key


def load_trusted_keys(trusted_dir: str | os.PathLike) -> Dict[str, bytes]:
    """Every ``*.pub`` in ``trusted_dir`` as {key_id: raw public key}."""
    d = Path(trusted_dir)
    if not d.is_dir():
        raise BundleError(f"trusted-key folder {d} does not exist; copy the signer's .pub file(s) into it")
    keys: Dict[str, bytes] = {}
    for p in sorted(d.glob("*.pub")):
        try:
            raw = base64.b64decode(p.read_text(encoding="ascii").strip(), validate=True)
        except (ValueError, UnicodeDecodeError):
            raise BundleError(
                f"trusted key {p} is not a base64 Ed25519 public key; copy the .pub made by 'edgemask keys generate'"
            ) from None
        if len(raw) != 32:
            raise BundleError(f"trusted key {p} has {len(raw)} bytes, an Ed25519 public key has 32")
        keys[key_id_of(raw)] = raw
    if not keys:
        raise BundleError(f"no trusted keys (*.pub) in {d}; copy the signer's .pub file into it")
    return keys


def sign_bundle(bundle_dir: str | os.PathLike, key_path: str | os.PathLike) -> str:
    """Sign the bundle's manifest bytes with ``key_path``; write ``manifest.sig``. Returns the key id.

    The bundle's files are checked first, so nobody signs a damaged bundle.
    """
    serialization, _ = _crypto()
    root = Path(bundle_dir)
    m = load_manifest(root)
    problems = verify_bundle(root)
    if problems:
        raise BundleError(f"bundle {root} failed verification before signing: {problems[0]}; re-export it, then sign")
    priv = _load_private(Path(key_path))
    raw_pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = key_id_of(raw_pub)
    data = (root / MANIFEST_NAME).read_bytes()
    sig = {
        "algorithm": ALGORITHM,
        "key_id": kid,
        "name": m.name,
        "version": m.version,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(priv.sign(data)).decode("ascii"),
    }
    atomic_write_text(root / SIGNATURE_NAME, json.dumps(sig, indent=2) + "\n")
    return kid


@dataclass(frozen=True)
class Verified:
    name: str
    version: int
    key_id: str
    manifest_sha256: str


def verify_signature(
    bundle_dir: str | os.PathLike,
    trusted_dir: str | os.PathLike,
    installed_version: Optional[int] = None,
    allow_downgrade: bool = False,
) -> Verified:
    """Check signature (by a trusted key), every file hash, and the version rule.

    Args:
        installed_version: the version the box runs now; a bundle with a lower
            version is refused unless ``allow_downgrade`` (equal is a re-install).

    Raises:
        BundleError: one line saying what failed and what to do.
    """
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    root = Path(bundle_dir)
    keys = load_trusted_keys(trusted_dir)
    sig_path = root / SIGNATURE_NAME
    if not sig_path.is_file():
        raise BundleError(
            f"bundle {root} is not signed ({SIGNATURE_NAME} missing); "
            "sign it with 'edgemask bundle sign BUNDLE --key KEY'"
        )
    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        kid = str(sig["key_id"])
        raw_sig = base64.b64decode(sig["signature"], validate=True)
        if sig.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {sig.get('algorithm')!r}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise BundleError(f"{sig_path} is malformed ({e}); sign the bundle again") from None
    if kid not in keys:
        raise BundleError(
            f"bundle {root} is signed by key {kid}, which is not among the trusted keys in "
            f"{trusted_dir} ({', '.join(sorted(keys))}); add its .pub there if you trust it"
        )
    data = (root / MANIFEST_NAME).read_bytes() if (root / MANIFEST_NAME).is_file() else b""
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(keys[kid]).verify(raw_sig, data)
    except InvalidSignature:
        raise BundleError(
            f"bundle {root}: the signature by key {kid} does not match manifest.json "
            "(the manifest was changed after signing); do not install it"
        ) from None
    m = load_manifest(root)
    problems = verify_bundle(root)
    if problems:
        raise BundleError(f"bundle {root} is signed but its files do not match: {problems[0]}; copy it again")
    if installed_version is not None and m.version < installed_version and not allow_downgrade:
        raise BundleError(
            f"bundle {m.name} v{m.version} is older than the installed v{installed_version}; "
            "refusing a downgrade (pass --allow-downgrade to accept it)"
        )
    return Verified(m.name, m.version, kid, hashlib.sha256(data).hexdigest())


__all__ = [
    "SIGNATURE_NAME",
    "KeyPair",
    "Verified",
    "generate_key",
    "key_id_of",
    "load_trusted_keys",
    "sign_bundle",
    "verify_signature",
]

"""One file per bundle: a deterministic tar that travels over the wire.

Layout: ``manifest.json`` first, ``manifest.sig`` second (when signed), then
every file the manifest lists, in sorted order. Nothing else goes in: a file
without a hash in the manifest is not covered by the signature, so it is left
out. Every member has mtime 0, uid/gid 0, mode 0644 and no owner names, so
packing the same bundle twice gives the same bytes (and the same SHA-256,
which names the upload on the box).

Unpacking trusts nothing in the archive: members must be regular files whose
names are the manifest, the signature or a file the (packed) manifest lists,
each at most once, relative, without ``..``, at most the size the manifest
says; links, devices and folders are refused. The result is written into a
temporary folder and renamed into place only when complete. Signature and
hashes are checked afterwards by :func:`edgemask.bundle.signing.verify_signature`.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional

from edgemask.bundle.manifest import MANIFEST_NAME, BundleManifest
from edgemask.errors import BundleError
from edgemask.utils.io import atomic_dir, atomic_path, sha256_file

SIGNATURE_NAME = "manifest.sig"  # same name as edgemask.bundle.signing (which needs cryptography)
PACK_SUFFIX = ".embundle"
_CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 16 << 20


def _info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = size, 0, 0o644, 0, 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def pack_members(bundle_dir: str | os.PathLike) -> List[str]:
    """The relative paths :func:`pack_bundle` writes, in order."""
    from edgemask.bundle.manifest import load_manifest

    root = Path(bundle_dir)
    m = load_manifest(root)
    names = [MANIFEST_NAME]
    if (root / SIGNATURE_NAME).is_file():
        names.append(SIGNATURE_NAME)
    names.extend(sorted(m.files))
    return names


def pack_bundle(bundle_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``bundle_dir`` as one deterministic tar file ``out``; returns ``out``.

    The bundle's hashes are checked first, so a damaged bundle is never packed.

    Raises:
        BundleError: not a bundle, or a file does not match its hash.
    """
    from edgemask.bundle.bundle import verify_bundle

    root = Path(bundle_dir)
    names = pack_members(root)
    problems = verify_bundle(root)
    if problems:
        raise BundleError(f"bundle {root} failed verification: {problems[0]}; re-export it before packing")
    for rel in names:
        _check_name(rel)
    out = Path(out)
    with atomic_path(out, suffix=".tmp") as tmp:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in names:
                p = root / rel
                with open(p, "rb") as f:
                    tar.addfile(_info(rel, p.stat().st_size), f)
    return out


def _check_name(rel: str) -> None:
    p = PurePosixPath(rel)
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise BundleError(f"bundle member name {rel!r} is not a plain relative path; the package is not trustworthy")


def _read_member(tar: tarfile.TarFile, ti: tarfile.TarInfo, limit: int) -> bytes:
    if ti.size > limit:
        raise BundleError(f"package member {ti.name} is {ti.size} bytes, more than {limit}; the package is damaged")
    f = tar.extractfile(ti)
    assert f is not None
    return f.read()


def unpack_bundle(package: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Unpack a file made by :func:`pack_bundle` into the folder ``dest``.

    Raises:
        BundleError: not a package, an unsafe or unexpected member, a member
            larger than its manifest entry, or a missing file.
    """
    package, dest = Path(package), Path(dest)
    if not package.is_file():
        raise BundleError(f"package {package} not found; make one with 'edgemask bundle pack BUNDLE --out FILE'")
    if dest.exists() and not overwrite and any(dest.iterdir()):
        raise BundleError(f"{dest} exists and is not empty; choose another folder or pass --overwrite")
    try:
        tar = tarfile.open(package, mode="r:")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"{package} is not a bundle package ({e}); pack one with 'edgemask bundle pack'") from None
    with tar, atomic_dir(dest, overwrite=True) as tmp:
        expected: Optional[Dict[str, int]] = None
        seen = set()
        try:
            members = iter(tar)
            for i, ti in enumerate(members):
                name = ti.name
                _check_name(name)
                if not ti.isreg():
                    raise BundleError(f"package member {name!r} is not a regular file (links and devices are refused)")
                if name in seen:
                    raise BundleError(f"package holds {name!r} twice; the package is not trustworthy")
                seen.add(name)
                if i == 0:
                    if name != MANIFEST_NAME:
                        raise BundleError(
                            f"package {package} does not start with {MANIFEST_NAME}; pack it with "
                            "'edgemask bundle pack'"
                        )
                    data = _read_member(tar, ti, MAX_MANIFEST_BYTES)
                    try:
                        m = BundleManifest.from_dict(json.loads(data.decode("utf-8")), where=f"{package}:{name}")
                    except (ValueError, UnicodeDecodeError) as e:
                        raise BundleError(
                            f"{package}: {MANIFEST_NAME} is not valid JSON ({e.__class__.__name__}); "
                            "the package is damaged"
                        ) from None
                    expected = {}
                    for rel, meta in m.files.items():
                        _check_name(rel)
                        expected[rel] = int(meta.get("bytes", -1))
                    (tmp / name).write_bytes(data)
                    continue
                assert expected is not None
                if name == SIGNATURE_NAME:
                    limit = 1 << 16
                elif name in expected:
                    limit = expected[name] if expected[name] >= 0 else ti.size
                else:
                    raise BundleError(
                        f"package member {name!r} is not listed in its manifest; the package is not trustworthy"
                    )
                if ti.size > limit:
                    raise BundleError(
                        f"package member {name} is {ti.size} bytes, the manifest says {limit}; the package is damaged"
                    )
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(ti)
                assert src is not None
                with open(target, "wb") as f:
                    for block in iter(lambda: src.read(_CHUNK), b""):
                        f.write(block)
                    f.flush()
                    os.fsync(f.fileno())
        except (tarfile.TarError, EOFError, OSError) as e:
            raise BundleError(
                f"package {package} is truncated or damaged ({e.__class__.__name__}: {e}); copy it again"
            ) from None
        if expected is None:
            raise BundleError(f"package {package} is empty; pack it with 'edgemask bundle pack'")
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleError(
                f"package {package} lacks {missing[0]}"
                + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                + " (truncated?); copy it again"
            )
    return dest


def read_packed_manifest(package: str | os.PathLike) -> tuple[BundleManifest, bytes]:
    """The manifest (parsed, and its exact bytes) of a package, without unpacking the rest."""
    package = Path(package)
    try:
        with tarfile.open(package, mode="r:") as tar:
            ti = tar.next()
            if ti is None or ti.name != MANIFEST_NAME or not ti.isreg():
                raise BundleError(
                    f"package {package} does not start with {MANIFEST_NAME}; pack it with 'edgemask bundle pack'"
                )
            data = _read_member(tar, ti, MAX_MANIFEST_BYTES)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BundleError(f"{package} is not a bundle package ({e}); pack one with 'edgemask bundle pack'") from None
    try:
        return BundleManifest.from_dict(json.loads(data.decode("utf-8")), where=f"{package}:{MANIFEST_NAME}"), data
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{package}: {MANIFEST_NAME} is not valid JSON ({e.__class__.__name__})") from None


def package_sha256(package: str | os.PathLike) -> str:
    """SHA-256 of a package file (the name its upload has on a box)."""
    return sha256_file(package)


__all__ = ["PACK_SUFFIX", "pack_bundle", "pack_members", "package_sha256", "read_packed_manifest", "unpack_bundle"]

"""Loading and verifying a bundle folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemask.bundle.manifest import MANIFEST_NAME, BundleManifest, ModelEntry, load_manifest
from edgemask.errors import BundleError
from edgemask.utils.io import sha256_file


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk: its root folder and its parsed manifest."""

    root: Path
    manifest: BundleManifest

    def path(self, rel: str) -> Path:
        """Absolute path of a file named in the manifest (never outside the bundle)."""
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise BundleError(f"manifest names {rel!r}, which lies outside the bundle; the bundle is not trustworthy")
        return p

    def model_path(self, precision: str, format: str = "onnx", device: str | None = None) -> Path:
        """The model file of a precision; an ONNX file is first checked against the manifest.

        Raises:
            BundleError: no such model. ModelError: an ONNX file whose input
                shape or precision is not the manifest's (one line, before any
                session or inference; see :mod:`edgemask.bundle.modelcheck`).
        """
        entry = self.manifest.model(precision, format, device)
        p = self.path(entry.file)
        if entry.format == "onnx" and p.is_file():
            from edgemask.bundle.modelcheck import check_onnx_model

            check_onnx_model(p, entry, self.manifest)
        return p

    def model_entry(self, precision: str, format: str = "onnx", device: str | None = None) -> ModelEntry:
        return self.manifest.model(precision, format, device)

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.class_names)

    @property
    def input_size(self) -> int:
        return self.manifest.input.size


def verify_bundle(bundle_dir: str | Path) -> list[str]:
    """Check the manifest and the SHA-256 of every file it lists.

    Returns:
        Problems found, one line each (empty when the bundle is intact).
    """
    root = Path(bundle_dir)
    manifest = load_manifest(root)
    problems: list[str] = []
    for rel, meta in sorted(manifest.files.items()):
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
            continue
        if "bytes" in meta and p.stat().st_size != meta["bytes"]:
            problems.append(f"{rel}: size {p.stat().st_size} bytes, manifest says {meta['bytes']} (truncated or replaced)")
            continue
        digest = sha256_file(p)
        if digest != meta.get("sha256"):
            problems.append(f"{rel}: SHA-256 {digest[:12]}… does not match the manifest's {str(meta.get('sha256'))[:12]}…")
    for m in manifest.models:
        if m.file not in manifest.files:
            problems.append(f"{m.file}: model listed without a hash in 'files'")
    return problems


def model_problems(bundle_dir: str | Path) -> list[str]:
    """One line per ONNX model file whose input or precision is not what the manifest says."""
    from edgemask.bundle.modelcheck import onnx_model_problem

    root = Path(bundle_dir)
    manifest = load_manifest(root)
    out = []
    for m in manifest.models:
        if m.format == "onnx" and (root / m.file).is_file():
            why = onnx_model_problem(root / m.file, m, manifest)
            if why:
                out.append(why)
    return out


def load_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Load a bundle; by default refuse one whose files do not match their hashes.

    Raises:
        BundleError: missing/malformed manifest, or (with ``verify``) a file
            that is missing or whose SHA-256 differs from the manifest.
    """
    root = Path(bundle_dir)
    manifest = load_manifest(root)
    if verify:
        problems = verify_bundle(root)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BundleError(f"bundle {root} failed verification: {problems[0]}{more}; "
                              f"re-export it or copy it again ('edgemask bundle verify {root}' lists all)")
    return Bundle(root=root, manifest=manifest)


__all__ = ["Bundle", "MANIFEST_NAME", "load_bundle", "model_problems", "verify_bundle"]

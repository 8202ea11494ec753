"""Loading and verifying a bundle folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from edgemask.bundle.manifest import MANIFEST_NAME, BundleManifest, ModelEntry, load_manifest
from edgemask.errors import BundleError
from edgemask.utils.io import sha256_file

#: The two models a bundle may hold; ``Bundle.part`` says which one a Bundle object describes.
PARTS = ("classifier", "detector")


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk: its root folder and its parsed manifest.

    ``part`` is ``"classifier"`` for a loaded bundle; :meth:`detector_view`
    gives the same folder seen as its detector (the manifest's ``detector``
    entry in the shape of a classifier's manifest), so every runner's
    ``from_bundle`` and the engine builder run the detector's files unchanged.
    """

    root: Path
    manifest: BundleManifest
    part: str = "classifier"
    #: the whole manifest, also in a detector view (its ``manifest`` is the detector's)
    full_manifest: BundleManifest | None = None

    @property
    def has_detector(self) -> bool:
        return (self.full_manifest or self.manifest).detector is not None

    def detector_view(self) -> "Bundle":
        """This bundle seen as its detector.

        Raises:
            BundleError: the bundle has no detector (the message says how to add one).
        """
        if self.part == "detector":
            return self
        det = self.manifest.detector
        if det is None:
            raise BundleError(
                f"bundle {self.manifest.name!r} ({self.root}) has no face detector; re-export it with "
                "'edgemask export RUN --detector DET_RUN' (a run of 'edgemask detector train'), or "
                "choose --detector haar-fusion"
            )
        m = self.manifest
        view = dataclasses.replace(
            m,
            name=f"{m.name}.detector",
            arch=det.arch,
            arch_args=dict(det.arch_args),
            class_names=["face"],
            input=det.input,
            preprocessing=det.preprocessing,
            models=list(det.models),
            golden=det.golden,
            calibration=det.calibration,
            detector=None,
            source_run=det.source_run,
        )
        return Bundle(root=self.root, manifest=view, part="detector", full_manifest=m)

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

    @property
    def input_hw(self) -> Tuple[int, int]:
        """(H, W) of the model input (square for the classifier)."""
        shape = self.manifest.input.shape
        return int(shape[-2]), int(shape[-1])

    @property
    def output_tail(self) -> Tuple[int, ...]:
        """The model output's shape after the batch axis: (K,) logits, or the detector's (5, h, w) head."""
        if self.part == "detector":
            det = (self.full_manifest or self.manifest).detector
            assert det is not None
            return tuple(int(v) for v in det.output["shape"][1:])
        return (len(self.manifest.class_names),)


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
            problems.append(
                f"{rel}: size {p.stat().st_size} bytes, manifest says {meta['bytes']} (truncated or replaced)"
            )
            continue
        digest = sha256_file(p)
        if digest != meta.get("sha256"):
            problems.append(
                f"{rel}: SHA-256 {digest[:12]}… does not match the manifest's {str(meta.get('sha256'))[:12]}…"
            )
    for m in manifest.all_models():
        if m.file not in manifest.files:
            problems.append(f"{m.file}: model listed without a hash in 'files'")
    return problems


def manifest_identity(bundle_dir: str | Path) -> dict:
    """What ``/healthz`` reports as the model: name, version and the SHA-256 of the manifest bytes.

    The manifest holds every file's hash, so its hash names the whole bundle
    (it is what the device agent waits to see after switching releases).
    """
    import hashlib
    import json

    root = Path(bundle_dir)
    data = (root / MANIFEST_NAME).read_bytes()
    try:
        d = json.loads(data.decode("utf-8"))
    except ValueError:
        d = {}
    return {
        "name": d.get("name"),
        "version": d.get("version"),
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "path": str(root.resolve()),
    }


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
            raise BundleError(
                f"bundle {root} failed verification: {problems[0]}{more}; "
                f"re-export it or copy it again ('edgemask bundle verify {root}' lists all)"
            )
    return Bundle(root=root, manifest=manifest)


__all__ = ["PARTS", "Bundle", "MANIFEST_NAME", "load_bundle", "manifest_identity", "model_problems", "verify_bundle"]

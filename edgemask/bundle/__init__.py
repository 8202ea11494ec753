"""Bundles: manifest, save/load/verify."""

from edgemask.bundle.manifest import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    PRECISIONS,
    BundleManifest,
    DetectorEntry,
    InputSpec,
    ModelEntry,
    Preprocessing,
    load_manifest,
)

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_NAME",
    "PRECISIONS",
    "BundleManifest",
    "DetectorEntry",
    "InputSpec",
    "ModelEntry",
    "Preprocessing",
    "load_manifest",
]
from edgemask.bundle.bundle import Bundle, load_bundle, verify_bundle  # noqa: E402

__all__ += ["Bundle", "load_bundle", "verify_bundle"]

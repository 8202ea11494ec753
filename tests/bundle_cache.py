"""The bundles the tests build, and where they come from on an interpreter without torch.

A test bundle is a tiny model trained and exported on the spot, which needs
torch (the train extra). .ci/run's Python 3.8 job has only the device
runtime, as a JetPack 5 box does: there the main interpreter builds the
bundles first, ``python tests/bundle_cache.py DIR``, and the job sets
``EDGEMASK_TEST_BUNDLES=DIR``, so Python 3.8 verifies and runs bundles a
3.10+ workstation wrote -- the way a Jetson gets them.

Without torch and without that variable, the tests that need a bundle skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

ENV = "EDGEMASK_TEST_BUNDLES"


def builders() -> dict[str, Callable[[Path], Path]]:
    """kind -> builder(root) that writes a bundle to ``root / "bundle"`` and returns that path."""
    from assets import make_service_bundle, make_tiny_bundle

    return {"backends": make_tiny_bundle, "service": make_service_bundle}


def test_bundle(kind: str, build: Callable[[Path], Path], tmp_path_factory) -> Path:
    """The ``kind`` bundle: prebuilt under ``$EDGEMASK_TEST_BUNDLES``, else built now, else a skip."""
    import pytest

    pre = os.environ.get(ENV)
    if pre:
        path = Path(pre) / kind / "bundle"
        if not (path / "manifest.json").is_file():
            pytest.fail(f"${ENV}/{kind}/bundle is not a bundle; rebuild it: python tests/bundle_cache.py {pre}")
        return path
    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"building the {kind} test bundle needs torch (the train extra); or set ${ENV} (see .ci/run)")
    return build(tmp_path_factory.mktemp(f"{kind}_bundle"))


test_bundle.__test__ = False  # a helper, not a test


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/bundle_cache.py DIR  (needs torch: the train extra)", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for kind, build in builders().items():
        root = out / kind
        if (root / "bundle" / "manifest.json").is_file():
            continue
        if root.exists():
            import shutil

            shutil.rmtree(root)
        print(f"{kind}: {build(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

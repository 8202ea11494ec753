"""The pretrained defaults shipped inside the package: a bundle with a face detector and a classifier.

``edgemask run --camera 0`` with no ``--bundle`` uses this bundle, so a fresh
install works on real faces. It is an ordinary bundle (manifest, ONNX
fp32/fp16/int8 of both models, golden inputs, SHA-256 of every file), verified
before use like any other; its model card (``card.json``, rendered as
``MODEL_CARD.md``) says what it was trained on, under which licence, the exact
command that rebuilds it (:mod:`edgemask.rebuild_pretrained`) and its figures
on a held-out real split.

Device runtime code: no torch, Python 3.8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

#: Where the shipped bundle and its card live (package data, so a wheel carries them).
PRETRAINED_DIR = Path(__file__).resolve().parent
BUNDLE_DIR = PRETRAINED_DIR / "default"
CARD_FILE = PRETRAINED_DIR / "card.json"
CARD_MARKDOWN = PRETRAINED_DIR / "MODEL_CARD.md"


def default_bundle() -> Optional[Path]:
    """The shipped bundle's folder, or None when this install has none (a source tree before its first rebuild)."""
    return BUNDLE_DIR if (BUNDLE_DIR / "manifest.json").is_file() else None


def model_card() -> Optional[Dict[str, Any]]:
    """The shipped bundle's model card (data, licence, rebuild command, held-out figures), or None."""
    if not CARD_FILE.is_file():
        return None
    try:
        card = json.loads(CARD_FILE.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return card if isinstance(card, dict) else None


__all__ = ["BUNDLE_DIR", "CARD_FILE", "CARD_MARKDOWN", "PRETRAINED_DIR", "default_bundle", "model_card"]

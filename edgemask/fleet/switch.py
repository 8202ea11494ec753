"""Point ``current`` at a release in one atomic step that survives a power cut.

``ln -sfn`` unlinks and recreates the link: between the two a reader (or a
reboot) finds no ``current`` at all. Here a new symlink is made under a
temporary name and renamed over ``current`` (rename(2) replaces atomically),
then the folder is fsynced so the rename itself is on disk: after a crash
``current`` names the old release or the new one, never nothing.
"""

from __future__ import annotations

import os

from edgemask.fleet.layout import Layout
from edgemask.utils.io import _fsync_dir


def switch_current(layout: Layout, rid: str) -> None:
    """Make ``<root>/current`` point at ``releases/<rid>`` (relative link), atomically."""
    target = os.path.join("releases", rid)
    if not (layout.root / target).is_dir():
        raise FileNotFoundError(f"release {rid} is not installed under {layout.releases}")
    tmp = layout.root / f".current.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, layout.current)
    _fsync_dir(layout.root)


def remove_current(layout: Layout) -> None:
    """Remove ``current`` (a box rolled back from its first release has none)."""
    try:
        os.unlink(layout.current)
    except FileNotFoundError:
        return
    _fsync_dir(layout.root)


__all__ = ["remove_current", "switch_current"]

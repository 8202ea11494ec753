"""Where the top-level data folders (``devices/``, ``calibration/``) are found.

They live at the top of a source checkout and, in an installed wheel, under
``<prefix>/share/edgemask/<kind>`` -- and ``<prefix>`` depends on how pip was
run: the environment's prefix, the interpreter's data path (``/usr/local`` for
a system pip on Ubuntu / JetPack), or the ``--user`` scheme (``~/.local``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def checkout_dir(kind: str) -> Path | None:
    """``<kind>/`` of the source checkout this package runs from, if it runs from one."""
    import edgemask

    top = Path(edgemask.__file__).resolve().parents[1]
    # pyproject.toml marks a checkout; in site-packages a stray folder of that name is somebody else's.
    return top / kind if (top / "pyproject.toml").is_file() else None


def installed_dirs(kind: str) -> list[Path]:
    """Every place ``pip install`` may have put the wheel's ``share/edgemask/<kind>`` data files."""
    import sysconfig

    roots = [sys.prefix, sysconfig.get_path("data")]
    # The --user scheme (~/.local on Linux): `pip3 install --user edgemask` on JetPack's Python.
    get_preferred = getattr(sysconfig, "get_preferred_scheme", None)  # Python 3.10+
    user_scheme = get_preferred("user") if get_preferred else f"{os.name}_user"
    try:
        roots.append(sysconfig.get_path("data", user_scheme))
    except KeyError:
        pass
    return [Path(r) / "share" / "edgemask" / kind for r in roots if r]


def search_dirs(kind: str, env_var: str) -> list[Path]:
    """Existing folders to search for ``<kind>`` files, first match wins, duplicates dropped.

    1. ``$env_var`` (``os.pathsep``-separated folders),
    2. the checkout's ``<kind>/``,
    3. the installed wheel's ``share/edgemask/<kind>`` (see :func:`installed_dirs`).
    """
    from edgemask.config import setting

    dirs = [Path(p).expanduser() for p in (setting(env_var) or "").split(os.pathsep) if p.strip()]
    checkout = checkout_dir(kind)
    if checkout is not None:
        dirs.append(checkout)
    dirs += installed_dirs(kind)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        if not d.is_dir():
            continue
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


__all__ = ["checkout_dir", "installed_dirs", "search_dirs"]

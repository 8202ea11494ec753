"""``tomllib`` on every Python the package supports.

The standard library has it from 3.11; JetPack 5 (3.8) and JetPack 6 (3.10)
get the same parser from the ``tomli`` package, a runtime dependency there.
Use ``from edgemask.utils.toml_compat import tomllib``.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["tomllib"]

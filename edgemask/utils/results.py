"""``FolderResult``: a result object that also stands for the folder it describes.

``export_bundle`` and ``train`` used to return the folder they wrote as a
``Path``; they now return typed results (``ExportResult``, ``TrainResult``).
So that code written against the old return value keeps working, such a
result behaves as its folder where a path is expected: ``os.fspath(r)``,
``Path(r)``, ``str(r)``, ``r / "manifest.json"`` and path attributes
(``r.name``, ``r.exists()``). New code reads the typed fields instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class FolderResult:
    """Mixin for a dataclass whose ``folder`` property is the folder it wrote."""

    @property
    def folder(self) -> Path:  # overridden by each result
        raise NotImplementedError

    def __fspath__(self) -> str:
        return str(self.folder)

    def __str__(self) -> str:
        return str(self.folder)

    def __truediv__(self, other: Any) -> Path:
        return self.folder / other

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the result does not have: path methods and attributes.
        if name.startswith("__") or name in getattr(type(self), "__dataclass_fields__", {}):
            raise AttributeError(name)  # a field not set yet (copy, pickle): no recursion through folder
        return getattr(self.folder, name)


__all__ = ["FolderResult"]

"""Which package may import which: checked on the source, imports inside functions included.

* ``edgemask.backends`` never imports ``edgemask.export`` (export plans engines and
  calls down into backends; the runner gets first-use building passed in).
* ``edgemask.bundle`` and ``edgemask.devices`` import neither.
* ``edgemask.data`` never imports ``edgemask.vision``: vision cuts its face crops
  with ``data.crops``, and ``--crop-faces`` gets its face finder passed in.
* Only ``edgemask/backends/tensorrt/`` imports ``tensorrt``, ``pycuda`` or ``cuda``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgemask"
GPU_MODULES = ("tensorrt", "pycuda", "cuda")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in ``path``, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            # "from edgemask import export" names a subpackage too
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for f in sorted((PKG / folder).rglob("*.py")):
        for line, mod in imports_of(f):
            if any(mod == p or mod.startswith(p + ".") for p in forbidden):
                bad.append(f"{f.relative_to(PKG.parent)}:{line} imports {mod}")
    return bad


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from edgemask.export.engine import build_engine\n    import tensorrt as trt\n")
    assert imports_of(p) == [(2, "edgemask.export.engine"), (2, "edgemask.export.engine.build_engine"), (3, "tensorrt")]


@pytest.mark.parametrize(
    "folder,forbidden",
    [
        ("backends", ("edgemask.export",)),
        ("bundle", ("edgemask.export", "edgemask.backends")),
        ("devices", ("edgemask.export", "edgemask.backends")),
        ("data", ("edgemask.vision",)),
    ],
)
def test_imports_run_one_way(folder, forbidden):
    assert _offenders(folder, forbidden) == []


def test_only_the_tensorrt_backend_imports_tensorrt_or_cuda():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        if (PKG / "backends" / "tensorrt") in f.parents:
            continue
        for line, mod in imports_of(f):
            if mod.split(".")[0] in GPU_MODULES:
                bad.append(f"{f.relative_to(PKG.parent)}:{line} imports {mod}")
    assert bad == []

"""The device runtime (`pip install edgemask`, no extras) must work without the
train extra: no torch, ONNX tooling, scikit-image or matplotlib.

Each check runs in a fresh interpreter whose import system refuses those
packages (a meta-path finder that raises ModuleNotFoundError), so a stray
top-level import anywhere on the runtime path fails here even though this
venv has them installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from edgemask.cli._common import TRAIN_EXTRA_MODULES

_BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {sorted(TRAIN_EXTRA_MODULES)!r}
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError("No module named %r (blocked by the test)" % name, name=name)
            return None
    sys.meta_path.insert(0, _Block())
    """
)

# Library modules the device runtime imports (run, engine, bundle, devices, doctor).
RUNTIME_MODULES = [
    "edgemask",
    "edgemask.cli.main",
    "edgemask.bundle",
    "edgemask.bundle.manifest",
    "edgemask.devices",
    "edgemask.devices.profiles",
    "edgemask.backends",
    "edgemask.backends.onnxrt.runner",
    "edgemask.backends.tensorrt.runner",
    "edgemask.service.config",
    "edgemask.service.loop",
    "edgemask.vision",
    "edgemask.bundle.pack",
    "edgemask.fleet.agent",
    "edgemask.fleet.selftest",
    "edgemask.fleet.health",
    "edgemask.cli.device",
]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return _run(
        f"""
        import sys
        sys.argv = ["edgemask", *{list(args)!r}]
        from edgemask.cli.main import main
        main()
        """
    )


def test_blocker_blocks():
    r = _run("import torch")
    assert r.returncode != 0 and "blocked by the test" in r.stderr


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_runtime_module_imports_without_train_extra(module):
    r = _run(
        f"""
        import importlib, sys
        importlib.import_module({module!r})
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        """
    )
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["engine", "--help"],
        ["devices", "list"],
        ["doctor"],
        ["device", "status", "--root", "no-such-box-root"],
    ],
)
def test_runtime_commands_run_without_train_extra(args):
    r = _cli(*args)
    # doctor exits 1 when a check fails on this box; what matters is no ImportError.
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert "ModuleNotFoundError" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    if args != ["doctor"]:
        assert r.returncode == 0, r.stderr[-2000:]


def test_train_command_names_the_extra(tmp_path):
    (tmp_path / "data").mkdir()
    r = _cli("train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "pip install 'edgemask[train]'" in lines[0]
    assert "Traceback" not in r.stderr

"""The device runtime (`pip install edgemask`, no extras) must work without the
train extra: no torch, ONNX tooling, scikit-image or matplotlib.

Each check runs in a fresh interpreter whose import system refuses those
packages (a meta-path finder that raises ModuleNotFoundError), so a stray
top-level import anywhere on the runtime path fails here even though this
venv has them installed.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edgemask
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

# What the device runtime is made of. Kept here, in one place: the import check
# below, the Python 3.8 syntax/stdlib check (vermin) and .ci/run's Python 3.8
# job all work from it. A package listed here brings every module under it.
RUNTIME = [
    "edgemask",  # the package's __init__ only (lazy exports)
    "edgemask.errors",
    "edgemask.progress",  # the Progress protocol of every long call (compare, cli)
    "edgemask.config",  # num_threads() for the runners
    "edgemask.doctor",
    "edgemask.cli",  # `edgemask --help` loads every command module
    "edgemask.utils",
    "edgemask.bundle",
    "edgemask.backends",
    "edgemask.devices",
    "edgemask.service",
    "edgemask.vision",
    "edgemask.fleet",  # the device agent (absent until the fleet issue lands)
    "edgemask.pretrained",  # the shipped default bundle's location and card (rebuilt by edgemask.rebuild_pretrained)
    # Dataset readers the camera service reuses for crops and labels (no torch).
    "edgemask.data",  # __init__ only
    "edgemask.data.dataset",
    "edgemask.data.labels",
    "edgemask.data.splits",
    "edgemask.data.imagefile",
    "edgemask.data.imagefolder",
    "edgemask.data.voc",
    "edgemask.data.detection",
    "edgemask.data.facecrop",
    "edgemask.data.crops",  # the service's face crops (through vision.crops)
    "edgemask.data.transforms",  # to_nchw_float for the runners; torch only inside the augmentation
    # engine build / engine check-qdq
    "edgemask.export",  # __init__ only
    "edgemask.export.config",
    "edgemask.export.engine",
    "edgemask.export.engine_plan",  # what engine build builds, and its trtexec line
    "edgemask.export.qdq_check",
]
# The workstation side (Python 3.10+; most of it needs `pip install 'edgemask[train]'`).
WORKSTATION_ONLY = [
    "edgemask.demo",
    "edgemask.rebuild_pretrained",
    "edgemask.detector_config",
    "edgemask.models",
    "edgemask.training",
    "edgemask.attacks",
    "edgemask.stability",
    "edgemask.compare",
    "edgemask.backends.torch_backend",
    "edgemask.data.synth",
    "edgemask.data.realfaces",
    "edgemask.export.bundle_writer",
    "edgemask.export.calibration",
    "edgemask.export.detector_export",
    "edgemask.export.for_device",
    "edgemask.export.onnx_export",
    "edgemask.export.probe",
    "edgemask.export.quantize",
]
# Entries whose subpackages and modules do not come with them.
_INIT_ONLY = {"edgemask", "edgemask.data", "edgemask.export"}

_PKG_ROOT = Path(edgemask.__file__).resolve().parent


def _all_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for f in sorted(_PKG_ROOT.rglob("*.py")):
        parts = list(f.relative_to(_PKG_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _owner(module: str, entries: list[str]) -> str | None:
    """The longest entry of ``entries`` that covers ``module``."""
    best = None
    for e in entries:
        covers = module == e or (e not in _INIT_ONLY and module.startswith(e + "."))
        if covers and (best is None or len(e) > len(best)):
            best = e
    return best


def _classify(module: str) -> str | None:
    r, t = _owner(module, RUNTIME), _owner(module, WORKSTATION_ONLY)
    if r is None and t is None:
        return None
    if t is None or (r is not None and len(r) > len(t)):
        return "runtime"
    return "train"


def runtime_modules() -> dict[str, Path]:
    """The runtime's modules (dotted name -> file), from RUNTIME minus WORKSTATION_ONLY."""
    return {m: f for m, f in _all_modules().items() if _classify(m) == "runtime"}


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


def test_every_module_is_runtime_or_workstation_only():
    """A new module must say which install it belongs to (RUNTIME or WORKSTATION_ONLY above)."""
    loose = sorted(m for m in _all_modules() if _classify(m) is None)
    assert not loose, f"add these modules to RUNTIME or WORKSTATION_ONLY in {Path(__file__).name}: {loose}"
    assert len(runtime_modules()) > 40


def test_runtime_modules_import_without_train_extra():
    """Every runtime module imports in a fresh interpreter that has no torch / ONNX tooling (on 3.8 too)."""
    names = sorted(runtime_modules())
    r = _run(
        f"""
        import importlib, json, sys, traceback
        failed = {{}}
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception:
                failed[name] = traceback.format_exc(limit=-1).strip().splitlines()[-3:]
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({{"failed": failed, "leaked": leaked}}))
        """
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["failed"], "\n".join(f"{k}: {' | '.join(v)}" for k, v in got["failed"].items())[-4000:]
    assert not got["leaked"], got["leaked"]


def test_runtime_modules_keep_to_python_38():
    """vermin: no syntax, stdlib module or member newer than Python 3.8 in a runtime module.

    Annotations are not evaluated (every runtime module has ``from __future__
    import annotations``, checked below), so ``list[int]`` and ``X | None``
    may appear there; what typer evaluates is checked by the next test.
    vermin cannot see methods of values whose type it does not know
    (``s.removeprefix``): .ci/run's Python 3.8 job runs the runtime tests there.
    """
    try:
        import vermin  # noqa: F401
    except ModuleNotFoundError:
        pytest.fail("vermin is missing: install the test extra (pip install -e '.[test]')")
    files = [str(f) for f in runtime_modules().values()]
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.exit(vermin.main())",
            "-t=3.8-",
            "--violations",
            "--no-tips",
            "--no-make-paths-absolute",
            "--processes=1",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def test_runtime_modules_defer_annotations():
    """Module-level and signature annotations are not evaluated on 3.8 only with the __future__ import."""
    missing = []
    for name, f in sorted(runtime_modules().items()):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        has_future = any(
            isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
            for n in tree.body
        )
        annotated = any(
            isinstance(n, ast.AnnAssign)
            or (isinstance(n, ast.arg) and n.annotation is not None)
            or (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None)
            for n in ast.walk(tree)
        )
        if annotated and not has_future:
            missing.append(name)
    assert not missing, f"add 'from __future__ import annotations' to {missing}"


# typer evaluates command signatures at run time (typing.get_type_hints), future import or not.
_NEWER_THAN_38 = re.compile(r"\||\b(list|dict|tuple|set|frozenset|type)\[")


def test_cli_signatures_evaluate_on_python_38():
    """Every command's parameters use Optional/List/Tuple, which Python 3.8 can evaluate."""
    from edgemask.cli.main import app

    callbacks = []

    def walk(t):
        if t.registered_callback is not None:
            callbacks.append(t.registered_callback.callback)
        callbacks.extend(c.callback for c in t.registered_commands)
        for g in t.registered_groups:
            callbacks.append(g.callback)  # a DefaultPlaceholder where the group has none
            walk(g.typer_instance)

    walk(app)
    assert len(callbacks) > 20
    bad = [
        f"{fn.__module__}.{fn.__qualname__}: {k}: {v}"
        for fn in callbacks
        if callable(fn)
        for k, v in fn.__annotations__.items()
        if isinstance(v, str) and _NEWER_THAN_38.search(v)
    ]
    assert not bad, "use typing.Optional / List / Tuple in typer signatures (Python 3.8 evaluates them): " + "; ".join(
        bad
    )


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


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of three photos (noise: the run finds no face, which is not what is tested here)."""
    import cv2
    import numpy as np

    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.jpg"), np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return d


@pytest.mark.parametrize(
    "args, says",
    [
        (["bundle", "verify", "{b}"], "files match their SHA-256"),
        (["bundle", "show", "{b}"], "model.int8.onnx"),
        (["engine", "check-qdq", "{b}", "--device", "jetson-xavier-nx"], "PASS for TensorRT 8.5"),
        (["engine", "build", "{b}", "--device", "jetson-orin-nano", "--print-trtexec"], "trtexec --onnx="),
        (
            [
                "run",
                "--source",
                "{photos}",
                "--bundle",
                "{b}",
                "--headless",
                "--max-frames",
                "3",
                "--state-dir",
                "{t}/state",
            ],
            "detector runs",
        ),
    ],
)
def test_device_commands_on_an_exported_bundle(backends_bundle, photos, tmp_path, args, says):
    """What a box does with a bundle a workstation exported, with no torch or onnx package importable."""
    r = _cli(*[a.format(b=backends_bundle, photos=photos, t=tmp_path) for a in args])
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert says in " ".join((r.stdout + r.stderr).split()), (r.stdout + r.stderr)[-3000:]


# Workstation commands, each with arguments that get it as far as its first train-extra import.
WORKSTATION_COMMANDS = [
    ["demo", "--out", "{t}/demo"],
    ["data", "synth", "--out", "{t}/synth", "--n", "6"],
    ["models"],
    ["train", "--data", "{t}/data", "--out", "{t}/run"],
    ["eval", "{t}/run", "--data", "{t}/data"],
    ["detector", "train", "--data", "{t}/data", "--out", "{t}/det"],
    ["detector", "eval", "{t}/det", "--data", "{t}/data"],
    ["export", "{t}/run", "--out", "{t}/bundle"],
    ["attack", "{t}/bundle", "--data", "{t}/data", "--out", "{t}/adv"],
]


@pytest.mark.parametrize("args", WORKSTATION_COMMANDS, ids=lambda a: " ".join(a[:2]).replace(" --out", ""))
def test_workstation_command_names_the_extra(tmp_path, args):
    """One line naming the extra (and, on Python 3.8, that it needs 3.10+); nothing written."""
    (tmp_path / "data").mkdir()
    r = _cli(*[a.format(t=tmp_path) for a in args])
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "needs the train extra" in lines[0] and "pip install 'edgemask[train]'" in lines[0], lines[0]
    assert ("needs Python 3.10+" in lines[0]) == (sys.version_info < (3, 10)), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

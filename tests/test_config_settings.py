"""``EDGEMASK_*`` knobs: named in edgemask/config.py's table, read only through ``setting`` / ``env_int``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgemask import config
from edgemask.errors import ConfigError

PKG = Path(config.__file__).resolve().parent


def _environ_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for ``os.environ.get(X)``, ``os.environ[X]``, ``os.getenv(X)`` where X is not a literal
    non-EDGEMASK name."""
    out = []
    for node in ast.walk(tree):
        arg = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            f = node.func
            if f.attr == "get" and ast.unparse(f.value) == "os.environ" or ast.unparse(f) == "os.getenv":
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            arg = node.slice
        if arg is None:
            continue
        literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        if not literal or arg.value.startswith("EDGEMASK_"):
            out.append((node.lineno, ast.unparse(node)))
    return out


def test_no_module_but_config_reads_an_edgemask_variable():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        if f == PKG / "config.py":
            continue
        bad += [
            f"{f.relative_to(PKG.parent)}:{line}: {what}" for line, what in _environ_reads(ast.parse(f.read_text()))
        ]
    assert bad == [], "read EDGEMASK_* variables through edgemask.config.setting / env_int"


def test_the_scanner_finds_a_read():
    tree = ast.parse("import os\nos.environ.get('EDGEMASK_X')\nos.getenv(NAME)\nos.environ['DISPLAY']\n")
    assert [line for line, _ in _environ_reads(tree)] == [2, 3]


def test_every_setting_is_in_the_docstring_table():
    assert all(f"``{name}``" in config.__doc__ for name in config.SETTINGS)
    assert len(set(config.SETTINGS)) == len(config.SETTINGS)


def test_setting_reads_the_environment(monkeypatch):
    monkeypatch.setenv(config.EDGEMASK_ENGINE_CACHE, "/tmp/x")
    assert config.setting(config.EDGEMASK_ENGINE_CACHE) == "/tmp/x"
    monkeypatch.setenv(config.EDGEMASK_ENGINE_CACHE, "")
    assert config.setting(config.EDGEMASK_ENGINE_CACHE) is None  # empty means unset
    assert config.setting(config.EDGEMASK_MQTT_PASSWORD, {"EDGEMASK_MQTT_PASSWORD": "pw"}) == "pw"


def test_an_unknown_setting_is_a_bug():
    with pytest.raises(ValueError, match="add it to edgemask/config.py"):
        config.setting("EDGEMASK_NO_SUCH_KNOB")


def test_env_int(monkeypatch):
    name = config.EDGEMASK_FLEET_CUT_AFTER_BYTES
    monkeypatch.delenv(name, raising=False)
    assert config.env_int(name, 0) == 0
    monkeypatch.setenv(name, "4096")
    assert config.env_int(name, 0) == 4096
    monkeypatch.setenv(name, "lots")
    with pytest.raises(ConfigError, match=name):
        config.env_int(name, 0)


def test_num_threads_ignores_a_typo(monkeypatch):
    monkeypatch.setenv(config.EDGEMASK_NUM_THREADS, "3")
    assert config.num_threads() == 3
    monkeypatch.setenv(config.EDGEMASK_NUM_THREADS, "auto")
    assert config.num_threads() >= 1

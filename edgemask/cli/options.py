"""Reusable Typer parameters: one description per option, taken from its config dataclass.

A command declares each option on one line, ``width: int = from_field(RunConfig, "width")``;
the default and the ``--help`` text come from the field (``metadata["help"]``,
see :func:`edgemask.config.described`), so neither is written twice. A
parameter named like its field goes straight into the config through
:func:`config_from_params`.

Groups several commands share (like Polygraphy's argument groups):

* output: :func:`out_option`, :func:`overwrite_option` (any config with ``out`` / ``overwrite``);
* device: :func:`device_option` (``--device``, a profile of ``edgemask devices list``);
* engine build: :func:`engine_option` (``--precision``, ``--int8-mode``, ``--batch``...).

Part of the device runtime: Python 3.8, no torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import typer

from edgemask.config import field_help

_FROM_FIELD: Any = object()  # "take it from the field" (None is a real default)


def _field(cls: Any, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def field_default(cls: Any, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (its ``default_factory()`` where it has one)."""
    f = _field(cls, name)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def from_field(cls: Any, name: str, *param_decls: str, default: Any = _FROM_FIELD, help: str = "", **kw: Any) -> Any:
    """A ``typer.Option`` for field ``name`` of config ``cls``: its default and its help.

    Args:
        cls: a config dataclass whose fields carry ``metadata["help"]``.
        name: the field.
        param_decls: flag names (``"--out", "-o"``); none = typer's from the parameter name.
        default: what the option shows and starts from, where the CLI spells
            it differently (a comma-separated string for a tuple, None for "decided later").
        help: replaces the field's help (a CLI-only note); "" = the field's.
        kw: other ``typer.Option`` arguments.
    """
    text = help or field_help(cls, name)
    if not text:
        raise ValueError(f"{cls.__name__}.{name} has no metadata['help']; describe it with described(...)")
    value = field_default(cls, name) if default is _FROM_FIELD else default
    return typer.Option(value, *param_decls, help=text, **kw)


def config_from_params(cls: Any, params: Mapping[str, Any], **converted: Any) -> Any:
    """``cls`` built from the parsed parameters named like its fields, then ``converted`` on top.

    Parameters that are no field (``--json``, ``--log-level``) are left out;
    ``converted`` holds the fields whose command-line form differs from the
    field's (``"fp32,int8"`` → ``("fp32", "int8")``).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in params.items() if k in names}
    kw.update(converted)
    return cls(**kw)


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: how tuple fields are written on the command line."""
    return tuple(s.strip() for s in str(text).split(",") if s.strip())


# --------------------------------------------------------------------------- output


def out_option(cls: Any, **kw: Any) -> Any:
    """``--out/-o``: the config's ``out`` field."""
    return from_field(cls, "out", "--out", "-o", **kw)


def overwrite_option(cls: Any) -> Any:
    """``--overwrite``: the config's ``overwrite`` field (what is replaced is the field's help)."""
    return from_field(cls, "overwrite", "--overwrite")


# --------------------------------------------------------------------------- device and engines

#: How every ``--device`` help starts.
DEVICE_HELP = "Device profile ('edgemask devices list')"


def device_option(default: Any = None, what: str = "", short: bool = False) -> Any:
    """``--device`` (and ``-d`` with ``short``): a device profile; ``what`` says what the command does with it."""
    decls = ("--device", "-d") if short else ("--device",)
    return typer.Option(default, *decls, help=f"{DEVICE_HELP}{': ' + what if what else '.'}")


# ``engine build``'s options. No dataclass holds them (``build_engine`` takes them as
# keywords), so their defaults and help live here, once.
ENGINE_PRECISION = "fp16"
ENGINE_INT8_MODE = "auto"
ENGINE_BATCH = "1,8,32"  # MIN,OPT,MAX of the dynamic batch profile: export.engine's DEFAULT_BATCH
_ENGINE_OPTIONS: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "precision": (
        ("--precision", "-p"),
        ENGINE_PRECISION,
        "fp32, fp16 or int8; lowered with a warning when the device does not run it fast.",
    ),
    "int8_mode": (
        ("--int8-mode",),
        ENGINE_INT8_MODE,
        "qdq: explicit INT8 from model.int8.onnx; calibrator: implicit INT8 from the fp32 model and the "
        "calibration cache; auto: qdq if it passes the QDQ check.",
    ),
    "dla_core": (("--dla-core",), None, "Build for this DLA core (GPU fallback on). Default: GPU."),
    "batch": (("--batch",), ENGINE_BATCH, "Dynamic batch profile MIN,OPT,MAX."),
    "workspace": (("--workspace",), None, "Builder workspace in MiB. Default: the profile's."),
    "timing_cache": (
        ("--timing-cache",),
        None,
        "Timing cache file to load and update. Default: one per device in the engine cache.",
    ),
    "no_timing_cache": (("--no-timing-cache",), False, "Build without a timing cache."),
    "verbose": (("--verbose",), False, "TensorRT verbose log."),
}


def engine_option(name: str) -> Any:
    """One option of the engine-build group: ``precision``, ``int8_mode``, ``dla_core``, ``batch``,
    ``workspace``, ``timing_cache``, ``no_timing_cache`` or ``verbose``."""
    decls, default, text = _ENGINE_OPTIONS[name]
    return typer.Option(default, *decls, help=text)


def parse_batch(text: str) -> tuple[int, int, int]:
    """``--batch "1,8,32"`` -> (1, 8, 32); anything but three whole numbers is a ConfigError."""
    from edgemask.errors import ConfigError

    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ConfigError(f"--batch {text!r} is not MIN,OPT,MAX (e.g. 1,8,32)")
    return parts  # type: ignore[return-value]

"""Run in a subprocess by test_tensorrt_conformance.py, with one real TensorRT bindings module importable.

``$EDGEMASK_TRT_SITE`` holds the unpacked wheel, ``LD_LIBRARY_PATH`` the
stand-in libraries (see trt_wheels.py). Prints one JSON object: the version,
the problems found in edgemask's table of used API members
(edgemask/backends/tensorrt/api.py) for this version's code paths, and what
edgemask's own code did with the real module.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.environ["EDGEMASK_TRT_SITE"])
import tensorrt_bindings as trt  # noqa: E402  (the real pybind11 module of this release)

sys.modules["tensorrt"] = trt  # what edgemask's code imports

from edgemask.backends.tensorrt import api  # noqa: E402
from edgemask.bundle.engines import trt_major  # noqa: E402


def signatures(fn, name: str) -> list[list[tuple[str, bool]]]:
    """Overloads of a pybind11 callable as lists of (parameter, has_default), self left out.

    pybind11 writes each overload's signature in the docstring, ``name(self: T, a: T, b: T = 1) -> R``
    (numbered "1. name(...)" when overloaded); a plain Python function is read with inspect.
    """
    doc = getattr(fn, "__doc__", None) or ""
    out = []
    for line in doc.splitlines():
        m = re.match(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*->", line)
        if not m:
            continue
        params, depth, cur = [], 0, ""
        for ch in m.group(1):  # split on top-level commas: types and defaults hold brackets and commas
            if ch in "[(<{":
                depth += 1
            elif ch in "])>}":
                depth -= 1
            if ch == "," and depth == 0:
                params.append(cur.strip())
                cur = ""
            else:
                cur += ch
        if cur.strip():
            params.append(cur.strip())
        parsed = [(p.split(":")[0].split("=")[0].strip(), "=" in p) for p in params]
        out.append([p for p in parsed if p[0] not in ("self", "*args", "**kwargs")])
    if not out and inspect.isfunction(fn):
        sig = inspect.signature(fn)
        out.append(
            [(p.name, p.default is not inspect.Parameter.empty) for p in sig.parameters.values() if p.name != "self"]
        )
    return out


def fits(overloads: list[list[tuple[str, bool]]], args: tuple, keywords: tuple) -> bool:
    """Does some overload accept len(args) positional arguments plus these keywords?"""
    for params in overloads:
        if len(args) > len(params):
            continue
        rest = params[len(args) :]
        if any(k not in [n for n, _ in rest] for k in keywords):
            continue
        if all(has_default or n in keywords for n, has_default in rest):
            return True
    return False


def resolve(path: str):
    obj, owner = trt, None
    for part in path.split("."):
        owner = obj
        if part not in dir(obj) and not hasattr(obj, part):
            return None, owner, False
        obj = getattr(obj, part)
    return obj, owner, True


def check(use: api.Use) -> str | None:
    """None when the real module has ``use`` as edgemask calls it, else what is wrong (one line)."""
    obj, owner, found = resolve(use.path)
    if not found:
        return f"{use.path}: missing"
    leaf = use.path.split(".")[-1]
    if use.kind == "enum":  # pybind11 and Python enums both give members a name and a value
        return None if hasattr(obj, "value") and hasattr(obj, "name") else f"{use.path}: not an enum member"
    if use.kind == "property":
        descr = inspect.getattr_static(owner, leaf)
        if not isinstance(descr, property):
            return f"{use.path}: not a property ({type(descr).__name__})"
        if use.settable and descr.fset is None:
            return f"{use.path}: read-only, edgemask assigns it"
        return None
    if use.kind == "class":
        if not isinstance(obj, type):
            return f"{use.path}: not a class"
        sigs = signatures(obj.__init__, "__init__")
        if sigs and not fits(sigs, use.args, use.keywords):
            return f"{use.path}: no constructor takes {len(use.args)} argument(s): {sigs}"
        return None
    if use.kind in ("method", "function"):
        if not callable(obj):
            return f"{use.path}: not callable"
        sigs = signatures(obj, leaf)
        if not sigs:
            return f"{use.path}: no signature to check"
        if not fits(sigs, use.args, use.keywords):
            return f"{use.path}: called with {len(use.args)} positional {list(use.keywords)} keyword(s), takes {sigs}"
        return None
    if use.kind == "attribute":
        return None
    return f"{use.path}: unknown kind {use.kind}"


def code_against_real_module() -> dict:
    """edgemask's own code run on the real module, as far as it goes without a GPU."""
    from edgemask.backends.tensorrt import builder, calibrator
    from edgemask.errors import NotAvailableError

    out: dict = {}
    try:
        builder.require_build_gpu(trt)
        out["no_gpu"] = "no error"
    except NotAvailableError as e:
        out["no_gpu"] = str(e)
    out["legacy_calibration_detected"] = calibrator.has_legacy_calibration(trt)
    if api.legacy_calibration(trt_major(trt.__version__)):
        d = Path(tempfile.mkdtemp())
        made = {}
        for algo, base in calibrator._CALIBRATOR_BASES.items():
            p = d / f"{algo}.txt"
            p.write_text(f"TRT-{8601}-{algo}\ninput: {struct.pack('>f', 0.5).hex()}\n")
            cal = calibrator.make_calibrator(trt, calibrator.CalibratorLogic(calibrator.read_calibration_cache(p)))
            made[algo] = {
                "is_base": isinstance(cal, getattr(trt, base)),
                "cache": cal.read_calibration_cache() == p.read_bytes(),
                "batch_size": cal.get_batch_size(),
                "batch": cal.get_batch(["input"]),
            }
        out["calibrators"] = made
    return out


def main() -> None:
    major = trt_major(trt.__version__)
    used = api.uses_for(major)
    problems = [p for p in (check(u) for u in used) if p]
    skipped = sorted(u.path for u in api.TRT_API if u not in used)
    absent_off_branch = sorted(u.path for u in api.TRT_API if u not in used and not resolve(u.path)[2])
    print(
        json.dumps(
            {
                "version": trt.__version__,
                "checked": len(used),
                "problems": problems,
                "off_branch": skipped,
                "off_branch_absent": absent_off_branch,
                "code": code_against_real_module(),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Bad runs, weights, bundle manifests and ONNX files through the CLI: one line each, nothing written.

The cases damage private copies of one tiny trained run and its exported
bundle (made once per session, ``badinput_helpers.make_shared``), run the
installed console script, and are judged by ``badinput_helpers.run_case``.
The table in README.md lists them; ``tally.py`` runs them against any checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from badinput_helpers import EXE, Case, Work, run_case

pytestmark = pytest.mark.skipif(not EXE.is_file(), reason=f"console script {EXE} not installed (pip install -e .)")

EXPORT = ["export", "{run}", "--out", "{tmp}/out", "--calibration", "{shared}/recipe.toml"]
VERIFY = ["bundle", "verify", "{bundle}"]
COMPARE32 = ["compare", "{bundle}", "--engines", "onnxrt:fp32", "--out", "{tmp}/out"]


# -- runs and weights ------------------------------------------------------------


def _model_json(text: str):
    def setup(w: Work) -> None:
        (w.copy("run") / "model.json").write_text(text)

    return setup


def _model_json_edit(**changes):
    def setup(w: Work) -> None:
        run = w.copy("run")
        d = json.loads((run / "model.json").read_text())
        d.update(changes)
        (run / "model.json").write_text(json.dumps(d))

    return setup


def _weights(damage):
    def setup(w: Work) -> None:
        p = w.copy("run") / "weights.safetensors"
        p.write_bytes(damage(p.read_bytes()))

    return setup


def _weights_other_shapes(w: Work) -> None:
    """Valid safetensors whose tensors have other shapes (a wider net saved under the same names)."""
    import torch
    from safetensors.torch import load_file, save_file

    p = w.copy("run") / "weights.safetensors"
    state = load_file(str(p))
    save_file({k: torch.zeros([s + 1 for s in v.shape]) for k, v in state.items()}, str(p))


# -- bundle manifests ----------------------------------------------------------------


def _edit(fn):
    def setup(w: Work) -> None:
        w.manifest(fn)

    return setup


def _set(path: str, value):
    """setup: manifest field at dotted ``path`` (list indices as numbers) set to ``value``."""

    def fn(d: dict) -> None:
        *head, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in head:
            d = d[k]
        d[last] = value

    return _edit(fn)


def _add_file(rel: str):
    def fn(d: dict) -> None:
        d["files"][rel] = {"sha256": "0" * 64, "bytes": 1}

    return _edit(fn)


def _symlink_outside(w: Work) -> None:
    """model.fp32.onnx becomes a symlink to a copy outside the bundle (hash still right)."""
    b = w.copy("bundle")
    outside = w.path("elsewhere.onnx")
    outside.write_bytes((b / "model.fp32.onnx").read_bytes())
    (b / "model.fp32.onnx").unlink()
    os.symlink(outside, b / "model.fp32.onnx")


# -- ONNX files ------------------------------------------------------------------------


def _replace_model(rel: str, make):
    def setup(w: Work) -> None:
        b = w.copy("bundle")
        (b / rel).write_bytes(make(b))
        w.rehash(rel)

    return setup


def _wrong_input_shape(b: Path) -> bytes:
    """model.fp32.onnx with its graph input declared 48×48 (the manifest says 32×32)."""
    import onnx

    m = onnx.load(str(b / "model.fp32.onnx"))
    for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_value = 48
    return m.SerializeToString()


CASES = [
    # -- runs: model.json and weights (export reads them first)
    Case(
        "model-json-list",
        "weights",
        "`model.json` holds a JSON list",
        EXPORT,
        ["model.json", "edgemask train"],
        _model_json("[1, 2, 3]"),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-string",
        "weights",
        "`model.json` holds a JSON string",
        EXPORT,
        ["model.json", "edgemask train"],
        _model_json('"seed_cnn"'),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-not-json",
        "weights",
        "`model.json` is not JSON",
        EXPORT,
        ["model.json", "edgemask train"],
        _model_json("{nope"),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-missing-keys",
        "weights",
        '`model.json` is `{"format": "edgemask-run"}`',
        EXPORT,
        ["model.json", "arch", "edgemask train"],
        _model_json('{"format": "edgemask-run"}'),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-class-names-string",
        "weights",
        '`class_names: "abc"` (a string, not a list)',
        EXPORT,
        ["model.json", "class_names", "edgemask train"],
        _model_json_edit(class_names="abc"),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-input-size-text",
        "weights",
        '`input_size: "big"`',
        EXPORT,
        ["model.json", "input_size", "edgemask train"],
        _model_json_edit(input_size="big"),
        unchanged=["{run}"],
    ),
    Case(
        "model-json-arch-args-list",
        "weights",
        "`arch_args: [1, 2]`",
        EXPORT,
        ["model.json", "arch_args", "edgemask train"],
        _model_json_edit(arch_args=[1, 2]),
        unchanged=["{run}"],
    ),
    Case(
        "eval-model-json-list",
        "weights",
        "`eval` of a run whose model.json is a list",
        ["eval", "{run}", "--data", "{shared}/data"],
        ["model.json", "edgemask train"],
        _model_json("[]"),
        absent=[],
        unchanged=["{run}"],
    ),
    Case(
        "weights-truncated",
        "weights",
        "`weights.safetensors` cut to 100 bytes",
        EXPORT,
        ["weights.safetensors", "edgemask train"],
        _weights(lambda b: b[:100]),
        unchanged=["{run}"],
    ),
    Case(
        "weights-garbage",
        "weights",
        "`weights.safetensors` is random bytes",
        EXPORT,
        ["weights.safetensors", "edgemask train"],
        _weights(lambda b: os.urandom(len(b))),
        unchanged=["{run}"],
    ),
    Case(
        "weights-wrong-shapes",
        "weights",
        "valid safetensors with every tensor one larger",
        EXPORT,
        ["does not match architecture"],
        _weights_other_shapes,
        unchanged=["{run}"],
    ),
    Case(
        "export-run-missing",
        "weights",
        "`export` of a folder that does not exist",
        ["export", "{tmp}/nope", "--out", "{tmp}/out"],
        ["does not exist", "edgemask train"],
    ),
    # -- bundle manifests (bundle verify reads them through the one loader)
    Case(
        "bundle-manifest-not-json",
        "bundles",
        "`manifest.json` is not JSON",
        VERIFY,
        ["not valid JSON", "re-export"],
        lambda w: (w.copy("bundle") / "manifest.json").write_text("{"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-manifest-list",
        "bundles",
        "`manifest.json` holds a list",
        VERIFY,
        ["not a JSON object", "re-export"],
        lambda w: (w.copy("bundle") / "manifest.json").write_text("[]"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-schema-version-text",
        "bundles",
        '`schema_version: "abc"`',
        VERIFY,
        ["'schema_version'", "whole number", "re-export"],
        _set("schema_version", "abc"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-version-text",
        "bundles",
        '`version: "1"`',
        VERIFY,
        ["'version'", "whole number"],
        _set("version", "1"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-shape-string",
        "bundles",
        '`input.shape: "abc"`',
        VERIFY,
        ["'input.shape'", "list of 4"],
        _set("input.shape", "abc"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-shape-zero",
        "bundles",
        "`input.shape: 0`",
        VERIFY,
        ["'input.shape'", "list of 4"],
        _set("input.shape", 0),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-shape-zero-side",
        "bundles",
        '`input.shape: ["N", 3, 0, 0]`',
        VERIFY,
        ["'input.shape[2]'", "≥ 1"],
        _set("input.shape", ["N", 3, 0, 0]),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-shape-negative",
        "bundles",
        '`input.shape: ["N", 3, -32, -32]`',
        VERIFY,
        ["'input.shape[2]'", "≥ 1"],
        _set("input.shape", ["N", 3, -32, -32]),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-shape-float",
        "bundles",
        '`input.shape: ["N", 3, 32.5, 32.5]`',
        VERIFY,
        ["'input.shape[2]'", "whole number"],
        _set("input.shape", ["N", 3, 32.5, 32.5]),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-show-shape-string",
        "bundles",
        '`bundle show` of `input.shape: "abc"`',
        ["bundle", "show", "{bundle}"],
        ["'input.shape'"],
        _set("input.shape", "abc"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-class-names-string",
        "bundles",
        '`class_names: "mask"`',
        VERIFY,
        ["'class_names'", "list"],
        _set("class_names", "mask"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-class-name-number",
        "bundles",
        '`class_names: ["mask", 7, "x"]`',
        VERIFY,
        ["'class_names[1]'", "string"],
        _set("class_names", ["mask", 7, "x"]),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-models-object",
        "bundles",
        "`models: {}` (an object)",
        VERIFY,
        ["'models'", "list"],
        _set("models", {}),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-model-entry-string",
        "bundles",
        "an entry of `models` is a string",
        VERIFY,
        ["'models[0]'", "JSON object"],
        _set("models.0", "model.fp32.onnx"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-model-file-number",
        "bundles",
        "`models[1].file: 5`",
        VERIFY,
        ["'models[1].file'", "path"],
        _set("models.1.file", 5),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-model-precision-int4",
        "bundles",
        '`models[1].precision: "int4"`',
        VERIFY,
        ["int4", "fp32, fp16, int8"],
        _set("models.1.precision", "int4"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-model-opset-text",
        "bundles",
        '`models[1].opset: "17"`',
        VERIFY,
        ["'models[1].opset'", "whole number"],
        _set("models.1.opset", "17"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-golden-tolerance-text",
        "bundles",
        '`golden.tolerance.fp32: "tight"`',
        VERIFY,
        ["'golden.tolerance.fp32'", "number"],
        _set("golden.tolerance.fp32", "tight"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-golden-labels-text",
        "bundles",
        '`golden.labels: ["a"]`',
        VERIFY,
        ["'golden.labels[0]'", "whole number"],
        _set("golden.labels", ["a"]),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-sha-number",
        "bundles",
        "a `files` entry whose sha256 is a number",
        VERIFY,
        ["sha256", "64 hex"],
        _edit(lambda d: d["files"]["model.fp32.onnx"].update(sha256=1)),
        absent=[],
        unchanged=["{bundle}"],
    ),
    # -- paths the manifest names
    Case(
        "bundle-files-absolute",
        "bundles",
        "a `files` entry `/etc/passwd`",
        VERIFY,
        ["absolute path", "not trustworthy"],
        _add_file("/etc/passwd"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-files-dotdot",
        "bundles",
        "a `files` entry `../../secret.txt`",
        VERIFY,
        ["'..'", "not trustworthy"],
        _add_file("../../secret.txt"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-model-file-dotdot",
        "bundles",
        '`models[1].file: "../run/weights.safetensors"`',
        VERIFY,
        ["'models[1].file'", "'..'"],
        _set("models.1.file", "../run/weights.safetensors"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-golden-absolute",
        "bundles",
        '`golden.inputs: "/tmp/x.npy"`',
        VERIFY,
        ["'golden.inputs'", "absolute"],
        _set("golden.inputs", "/tmp/x.npy"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-calibration-dotdot",
        "bundles",
        '`calibration.cache: "../cache.txt"`',
        VERIFY,
        ["'calibration.cache'", "'..'"],
        _set("calibration.cache", "../cache.txt"),
        absent=[],
        unchanged=["{bundle}"],
    ),
    Case(
        "bundle-symlink-outside",
        "bundles",
        "`model.fp32.onnx` is a symlink to a file outside the bundle",
        VERIFY,
        ["symlink", "outside the bundle"],
        _symlink_outside,
        absent=[],
        unchanged=["{bundle}"],
    ),
    # -- ONNX model files (hash made to match, so only the content check can catch them)
    Case(
        "onnx-garbage",
        "ONNX files",
        "`model.fp32.onnx` is random bytes",
        COMPARE32,
        ["model.fp32.onnx", "re-export"],
        _replace_model("model.fp32.onnx", lambda b: os.urandom(4096)),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-empty",
        "ONNX files",
        "`model.fp32.onnx` is empty",
        COMPARE32,
        ["model.fp32.onnx", "re-export"],
        _replace_model("model.fp32.onnx", lambda b: b""),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-wrong-input-shape",
        "ONNX files",
        "`model.fp32.onnx` declares a 48×48 input, the manifest 32×32",
        COMPARE32,
        ["model.fp32.onnx", "[N, 3, 32, 32]", "re-export"],
        _replace_model("model.fp32.onnx", _wrong_input_shape),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-int8-listed-as-fp32",
        "ONNX files",
        "the int8 QDQ file copied over `model.fp32.onnx`",
        COMPARE32,
        ["int8", "lists it as fp32"],
        _replace_model("model.fp32.onnx", lambda b: (b / "model.int8.onnx").read_bytes()),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-fp32-listed-as-int8",
        "ONNX files",
        "the fp32 file copied over `model.int8.onnx`",
        ["compare", "{bundle}", "--engines", "onnxrt:int8", "--out", "{tmp}/out"],
        ["fp32", "lists it as int8"],
        _replace_model("model.int8.onnx", lambda b: (b / "model.fp32.onnx").read_bytes()),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-fp16-listed-as-fp32",
        "ONNX files",
        "the fp16 file copied over `model.fp32.onnx`",
        ["bench", "{bundle}", "--engines", "onnxrt:fp32", "--iters", "2", "--batch-iters", "1", "--out", "{tmp}/out"],
        ["fp16", "lists it as fp32"],
        _replace_model("model.fp32.onnx", lambda b: (b / "model.fp16.onnx").read_bytes()),
        unchanged=["{bundle}"],
    ),
    Case(
        "onnx-hash-mismatch",
        "ONNX files",
        "`model.fp32.onnx` changed, manifest not",
        COMPARE32,
        ["failed verification", "model.fp32.onnx"],
        lambda w: (w.copy("bundle") / "model.fp32.onnx").write_bytes(b"\x08\x07" * 100),
        unchanged=["{bundle}"],
    ),
]


@pytest.fixture(scope="module")
def shared(badinput_shared):
    return badinput_shared


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_model_input(case: Case, tmp_path: Path, shared):
    verdict, why = run_case(case, tmp_path / "case", shared)
    assert verdict == "clean", f"{case.id}: {verdict}: {why}"


def test_readme_table_lists_every_case():
    """README.md beside this file is the table of cases; it must not fall behind the code."""
    import test_data_inputs

    text = (Path(__file__).with_name("README.md")).read_text()
    missing = [c.id for c in [*test_data_inputs.CASES, *CASES] if f"| {c.id} |" not in text]
    assert not missing, (
        f"add these cases to tests/badinput/README.md (python tests/badinput/tally.py --table): {missing}"
    )

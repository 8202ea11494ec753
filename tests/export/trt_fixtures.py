"""Fixtures of the TensorRT-side export tests (test_qdq_check.py, test_engine.py).

A tiny CNN as fp32 ONNX and as INT8 in several quantized dialects straight from
ONNX Runtime's quantizer, and a minimal hash-consistent bundle around them,
written here so these tests pin the exact quantizer settings they check and do
not depend on export_bundle. Test modules import the fixtures by name
(``from trt_fixtures import make_bundle_fixture, onnx_models_fixture``; the
fixtures are registered under the names ``onnx_models`` and ``make_bundle``); this is not a
conftest.py so it never clashes with the export tests' own conftest.
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

INPUT_SIZE = 32
CLASSES = ["mask", "no_mask", "mask_incorrect"]


class _Reader:
    """Calibration data for onnxruntime.quantization: 4 batches of 4 random images."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self._it = iter([{"input": rng.random((4, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self._it, None)


@pytest.fixture(scope="session", name="onnx_models")
def onnx_models_fixture(tmp_path_factory) -> dict[str, Path]:
    """fp32 model and INT8 variants: 'trt' (TensorRT recipe), 'sym' (symmetric, ORT defaults otherwise),
    'asym' (ORT defaults), 'qop' (QOperator format)."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edgemask.models import create_model

    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_classes=3, input_size=INPUT_SIZE, widths=(8, 16), hidden=16).eval()
    fp32 = d / "fp32.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE),
            str(fp32),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )

    class Reader(_Reader, CalibrationDataReader):
        pass

    q = dict(per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    sym = {"ActivationSymmetric": True, "WeightSymmetric": True}
    variants = {
        "trt": (QuantFormat.QDQ, dict(sym, AddQDQPairToWeight=True, QuantizeBias=False)),
        "sym": (QuantFormat.QDQ, sym),
        "asym": (QuantFormat.QDQ, {}),
        "qop": (QuantFormat.QOperator, sym),
    }
    out = {"fp32": fp32}
    from edgemask.export.quantize import fp16_from_onnx

    fp16_from_onnx(fp32, d / "fp16.onnx")  # float16 inside, float32 I/O: what TensorRT 11 builds fp16 from
    out["fp16"] = d / "fp16.onnx"
    for name, (fmt, extra) in variants.items():
        path = d / f"{name}.onnx"
        quantize_static(str(fp32), str(path), Reader(), quant_format=fmt, extra_options=extra, **q)
        out[name] = path
    return out


def calibration_cache_text(onnx_path: Path, version_code: int = 8502, algo: str = "EntropyCalibration2") -> str:
    """A TensorRT-format calibration cache over the tensors of ``onnx_path`` (scale 0.05 each)."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    names = ["input"] + [o for n in g.node for o in n.output]
    lines = [f"TRT-{version_code}-{algo}"] + [f"{n}: {struct.pack('>f', 0.05).hex()}" for n in names]
    return "\n".join(lines) + "\n"


def write_bundle(
    root: Path,
    onnx_models: dict[str, Path],
    *,
    int8: str | None = "trt",
    cache: bool = True,
    signed: bool = False,
    fp16: bool = False,
) -> Path:
    """A minimal, hash-consistent bundle: model.fp32.onnx, optional model.fp16.onnx, model.int8.onnx and
    calibration cache."""
    from edgemask.bundle import BundleManifest, InputSpec, ModelEntry, Preprocessing
    from edgemask.utils.io import sha256_file

    root.mkdir(parents=True, exist_ok=True)
    files = {"model.fp32.onnx": onnx_models["fp32"].read_bytes()}
    models = [ModelEntry(file="model.fp32.onnx", precision="fp32", format="onnx", opset=17)]
    if fp16:
        files["model.fp16.onnx"] = onnx_models["fp16"].read_bytes()
        models.append(ModelEntry(file="model.fp16.onnx", precision="fp16", format="onnx", opset=17))
    if int8:
        files["model.int8.onnx"] = onnx_models[int8].read_bytes()
        models.append(
            ModelEntry(
                file="model.int8.onnx",
                precision="int8",
                format="onnx",
                opset=17,
                quantization={"format": "QDQ", "method": "minmax", "per_channel": True, "symmetric": True},
            )
        )
    calibration = None
    if cache:
        files["calibration/cache.txt"] = calibration_cache_text(onnx_models["fp32"]).encode()
        calibration = {"recipe": "default", "cache": "calibration/cache.txt"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = BundleManifest(
        name="tiny",
        version=1,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).isoformat(),
        arch="seed_cnn",
        arch_args={"num_classes": 3, "input_size": INPUT_SIZE},
        class_names=list(CLASSES),
        input=InputSpec(shape=["N", 3, INPUT_SIZE, INPUT_SIZE]),
        preprocessing=Preprocessing(),
        models=models,
        files={rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in files},
        producer={"edgemask": "test"},
        opset=17,
        calibration=calibration,
        signature={"key_id": "k", "algorithm": "ed25519", "file": "manifest.sig"} if signed else None,
    )
    (root / "manifest.json").write_text(manifest.to_json())
    return root


@pytest.fixture(name="make_bundle")
def make_bundle_fixture(tmp_path, onnx_models):
    def _make(name: str = "bundle", **kw) -> Path:
        return write_bundle(tmp_path / name, onnx_models, **kw)

    return _make

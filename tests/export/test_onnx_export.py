"""fp32 ONNX export: opsets, dynamic batch, checker, ONNX Runtime and OpenCV parity, damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from edgemask.errors import ConfigError, ExportError
from edgemask.export.onnx_export import load_onnx, onnx_from_torch, onnx_opset, opencv_check, ort_logits


@pytest.fixture(scope="module")
def model_and_info(tiny_run):
    from edgemask.training.run import load_run

    return load_run(tiny_run)


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("opset", [13, 17])
def test_export_opset_dynamic_batch_and_parity(model_and_info, tmp_path, opset):
    import onnx

    model, info = model_and_info
    path = tmp_path / "m.onnx"
    res = onnx_from_torch(model, path, input_size=32, opset=opset, simplify=False)
    assert res.opset == opset and res.simplified_by is None
    proto = onnx.load(str(path))
    assert onnx_opset(proto) == opset
    onnx.checker.check_model(str(path), full_check=True)
    # One self-contained file: no external .data sidecar (the dynamo exporter wrote one).
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 32, 32]
    assert out.type.tensor_type.shape.dim[0].dim_param == "N"
    # BatchNorm is folded into the convolutions and the normalization lives in the graph.
    assert "BatchNormalization" not in res.op_types and res.op_types.get("Sub") == 1
    rng = np.random.default_rng(0)
    for n in (1, 5):  # dynamic batch really is dynamic
        x = rng.random((n, 3, 32, 32), dtype=np.float32)
        got = ort_logits(path, x)
        assert got.shape == (n, 3)
        assert np.max(np.abs(got - _torch_logits(model, x))) < 1e-4


@pytest.mark.parametrize("opset", [13, 17])
def test_opencv_dnn_loads_and_agrees(model_and_info, tmp_path, opset, calib_images):
    """Camera apps often run ONNX through cv2.dnn; the fp32 export must load and agree there."""
    import cv2

    model, _ = model_and_info
    path = tmp_path / "m.onnx"
    onnx_from_torch(model, path, input_size=32, opset=opset, simplify=False)
    ref = _torch_logits(model, calib_images[:6])
    res = opencv_check(path, calib_images[:6], ref)
    assert res["ok"], res
    assert res["max_abs_diff"] < 1e-4 and res["agreement"] == 1.0

    # The path an app takes: uint8 RGB crops → blobFromImages (NCHW float in [0,1]) → net.forward.
    crops = [np.ascontiguousarray((im.transpose(1, 2, 0) * 255).round().astype(np.uint8)) for im in calib_images[:3]]
    blob = cv2.dnn.blobFromImages(crops, scalefactor=1 / 255.0, size=(32, 32), swapRB=False, crop=False)
    assert blob.shape == (3, 3, 32, 32)
    net = cv2.dnn.readNetFromONNX(str(path))
    preds = []
    for i in range(3):
        net.setInput(blob[i : i + 1])
        preds.append(net.forward().reshape(-1))
    assert np.max(np.abs(np.stack(preds) - _torch_logits(model, blob))) < 1e-4


def test_opencv_check_reports_failure_instead_of_crashing(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    res = opencv_check(bad, np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 3), np.float32))
    assert res["ok"] is False and res["error"]


@pytest.mark.parametrize("opset", [10, 19, "17"])
def test_unsupported_opset_is_a_config_error(model_and_info, tmp_path, opset):
    model, _ = model_and_info
    with pytest.raises(ConfigError, match="opset"):
        onnx_from_torch(model, tmp_path / "m.onnx", input_size=32, opset=opset)
    assert not list(tmp_path.iterdir())


def test_exporter_failure_leaves_no_file(model_and_info, tmp_path, monkeypatch):
    import torch

    model, _ = model_and_info

    def boom(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(ExportError, match="try another --opset"):
        onnx_from_torch(model, tmp_path / "m.onnx", input_size=32)
    assert not list(tmp_path.iterdir())  # neither the target nor the temporary file


def test_load_onnx_rejects_truncated_corrupt_and_missing(tiny_onnx, tmp_path):
    assert len(load_onnx(tiny_onnx).graph.node) > 0
    data = tiny_onnx.read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="truncated or corrupted"):
        load_onnx(trunc)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ExportError, match="re-export"):
        load_onnx(junk)
    with pytest.raises(ExportError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")


def test_simplifier_is_optional_and_recorded(model_and_info, tmp_path):
    model, _ = model_and_info
    res = onnx_from_torch(model, tmp_path / "plain.onnx", input_size=32, simplify=False)
    assert res.simplified_by is None
    try:
        import onnxslim  # noqa: F401
    except ImportError:
        try:
            import onnxsim  # noqa: F401
        except ImportError:
            pytest.skip("no ONNX simplifier installed (onnxslim/onnxsim are optional)")
    res = onnx_from_torch(model, tmp_path / "slim.onnx", input_size=32, simplify=True)
    assert res.simplified_by and res.simplified_by.split()[0] in ("onnxslim", "onnxsim")
    x = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    assert np.max(np.abs(ort_logits(tmp_path / "slim.onnx", x) - _torch_logits(model, x))) < 1e-4

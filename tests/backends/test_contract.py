"""The Runner contract, run over every registered backend at every precision it supports.

A backend that cannot run here (e.g. tensorrt without TensorRT) is skipped
with its own ``available()`` reason, so the skip line says how to enable it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgemask.backends import get_backend, list_backends
from edgemask.bundle import load_bundle
from edgemask.errors import BackendError, BundleError, EdgemaskError, NotAvailableError

SIZE = 32  # the tiny bundle's input size (tests/assets.py)

# Same rules as `edgemask compare` (see CompareConfig): fp32 tight, fp16 loose, int8 by decisions.
MAX_ABS_DIFF = {"fp32": 1e-3, "fp16": 5e-2}
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.98}


def _cases() -> list:
    cases = []
    for name in list_backends():
        cls = get_backend(name)
        ok, why = cls.available()
        if not ok:
            cases.append(pytest.param((name, None), id=f"{name}-unavailable"))
            continue
        for precision in getattr(cls, "precisions", ("fp32",)):
            cases.append(pytest.param((name, precision), id=f"{name}-{precision}"))
    return cases


@pytest.fixture(params=_cases())
def case(request, tiny_bundle):
    name, precision = request.param
    cls = get_backend(name)
    ok, why = cls.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    return cls, precision, load_bundle(tiny_bundle)


def _make(cls, bundle, precision):
    """cls.from_bundle, skipping when the tiny bundle holds no model file this backend reads (TensorRT engines)."""
    try:
        return cls.from_bundle(bundle, precision=precision)
    except BundleError as e:
        if "has no" not in str(e):
            raise
        pytest.skip(f"{cls.name}: {e}")


@pytest.fixture
def runner(case):
    cls, precision, bundle = case
    r = _make(cls, bundle, precision)
    try:
        r.activate()
    except NotAvailableError as e:  # e.g. torch fp16 needs CUDA
        pytest.skip(str(e))
    yield r
    r.deactivate()


@pytest.fixture(scope="module")
def torch_reference(tiny_bundle, images):
    """torch fp32 logits on the contract inputs: what every other engine must reproduce."""
    pytest.importorskip("torch", reason="the torch reference needs the train extra")
    x, _ = images(64, seed=11)
    with get_backend("torch").from_bundle(load_bundle(tiny_bundle)) as r:
        return x, r.infer(x)


def test_constructor_is_cheap_and_loads_nothing(case, tmp_path):
    cls, precision, bundle = case
    copy = shutil.copytree(bundle.root, tmp_path / "b")
    b = load_bundle(copy)
    r = _make(cls, b, precision)
    assert r.active is False and len(r.latencies_ms) == 0
    assert r.precision == precision and r.num_classes == 3 and r.input_size == SIZE
    # Damage every model file after construction: a runner that had loaded
    # its model in __init__ would still activate; one that loads in
    # activate() must fail with a user-facing error (not a raw traceback).
    for p in copy.iterdir():
        if p.suffix in (".onnx", ".safetensors", ".engine", ".plan"):
            p.write_bytes(b"not a model")
    if getattr(cls, "fake", False):
        with r:  # needs no file
            assert r.active
        return
    try:
        r.activate()
    except NotAvailableError as e:
        pytest.skip(str(e))
    except EdgemaskError:
        assert r.active is False
    else:
        r.deactivate()
        pytest.fail(f"{cls.name} activated from a damaged model file: it must have loaded it in the constructor")


def test_infer_before_activate_errors(case, images):
    cls, precision, bundle = case
    r = _make(cls, bundle, precision)
    x, _ = images(2)
    with pytest.raises(BackendError, match="not active"):
        r.infer(x)


def test_uint8_nhwc_equals_float_nchw(runner, images):
    x_u8, _ = images(5, seed=3)
    x_f = x_u8.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_array_equal(runner.infer(x_u8), runner.infer(x_f))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3, SIZE + 1, SIZE), np.float32),  # wrong size
        np.zeros((3, SIZE, SIZE), np.float32),  # no batch axis
        np.zeros((2, SIZE, SIZE, 3), np.float32),  # float NHWC
        np.zeros((2, 3, SIZE, SIZE), np.uint8),  # uint8 NCHW
        np.zeros((2, 3, SIZE, SIZE), np.int32),  # integer dtype
        np.full((2, 3, SIZE, SIZE), 2.0, np.float32),  # 0..255 floats passed as [0,1]
        np.full((2, 3, SIZE, SIZE), -0.5, np.float32),  # normalized input: mean/std are in the model
        np.zeros((0, 3, SIZE, SIZE), np.float32),  # empty batch
        [[0.0]],  # not an array
    ],
    ids=["size", "rank", "nhwc-float", "nchw-uint8", "int32", "range-high", "range-low", "empty", "list"],
)
def test_bad_inputs_raise_backend_error(runner, bad):
    with pytest.raises(BackendError):
        runner.infer(bad)


def test_context_manager_deactivates(case, images):
    cls, precision, bundle = case
    r = _make(cls, bundle, precision)
    x, _ = images(2)
    try:
        with r as active:
            assert active is r and r.active
            first = r.infer(x)
    except NotAvailableError as e:
        pytest.skip(str(e))
    assert not r.active
    with pytest.raises(BackendError):
        r.infer(x)
    r.deactivate()  # idempotent
    with r:  # and it can be activated again, with the same results
        np.testing.assert_array_equal(r.infer(x), first)


@pytest.mark.parametrize("n", [1, 7])
def test_output_shape_dtype(runner, n, images):
    x, _ = images(n, seed=n)
    out = runner.infer(x)
    assert out.shape == (n, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert len(runner.latencies_ms) >= 1 and runner.latencies_ms[-1] > 0


def test_deterministic_and_batch_independent(runner, images):
    x, _ = images(7, seed=5)
    a, b = runner.infer(x), runner.infer(x)
    np.testing.assert_array_equal(a, b)
    singles = np.concatenate([runner.infer(x[i : i + 1]) for i in range(7)])
    # Different batch sizes may take different kernels: equal to rounding, same decisions.
    tol = 1e-4 * max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose(singles, a, atol=tol if runner.precision == "fp32" else 50 * tol)
    assert (singles.argmax(1) == a.argmax(1)).all()


def test_describe_labels_the_numbers(runner):
    d = runner.describe()
    assert d["backend"] == runner.name and d["precision"] == runner.precision
    assert isinstance(d["emulated"], bool)


def test_agrees_with_torch_fp32(runner, torch_reference):
    if getattr(type(runner), "fake", False):
        pytest.skip(f"{runner.name} is a fake: its logits are not the model's")
    x, ref = torch_reference
    out = runner.infer(x)
    diff = float(np.abs(out - ref).max())
    agreement = float((out.argmax(1) == ref.argmax(1)).mean())
    p = runner.precision
    if p == "fp32":
        assert diff <= MAX_ABS_DIFF["fp32"], f"{runner.name} fp32 max |Δlogit| {diff:.3g}"
    elif p == "fp16":
        assert diff <= MAX_ABS_DIFF["fp16"] or agreement >= MIN_AGREEMENT["fp16"], (diff, agreement)
    else:
        assert agreement >= MIN_AGREEMENT[p], f"{runner.name} {p} agreement {agreement:.3f}"
        assert diff > 0, "an int8 model that reproduces fp32 exactly was not quantized"

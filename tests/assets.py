"""Tiny models, runs, bundles and images shared by every test area (through tests/conftest.py).

Polygraphy's ``tests/models/meta.py`` idea: one module knows how the test
assets are made, conftests only turn them into fixtures, and helpers
(tests/bundle_cache.py for the Python 3.8 job) import it by name, never by
path. Importing this module needs numpy only: torch, ONNX and OpenCV are
imported inside the builders, so the device-runtime job (no torch) can import
it and skip, or use prebuilt bundles (tests/bundle_cache.py).

* ``tiny_images`` -- uint8 NHWC images whose class is their dominant colour.
* ``save_run`` / ``untrained_run`` -- a run folder as ``edgemask train`` writes it.
* ``make_tiny_bundle`` -- the trained 3-class seed_cnn at 32x32, fp32/fp16/int8
  (the ``backends_bundle`` / ``tiny_bundle`` fixtures).
* ``make_service_bundle`` -- an untrained fp32-only bundle for the service tests.
* ``scene_folder`` -- an ImageFolder of whole photos of a real face (the face-cropping tests).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 32
ARCH_ARGS = {"num_classes": 3, "input_size": SIZE, "widths": [8, 16], "hidden": 16}
CLASS_NAMES = ["mask", "no_mask", "mask_incorrect"]


def save_run(
    run_dir: Path, model: Any, arch_args: dict[str, Any], class_names: list[str] | None = None, arch: str = "seed_cnn"
) -> Path:
    """Write ``model`` as a run folder (``weights.safetensors`` + ``model.json``); returns ``run_dir``."""
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files

    names = list(CLASS_NAMES if class_names is None else class_names)
    save_run_files(Path(run_dir), model, run_info_for(model, arch, resolved_args(arch, **arch_args), names))
    return Path(run_dir)


def untrained_run(run_dir: Path, arch_args: dict[str, Any], seed: int = 0) -> Path:
    """A seeded, untrained ``seed_cnn`` with ``arch_args`` saved as a run folder."""
    import torch

    from edgemask.models import create_model

    torch.manual_seed(seed)
    return save_run(run_dir, create_model("seed_cnn", **arch_args).eval(), arch_args)


def tiny_images(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 NHWC RGB images and labels: class k has a bright square in channel k.

    Returns:
        images (n, size, size, 3) uint8, labels (n,) int64.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    img = rng.uniform(0.0, 0.45, (n, size, size, 3))
    lo, hi = size // 4, size - size // 4
    for i, k in enumerate(labels):
        img[i, lo:hi, lo:hi, k] += 0.5
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels


def train_tiny_model():
    import torch

    from edgemask.models import create_model

    torch.manual_seed(0)
    model = create_model("seed_cnn", **ARCH_ARGS)
    x_u8, y = tiny_images(256, seed=1)
    x = torch.from_numpy(x_u8).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    # One thread for this tiny net: with two, OpenMP barriers cost more than the
    # math, and a busy second core (another test process) makes it ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(40):
            idx = torch.randint(0, len(y), (32,))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _export_available() -> bool:
    try:
        from edgemask.export import export_bundle  # noqa: F401
    except (ImportError, AttributeError):
        return False
    return True


def make_tiny_bundle(tmp_path: Path) -> Path:
    """Write a complete bundle into ``tmp_path / "bundle"`` and return its path."""
    if not _export_available():
        return _make_tiny_bundle_by_hand(tmp_path)
    import cv2

    from edgemask.export import export_bundle

    tmp_path = Path(tmp_path)
    save_run(tmp_path / "run", train_tiny_model(), ARCH_ARGS)
    # Calibrate on images like the ones the tests feed (an ImageFolder, one folder per class).
    x, y = tiny_images(48, seed=2)
    for i, (img, label) in enumerate(zip(x, y)):
        d = tmp_path / "calib" / CLASS_NAMES[label]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:03d}.png"), img[:, :, ::-1])  # RGB -> BGR
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f'source = "{(tmp_path / "calib").as_posix()}"\ncount = 32\nseed = 0\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return export_bundle(tmp_path / "run", tmp_path / "bundle", calibration=recipe, name="tiny", golden_count=8)


def _make_tiny_bundle_by_hand(tmp_path: Path) -> Path:
    """The bundle export_bundle would write, built directly.

    Files: weights.safetensors, model.fp32.onnx, model.fp16.onnx, model.int8.onnx
    (QDQ, per-channel, symmetric), golden/inputs.npy, golden/outputs.fp32.npy,
    manifest.json with the SHA-256 of every file.
    """
    import onnx
    import torch
    from onnxconverter_common import float16
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgemask.bundle import BundleManifest, InputSpec, ModelEntry, Preprocessing
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files
    from edgemask.utils.io import atomic_write_bytes, sha256_file

    out = Path(tmp_path) / "bundle"
    out.mkdir(parents=True, exist_ok=False)
    model = train_tiny_model()
    args = resolved_args("seed_cnn", **ARCH_ARGS)
    info = run_info_for(model, "seed_cnn", args, CLASS_NAMES)
    save_run_files(out, model, info)
    (out / "model.json").unlink()  # a bundle carries the manifest instead

    dummy = torch.zeros(1, 3, SIZE, SIZE)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but it is the one OpenCV reads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(out / "model.fp32.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )
    fp16 = float16.convert_float_to_float16(onnx.load(str(out / "model.fp32.onnx")), keep_io_types=True)
    onnx.save(fp16, str(out / "model.fp16.onnx"))

    calib_u8, _ = tiny_images(32, seed=2)
    calib = calib_u8.astype(np.float32).transpose(0, 3, 1, 2) / 255.0

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self._it, None)

    quantize_static(
        str(out / "model.fp32.onnx"),
        str(out / "model.int8.onnx"),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )

    golden_u8, _ = tiny_images(8, seed=3)
    golden = golden_u8.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    with torch.no_grad():
        golden_out = model(torch.from_numpy(golden)).numpy()
    (out / "golden").mkdir()
    import io

    for name, arr in (("inputs.npy", golden), ("outputs.fp32.npy", golden_out)):
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(out / "golden" / name, buf.getvalue())

    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            rel = p.relative_to(out).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = BundleManifest(
        name="tiny",
        version=1,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        arch="seed_cnn",
        arch_args=args,
        class_names=list(CLASS_NAMES),
        input=InputSpec(shape=["N", 3, SIZE, SIZE]),
        preprocessing=Preprocessing(mean=info.mean, std=info.std),
        models=[
            ModelEntry(file="weights.safetensors", precision="fp32", format="safetensors"),
            ModelEntry(file="model.fp32.onnx", precision="fp32", format="onnx", opset=17),
            ModelEntry(file="model.fp16.onnx", precision="fp16", format="onnx", opset=17),
            ModelEntry(
                file="model.int8.onnx",
                precision="int8",
                format="onnx",
                opset=17,
                quantization={"format": "QDQ", "method": "minmax", "per_channel": True, "symmetric": True},
            ),
        ],
        files=files,
        producer={"torch": torch.__version__, "onnx": onnx.__version__},
        opset=17,
        golden={
            "inputs": "golden/inputs.npy",
            "outputs": "golden/outputs.fp32.npy",
            "count": len(golden),
            "tolerance": {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.5},
        },
    )
    atomic_write_bytes(out / "manifest.json", manifest.to_json().encode())
    return out


def make_service_bundle(root: Path) -> Path:
    """A real exported bundle (untrained 3-class seed_cnn at 32×32, fp32 ONNX only) at ``root / "bundle"``."""
    from edgemask.export import export_bundle

    root = Path(root)
    untrained_run(root / "run", dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16), seed=3)
    recipe = root / "recipe.toml"
    recipe.write_text('source = "synth"\ncount = 8\nstratified = true\nseed = 7\n')
    return export_bundle(root / "run", root / "bundle", calibration=str(recipe), precisions="fp32", opencv_check=False)


def scene_folder(root: Path) -> Path:
    """A small ImageFolder that is mostly whole scenes, at ``root`` (needs OpenCV and scikit-image).

    without_mask/: whole photos of a real face (wide, tall, square), a face crop, and a faceless photo;
    with_mask/: two square face crops (a painted mask)."""
    import cv2

    from edgemask.data.realfaces import ASTRONAUT_FACE_BOX, astronaut_variants

    v = astronaut_variants()
    x0, y0, x1, y1 = (int(c) for c in ASTRONAUT_FACE_BOX)
    root = Path(root)
    wo, wm = root / "without_mask", root / "with_mask"
    wo.mkdir(parents=True)
    wm.mkdir(parents=True)
    cv2.imwrite(str(wo / "scene_square.png"), v["no_mask"])  # 512x512, face 95 px: a scene
    cv2.imwrite(str(wo / "scene_wide.png"), v["no_mask"][0:300, :])  # 512x300
    cv2.imwrite(str(wo / "scene_tall.png"), v["no_mask"][:, 100:400])  # 300x512
    cv2.imwrite(str(wo / "crop.png"), v["no_mask"][y0 - 10 : y1 + 10, x0 - 10 : x1 + 10])  # a face crop
    rng = np.random.default_rng(0)
    cv2.imwrite(str(wo / "no_face.png"), rng.integers(0, 255, (200, 400, 3), dtype=np.uint8))
    for k in range(2):
        cv2.imwrite(str(wm / f"m{k}.png"), v["mask"][y0 - 5 * k : y1 + 5 * k, x0 - 5 * k : x1 + 5 * k])
    return root

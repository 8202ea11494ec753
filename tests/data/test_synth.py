"""Tests for the synthetic face-mask generator (edgemask.data.synth)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgemask.data import synth
from edgemask.data.labels import CLASS_NAMES, VOC_LABEL_OF_CLASS
from edgemask.data.synth import head as synth_head
from edgemask.data.synth import writer as synth_writer
from edgemask.errors import DataError

N, SIZE, SCENES = 30, 32, 2


def _write(root: Path, name: str, **kw) -> tuple[Path, dict]:
    args = {"n": N, "size": SIZE, "seed": 0, "n_scenes": SCENES}
    args.update(kw)
    out = root / name
    return out, synth.write_synth_dataset(out, **args)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two writes with the same arguments and one with another seed."""
    root = tmp_path_factory.mktemp("synth")
    a, meta = _write(root, "a")
    b, _ = _write(root, "b")
    c, _ = _write(root, "c", seed=1)
    return {"a": a, "b": b, "c": c, "meta": meta, "root": root}


def _jsonl(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "crops.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- layout
def test_dataset_json_and_layout(made):
    a, meta = made["a"], made["meta"]
    on_disk = json.loads((a / "dataset.json").read_text())
    assert on_disk == meta
    assert meta == {
        "format": "edgemask-synth",
        "version": 1,
        "seed": 0,
        "n": N,
        "size": SIZE,
        "n_scenes": SCENES,
        "classes": list(CLASS_NAMES),
        "counts": {c: N // 3 for c in CLASS_NAMES},
        "generator": "edgemask.data.synth v1",
    }
    for c in CLASS_NAMES:
        pngs = sorted((a / "crops" / c).glob("*.png"))
        assert len(pngs) == N // 3
        img = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    names = {p.name for p in (a / "crops").rglob("*.png")}
    assert names == {f"{i:06d}.png" for i in range(N)}
    assert sorted(p.name for p in (a / "scenes" / "images").iterdir()) == [f"scene_{k:04d}.png" for k in range(SCENES)]
    assert sorted(p.name for p in (a / "scenes" / "annotations").iterdir()) == [
        f"scene_{k:04d}.xml" for k in range(SCENES)
    ]
    # nothing left behind by the atomic write
    assert sorted(p.name for p in made["root"].iterdir()) == ["a", "b", "c"]


def test_unbalanced_remainder_goes_to_first_classes(tmp_path):
    _, meta = _write(tmp_path, "d", n=32, n_scenes=0)
    assert meta["counts"] == {"mask": 11, "no_mask": 11, "mask_incorrect": 10}
    assert not any((tmp_path / "d" / "scenes" / "images").iterdir())


# ----------------------------------------------------------------------------- determinism
def test_same_arguments_give_identical_bytes(made):
    fa, fb = _files(made["a"]), _files(made["b"])
    assert fa.keys() == fb.keys()
    assert len(fa) == N + 2 * SCENES + 2
    for k in fa:
        assert fa[k] == fb[k], k


def test_other_seed_gives_other_images(made):
    fa, fc = _files(made["a"]), _files(made["c"])
    crops = [k for k in fa if k.startswith("crops/")]
    differ = sum(fa[k] != fc.get(k) for k in crops)
    assert differ == len(crops)
    assert fa["scenes/images/scene_0000.png"] != fc["scenes/images/scene_0000.png"]


def test_items_depend_only_on_their_index(made, tmp_path):
    # A longer run must start with exactly the same crops: item i uses rng([seed, kind, i]) only.
    longer, _ = _write(tmp_path, "e", n=N + 3, n_scenes=0)
    fa, fl = _files(made["a"]), _files(longer)
    for k, v in fa.items():
        if k.startswith("crops/") and k.endswith(".png"):
            assert fl[k] == v, k


# ----------------------------------------------------------------------------- crops.jsonl
def test_crops_jsonl_matches_folders(made):
    rows = _jsonl(made["a"])
    assert [r["file"] for r in rows] == [f"crops/{synth.crop_label(i)}/{i:06d}.png" for i in range(N)]
    for r in rows:
        folder = r["file"].split("/")[1]
        assert r["label"] == folder
        assert (made["a"] / r["file"]).is_file()
        assert r["source"] in ("drawn", "lfw")
        assert isinstance(r["glasses"], bool)
        assert -20 <= r["rotation_deg"] <= 20 and 0.5 < r["scale"] < 1.5
        if folder == "no_mask":
            assert r["mask_style"] is None and r["mask_color"] is None and r["mask_polygon"] is None
            assert r["incorrect_kind"] is None
        else:
            assert r["mask_style"] in ("surgical", "cloth", "patterned", "n95")
            assert len(r["mask_color"]) == 3 and all(0 <= v <= 255 for v in r["mask_color"])
            assert r["incorrect_kind"] == (None if folder == "mask" else r["incorrect_kind"])
            if folder == "mask_incorrect":
                assert r["incorrect_kind"] in ("nose_out", "chin")


# ----------------------------------------------------------------------------- VOC scenes
def test_voc_xml_matches_render_scene(made):
    a = made["a"]
    for k in range(SCENES):
        root = ET.parse(a / "scenes" / "annotations" / f"scene_{k:04d}.xml").getroot()
        assert root.tag == "annotation"
        assert root.findtext("folder") == "images"
        assert root.findtext("filename") == f"scene_{k:04d}.png"
        w, h, d = (int(root.find("size").findtext(t)) for t in ("width", "height", "depth"))
        img = cv2.imread(str(a / "scenes" / "images" / f"scene_{k:04d}.png"))
        assert img.shape == (h, w, d) == (480, 640, 3)
        # the annotations are exactly what the generator placed
        _, objects = synth.render_scene(np.random.default_rng([0, 1, k]))
        xml_objects = root.findall("object")
        assert len(xml_objects) == len(objects)
        for o, ref in zip(xml_objects, objects):
            assert o.findtext("name") == VOC_LABEL_OF_CLASS[ref["label"]]
            assert o.findtext("pose") == "Unspecified"
            assert o.findtext("truncated") == "0" and o.findtext("difficult") == "0"
            bb = o.find("bndbox")
            box = tuple(int(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert box == tuple(ref["box"])


def test_scene_boxes_inside_frame_and_apart():
    seen_labels = set()
    n_faces = 0
    for k in range(10):
        img, objects = synth.render_scene(np.random.default_rng([123, 1, k]), max_faces=4)
        assert img.shape == (480, 640, 3) and img.dtype == np.uint8
        assert len(objects) <= 4
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            assert all(isinstance(v, int) for v in o["box"])
            assert 0 <= x0 < x1 <= 639 and 0 <= y0 < y1 <= 479
            assert 35 <= y1 - y0 <= 230  # faces are drawn 48..200 px tall (rotation changes the box a little)
            assert 1.0 < (y1 - y0) / (x1 - x0) < 2.0  # face-shaped, not a bug-sized sliver
            seen_labels.add(o["label"])
        for i, p in enumerate(objects):
            for q in objects[i + 1 :]:
                a, b = p["box"], q["box"]
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], "faces overlap"
        n_faces += len(objects)
    assert n_faces >= 10
    assert seen_labels == set(CLASS_NAMES)


def test_scene_faces_are_drawn_in_their_boxes():
    # Inside a face box the picture has face detail (eyes, mouth, mask edges):
    # its mean absolute Laplacian beats a same-size patch right beside it at
    # least most of the time. Would fail if boxes were computed in the wrong place.
    wins = total = 0
    for k in range(8):
        img, objects = synth.render_scene(np.random.default_rng([7, 1, k]))
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 1.0), cv2.CV_32F))
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            w, h = x1 - x0, y1 - y0
            ix0, ix1, iy0, iy1 = x0 + w // 4, x1 - w // 4, y0 + h // 4, y1 - h // 4  # the face's inner half
            for dx, dy in ((-2 * w, 0), (2 * w, 0), (0, -2 * h)):
                sx0, sy0 = ix0 + dx, iy0 + dy
                if 0 <= sx0 and sx0 + (ix1 - ix0) < 640 and 0 <= sy0 and sy0 + (iy1 - iy0) < 480:
                    inner = lap[iy0:iy1, ix0:ix1].mean()
                    beside = lap[sy0 : sy0 + (iy1 - iy0), sx0 : sx0 + (ix1 - ix0)].mean()
                    wins += inner > beside
                    total += 1
    assert total >= 5
    assert wins / total >= 0.7


# ----------------------------------------------------------------------------- labels are what is drawn
def _inside(poly, pt) -> float:
    """Signed pixel distance of pt to the polygon (> 0 inside)."""
    return cv2.pointPolygonTest(np.asarray(poly, np.float32), (float(pt[0]), float(pt[1])), True)


@pytest.mark.parametrize("label", CLASS_NAMES)
def test_mask_geometry_matches_label(label):
    kinds = set()
    sources = set()
    for i in range(60):
        img, a = synth.render_face(np.random.default_rng([5, 0, i]), label, 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        json.dumps(a)  # JSON-serialisable
        assert a["label"] == label
        lm, poly = a["landmarks"], a["mask_polygon"]
        sources.add(a["source"])
        if label == "no_mask":
            assert poly is None
            continue
        nose, mouth = _inside(poly, lm["nose_tip"]), _inside(poly, lm["mouth"])
        kind = a["incorrect_kind"]
        kinds.add(kind)
        if label == "mask":
            assert kind is None
            assert nose > 1.5 and mouth > 1.5, (i, nose, mouth)  # covers nose AND mouth
        elif kind == "nose_out":
            assert nose < -1.5 and mouth > 1.0, (i, nose, mouth)  # nose clearly out, mouth covered
        else:
            assert kind == "chin"
            assert nose < -5 and mouth < -2, (i, nose, mouth)  # both out: the mask hangs under the chin
            assert max(p[1] for p in poly) > lm["chin"][1]  # and reaches below the chin
    assert sources == {"drawn", "lfw"}
    if label == "mask_incorrect":
        assert kinds == {"nose_out", "chin"}


def _is_mask_shade(px: np.ndarray, mcol: np.ndarray) -> np.ndarray:
    """Per pixel of ``px`` (..., 3): is it the mask colour times a shade factor (pleats, seams: 0.75..1.08)?"""
    f = (px @ mcol) / max(float(mcol @ mcol), 1.0)
    return (f >= 0.7) & (f <= 1.12) & (np.linalg.norm(px - f[..., None] * mcol, axis=-1) < 20)


def _covered(img: np.ndarray, pt, mcol: np.ndarray) -> bool:
    """Is the 3×3 patch at ``pt`` mask-coloured? A solid mask is uniform there; a mouth whose lips
    happen to be a dark shade of the mask colour is not (lips, lip line and skin vary), so most
    of the nine pixels must pass."""
    x, y = round(pt[0]), round(pt[1])
    return bool(_is_mask_shade(img[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(float), mcol).mean() >= 0.75)


def test_pixels_at_nose_and_mouth_match_label():
    # Before lighting/noise the drawn pixels themselves must tell the label: on a
    # solid mask whose colour is far from the skin, the pixel at the nose is a
    # shade of the mask colour for `mask` and not for `nose_out`/`chin`; the
    # mouth pixel is mask-coloured except for `chin`. Fails if a mask is drawn
    # anywhere but its polygon, or the landmarks drift from the drawn features.
    checked = {"mask": 0, "nose_out": 0, "chin": 0}
    for i in range(400):
        label = ("mask", "mask_incorrect")[i % 2]
        canvas, a = synth_head._render_clean(np.random.default_rng([11, 0, i]), label, 64)
        if a["mask_style"] == "patterned":
            continue
        skin = np.array(a["skin_tone"], float)
        mcol = np.array(a["mask_color"], float)
        if np.linalg.norm(skin - mcol) < 90:
            continue
        nose = _covered(canvas, a["landmarks"]["nose_tip"], mcol)
        mouth = _covered(canvas, a["landmarks"]["mouth"], mcol)
        kind = a["incorrect_kind"] or "mask"
        expected = {"mask": (True, True), "nose_out": (False, True), "chin": (False, False)}[kind]
        assert (nose, mouth) == expected, (i, kind, a["source"], a["mask_style"])
        checked[kind] += 1
    assert min(checked.values()) >= 15, checked


def test_lfw_faces_are_used_and_plain_for_no_mask():
    found = 0
    for i in range(40):
        _, a = synth.render_face(np.random.default_rng([3, 0, i]), "no_mask", 32)
        if a["source"] == "lfw":
            found += 1
            assert 0 <= a["lfw_index"] < synth.LFW_TRAIN_FACES and a["mask_polygon"] is None
    assert 8 <= found <= 26  # about 40%


def test_held_out_lfw_faces_never_appear():
    """Faces LFW_TRAIN_FACES..99 are reserved for the real-face check: no crop or scene draws them."""
    used = set()
    for i in range(400):
        _, a = synth.render_face(np.random.default_rng([5, 0, i]), CLASS_NAMES[i % 3], 16)
        if a["source"] == "lfw":
            used.add(a["lfw_index"])
    assert len(used) >= 40 and max(used) < synth.LFW_TRAIN_FACES < 100


def test_render_face_small_size_and_bad_input():
    img, _ = synth.render_face(np.random.default_rng(0), "mask", 16)
    assert img.shape == (16, 16, 3)
    with pytest.raises(DataError, match="at least 16"):
        synth.render_face(np.random.default_rng(0), "mask", 8)
    with pytest.raises(DataError, match="unknown class"):
        synth.render_face(np.random.default_rng(0), "with_mask", 32)


# ----------------------------------------------------------------------------- errors, overwrite, progress
def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(DataError, match="exists; pass --overwrite or choose another --out"):
        synth.write_synth_dataset(out, n=3, size=16, n_scenes=0)
    assert (out / "stale.txt").read_text() == "old"  # untouched
    meta = synth.write_synth_dataset(out, n=3, size=16, n_scenes=0, overwrite=True)
    assert meta["counts"] == {c: 1 for c in CLASS_NAMES}
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"n": 2}, "number of crops"),
        ({"size": 15}, "crop size"),
        ({"n_scenes": -1}, "number of scenes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path, kw, msg):
    args = {"n": 3, "size": 16, "n_scenes": 0}
    args.update(kw)
    with pytest.raises(DataError, match=msg):
        synth.write_synth_dataset(tmp_path / "x", **args)
    assert not any(tmp_path.iterdir())


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    # An error while writing (here: in the background PNG writer) reaches the
    # caller, and neither the output nor a temporary folder is left.
    def broken(img):
        raise OSError("disk full")

    monkeypatch.setattr(synth_writer, "_png", broken)
    with pytest.raises(OSError, match="disk full"):
        synth.write_synth_dataset(tmp_path / "f", n=6, size=16, n_scenes=0)
    assert list(tmp_path.iterdir()) == []


def test_progress_reports_every_item(tmp_path):
    calls = []
    synth.write_synth_dataset(tmp_path / "p", n=4, size=16, n_scenes=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 5) for i in range(1, 6)]


def test_import_is_light():
    # skimage (and cv2) load only when something is drawn
    code = "import sys, edgemask.data.synth; print('skimage' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.split() == ["False", "False"]

"""Face detectors: OpenCV Haar cascades (alone or fused), YuNet, or none.

All detectors take a BGR uint8 frame and return :class:`Detection` boxes in
that frame's pixel coordinates. They detect on a copy downscaled to
``detect_width`` (320 px by default): a Haar cascade's cost grows with the
pixel count, and at 640×480 the frontal cascade alone takes ~55 ms on one of
our 2 cores — more than a 30 FPS frame budget.

Why a fusion: the frontal-face cascade was trained on bare faces; a mask
hides the nose and mouth it looks for, and it misses most masked faces (see
``benchmarks/detector_recall.py`` for numbers). ``haar-fusion`` runs the
frontal cascade on three grey views of the frame and merges the boxes with
non-maximum suppression:

* ``gray`` — the usual luma (bare faces);
* ``value`` — the per-pixel max of B, G, R: a coloured mask becomes about as
  bright as skin, so the lower face looks plain instead of cut by a dark
  edge, which the cascade tolerates far better;
* ``red`` — the red channel, where skin is bright and even, and blue/green
  masks turn dark in a different way than in luma.

Cascades we measured and left out: the profile cascade (1/10 of the frontal
recall on these scenes at 3–5× its cost), the eye cascades (their 20 px
window misses the eyes of faces under ~100 px and fires on texture) and the
upper-body cascade (finds almost no heads). A CNN detector does much better
on masked faces: the bundle's own learned detector (``--detector bundle``, the
default when the bundle has one; :mod:`edgemask.vision.bundle_detector`), or a
YuNet model (``--detector yunet:FILE``, or ``--face-model FILE``).
Each view is a named entry of :data:`HAAR_COMPONENTS`, so the recall
benchmark can measure them one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError, NotAvailableError
from edgemask.vision.face_detector import Detection, FaceDetector

# --------------------------------------------------------------------------- geometry


def iou(a: Any, b: Any) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _containment(a: Any, b: Any) -> float:
    """Fraction of the smaller box covered by the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def merge_detections(dets: list[Detection], iou_threshold: float = 0.3, contain: float = 0.7) -> list[Detection]:
    """Greedy NMS over detections of several detectors.

    Boxes are taken best score first; a box that overlaps a kept one by IoU
    >= ``iou_threshold``, or lies mostly (``contain``) inside it or around
    it, is the same face found twice.
    """
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(iou(d.box, k.box) < iou_threshold and _containment(d.box, k.box) < contain for k in kept):
            kept.append(d)
    return kept


# --------------------------------------------------------------------------- Haar


@dataclass(frozen=True)
class HaarComponent:
    """One cascade run on one view of the frame.

    Attributes:
        cascade: file name in ``cv2.data.haarcascades``.
        channel: how the grey image is made: ``gray`` | ``value`` (max of B, G, R) | ``red``.
        mirrored: also run on the horizontally flipped image (the profile
            cascade only knows one side).
        min_neighbors: OpenCV's grouping threshold; higher = fewer, surer boxes.
        weight: score multiplier, so bare-face frontal hits win NMS ties.
    """

    cascade: str
    channel: str = "gray"
    mirrored: bool = False
    min_neighbors: int = 4
    weight: float = 1.0


#: Named cascade runs; ``haar`` uses ``frontal`` only, ``haar-fusion`` uses :data:`FUSION`.
HAAR_COMPONENTS: dict[str, HaarComponent] = {
    "frontal": HaarComponent("haarcascade_frontalface_default.xml", "gray", min_neighbors=4, weight=1.0),
    "frontal-value": HaarComponent("haarcascade_frontalface_default.xml", "value", min_neighbors=4, weight=0.9),
    "frontal-red": HaarComponent("haarcascade_frontalface_default.xml", "red", min_neighbors=4, weight=0.85),
    "frontal-alt2": HaarComponent("haarcascade_frontalface_alt2.xml", "gray", min_neighbors=3, weight=0.95),
    "profile": HaarComponent("haarcascade_profileface.xml", "gray", mirrored=True, min_neighbors=4, weight=0.7),
}
FUSION: tuple[str, ...] = ("frontal", "frontal-value", "frontal-red")

_CASCADES: dict[str, Any] = {}


def _cascade(name: str) -> Any:
    """Load a cascade shipped with the OpenCV wheel (cached; loading parses XML)."""
    import cv2

    if name not in _CASCADES:
        base = getattr(getattr(cv2, "data", None), "haarcascades", "")
        if not hasattr(cv2, "CascadeClassifier") or not base:
            raise NotAvailableError(
                "this OpenCV has no Haar cascades (OpenCV 5 dropped CascadeClassifier); "
                "install opencv-python-headless<5 or use --detector yunet --face-model PATH"
            )
        c = cv2.CascadeClassifier(str(Path(base) / name))
        if c.empty():
            raise NotAvailableError(
                f"cannot load the Haar cascade {name} from {base}; reinstall opencv-python-headless"
            )
        _CASCADES[name] = c
    return _CASCADES[name]


def _channel(small_bgr: np.ndarray, kind: str) -> np.ndarray:
    import cv2

    if kind == "gray":
        g = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
    elif kind == "value":
        g = small_bgr.max(axis=2)
    elif kind == "red":
        g = np.ascontiguousarray(small_bgr[:, :, 2])
    else:
        raise ConfigError(f"unknown Haar channel {kind!r}; use gray, value or red")
    return cv2.equalizeHist(g)


def detect_scale(frame_width: int, detect_width: int, min_face: int, window: int) -> float:
    """The downscale factor for detection: to ``detect_width``, but never so far
    that a face of ``min_face`` frame pixels falls under the detector's
    ``window`` (its smallest findable face in its own input), and never up.

    So ``--min-face 24`` on a 640×480 frame detects at full size instead of
    shrinking the 24-px faces to 12 px, where no cascade can see them.
    """
    scale = min(1.0, detect_width / frame_width) if detect_width and frame_width else 1.0
    if min_face > 0:
        scale = max(scale, min(1.0, window / float(min_face)))
    return scale


def smallest_findable_face(frame_width: int, detect_width: int, min_face: int, window: int) -> int:
    """The smallest face side (frame pixels) a detector can return at this frame width."""
    s = detect_scale(frame_width, detect_width, min_face, window)
    return int(np.ceil(max(float(min_face), window / s)))


class HaarDetector(FaceDetector):
    """OpenCV Haar cascades, one or several fused (see the module docstring).

    Args:
        components: names from :data:`HAAR_COMPONENTS`.
        detect_width: downscale frames to this width first (0 = full size),
            but less when that would push ``min_face`` under the cascade's
            24-px window (:func:`detect_scale`).
        min_face: smallest face side to find, in full-frame pixels.
        scale_factor: image pyramid step of ``detectMultiScale``.
    """

    name = "haar"
    #: the frontal cascade's window: no smaller face exists for it
    window = 24

    def __init__(
        self,
        components: tuple[str, ...] = ("frontal",),
        detect_width: int = 320,
        min_face: int = 40,
        scale_factor: float = 1.1,
    ):
        unknown = [c for c in components if c not in HAAR_COMPONENTS]
        if unknown or not components:
            raise ConfigError(f"unknown Haar component(s) {unknown}; choose from {', '.join(HAAR_COMPONENTS)}")
        self.components = tuple(components)
        self.phases = len(self.components)
        self.detect_width = int(detect_width)
        self.min_face = int(min_face)
        self.scale_factor = float(scale_factor)
        for c in self.components:
            _cascade(HAAR_COMPONENTS[c].cascade)  # fail now, not on the first frame

    def describe(self) -> dict[str, Any]:
        return {
            "detector": "haar-fusion" if len(self.components) > 1 else "haar",
            "components": list(self.components),
            "detect_width": self.detect_width,
            "min_face": self.min_face,
            "scale_factor": self.scale_factor,
            "smallest_face_640": self.smallest_face(640),
        }

    def smallest_face(self, frame_width: int) -> int:
        """Smallest findable face side, in pixels of a frame this wide."""
        return smallest_findable_face(frame_width, self.detect_width, self.min_face, self.window)

    def detect(self, bgr: np.ndarray, phase: int | None = None) -> list[Detection]:
        import cv2

        h, w = bgr.shape[:2]
        scale = detect_scale(w, self.detect_width, self.min_face, self.window)
        small = (
            cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        )
        views: dict[str, np.ndarray] = {}
        dets: list[Detection] = []
        comps = self.components if phase is None else (self.components[phase % self.phases],)
        for cname in comps:
            comp = HAAR_COMPONENTS[cname]
            if comp.channel not in views:
                views[comp.channel] = _channel(small, comp.channel)
            img = views[comp.channel]
            casc = _cascade(comp.cascade)
            # The cascade's own window (24 px for frontal, 20 for profile) is its floor.
            side = max(int(self.min_face * scale), 20)
            for flip in (False, True) if comp.mirrored else (False,):
                view = cv2.flip(img, 1) if flip else img
                boxes, neighbours = casc.detectMultiScale2(
                    view, scaleFactor=self.scale_factor, minNeighbors=comp.min_neighbors, minSize=(side, side)
                )
                for (x, y, bw, bh), n in zip(np.reshape(boxes, (-1, 4)), np.ravel(neighbours)):
                    if flip:
                        x = view.shape[1] - x - bw
                    # score: the grouping count (how many pyramid windows agreed), saturating at ~1
                    score = comp.weight * float(1.0 - np.exp(-float(n) / 8.0))
                    dets.append(Detection((x / scale, y / scale, (x + bw) / scale, (y + bh) / scale), score, cname))
        return merge_detections(dets) if len(comps) > 1 else sorted(dets, key=lambda d: -d.score)


# --------------------------------------------------------------------------- YuNet


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``) from an ONNX file.

    YuNet finds masked faces far better than Haar cascades; its model is not
    part of the OpenCV wheel (it is in the OpenCV model zoo,
    ``face_detection_yunet_2023mar.onnx``), so the user passes ``--face-model``.
    """

    name = "yunet"
    #: YuNet's smallest reliable face in its input (its finest anchors are ~10 px)
    window = 12

    def __init__(
        self,
        model_path: str,
        detect_width: int = 320,
        min_face: int = 40,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        option: str = "--face-model",
    ):
        import cv2

        p = Path(model_path)
        given = f"{option} {model_path}" if option == "--face-model" else f"{option}{model_path}"
        if not p.is_file():
            raise ConfigError(
                f"{given}: {model_path} does not exist; pass a YuNet ONNX file "
                "(face_detection_yunet_2023mar.onnx from the OpenCV model zoo)"
            )
        if not hasattr(cv2, "FaceDetectorYN"):
            raise NotAvailableError(
                "this OpenCV has no FaceDetectorYN (needs OpenCV >= 4.5.4); upgrade opencv-python-headless"
            )
        try:
            self._det = cv2.FaceDetectorYN.create(str(p), "", (320, 240), score_threshold, nms_threshold, top_k)
        except cv2.error as e:
            raise ConfigError(
                f"{given} is not a YuNet ONNX model OpenCV can load "
                f"({_cv_reason(e)}); pass face_detection_yunet_2023mar.onnx from the OpenCV model zoo"
            ) from None
        self.model_path = str(p)
        self.detect_width = int(detect_width)
        self.min_face = int(min_face)
        self.score_threshold = float(score_threshold)
        self._size: tuple[int, int] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "detector": "yunet",
            "model": self.model_path,
            "detect_width": self.detect_width,
            "min_face": self.min_face,
            "score_threshold": self.score_threshold,
            "smallest_face_640": self.smallest_face(640),
        }

    def smallest_face(self, frame_width: int) -> int:
        """Smallest findable face side, in pixels of a frame this wide."""
        return smallest_findable_face(frame_width, self.detect_width, self.min_face, self.window)

    def detect(self, bgr: np.ndarray, phase: int | None = None) -> list[Detection]:
        import cv2

        h, w = bgr.shape[:2]
        scale = detect_scale(w, self.detect_width, self.min_face, self.window)
        small = (
            cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        )
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._det.setInputSize(size)
            self._size = size
        _, faces = self._det.detect(small)
        out = []
        if faces is not None:
            for f in np.reshape(faces, (-1, 15)):  # x, y, w, h, 5 landmarks (x, y), score
                x, y, bw, bh = (float(v) / scale for v in f[:4])
                if max(bw, bh) < self.min_face:  # the longer side: a masked face's box is often cut short
                    continue
                out.append(
                    Detection(
                        (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)), float(f[14]), "yunet"
                    )
                )
        return out


def _cv_reason(e: Exception) -> str:
    """The human part of a cv2.error: not OpenCV's source path, error code or function name."""
    import re

    text = " ".join(str(e).split())
    m = re.search(r"error: \([^)]*\)\s*(.*?)(?: in function '[^']*')?$", text)
    reason = (m.group(1) if m else text).strip() or type(e).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


# --------------------------------------------------------------------------- none


class FixedRegionDetector(FaceDetector):
    """``--detector none``: a kiosk camera whose face is always in one place.

    Returns the ROI (or the whole frame) as the single face of every frame.
    """

    name = "none"

    def __init__(self, roi: tuple[int, int, int, int] | None = None):
        self.roi = roi

    def describe(self) -> dict[str, Any]:
        return {"detector": "none", "roi": list(self.roi) if self.roi else None}

    def detect(self, bgr: np.ndarray, phase: int | None = None) -> list[Detection]:
        h, w = bgr.shape[:2]
        if self.roi is None:
            return [Detection((0.0, 0.0, float(w), float(h)), 1.0, "fixed")]
        x, y, rw, rh = self.roi
        x0, y0 = min(x, w - 1), min(y, h - 1)
        return [Detection((float(x0), float(y0), float(min(w, x + rw)), float(min(h, y + rh))), 1.0, "fixed")]


# --------------------------------------------------------------------------- factory

#: ``--detector`` names (besides ``yunet:FILE``).
DETECTOR_NAMES = ("auto", "bundle", "haar", "haar-fusion", "yunet", "none")


def parse_detector(name: str, face_model: str = "") -> tuple[str, str]:
    """(kind, yunet file) of a ``--detector`` value: ``yunet:FILE`` is ``("yunet", FILE)``.

    ``--face-model FILE`` is the older spelling of ``--detector yunet:FILE``.

    Raises:
        ConfigError: an unknown name, or yunet without a model file.
    """
    name = (name or "auto").strip()
    if name.startswith("yunet:"):
        path = name[len("yunet:") :].strip()
        if not path:
            raise ConfigError(
                "--detector yunet: needs a file after the colon, e.g. "
                "--detector yunet:face_detection_yunet_2023mar.onnx"
            )
        if face_model and face_model != path:
            raise ConfigError(f"--detector {name} and --face-model {face_model} name two YuNet files; give one")
        return "yunet", path
    if name not in DETECTOR_NAMES:
        raise ConfigError(
            f"unknown --detector {name!r}; choose one of: {', '.join(DETECTOR_NAMES[:-1])}, "
            f"yunet:FILE, {DETECTOR_NAMES[-1]}"
        )
    if name == "yunet" and not face_model:
        raise ConfigError(
            "--detector yunet needs --face-model FILE, or write --detector yunet:FILE (a YuNet ONNX "
            "file, e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo)"
        )
    return name, face_model


def resolve_detector(name: str, face_model: str = "", bundle_has_detector: bool = False) -> tuple[str, str]:
    """The detector ``--detector NAME`` means here: ``auto`` = the bundle's when it has one,
    else YuNet with a model file, else the Haar fusion. Returns (kind, yunet file)."""
    kind, model = parse_detector(name, face_model)
    if kind == "auto":
        kind = "bundle" if bundle_has_detector else ("yunet" if model else "haar-fusion")
    return kind, model


def create_detector(
    name: str = "auto",
    *,
    face_model: str = "",
    detect_width: int = 320,
    min_face: int = 40,
    roi: tuple[int, int, int, int] | None = None,
    bundle: Any = None,
    backend: str = "onnxrt",
    precision: str = "fp32",
    backend_options: dict[str, Any] | None = None,
) -> FaceDetector:
    """A detector by ``--detector`` name.

    Args:
        name: ``auto`` (the bundle's learned detector when ``bundle`` has one,
            else YuNet with ``face_model``, else Haar fusion), ``bundle``,
            ``haar``, ``haar-fusion``, ``yunet`` (with ``face_model``), ``yunet:FILE`` or ``none``.
        bundle: a bundle folder or loaded Bundle, for ``bundle`` / ``auto``.
        backend, precision, backend_options: the runner of the bundle's detector.

    Raises:
        ConfigError: unknown name, unusable face model, ``bundle`` without a bundle.
        BundleError: ``bundle`` on a bundle that has no detector.
    """
    has = False
    if bundle is not None:
        from edgemask.backends import as_bundle

        bundle = as_bundle(bundle)
        has = bundle.has_detector
    kind, model = resolve_detector(name, face_model, has)
    option = "--detector yunet:" if str(name).startswith("yunet:") else "--face-model"
    if kind == "bundle":
        if bundle is None:
            raise ConfigError(
                "--detector bundle needs --bundle DIR (a bundle exported with 'edgemask export RUN --detector DET_RUN')"
            )
        from edgemask.vision.bundle_detector import detector_from_bundle

        return detector_from_bundle(bundle, backend, precision, min_face=min_face, **(backend_options or {}))
    makers: dict[str, Callable[[], FaceDetector]] = {
        "haar": lambda: HaarDetector(("frontal",), detect_width, min_face),
        "haar-fusion": lambda: HaarDetector(FUSION, detect_width, min_face),
        "yunet": lambda: YuNetDetector(model, detect_width, min_face, option=option),
        "none": lambda: FixedRegionDetector(roi),
    }
    return makers[kind]()


class FaceFinder:
    """``find_faces(bgr) -> boxes`` for the dataset readers' ``--crop-faces`` (:mod:`edgemask.data.facecrop`).

    ``data`` never imports ``vision``; the callers (the CLI, ``train()``,
    ``evaluate_run()``) hand this in. The detector is built on the first call,
    so loading a dataset that needs no cropping costs nothing: the Haar
    fusion at full resolution. ``name`` says which.
    """

    def __init__(self) -> None:
        self._det: FaceDetector | None = None
        self._name = ""

    @property
    def name(self) -> str:
        self._build()
        return self._name

    def _build(self) -> FaceDetector:
        if self._det is None:
            # The Haar fusion, not the shipped learned detector: on a whole photo of one large face the
            # learned one (trained on crowd-scale faces) also returns a larger box around face and
            # shoulders, and "the largest face" then picks that box (seen on the astronaut test scenes).
            self._det, self._name = create_detector("haar-fusion", detect_width=0, min_face=24), "haar-fusion"
        return self._det

    def __call__(self, bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        return [tuple(float(v) for v in d.box) for d in self._build().detect(bgr)]  # type: ignore[misc]


def face_finder() -> FaceFinder:
    """The default face finder for ``--crop-faces`` (see :class:`FaceFinder`)."""
    return FaceFinder()


__all__ = [
    "FUSION",
    "HAAR_COMPONENTS",
    "DETECTOR_NAMES",
    "Detection",
    "FaceDetector",
    "FaceFinder",
    "FixedRegionDetector",
    "HaarComponent",
    "HaarDetector",
    "YuNetDetector",
    "create_detector",
    "face_finder",
    "iou",
    "merge_detections",
    "parse_detector",
    "resolve_detector",
]

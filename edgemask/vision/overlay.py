"""Annotated frames: boxes, classes, FPS; an optional window and an MP4 recorder."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgemask.errors import ConfigError

log = logging.getLogger("edgemask.vision.overlay")

# BGR colours per class; unknown classes and "not decided yet" are grey.
CLASS_COLORS = {"mask": (80, 200, 60), "no_mask": (40, 40, 230), "mask_incorrect": (0, 170, 255)}
UNDECIDED = (170, 170, 170)


def draw_overlay(
    bgr: np.ndarray, faces: Iterable[dict[str, Any]], fps: float | None = None, status: str = ""
) -> np.ndarray:
    """Draw faces on a copy of ``bgr``.

    Args:
        bgr: (H, W, 3) uint8 frame (not modified).
        faces: dicts with ``box`` (x0, y0, x1, y1), ``track``, ``class`` (the
            voted class or None), ``confidence`` and ``alert`` (bool).
        fps: shown top-left when given.
        status: extra text after the FPS (e.g. "reconnecting").
    """
    import cv2

    out = bgr.copy()
    for f in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f["box"])
        cls = f.get("class")
        color = CLASS_COLORS.get(cls, UNDECIDED) if cls else UNDECIDED
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 3 if f.get("alert") else 2)
        label = f"#{f.get('track', '?')} {cls or '...'}"
        if cls and f.get("confidence") is not None:
            label += f" {float(f['confidence']) * 100:.0f}%"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(th + 4, y0)
        cv2.rectangle(out, (x0, ty - th - 4), (x0 + tw + 4, ty + base - 2), color, -1)
        cv2.putText(out, label, (x0 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    text = " ".join(t for t in (f"{fps:.1f} FPS" if fps is not None else "", status) if t)
    if text:
        cv2.putText(out, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def has_display() -> bool:
    """True when a window can be shown: a display is set and OpenCV has a GUI backend."""
    # DISPLAY / WAYLAND_DISPLAY are not edgemask knobs (edgemask/config.py): read where they matter.
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:  # opencv-python-headless raises here ("The function is not implemented")
        cv2.namedWindow("edgemask-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("edgemask-probe")
        return True
    except cv2.error:
        return False


class Display:
    """An OpenCV window; ``show`` returns False when the user pressed q or Esc."""

    def __init__(self, title: str = "edgemask"):
        self.title = title

    def show(self, bgr: np.ndarray) -> bool:
        import cv2

        cv2.imshow(self.title, bgr)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)


class VideoRecorder:
    """Annotated MP4 written to a temporary file and renamed into place on close.

    A crash leaves the previous recording untouched and a ``.partial`` file,
    never a truncated ``out.mp4`` that players choke on.

    Raises:
        ConfigError: the path cannot be written or no MP4 encoder is available.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], fourcc: str = "mp4v"):
        import cv2

        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial" + (self.path.suffix or ".mp4"), dir=self.path.parent
            )
            os.close(fd)
        except OSError as e:
            raise ConfigError(f"cannot write --record {self.path}: {e.strerror}; choose a writable folder") from None
        self.tmp = Path(tmp)
        self.size = size
        self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps or 30.0), size)
        if not self._w.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot open a {fourcc} video writer for {self.path}; use a .mp4 or .avi name")
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        if (bgr.shape[1], bgr.shape[0]) != self.size:  # a reconnected camera may come back at another size
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(bgr)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns the path (None if no frame was written)."""
        if self._w is None:
            return self.path if self.path.exists() else None
        self._w.release()
        self._w = None
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return self.path


__all__ = ["CLASS_COLORS", "Display", "VideoRecorder", "draw_overlay", "has_display"]

"""Opening a :class:`~edgemask.vision.source_spec.SourceSpec`: OpenCV captures and the photo-folder capture.

A capture is what one reader thread of :class:`~edgemask.vision.frame_source.FrameSource`
owns; :func:`open_capture` is its default opener and :func:`check_source` the
checks that need no waiting. Part of :mod:`edgemask.vision.sources`, which
re-exports every public name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Protocol

from edgemask.errors import ConfigError, NotAvailableError, SourceError
from edgemask.vision.source_spec import IMAGE_EXTENSIONS, SOURCE_KINDS, SourceSpec, list_cameras


class Capture(Protocol):
    """What a FrameSource needs from an OpenCV-like capture."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


class FolderCapture:
    """Images of a folder in name order (or one image file), read like a video.

    An unreadable (corrupt) image yields ``(True, None)`` so the source can
    count and skip it; the end of the folder yields ``(False, None)``.
    ``current`` names the file the last read returned (relative to the
    folder), so events can say which photo a face is in.
    """

    def __init__(self, folder: str):
        root = Path(folder)
        if root.is_file():
            self.root, self.files = root.parent, [root]
        else:
            self.root = root
            self.files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceError(f"image folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.pos = 0
        self.current: str | None = None

    def read(self) -> tuple[bool, Any]:
        import cv2

        if self.pos >= len(self.files):
            return False, None
        p = self.files[self.pos]
        self.pos += 1
        self.current = p.name
        return True, cv2.imread(str(p), cv2.IMREAD_COLOR)  # None for a corrupt file

    def release(self) -> None:
        self.pos = len(self.files)


def _has_gstreamer() -> bool:
    import cv2

    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m and m.group(1).upper() not in ("NO", "OFF"))


def check_source(spec: SourceSpec) -> None:
    """The checks of a source that need no waiting: run them before any long start-up work.

    A camera index with no ``/dev/videoN`` (the ones present are listed), a
    GStreamer or CSI source on an OpenCV without GStreamer, an image folder
    without images.

    Raises:
        SourceError / NotAvailableError: one line, with the fix.
    """
    if spec.kind == "camera":
        if os.name == "posix" and Path("/dev").is_dir() and not Path(f"/dev/video{spec.target}").exists():
            have = list_cameras()
            listed = ", ".join(f"{i} (/dev/video{i})" for i in have) if have else "none found"
            raise SourceError(
                f"camera {spec.target} does not exist (/dev/video{spec.target} is missing); cameras here: {listed}"
            )
    elif spec.kind in ("gstreamer", "csi"):
        if not _has_gstreamer():
            raise NotAvailableError(
                "this OpenCV build has no GStreamer support, which GStreamer and csi:// sources "
                "need; on a Jetson use JetPack's OpenCV (apt install python3-opencv) instead of "
                "the pip wheel"
            )
    elif spec.kind == "folder":
        try:
            names = list(Path(str(spec.target)).iterdir())
        except OSError as e:
            raise SourceError(f"cannot list image folder {spec.target}: {e.strerror or e}") from None
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in names):
            raise SourceError(f"image folder {spec.target} has no images ({', '.join(IMAGE_EXTENSIONS)})")


def open_capture(spec: SourceSpec, open_timeout_s: float = 10.0) -> Capture:
    """Open ``spec`` with OpenCV; raise SourceError (one line, with the fix) when it cannot be opened."""
    import cv2

    check_source(spec)
    if spec.kind == "folder" or spec.is_image:
        return FolderCapture(str(spec.target))
    ms = int(max(open_timeout_s, 0.1) * 1000)
    if spec.kind == "camera":
        cap = cv2.VideoCapture(int(spec.target), cv2.CAP_V4L2)
        if cap.isOpened():
            if spec.width and spec.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
            if spec.fps:
                cap.set(cv2.CAP_PROP_FPS, spec.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a backlog
    elif spec.kind in ("gstreamer", "csi"):
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
    elif spec.kind == "url":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    elif spec.kind == "file":
        cap = cv2.VideoCapture(str(spec.target))
    else:
        raise ConfigError(f"unknown source kind {spec.kind!r}; use one of {', '.join(SOURCE_KINDS)}")
    if not cap.isOpened():
        cap.release()
        hint = {
            "camera": "check that no other program uses it and that you are in the 'video' group",
            "url": "check the address, credentials and that the server is reachable from here "
            "(--log-level debug shows FFmpeg's own message)",
            "file": "it is not a video OpenCV can decode (try ffprobe on it, or --log-level debug)",
            "gstreamer": "run the pipeline with gst-launch-1.0 to see GStreamer's error",
            "csi": "run 'gst-launch-1.0 nvarguscamerasrc num-buffers=1 ! fakesink' to see the camera's error",
        }[spec.kind]
        raise SourceError(f"cannot open {spec.describe()}: {hint}")
    return cap


def file_position(cap: Any) -> float | None:
    """A file capture's frame position, or None when the capture cannot tell."""
    import cv2

    try:
        return float(cap.get(cv2.CAP_PROP_POS_FRAMES))
    except Exception:  # noqa: BLE001 - fakes and some backends have no get()
        return None


def before_last_frame(cap: Any) -> bool:
    """True when a file capture's position is known to lie before its last frame."""
    import cv2

    try:
        total = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        pos = float(cap.get(cv2.CAP_PROP_POS_FRAMES))
    except Exception:  # noqa: BLE001 - fakes and some backends have no get()
        return False
    return total > 0 and 0 <= pos < total - 1


__all__ = [
    "Capture",
    "FolderCapture",
    "check_source",
    "open_capture",
]

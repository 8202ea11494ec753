"""Frame sources that survive failing, freezing and hanging cameras: the public face.

The parts, each in its own module and all re-exported here:

* :mod:`~edgemask.vision.source_spec`: ``--camera`` / ``--source`` parsed into
  a :class:`SourceSpec` (camera, file, URL, image folder, GStreamer, CSI);
* :mod:`~edgemask.vision.captures`: opening a spec with OpenCV
  (:func:`open_capture`, :func:`check_source`) and the photo-folder
  capture (:class:`FolderCapture`);
* :mod:`~edgemask.vision.frame_source`: :class:`FrameSource`, the threaded
  reader with its stall / freeze watchdog and reconnects (its docstring says
  why a hung reader is abandoned, not released).

:class:`FrameSourceLike` is what the service loop needs from a source;
:class:`FrameSource` is the one implementation, and tests inject it with fake
openers rather than replacing it.
"""

from __future__ import annotations

from typing import Protocol

from edgemask.vision.captures import Capture, FolderCapture, check_source, open_capture
from edgemask.vision.frame_source import END_OF_STREAM, EndOfStream, Frame, FrameSource, SourceStats
from edgemask.vision.source_spec import (
    IMAGE_EXTENSIONS,
    SOURCE_KINDS,
    SourceSpec,
    list_cameras,
    parse_source,
    url_with_password,
)


class FrameSourceLike(Protocol):
    """What the service loop reads frames from (:class:`FrameSource` is one).

    Attributes:
        spec: what was opened; ``spec.live`` and ``spec.scenes`` choose how
            the loop detects and tracks, ``spec.describe()`` names it in logs.
        stats: running counters (reconnects, corrupt and dropped frames) the
            loop turns into metrics.
        connected: a capture is open and reading now.
        last_change_t: ``time.monotonic()`` when a live picture last changed
            (None: not yet, or not live): a frozen camera is not healthy.
        opened: :meth:`open` has succeeded once.
    """

    spec: SourceSpec
    stats: SourceStats
    connected: bool
    last_change_t: float | None

    @property
    def opened(self) -> bool: ...

    def open(self) -> None: ...

    def read(self, timeout: float = 0.5) -> Frame | EndOfStream | None:
        """The next frame; None when none came within ``timeout``; END_OF_STREAM at the end of a file."""
        ...

    def close(self) -> None: ...


__all__ = [
    "END_OF_STREAM",
    "IMAGE_EXTENSIONS",
    "SOURCE_KINDS",
    "Capture",
    "EndOfStream",
    "FolderCapture",
    "Frame",
    "FrameSource",
    "FrameSourceLike",
    "SourceSpec",
    "SourceStats",
    "list_cameras",
    "check_source",
    "open_capture",
    "parse_source",
    "url_with_password",
]

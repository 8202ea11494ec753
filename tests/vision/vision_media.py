"""Real video files and fake captures for the vision tests (imported by name: module names must be unique across tests/)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np


def numbered_frame(i: int, w: int = 320, h: int = 240) -> np.ndarray:
    """A BGR frame whose index can be read back from its pixels (even after lossy coding)."""
    img = np.full((h, w, 3), 40, np.uint8)
    # 8 bits of the index as 8 bright/dark blocks across the top row
    for b in range(8):
        if (i >> b) & 1:
            img[0:32, b * 40 : (b + 1) * 40] = 230
    cv2.putText(img, str(i), (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (255, 255, 255), 4)
    return img


def frame_number(img: np.ndarray) -> int:
    """Inverse of :func:`numbered_frame`."""
    return sum(1 << b for b in range(8) if img[4:28, b * 40 + 6 : (b + 1) * 40 - 6].mean() > 128)


def write_video(path: Path, n: int, fourcc: str = "mp4v", fps: float = 30.0, w: int = 320, h: int = 240) -> Path:
    """A real video file of ``n`` numbered frames."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened(), f"no {fourcc} encoder"
    for i in range(n):
        vw.write(numbered_frame(i, w, h))
    vw.release()
    assert path.stat().st_size > 0
    return path


class FakeCapture:
    """A capture that plays scripted behaviour: frames, then fail / hang / freeze.

    Args:
        n_frames: good frames before ``then`` happens.
        then: "fail" (read returns False), "hang" (read blocks until released),
            "freeze" (the same frame forever), "raise" (the driver throws).
        start: index of the first frame.
        period_s: time per read (a camera's frame interval).
    """

    def __init__(self, n_frames: int, then: str = "fail", start: int = 0, period_s: float = 0.005):
        self.n = n_frames
        self.then = then
        self.i = start
        self.start = start
        self.period_s = period_s
        self.released = threading.Event()
        self.unblock = threading.Event()  # ends a "hang" (a driver whose read finally returns)

    def read(self):
        time.sleep(self.period_s)
        if self.i - self.start < self.n:
            img = numbered_frame(self.i % 256)
            # live sensor noise, so the freeze detector sees changing frames
            img[200:, :] = np.random.default_rng(self.i).integers(0, 255, (40, 320, 3), dtype=np.uint8)
            self.i += 1
            return True, img
        if self.then == "fail":
            return False, None
        if self.then == "hang":
            self.unblock.wait(30)
            return False, None
        if self.then == "raise":
            raise RuntimeError("driver error")
        return True, numbered_frame(99)  # "freeze": bit-identical frames (number 99: before any capture's own)

    def release(self):
        self.released.set()


class ScriptedOpener:
    """``opener(spec, timeout)`` returning FakeCaptures from a script; "error" entries raise.

    A "hang" entry blocks the open itself (a wedged driver) until ``unhang`` is
    set, then returns a capture of 1000 frames.
    """

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0
        self.captures: list[FakeCapture] = []
        self.unhang = threading.Event()

    def __call__(self, spec, timeout):
        from edgemask.errors import SourceError

        self.calls += 1
        item = self.script.pop(0) if self.script else ("fail", 0)
        if item == "error":
            raise SourceError("camera busy")
        if item == "hang":
            self.unhang.wait(30)
            item = ("fail", 1000)
        kind, n = item
        cap = FakeCapture(n, kind, start=100 * self.calls)
        self.captures.append(cap)
        return cap

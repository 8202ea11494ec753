"""Frame sources that survive failing, freezing and hanging cameras.

A :class:`FrameSource` wraps one OpenCV capture (camera, file, URL, image
folder or GStreamer pipeline) and a reader thread that owns it:

* the reader thread decodes frames into a small queue, so decoding overlaps
  with detection and classification (on 2 cores that is worth ~25 %);
* a read that fails, a source that delivers no frame for ``stall_timeout_s``
  (a hung driver or a dead RTSP server) or the *same* frame for
  ``freeze_timeout_s`` (a frozen USB camera) makes the source abandon that
  capture and open a new one with exponential backoff, forever;
* the capture is released by its own reader thread once its blocking
  ``read()`` returns: releasing it from another thread while ``read()`` runs
  crashes some FFmpeg/V4L2 builds, and a thread stuck in the driver cannot be
  killed anyway, so a hung reader is abandoned (it is a daemon thread).

The first :meth:`FrameSource.open` is strict by default: a camera that
cannot be opened or a URL nobody answers is a one-line
:class:`~edgemask.errors.SourceError` before any long work starts. With
``start_timeout_s`` it is retried with the same backoff as a loss mid-run,
for that long (0 = until it works: a box that boots before its camera or
its network). Later failures are never fatal.

A live source also tracks when its picture last changed
(:attr:`FrameSource.last_change_t`), so health checks can report a frozen
camera that still delivers (identical) frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgemask.errors import SourceError
from edgemask.vision.captures import Capture, before_last_frame, file_position, open_capture
from edgemask.vision.source_spec import SourceSpec

log = logging.getLogger("edgemask.vision.sources")  # one logger for the whole source package: what users filter on


# --------------------------------------------------------------------------- frames


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        image: BGR uint8 (H, W, 3).
        index: running number given by the source (0, 1, ...), across reconnects.
        t_capture: ``time.monotonic()`` when the decoder returned it.
        decode_ms: time spent in ``capture.read()`` (+ resize) for it.
        item: the photo's file name for an image folder or image, else None.
    """

    image: np.ndarray
    index: int
    t_capture: float
    decode_ms: float
    item: str | None = None


class EndOfStream:
    """Returned by :meth:`FrameSource.read` when a file or folder has ended."""

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM = EndOfStream()


@dataclass
class SourceStats:
    frames: int = 0
    reconnects: int = 0
    corrupt_frames: int = 0
    dropped_frames: int = 0
    stalls: int = 0
    freezes: int = 0
    read_failures: int = 0
    last_error: str = ""


@dataclass
class _Reader:
    """One capture and the thread that owns it (one per (re)connection)."""

    cap: Capture
    gen: int
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class _Opening:
    """One call of the opener on its own thread.

    Opening can block with no timeout of its own (V4L2 on a wedged USB
    camera, ``nvarguscamerasrc`` when the Argus daemon is stuck). The run
    loop must keep going (and keep pinging the systemd watchdog), so it
    never calls the opener itself: it starts one of these and looks at it
    on later reads. An opening that outlives its time is abandoned; if its
    call ever returns a capture, this thread releases it.
    """

    def __init__(self, opener: Callable[[SourceSpec, float], Capture], spec: SourceSpec, timeout_s: float):
        self.started = time.monotonic()
        self.done = threading.Event()
        self.cap: Capture | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._run, args=(opener, spec, timeout_s), name="edgemask-open", daemon=True
        )
        self.thread.start()

    def _run(self, opener: Callable[[SourceSpec, float], Capture], spec: SourceSpec, timeout_s: float) -> None:
        cap: Capture | None = None
        err: BaseException | None = None
        try:
            cap = opener(spec, timeout_s)
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            err = e
        with self._lock:
            self.cap, self.error = cap, err
            self.done.set()
            late = self.abandoned
        if late and cap is not None:
            try:
                cap.release()
            except Exception:  # noqa: BLE001 - nothing useful to do about a failing release
                pass

    def take(self) -> tuple[bool, Capture | None, BaseException | None]:
        """(finished, capture, error); not finished = still running."""
        with self._lock:
            return self.done.is_set(), self.cap, self.error

    def abandon(self) -> bool:
        """Give up on it; False if it finished meanwhile (then :meth:`take` has its result)."""
        with self._lock:
            if self.done.is_set():
                return False
            self.abandoned = True
            return True


def _frame_signature(img: np.ndarray) -> int:
    # Exact identity of a sparse pixel sample: a live sensor's noise changes it
    # every frame; a frozen driver repeats the same buffer bit for bit.
    return zlib.crc32(np.ascontiguousarray(img[::7, ::11]).tobytes())


class FrameSource:
    """A resilient frame source (see the module docstring).

    Args:
        spec: what to open.
        stall_timeout_s: no frame for this long → reopen (live sources), or
            end of stream (files: a decoder that stops producing frames).
        freeze_timeout_s: the same frame for this long → reopen (live
            sources only; 0 disables).
        open_timeout_s: limit for opening and for the first frame of :meth:`open`.
        reconnect_min_s, reconnect_max_s: backoff between reopen attempts,
            doubling per consecutive failure.
        opener: ``opener(spec, open_timeout_s) -> Capture``; tests inject fakes.
        on_reconnect: called with a reason string whenever a capture is abandoned.
        start_timeout_s: how long :meth:`open` keeps retrying a source that
            cannot be opened (None = one attempt, 0 = forever).
        on_start_retry: called with a one-line reason before each start-up
            retry (the service tells systemd it is still starting).
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        stall_timeout_s: float = 5.0,
        freeze_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        opener: Callable[[SourceSpec, float], Capture] = open_capture,
        on_reconnect: Callable[[str], None] | None = None,
        start_timeout_s: float | None = None,
        on_start_retry: Callable[[str], None] | None = None,
    ):
        self.spec = spec
        self.start_timeout_s = None if start_timeout_s is None else float(start_timeout_s)
        self.on_start_retry = on_start_retry
        self.stall_timeout_s = float(stall_timeout_s)
        self.freeze_timeout_s = float(freeze_timeout_s) if spec.live else 0.0
        self.open_timeout_s = float(open_timeout_s)
        self.reconnect_min_s = float(reconnect_min_s)
        self.reconnect_max_s = float(reconnect_max_s)
        self.opener = opener
        self.on_reconnect = on_reconnect
        self.stats = SourceStats()
        # Live: the newest frame matters, so a tiny queue that drops the oldest.
        # Files: never drop; the reader waits for the pipeline (backpressure).
        self._q: queue.Queue = queue.Queue(maxsize=2 if spec.live else 4)
        self._reader: _Reader | None = None
        self._gen = 0
        self._failures = 0  # consecutive failed opens, for the backoff
        self._next_open = 0.0
        self._opening: _Opening | None = None  # a reopen in progress
        self._stuck: _Opening | None = None  # an abandoned open whose call has not returned yet
        self._last_frame_t = time.monotonic()
        self._sig: int | None = None
        self._sig_since = 0.0
        self._ended = False
        self._closed = False
        self.connected = False
        self.last_change_t: float | None = None  # live sources: monotonic time the picture last changed
        self._health_sig: int | None = None

    # -- lifecycle -------------------------------------------------------
    def open(self) -> None:
        """Open the source and wait for its first frame, retrying for ``start_timeout_s``.

        Raises:
            SourceError: cannot be opened, or no frame within ``open_timeout_s``
                (after ``start_timeout_s`` of retries, if set).
        """
        if self.start_timeout_s is None:
            self._open_once()
            return
        t0 = time.monotonic()
        failures = 0
        while True:
            try:
                if self._stuck is not None and not self._stuck.done.is_set():
                    raise SourceError(f"the last attempt to open {self.spec.describe()} still hangs in the driver")
                self._stuck = None
                self._open_once()
            except SourceError as e:
                failures += 1
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(failures - 1, 16))
                elapsed = time.monotonic() - t0
                if self.start_timeout_s and elapsed + delay > self.start_timeout_s:
                    if failures == 1:
                        raise
                    raise SourceError(
                        f"{why} (tried {failures} times in {elapsed:.0f} s; raise --start-timeout, 0 = keep trying)"
                    ) from None
                left = (
                    "until it works"
                    if not self.start_timeout_s
                    else f"for {self.start_timeout_s - elapsed:.0f} s more (--start-timeout)"
                )
                log.warning("%s; retrying in %.1f s, %s", why, delay, left)
                if self.on_start_retry is not None:
                    self.on_start_retry(why)
                stuck = self._stuck
                if stuck is not None:
                    stuck.done.wait(delay)  # a hung open returning early ends the wait early
                else:
                    time.sleep(delay)
                continue
            if failures:
                log.info(
                    "opened %s after %d failed attempt(s) in %.1f s",
                    self.spec.describe(),
                    failures,
                    time.monotonic() - t0,
                )
            return

    def _open_once(self) -> None:
        op = _Opening(self.opener, self.spec, self.open_timeout_s)
        op.done.wait(self._open_limit_s())
        if op.abandon():
            self._stuck = op  # its call may still return: no second open is stacked on a hung one
            raise SourceError(
                f"opening {self.spec.describe()} did not finish within {self._open_limit_s():g} s "
                "(a hung camera driver or stream server); check the source or raise --open-timeout"
            )
        _, cap, err = op.take()
        if err is not None:
            raise err
        assert cap is not None
        self._start(cap)
        try:
            item = self._q.get(timeout=self.open_timeout_s)
        except queue.Empty:
            self._abandon("no first frame")
            raise SourceError(
                f"{self.spec.describe()} opened but sent no frame within {self.open_timeout_s:g} s; "
                "check the source (a stalled stream, a camera in use, or raise --open-timeout)"
            ) from None
        if item[0] != "frame":
            self._abandon("first read failed")
            raise SourceError(
                f"{self.spec.describe()} opened but its first read failed: "
                f"{item[2] if len(item) > 2 and item[2] else 'no frame'}; check the source"
            )
        # Put it back at the head: read() returns it first.
        self._pending = item

    @property
    def opened(self) -> bool:
        """True once :meth:`open` succeeded (also after the stream ended or a capture was abandoned)."""
        return self._gen > 0

    def close(self) -> None:
        """Stop the reader thread (it releases the capture). Safe to call twice."""
        self._closed = True
        if self._opening is not None:
            op, self._opening = self._opening, None
            if not op.abandon():  # finished meanwhile: its capture is ours to release
                _, cap, _ = op.take()
                if cap is not None:
                    try:
                        cap.release()
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass
        if self._reader is not None:
            r = self._reader
            self._reader = None
            r.stop.set()
            if r.thread is not None:
                r.thread.join(timeout=2.0)  # a hung driver keeps its daemon thread; we go on
        self.connected = False

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------
    _pending: tuple | None = None

    def read(self, timeout: float = 0.5) -> Frame | EndOfStream | None:
        """The next frame; None if none arrived within ``timeout`` (the source
        may be reconnecting: call again); END_OF_STREAM when a file ended."""
        if self._ended:
            return END_OF_STREAM
        deadline = time.monotonic() + timeout
        while not self._closed:
            now = time.monotonic()
            if self._reader is None:
                if now >= self._next_open and self._try_open():
                    continue
                if now >= deadline:
                    return None
                busy = self._opening or self._stuck  # an open running now, or a hung one holding us back
                if busy is not None and now >= self._next_open:
                    busy.done.wait(max(0.0, min(deadline - now, 0.05)))
                else:
                    time.sleep(max(0.0, min(min(deadline, self._next_open) - now, 0.05)))
                continue
            if self._pending is not None:
                item, self._pending = self._pending, None
            else:
                wait = deadline - now
                if wait <= 0:
                    self._check_stall(now)
                    return None
                try:
                    item = self._q.get(timeout=min(wait, 0.1))
                except queue.Empty:
                    self._check_stall(time.monotonic())
                    continue
            out = self._handle(item)
            if out is not None:
                return out
        return None

    # -- internals -----------------------------------------------------------
    def _handle(self, item: tuple) -> Frame | EndOfStream | None:
        kind, gen = item[0], item[1]
        if self._reader is None or gen != self._reader.gen:
            return None  # from an abandoned capture
        if kind == "fail":
            self.stats.read_failures += 1
            self.stats.last_error = item[2] or "read failed"
            if self.spec.live:
                self._abandon(f"read failed ({self.stats.last_error})")
                return None
            if self.spec.loop:
                self._abandon("end of file, looping", count=False)
                self._next_open = 0.0
                return None
            self._ended = True
            self.close()
            return END_OF_STREAM
        img, decode_ms, t_cap = item[2:5]
        name = item[5] if len(item) > 5 else None
        img = self._valid(img)
        if img is None:
            self.stats.corrupt_frames += 1
            log.warning("skipped a corrupt frame from %s (%d so far)", self.spec.describe(), self.stats.corrupt_frames)
            return None
        now = time.monotonic()
        self._last_frame_t = now
        if self.spec.live:
            sig = _frame_signature(img)
            if sig != self._health_sig or self.last_change_t is None:  # not reset by a reopen: still frozen after it
                self._health_sig, self.last_change_t = sig, now
        if self.freeze_timeout_s > 0:
            if sig != self._sig:
                self._sig, self._sig_since = sig, now
            elif now - self._sig_since >= self.freeze_timeout_s:
                self.stats.freezes += 1
                self._abandon(f"frozen: identical frames for {now - self._sig_since:.1f} s")
                return None
        self._failures = 0
        f = Frame(image=img, index=self.stats.frames, t_capture=t_cap, decode_ms=decode_ms, item=name)
        self.stats.frames += 1
        return f

    def _valid(self, img: Any) -> np.ndarray | None:
        """BGR uint8 (H, W, 3) or None for a frame that cannot be used."""
        import cv2

        if not isinstance(img, np.ndarray) or img.size == 0 or img.dtype != np.uint8:
            return None
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        elif img.ndim != 3 or img.shape[2] != 3:
            return None
        if img.shape[0] < 16 or img.shape[1] < 16:
            return None
        return img

    def _check_stall(self, now: float) -> None:
        if self._reader is not None and now - self._last_frame_t > self.stall_timeout_s:
            self.stats.stalls += 1
            if self.spec.live:
                self._abandon(f"no frame for {now - self._last_frame_t:.1f} s (stalled or hung)")
            else:
                log.warning(
                    "%s produced no frame for %.1f s; treating it as ended",
                    self.spec.describe(),
                    now - self._last_frame_t,
                )
                self._ended = True
                self.close()

    def _open_limit_s(self) -> float:
        # The opener gets open_timeout_s itself (FFmpeg honours it for URLs); a little more before we give up on it.
        return self.open_timeout_s * 1.5 + 1.0

    def _try_open(self) -> bool:
        """Advance a reopen without blocking; True once a new capture is reading."""
        if self._opening is None:
            if self._stuck is not None:
                if not self._stuck.done.is_set():
                    return False  # the device still hangs in the last open: another open would hang beside it
                self._stuck = None
            self._opening = _Opening(self.opener, self.spec, self.open_timeout_s)
        op = self._opening
        finished, cap, err = op.take()
        if not finished:
            if time.monotonic() - op.started < self._open_limit_s() or not op.abandon():
                return False
            self._opening, self._stuck = None, op
            self._open_failed(f"opening did not return within {self._open_limit_s():g} s")
            return False
        self._opening = None
        if err is not None or cap is None:
            e = err or SourceError("the opener returned nothing")
            self._open_failed(str(e).splitlines()[0] if str(e) else type(e).__name__)
            return False
        self._start(cap)
        log.info("reopened %s", self.spec.describe())
        return True

    def _open_failed(self, why: str) -> None:
        self._failures += 1
        delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(self._failures - 1, 16))
        self._next_open = time.monotonic() + delay
        self.stats.last_error = why
        log.warning("reopening %s failed (%s); next try in %.1f s", self.spec.describe(), why, delay)

    def _start(self, cap: Capture) -> None:
        self._gen += 1
        r = _Reader(cap=cap, gen=self._gen)
        r.thread = threading.Thread(target=self._read_loop, args=(r,), name=f"edgemask-reader-{r.gen}", daemon=True)
        self._reader = r
        self._last_frame_t = time.monotonic()  # the stall clock starts at (re)open
        self._sig = None
        self.connected = True
        r.thread.start()

    def _abandon(self, reason: str, count: bool = True) -> None:
        """Give up the current capture; its thread releases it when its read returns."""
        r, self._reader = self._reader, None
        self.connected = False
        if r is not None:
            r.stop.set()
        if count:
            self.stats.reconnects += 1
            self._failures += 1
            delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(self._failures - 1, 16))
            self._next_open = time.monotonic() + delay
            log.warning("%s: %s; reopening in %.1f s", self.spec.describe(), reason, delay)
            if self.on_reconnect is not None:
                self.on_reconnect(reason)
        # Drop frames queued by the abandoned reader.
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break

    def _read_loop(self, r: _Reader) -> None:
        import cv2

        spec = self.spec
        period = 1.0 / spec.fps if (spec.fps and spec.kind in ("file", "folder")) else 0.0  # pace files to --fps
        next_t = time.monotonic()
        bad_reads = 0
        last_bad_pos: float | None = None
        try:
            while not r.stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok, img = r.cap.read()
                except Exception as e:  # noqa: BLE001 - a driver error is a failed read
                    self._put(r, ("fail", r.gen, f"{type(e).__name__}: {e}"))
                    return
                if not ok:
                    pos = file_position(r.cap) if spec.kind == "file" else None
                    if pos is not None and pos != last_bad_pos and bad_reads < 8 and before_last_frame(r.cap):
                        # A damaged packet mid-file: FFmpeg fails this read but the next one
                        # decodes the following frame. A truncated file fails again at the
                        # same position: that is its end.
                        bad_reads += 1
                        last_bad_pos = pos
                        self._put(r, ("frame", r.gen, None, 0.0, time.monotonic()))
                        continue
                    self._put(r, ("fail", r.gen, ""))
                    return
                bad_reads = 0
                if (
                    img is not None
                    and spec.width
                    and spec.height
                    and isinstance(img, np.ndarray)
                    and img.ndim >= 2
                    and img.shape[:2] != (spec.height, spec.width)
                    and img.size
                ):
                    img = cv2.resize(img, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
                decode_ms = (time.perf_counter() - t0) * 1e3
                if period:
                    next_t += period
                    d = next_t - time.monotonic()
                    if d > 0:
                        r.stop.wait(d)
                self._put(r, ("frame", r.gen, img, decode_ms, time.monotonic(), getattr(r.cap, "current", None)))
        finally:
            try:
                r.cap.release()
            except Exception:  # noqa: BLE001 - nothing useful to do about a failing release
                pass

    def _put(self, r: _Reader, item: tuple) -> None:
        if self.spec.live:
            while not r.stop.is_set():
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()  # drop the oldest: a live view wants the newest frame
                        self.stats.dropped_frames += 1
                    except queue.Empty:
                        pass
        else:
            while not r.stop.is_set():
                try:
                    self._q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue


__all__ = [
    "END_OF_STREAM",
    "EndOfStream",
    "Frame",
    "FrameSource",
    "SourceStats",
]

"""FrameSource: real files, folders and HTTP streams; failing, hanging and freezing cameras."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from vision_media import ScriptedOpener, frame_number, numbered_frame, write_video

from edgemask.errors import ConfigError, SourceError
from edgemask.vision.sources import (
    END_OF_STREAM,
    FrameSource,
    SourceSpec,
    list_cameras,
    parse_source,
)


def read_all(src: FrameSource, limit: int = 500, timeout: float = 10.0) -> list:
    """Frames until END_OF_STREAM (or ``limit`` frames / ``timeout`` seconds)."""
    out = []
    end = time.monotonic() + timeout
    while len(out) < limit and time.monotonic() < end:
        f = src.read(timeout=0.5)
        if f is END_OF_STREAM:
            return out
        if f is not None:
            out.append(f)
    return out


# --------------------------------------------------------------------------- parsing


def test_parse_source_kinds(tmp_path, video_mp4):
    assert parse_source(None, 0).kind == "camera"
    assert parse_source(str(video_mp4)).kind == "file"
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source("rtsp://cam.local:554/stream1").kind == "url"
    assert parse_source("http://cam.local/video.mjpg").live
    pipe = "videotestsrc ! videoconvert ! appsink"
    assert parse_source(pipe) == SourceSpec("gstreamer", pipe)
    csi = parse_source("csi://1", width=1280, height=720, fps=30)
    assert csi.kind == "csi" and "nvarguscamerasrc sensor-id=1" in csi.target and "width=1280" in csi.target


@pytest.mark.parametrize(
    "source, camera, fragment",
    [
        (None, None, "exactly one video source"),
        ("clip.mp4", 0, "exactly one video source"),
        ("3", None, "--camera 3"),
        ("no/such/file.mp4", None, "neither an existing file"),
        ("videotestsrc ! fakesink", None, "appsink"),
        ("csi://front", None, "csi://N"),
    ],
)
def test_parse_source_errors(source, camera, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as e:
        parse_source(source, camera)
    assert "\n" not in str(e.value)


def test_missing_camera_lists_the_present_ones():
    missing = max(list_cameras(), default=-1) + 50
    src = FrameSource(parse_source(None, missing))
    with pytest.raises(SourceError, match=f"camera {missing} does not exist.*cameras here: ") as e:
        src.open()
    present = list_cameras()
    assert (", ".join(f"{i} (/dev/video{i})" for i in present) or "none found") in str(e.value)


def test_unreachable_rtsp_fails_fast_with_one_line():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="cannot open rtsp://127.0.0.1") as e:
        FrameSource(parse_source(f"rtsp://127.0.0.1:{port}/live"), open_timeout_s=3).open()
    assert time.monotonic() - t0 < 10 and "\n" not in str(e.value)


def test_url_password_is_redacted_in_descriptions():
    assert "secret" not in parse_source("rtsp://admin:secret@cam.local/x").describe()


def test_url_with_password():
    from edgemask.vision.sources import url_with_password

    assert (
        url_with_password("rtsp://admin@cam.local:554/s1?tcp", "p@ss:w/rd")
        == "rtsp://admin:p%40ss%3Aw%2Frd@cam.local:554/s1?tcp"
    )
    with pytest.raises(ConfigError, match="names no user; write it as rtsp://USER@host"):
        url_with_password("rtsp://cam.local/s1", "pw")
    with pytest.raises(ConfigError, match="already contains a password"):
        url_with_password("rtsp://a:b@cam.local/s1", "pw")


# --------------------------------------------------------------------------- files and folders


def test_video_file_reads_every_frame_then_ends(video_mp4):
    with FrameSource(parse_source(str(video_mp4))) as src:
        frames = read_all(src)
        assert src.read() is END_OF_STREAM  # and stays ended
    assert [frame_number(f.image) for f in frames] == list(range(24))
    assert [f.index for f in frames] == list(range(24))
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert src.stats.reconnects == 0 and src.stats.corrupt_frames == 0


def test_resize_to_requested_size(video_mp4):
    with FrameSource(parse_source(str(video_mp4), width=160, height=120)) as src:
        f = src.read(timeout=5)
    assert f.image.shape == (120, 160, 3)


def test_loop_restarts_a_file_without_counting_reconnects(video_mp4):
    with FrameSource(parse_source(str(video_mp4), loop=True)) as src:
        frames = read_all(src, limit=60)
    assert len(frames) == 60
    assert [frame_number(f.image) for f in frames[24:30]] == list(range(6))
    assert src.stats.reconnects == 0


def _avi_chunks(data: bytes) -> list[int]:
    """Offsets of the '00dc' (compressed video) chunks of an AVI, in file order."""
    out, i = [], data.find(b"movi")
    while True:
        i = data.find(b"00dc", i + 1)
        if i < 0:
            return out
        out.append(i)


def test_corrupt_frame_mid_file_is_skipped_and_counted(tmp_path):
    path = write_video(tmp_path / "c.avi", 20, "MJPG")
    data = bytearray(path.read_bytes())
    chunk = _avi_chunks(bytes(data))[10]
    size = int.from_bytes(data[chunk + 4 : chunk + 8], "little")
    data[chunk + 8 : chunk + 8 + size] = bytes(size)  # frame 10's JPEG becomes zeros
    path.write_bytes(bytes(data))
    with FrameSource(parse_source(str(path))) as src:
        nums = [frame_number(f.image) for f in read_all(src)]
    assert 10 not in nums and nums[:10] == list(range(10)) and nums[-1] == 19
    assert src.stats.corrupt_frames == 1


def test_video_that_stops_mid_stream_ends_cleanly(tmp_path):
    full = write_video(tmp_path / "full.avi", 20, "MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full[: _avi_chunks(full)[12]])  # the recording stopped inside frame 12
    with FrameSource(parse_source(str(cut))) as src:
        nums = [frame_number(f.image) for f in read_all(src)]
    assert nums == list(range(len(nums))) and 8 <= len(nums) <= 12


def test_image_folder_skips_a_corrupt_image(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), numbered_frame(i))
    (tmp_path / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with FrameSource(parse_source(str(tmp_path))) as src:
        nums = [frame_number(f.image) for f in read_all(src)]
    assert nums == [0, 1, 3, 4] and src.stats.corrupt_frames == 1


def test_file_paced_to_fps(video_mp4):
    with FrameSource(parse_source(str(video_mp4), fps=50)) as src:
        t0 = time.monotonic()
        frames = read_all(src)
    assert len(frames) == 24 and time.monotonic() - t0 >= 22 / 50


# --------------------------------------------------------------------------- live failures (fake captures)


def _live(opener, **kw) -> FrameSource:
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.2)
    return FrameSource(SourceSpec("camera", 0), opener=opener, **kw)


def test_failing_camera_is_reopened():
    opener = ScriptedOpener([("fail", 5), ("fail", 5), ("fail", 1000)])
    with _live(opener) as src:
        frames = read_all(src, limit=20)
    assert len(frames) == 20 and src.stats.reconnects == 2 and opener.calls == 3
    assert [f.index for f in frames] == list(range(20))  # indices run on across reconnects


def test_driver_exception_is_a_failed_read():
    with _live(ScriptedOpener([("raise", 3), ("fail", 1000)])) as src:
        frames = read_all(src, limit=10)
    assert len(frames) == 10 and src.stats.reconnects == 1 and "driver error" in src.stats.last_error


def test_hung_camera_is_abandoned_and_reopened():
    opener = ScriptedOpener([("hang", 3), ("fail", 1000)])
    with _live(opener, stall_timeout_s=0.4) as src:
        t0 = time.monotonic()
        frames = read_all(src, limit=10)
    assert len(frames) == 10 and src.stats.stalls == 1 and src.stats.reconnects == 1
    assert time.monotonic() - t0 < 5
    # Nobody released the hung capture from another thread (that crashes real
    # drivers); its own reader releases it once the blocked read returns.
    hung = opener.captures[0]
    assert not hung.released.is_set()
    hung.unblock.set()
    assert hung.released.wait(2)


def test_frozen_camera_is_reopened():
    opener = ScriptedOpener([("freeze", 3), ("fail", 1000)])  # the 2nd capture numbers its frames from 200
    with _live(opener, freeze_timeout_s=0.3) as src:
        t0 = time.monotonic()
        seen = []
        while time.monotonic() - t0 < 10 and not (seen and seen[-1] >= 200):
            f = src.read(timeout=0.5)
            if f is not None and f is not END_OF_STREAM:
                seen.append(frame_number(f.image))
    assert seen[:3] == [100, 101, 102] and seen[-1] >= 200  # frames of the new capture after the freeze
    assert src.stats.freezes == 1 and src.stats.reconnects == 1
    assert time.monotonic() - t0 < 3


def test_reopen_failures_back_off_and_never_raise():
    opener = ScriptedOpener([("fail", 2), "error", "error", "error", ("fail", 1000)])
    with _live(opener) as src:
        frames = read_all(src, limit=6, timeout=10)
    assert len(frames) == 6 and opener.calls == 5 and src.stats.reconnects == 1
    assert src.stats.last_error == "camera busy"


def test_a_reopen_that_hangs_never_blocks_the_reader():
    # The driver wedges inside open() itself: reads must keep returning (the run
    # loop pings the systemd watchdog between them) and no second open is stacked
    # on the hung one; when the hung call finally returns, its capture is released.
    opener = ScriptedOpener([("fail", 3), "hang", ("fail", 1000)])
    with _live(opener, open_timeout_s=0.2) as src:  # an open is given up after 0.2 * 1.5 + 1 = 1.3 s
        assert len(read_all(src, limit=3)) == 3
        t0, cpu0 = time.monotonic(), time.process_time()
        slowest = 0.0
        while time.monotonic() - t0 < 2.5:
            t = time.monotonic()
            assert src.read(timeout=0.1) is None
            slowest = max(slowest, time.monotonic() - t)
        assert slowest < 0.5 and opener.calls == 2 and not src.connected
        assert time.process_time() - cpu0 < 0.1  # waiting, not spinning, while the open hangs
        assert "did not return" in src.stats.last_error
        opener.unhang.set()  # the wedged open returns at last
        frames = read_all(src, limit=5, timeout=5)
    assert len(frames) == 5 and opener.calls == 3
    assert opener.captures[1].released.wait(2)  # the late capture was not leaked


def test_first_open_that_hangs_is_a_one_line_error():
    opener = ScriptedOpener(["hang"])
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="did not finish within 1.3 s") as e:
        _live(opener, open_timeout_s=0.2).open()
    assert time.monotonic() - t0 < 3 and "\n" not in str(e.value)
    opener.unhang.set()
    assert wait_released(opener)


def wait_released(opener, timeout=2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if opener.captures and opener.captures[-1].released.is_set():
            return True
        time.sleep(0.02)
    return False


def test_first_open_is_strict():
    with pytest.raises(SourceError, match="camera busy"):
        _live(ScriptedOpener(["error"])).open()
    with pytest.raises(SourceError, match="first read failed"):
        _live(ScriptedOpener([("fail", 0)])).open()


# --------------------------------------------------------------------------- a real HTTP stream


class _StreamServer:
    """Serves an MJPG AVI over HTTP, but stops each response after ``cut`` bytes.

    ``hang_s`` > 0: after the cut, keep the connection open and silent that
    long (a camera whose stream hangs) instead of closing it.
    """

    def __init__(self, data: bytes, cut: int, hang_s: float = 0.0):
        self.connections = 0
        self.released = threading.Event()  # ends a hang early, so no reader is left inside FFmpeg at exit
        srv = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                srv.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.end_headers()
                try:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    if hang_s and srv.connections == 1:
                        srv.released.wait(hang_s)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cam.avi"
        self.t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.t.start()

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_stream_that_stops_mid_stream_is_reconnected(tmp_path):
    data = write_video(tmp_path / "s.avi", 20, "MJPG").read_bytes()
    server = _StreamServer(data, _avi_chunks(data)[10])  # ~10 frames per connection, then the stream ends
    try:
        with FrameSource(parse_source(server.url), reconnect_min_s=0.05, open_timeout_s=5) as src:
            frames = read_all(src, limit=25, timeout=20)
    finally:
        server.close()
    assert len(frames) == 25 and src.stats.reconnects >= 2 and server.connections >= 3
    nums = [frame_number(f.image) for f in frames]
    assert nums[:5] == [0, 1, 2, 3, 4] and nums.count(0) >= 3  # each connection starts over


def test_http_stream_that_hangs_is_abandoned(tmp_path):
    data = write_video(tmp_path / "s.avi", 20, "MJPG").read_bytes()
    server = _StreamServer(data, _avi_chunks(data)[10], hang_s=6.0)
    try:
        with FrameSource(parse_source(server.url), stall_timeout_s=0.8, reconnect_min_s=0.05, open_timeout_s=5) as src:
            t0 = time.monotonic()
            frames = read_all(src, limit=15, timeout=20)
            took = time.monotonic() - t0
    finally:
        server.close()
    assert len(frames) == 15 and src.stats.stalls >= 1 and src.stats.reconnects >= 1
    assert took < 5.5  # recovered long before the server's 6 s hang (or FFmpeg's read timeout) ended


# --------------------------------------------------------------------------- start-up retry, frozen picture (issue 9 item 9)


def test_source_unreachable_at_start_is_retried_with_backoff(caplog):
    opener = ScriptedOpener(["error", "error", "error", ("fail", 1000)])
    retries = []
    src = _live(opener, start_timeout_s=10, on_start_retry=retries.append)
    t0 = time.monotonic()
    src.open()  # before: SourceError "camera busy" at the first failure
    try:
        assert opener.calls == 4 and len(retries) == 3 and retries[0] == "camera busy"
        assert 0.05 + 0.1 + 0.2 <= time.monotonic() - t0 < 5  # backoff 0.05, 0.1, 0.2 s
        assert len(read_all(src, limit=5)) == 5
    finally:
        src.close()
    assert sum("retrying in" in r.getMessage() for r in caplog.records) == 3


def test_start_timeout_bounds_the_retrying():
    opener = ScriptedOpener(["error"] * 1000)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"camera busy \(tried \d+ times in \d+ s; raise --start-timeout") as e:
        _live(opener, start_timeout_s=1.0).open()
    assert 0.5 < time.monotonic() - t0 < 3 and opener.calls >= 3 and "\n" not in str(e.value)


def test_start_timeout_zero_retries_until_the_source_comes():
    opener = ScriptedOpener(["error"] * 12 + [("fail", 1000)])
    src = _live(opener, start_timeout_s=0, reconnect_max_s=0.05)
    src.open()
    src.close()
    assert opener.calls == 13


def test_frozen_picture_is_tracked_across_reopens():
    opener = ScriptedOpener([("freeze", 2), ("freeze", 2)])
    with _live(opener, freeze_timeout_s=0) as src:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            src.read(timeout=0.1)
        assert src.last_change_t is not None and time.monotonic() - src.last_change_t >= 0.4

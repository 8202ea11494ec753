"""run_service end to end with real videos, a real face, real files and servers; small fakes only where named."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from service_fakes import (
    CLASS_NAMES,
    BoxDetector,
    ScriptedRunner,
    astronaut_video,
)

from edgemask.service.config import RunConfig, Secrets
from edgemask.service.loop import run_service
from edgemask.service.systemd import SdNotifier

MASK, NO_MASK, INCORRECT = 0, 1, 2


def cfg_for(tmp_path, source, **kw) -> RunConfig:
    base = dict(source=str(source), backend="null", headless=True, state_dir=str(tmp_path / "state"), log_alerts=False)
    base.update(kw)
    return RunConfig(**base)


def run(cfg, runner=None, detector=None, **kw):
    return run_service(
        cfg,
        runner=runner or ScriptedRunner(lambda i: NO_MASK),
        class_names=CLASS_NAMES,
        detector=detector,
        install_signal_handlers=False,
        secrets=Secrets(),
        **kw,
    )


def read_events(path):
    return [json.loads(line) for line in open(path)]


def test_real_face_to_alert_end_to_end(tmp_path, webhook):
    """Haar fusion finds a real face; the faked classifier says no_mask; one alert reaches every output."""
    video = astronaut_video(tmp_path / "astro.mp4", 30)
    cfg = cfg_for(
        tmp_path,
        video,
        detector="haar-fusion",
        events=str(tmp_path / "ev.jsonl"),
        record=str(tmp_path / "out.mp4"),
        snapshots=str(tmp_path / "snaps"),
        webhook=webhook.url,
        log_alerts=True,
    )
    runner = ScriptedRunner(lambda i: NO_MASK)
    s = run(cfg, runner)
    assert s.frames == 30 and s.stop_reason == "end_of_stream"
    assert s.faces >= 25 and s.alerts == {"no_mask": 1}  # one person, one alert (debounced)
    assert s.outbox_pending.get("webhook", 0) == 0 and s.delivered["webhook"] == 1
    ev = read_events(cfg.events)
    faces = [e for e in ev if e["type"] == "face"]
    (alert,) = [e for e in ev if e["type"] == "alert"]
    assert set(faces[0]) >= {"time", "frame", "track", "box", "class", "confidence"}
    assert faces[0]["class"] == "no_mask" and 0 < faces[0]["confidence"] <= 1
    face_box = faces[-1]["box"]
    assert 95 < (face_box[0] + face_box[2]) / 2 < 155 and 85 < (face_box[1] + face_box[3]) / 2 < 145  # on her face
    assert alert["class"] == "no_mask" and webhook.accepted_ids() == [alert["alert_id"]]
    assert os.path.exists(alert["snapshot"]) and cv2.imread(alert["snapshot"]).shape == (240, 320, 3)
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert json.loads((tmp_path / "state" / "run_config.json").read_text())["config"]["detector"] == "haar-fusion"


def test_one_flickering_frame_does_not_alert(tmp_path, video):
    cfg = cfg_for(tmp_path, video, max_frames=30, events=str(tmp_path / "e.jsonl"))
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK if i == 10 else MASK), BoxDetector([(50, 50, 130, 140)]))
    assert s.alerts == {} and s.frames == 30
    s2 = run(
        cfg_for(tmp_path, video, max_frames=30),
        ScriptedRunner(lambda i: NO_MASK if 10 <= i < 13 else MASK),
        BoxDetector([(50, 50, 130, 140)]),
    )
    assert s2.alerts == {"no_mask": 1}  # three frames in a row are a majority of the 5-frame vote


def test_all_faces_of_a_frame_in_one_batch(tmp_path, video):
    runner = ScriptedRunner(lambda i: MASK)
    boxes = [(10, 10, 60, 70), (100, 20, 160, 90), (200, 100, 270, 180)]
    s = run(cfg_for(tmp_path, video, max_frames=12), runner, BoxDetector(boxes))
    assert s.faces == 36 and runner.batches == [3] * 12


def test_detect_every_k_frames_tracks_in_between(tmp_path, video):
    det = BoxDetector([(50, 50, 130, 140)])
    s = run(cfg_for(tmp_path, video, max_frames=20, detect_every=4), detector=det)
    assert det.calls == math.ceil(20 / 4) == s.detector_runs and s.faces == 20


def test_alert_classes_are_configurable(tmp_path, video):
    cfg = cfg_for(tmp_path, video, max_frames=15, alert_on=("mask_incorrect",))
    assert run(cfg, ScriptedRunner(lambda i: NO_MASK), BoxDetector([(50, 50, 130, 140)])).alerts == {}
    s = run(cfg, ScriptedRunner(lambda i: INCORRECT), BoxDetector([(50, 50, 130, 140)]))
    assert s.alerts == {"mask_incorrect": 1}


def test_duration_stop(tmp_path, video):
    s = run(cfg_for(tmp_path, video, loop=True, fps=30, duration_s=1.0), detector=BoxDetector([]))
    assert s.stop_reason == "duration" and 0.9 <= s.duration_s < 3 and 10 <= s.frames <= 35


def test_closing_the_window_stops_the_run_and_says_so(tmp_path, video, monkeypatch):
    from edgemask.service.outputs import Outputs

    calls = []

    def emit(self, frame, result, fps):  # the window is closed by the user at the third frame
        calls.append(frame.index)
        return len(calls) < 3

    monkeypatch.setattr(Outputs, "emit", emit)
    s = run(cfg_for(tmp_path, video, loop=True), detector=BoxDetector([]))
    assert s.stop_reason == "window closed" and s.frames == 3 and len(calls) == 3


def test_corrupt_frame_is_skipped_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), np.full((120, 160, 3), 30 * i, np.uint8))
    (folder / "03.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    s = run(cfg_for(tmp_path, folder), detector=BoxDetector([(10, 10, 60, 60)]))
    assert s.frames == 5 and s.corrupt_frames == 1 and s.stop_reason == "end_of_stream"


def test_real_bundle_through_onnx_runtime(tmp_path, video, tiny_bundle):
    cfg = cfg_for(tmp_path, video, backend="onnxrt", bundle=str(tiny_bundle), max_frames=10)
    s = run_service(
        cfg,
        detector=BoxDetector([(50, 50, 130, 140), (200, 60, 260, 130)]),
        install_signal_handlers=False,
        secrets=Secrets(),
    )
    assert s.runner["backend"] == "onnxrt" and s.faces == 20 and s.frames == 10


def test_metrics_health_and_sd_notify_during_a_run(tmp_path, video):
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = {}

    def on_frame(i, faces):
        if i == 5:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                seen["health"] = (r.status, json.loads(r.read()))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                seen["metrics"] = r.read().decode()

    notifier = SdNotifier({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "4000000"})
    cfg = cfg_for(tmp_path, video, max_frames=10, metrics_port=port)
    run(cfg, detector=BoxDetector([(50, 50, 130, 140)]), notifier=notifier, on_frame=on_frame)
    msgs = []
    listener.settimeout(0.5)
    while True:
        try:
            msgs.append(listener.recv(256).decode())
        except socket.timeout:  # TimeoutError only from Python 3.10
            break
    listener.close()
    assert msgs[0].startswith("READY=1") and "WATCHDOG=1" in msgs and msgs[-1] == "STOPPING=1"
    code, info = seen["health"]
    assert code == 200 and info["status"] == "ok" and info["outbox_depth"] == 0
    assert re.search(r"^edgemask_frames_total 6(\.0)?$", seen["metrics"], re.MULTILINE)  # frame index 5 = 6th frame
    with pytest.raises(OSError):  # the server is gone after the run
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)


class SlowDetector(BoxDetector):
    """A detector that takes ``delay_s`` per pass (a Haar pass on a loaded 2-core box)."""

    def __init__(self, boxes, delay_s):
        super().__init__(boxes)
        self.delay_s = delay_s

    def detect(self, bgr, phase=None):
        import time

        time.sleep(self.delay_s)
        return super().detect(bgr, phase)


def test_async_detector_keeps_the_detector_out_of_frame_latency(tmp_path, video):
    from edgemask.vision.sources import FrameSource, SourceSpec

    box = [(50, 50, 130, 140)]
    sync = run(cfg_for(tmp_path, video, max_frames=20, detect_mode="sync"), detector=SlowDetector(box, 0.06))
    assert sync.detect_mode == "sync" and sync.latency_ms["total"]["p50"] >= 60
    det = SlowDetector(box, 0.06)
    live = FrameSource(SourceSpec("file", str(video), fps=30, as_live=True))  # a recording replayed as a camera
    a = run(cfg_for(tmp_path, video, max_frames=30), detector=det, source=live)  # auto → async for live sources
    # Async: a frame no longer waits for the 60 ms pass (the median frame is well under one pass,
    # even on a loaded machine; the absolute figures belong to benchmarks/pipeline_fps.py).
    assert a.detect_mode == "async" and a.latency_ms["total"]["p50"] < 60
    assert 3 <= a.detector_runs <= det.calls <= a.detector_runs + 1 <= 31  # the last pass may still run at the end
    assert a.detection_age_frames >= 1
    assert a.detector_pass_ms["p50"] >= 60
    assert a.faces >= 25  # every frame after the first pass reports the tracked face


def test_auto_mode_is_sync_for_files(tmp_path, video):
    det = BoxDetector([(50, 50, 130, 140)])
    s = run(cfg_for(tmp_path, video, max_frames=10), detector=det)
    assert s.detect_mode == "sync" and det.calls == 10 and s.faces == 10


def test_a_full_disk_under_the_events_file_does_not_stop_the_service(tmp_path, video):
    # /dev/full accepts open() and fails every write with ENOSPC, like a full SD card.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    cfg = cfg_for(tmp_path, video, max_frames=20, events="/dev/full")
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK), BoxDetector([(50, 50, 130, 140)]))
    assert s.frames == 20 and s.stop_reason == "max_frames"
    assert s.alerts == {"no_mask": 1} and s.events_dropped >= 1  # the alert itself went to the outbox


def test_events_file_is_written_again_after_a_failure(tmp_path):
    from edgemask.service.loop import EventWriter

    path = tmp_path / "ev.jsonl"
    w = EventWriter(path, retry_s=0.0)
    w.write({"n": 1})
    w.flush()
    w._f.write('{"n": 2, "cut of')  # a line a failed write left half-written ...
    w._f.flush()
    w._failed(OSError(28, "No space left on device"))
    w.write({"n": 3})  # ... reopened: starts on a fresh line
    w.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"n": 1} and json.loads(lines[-1]) == {"n": 3} and len(lines) == 3


def test_camera_password_comes_from_the_secrets_not_the_command_line(tmp_path, video):
    from service_fakes import CameraServer

    from edgemask.errors import SourceError

    password = "p@ss:w/rd %x"  # characters that would break a URL unless encoded
    cam = CameraServer(video, "edge", password)
    try:
        url = f"http://edge@127.0.0.1:{cam.port}/cam.mp4"
        s = run_service(
            cfg_for(tmp_path, url, max_frames=5, open_timeout_s=5),
            runner=ScriptedRunner(),
            class_names=CLASS_NAMES,
            detector=BoxDetector([]),
            install_signal_handlers=False,
            secrets=Secrets(source_password=password),
        )
        assert s.frames == 5 and f"edge:{password}" in cam.credentials
        assert password not in json.dumps(s.to_dict())  # the summary (and run_config.json) show no secret
        assert password not in (tmp_path / "state" / "run_config.json").read_text()
        with pytest.raises(SourceError, match="cannot open"):  # without it the camera refuses us
            run_service(
                cfg_for(tmp_path, url, max_frames=5, open_timeout_s=5),
                runner=ScriptedRunner(),
                class_names=CLASS_NAMES,
                detector=BoxDetector([]),
                install_signal_handlers=False,
                secrets=Secrets(),
            )
    finally:
        cam.close()


@pytest.mark.parametrize("backend, threads_key", [("onnxrt", "num_threads"), ("torch", "num_threads")])
def test_classifier_runs_single_threaded_by_default(tmp_path, video, tiny_bundle, backend, threads_key):
    if backend == "torch":
        pytest.importorskip("torch", reason="the torch backend needs the train extra")
    # Two torch threads on two busy cores took ~40x longer per frame than one (OpenMP barriers).
    cfg = cfg_for(tmp_path, video, backend=backend, bundle=str(tiny_bundle), max_frames=3)
    s = run_service(cfg, detector=BoxDetector([(50, 50, 130, 140)]), install_signal_handlers=False, secrets=Secrets())
    assert s.runner["backend"] == backend and s.runner[threads_key] == 1 and s.faces == 3


def test_start_is_logged_in_one_line(tmp_path, video, caplog):
    caplog.set_level("INFO", logger="edgemask.service")
    run(cfg_for(tmp_path, video, max_frames=2, log_alerts=True), detector=BoxDetector([]))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("running on")]
    assert f"file {video}" in line and "classifier scripted:fp32" in line and "via log" in line


def test_onnxrt_on_a_gpu_build_gets_the_device_profile(tmp_path, video, tiny_bundle, monkeypatch):
    """With TensorRT/CUDA providers in ONNX Runtime, --device picks their options; a CPU build runs as before."""
    import edgemask.backends as backends
    from edgemask.service import prepare

    seen = []
    real = backends.runner_from_bundle

    def spy(bundle, backend, precision, **opts):
        seen.append(opts)
        return real(bundle, backend, precision, **{k: v for k, v in opts.items() if k != "device"})

    monkeypatch.setattr(backends, "runner_from_bundle", spy)
    cfg = cfg_for(tmp_path, video, backend="onnxrt", bundle=str(tiny_bundle), device_profile="jetson-xavier-nx")
    runner, _ = prepare.make_runner(cfg)
    runner.deactivate()
    monkeypatch.setattr(prepare, "_ort_has_gpu_providers", lambda: True)
    runner, _ = prepare.make_runner(cfg)
    runner.deactivate()
    assert "device" not in seen[0] and seen[1]["device"] == "jetson-xavier-nx"


def test_tensorrt_backend_builds_a_missing_engine_on_first_use(tmp_path, video, tiny_bundle, monkeypatch):
    """`edgemask run --backend tensorrt` passes the first-use builder to the runner (backends never import export)."""
    import edgemask.backends as backends
    from edgemask.errors import NotAvailableError
    from edgemask.export.engine import first_use_engine
    from edgemask.service import loop

    seen = []

    def spy(bundle, backend, precision, **opts):
        seen.append(opts)
        raise NotAvailableError("stop here")

    monkeypatch.setattr(backends, "runner_from_bundle", spy)
    with pytest.raises(NotAvailableError):
        loop.make_runner(cfg_for(tmp_path, video, backend="tensorrt", bundle=str(tiny_bundle)))
    assert seen == [{"engine_loader": first_use_engine}]


class _FrozenCamera:
    """A camera whose driver returns the same buffer forever (frames keep coming, the picture never changes)."""

    def __init__(self):
        self.img = np.full((120, 160, 3), 77, np.uint8)

    def read(self):
        import time

        time.sleep(0.02)
        return True, self.img.copy()

    def release(self):
        pass


def test_healthz_is_stale_while_the_camera_is_frozen(tmp_path):
    from service_fakes import free_port

    from edgemask.vision.sources import FrameSource, SourceSpec

    port = free_port()
    seen = {}

    def on_frame(i, faces):
        if i == 40:  # ~0.8 s of identical frames, health_stale 0.3 s
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    seen["health"] = (r.status, json.loads(r.read()))
            except urllib.error.HTTPError as e:
                seen["health"] = (e.code, json.loads(e.read()))

    src = FrameSource(SourceSpec("camera", 0), opener=lambda spec, t: _FrozenCamera(), freeze_timeout_s=0)
    cfg = cfg_for(tmp_path, "x", max_frames=42, metrics_port=port, health_stale_s=0.3)
    run(cfg, detector=BoxDetector([]), source=src, on_frame=on_frame)
    code, info = seen["health"]
    assert code == 503 and info["status"] == "stale" and info["picture_unchanged_s"] >= 0.3  # before: 200 "ok"


class _PhotoDetector(BoxDetector):
    """A different face box in each photo, overlapping enough that a video tracker would join them."""

    def __init__(self, per_call):
        super().__init__([])
        self.per_call = per_call

    def detect(self, bgr, phase=None):
        self.boxes = [tuple(float(v) for v in self.per_call[min(self.calls, len(self.per_call) - 1)])]
        return super().detect(bgr, phase)


def _two_photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 40, np.uint8))
    cv2.imwrite(str(folder / "b.jpg"), np.full((120, 160, 3), 200, np.uint8))
    return folder


def test_photos_are_independent_scenes(tmp_path):
    """Two photos with different faces: no cross-photo track, each classified on its own, each event names its photo."""
    folder = _two_photos(tmp_path)
    cfg = cfg_for(tmp_path, folder, events=str(tmp_path / "ev.jsonl"))
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK), _PhotoDetector([(20, 20, 80, 90), (25, 22, 85, 92)]))
    assert s.frames == 2 and s.detect_mode == "sync"
    ev = read_events(cfg.events)
    faces = [e for e in ev if e["type"] == "face"]
    assert [f["item"] for f in faces] == ["a.jpg", "b.jpg"]
    assert faces[0]["track"] != faces[1]["track"]  # no track crosses photos
    assert [f["voted"] for f in faces] == ["no_mask", "no_mask"]  # one frame is the whole vote
    alerts = [e for e in ev if e["type"] == "alert"]
    assert [a["item"] for a in alerts] == ["a.jpg", "b.jpg"]  # no debounce across photos
    assert s.alerts == {"no_mask": 2}


def test_as_video_keeps_tracks_across_frames(tmp_path):
    folder = _two_photos(tmp_path)
    cfg = cfg_for(tmp_path, folder, events=str(tmp_path / "ev.jsonl"), as_video=True)
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK), _PhotoDetector([(20, 20, 80, 90), (25, 22, 85, 92)]))
    faces = [e for e in read_events(cfg.events) if e["type"] == "face"]
    assert faces[0]["track"] == faces[1]["track"] and s.alerts == {}  # 2 frames are no majority of a 5-frame vote
    assert [f["item"] for f in faces] == ["a.jpg", "b.jpg"]


def test_a_single_image_is_one_scene(tmp_path):
    folder = _two_photos(tmp_path)
    cfg = cfg_for(tmp_path, folder / "b.jpg", events=str(tmp_path / "ev.jsonl"))
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK), BoxDetector([(20, 20, 80, 90)]))
    assert s.frames == 1 and s.alerts == {"no_mask": 1} and s.stop_reason == "end_of_stream"
    assert [e["item"] for e in read_events(cfg.events)] == ["b.jpg", "b.jpg"]  # face + alert


def test_haar_fusion_runs_every_view_on_each_photo(tmp_path):
    """A multi-pass detector gets all its passes on a photo, so one photo is enough to find a real face."""
    data = pytest.importorskip("skimage.data", reason="the real photos come with scikit-image (the train extra)")

    folder = tmp_path / "photos"
    folder.mkdir()
    base = np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:240, 100:420])
    for k in range(3):
        cv2.imwrite(str(folder / f"p{k}.png"), base)
    cfg = cfg_for(tmp_path, folder, detector="haar-fusion", events=str(tmp_path / "ev.jsonl"))
    s = run(cfg, ScriptedRunner(lambda i: NO_MASK))
    assert s.frames == 3 and s.alerts == {"no_mask": 3}  # the same face, but three photos: three scenes
    faces = [e for e in read_events(cfg.events) if e["type"] == "face"]
    assert sorted({f["item"] for f in faces}) == ["p0.png", "p1.png", "p2.png"]
    assert len({f["track"] for f in faces}) == len(faces)

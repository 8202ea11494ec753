"""Alerts accepted / delivered / lost when the disk under the service's state folder fills up.

Runs the real service loop (``run_service``: a looping clip, three faces
alerting on every frame, the null classifier scripted to ``no_mask``) with a
real webhook receiver, its state folder on a small tmpfs that is filled to
the last byte at frame 15. Needs root (``mount -t tmpfs``)::

    sudo .venv/bin/python benchmarks/outbox_full_disk.py

Scenarios: the disk is freed again at frame 70 / stays full, and the
webhook accepts / refuses (503) everything. "accepted" counts the alerts
the loop raised (from the events file, on another disk), "delivered" the
distinct ones the receiver took, "twice" those it took more than once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from edgemask.service.config import RunConfig, Secrets
from edgemask.service.loop import run_service
from edgemask.vision.detectors import Detection, FaceDetector


class Receiver:
    def __init__(self, status: int):
        self.ids: list[str] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if status == 200:
                    rec.ids.append(body["alert_id"])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Boxes(FaceDetector):
    name = "boxes"

    def detect(self, bgr, phase=None):
        return [Detection(b, 1.0, "boxes") for b in ((10, 10, 60, 60), (100, 20, 160, 90), (200, 100, 260, 170))]


def fill(root: Path) -> None:
    fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for chunk in (1 << 16, 4096, 512, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * chunk)
    os.close(fd)


def scenario(work: Path, name: str, free_at: int | None, webhook_status: int, frames: int = 90) -> dict:
    from edgemask.backends import get_backend

    disk = work / name
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    video = work / "clip.mp4"
    if not video.exists():
        vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
        for i in range(30):
            vw.write(np.full((240, 320, 3), 8 * i, np.uint8))
        vw.release()
    rx = Receiver(webhook_status)
    events = work / f"{name}.jsonl"

    def on_frame(i, faces):
        if i == 15:
            fill(disk)
        if free_at is not None and i == free_at:
            (disk / "filler").unlink()

    class Runner(get_backend("null")):  # the null backend, scripted to say no_mask for every face
        def _infer_impl(self, x):
            out = np.zeros((len(x), 3), np.float32)
            out[:, 1] = 6.0
            return out

    cfg = RunConfig(
        source=str(video),
        loop=True,
        backend="null",
        headless=True,
        state_dir=str(disk / "state"),
        log_alerts=False,
        webhook=rx.url,
        max_frames=frames,
        debounce_s=0.0,
        max_missed=0,
        events=str(events),
        retry_min_s=0.05,
        retry_max_s=0.2,
    )
    try:
        s = run_service(
            cfg,
            runner=Runner(input_size=32, num_classes=3),
            class_names=["mask", "no_mask", "mask_incorrect"],
            detector=Boxes(),
            install_signal_handlers=False,
            secrets=Secrets(),
            on_frame=on_frame,
        )
    finally:
        rx.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)
    accepted = [json.loads(ln)["alert_id"] for ln in open(events) if json.loads(ln)["type"] == "alert"]
    return {
        "scenario": name,
        "accepted": len(accepted),
        "delivered": len(set(rx.ids) & set(accepted)),
        "twice": len(rx.ids) - len(set(rx.ids)),
        "not durable": s.alerts_not_durable,
        "lost": s.alerts_lost,
        "queued on disk": sum(s.outbox_pending.values()),
        "frames": s.frames,
    }


def main() -> int:
    if os.geteuid() != 0:
        print("needs root to mount a small tmpfs: sudo .venv/bin/python benchmarks/outbox_full_disk.py")
        return 1
    logging.basicConfig(level=logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        rows.append(scenario(work, "full-then-freed", free_at=70, webhook_status=200))
        rows.append(scenario(work, "stays-full", free_at=None, webhook_status=200))
        rows.append(scenario(work, "stays-full-webhook-down", free_at=None, webhook_status=503, frames=40))
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real servers (mosquitto, an HTTP webhook receiver), real videos and small fakes for the service tests.

Imported by name (``from service_fakes import ...``): module names must be unique across tests/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from edgemask.backends.base import Runner
from edgemask.vision.detectors import Detection, FaceDetector

CLASS_NAMES = ["mask", "no_mask", "mask_incorrect"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --------------------------------------------------------------------------- fakes


class ScriptedRunner(Runner):
    """A Runner whose class for the i-th face it classifies comes from ``script(i)``."""

    name: ClassVar[str] = "scripted"

    def __init__(self, script: Callable[[int], int] = lambda i: 1, input_size: int = 32, confidence_logit: float = 6.0):
        super().__init__(input_size, len(CLASS_NAMES))
        self.script = script
        self.logit = confidence_logit
        self.seen = 0
        self.batches: list[int] = []

    def _activate_impl(self) -> None:
        pass

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        out = np.zeros((len(x), self.num_classes), np.float32)
        for i in range(len(x)):
            out[i, self.script(self.seen)] = self.logit
            self.seen += 1
        return out


class BoxDetector(FaceDetector):
    """Returns the same boxes on every frame."""

    name = "boxes"

    def __init__(self, boxes):
        self.boxes = [tuple(float(v) for v in b) for b in boxes]
        self.calls = 0

    def detect(self, bgr, phase=None):
        self.calls += 1
        return [Detection(b, 1.0, "boxes") for b in self.boxes]


def write_video(path: Path, n: int, w: int = 320, h: int = 240, fourcc: str = "mp4v") -> Path:
    """A real video of ``n`` frames: a grey background with a moving textured block."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, (w, h))
    assert vw.isOpened()
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x = 40 + (i * 3) % (w - 120)
        img[80:140, x : x + 60] = tex
        vw.write(img)
    vw.release()
    return path


def astronaut_video(path: Path, n: int) -> Path:
    """A real face (scikit-image's astronaut photo) drifting slowly, 320×240."""
    data = pytest.importorskip("skimage.data", reason="the real photos come with scikit-image (the train extra)")

    # 320×240 around her face; the wider photo also has a patch the Haar cascades
    # take for a face, which would make this a test of false positives.
    base = np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:240, 100:420])
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    for i in range(n):
        m = np.float32([[1, 0, (i % 20) * 0.5], [0, 1, 0]])
        vw.write(cv2.warpAffine(base, m, (320, 240), borderMode=cv2.BORDER_REFLECT))
    vw.release()
    return path


# --------------------------------------------------------------------------- an IP camera


class CameraServer:
    """A real HTTP camera: serves a video file to clients with the right Basic credentials, 401 to others."""

    def __init__(self, video: Path, user: str, password: str):
        self.data = Path(video).read_bytes()
        self.credentials: list[str | None] = []  # what each request brought, decoded
        srv = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                import base64

                auth = self.headers.get("Authorization", "")
                got = base64.b64decode(auth.split()[1]).decode() if auth.startswith("Basic ") else None
                srv.credentials.append(got)
                if got != f"{user}:{password}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(srv.data)))
                self.end_headers()
                self.wfile.write(srv.data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- webhook receiver


class WebhookServer:
    """A real HTTP server recording POSTed JSON; ``responses`` scripts the status codes."""

    def __init__(self, responses: list[int] | None = None, port: int = 0):
        self.requests: list[dict[str, Any]] = []
        self.responses = list(responses or [])
        self.lock = threading.Lock()
        srv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with srv.lock:
                    code = srv.responses.pop(0) if srv.responses else 200
                    srv.requests.append({"headers": dict(self.headers), "json": json.loads(body), "status": code})
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [r["json"]["alert_id"] for r in self.requests if 200 <= r["status"] < 300]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- mosquitto


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1 that the test can kill and restart.

    Persistence is on and saved after every change, so a persistent
    subscriber session (and its queued QoS 1 messages) survives a SIGKILL.
    """

    def __init__(self, workdir: Path, port: int | None = None, users: dict[str, str] | None = None):
        self.bin = mosquitto_binary()
        assert self.bin, "mosquitto not installed"
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "autosave_on_changes true",
            "log_dest stderr",
            "log_type error",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, mosquitto drops to user 'mosquitto', who cannot read
            # pytest's private tmp folders (password file, persistence): stay who we are.
            lines.append("user root")
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for u, p in users.items():
                subprocess.run(
                    [shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", str(pw), u, p],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.bin, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: the broker dies without saving anything or saying goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Subscriber:
    """A persistent-session QoS 1 subscriber collecting alert payloads."""

    def __init__(
        self, port: int, topic: str, client_id: str = "edgemask-test-sub", username: str = "", password: str = ""
    ):
        import paho.mqtt.client as mqtt

        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            c.username_pw_set(username, password)
        c.reconnect_delay_set(0.1, 0.5)

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props=None):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append(json.loads(msg.payload))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect_async("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(10), "subscriber could not subscribe"

    def ids(self) -> list[str]:
        with self.lock:
            return [m["alert_id"] for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

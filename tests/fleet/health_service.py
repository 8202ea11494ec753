"""A stand-in for `edgemask run` in the fleet tests: serves /healthz for the release in ROOT/current.

The real service needs a camera (or a video) and seconds to start; the fleet
tests restart a service dozens of times, so they use this one, which reads
the model identity from ROOT/current/manifest.json at start exactly as
`edgemask run` reports it (edgemask.bundle.bundle.manifest_identity) and
counts frames with time. ROOT/service.mode makes it misbehave:
"down" (503), "wrong-model" (reports another hash), "fail-restart" (the
restart command itself fails). One test runs the real `edgemask run`.

Usage: health_service.py restart ROOT PORT | restart-real ROOT PORT VIDEO | serve ROOT PORT | stop ROOT
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def _mode(root: Path) -> str:
    p = root / "service.mode"
    return p.read_text().strip() if p.exists() else "ok"


def stop(root: Path) -> None:
    pidf = root / "service.pid"
    if not pidf.exists():
        return
    try:
        pid = int(pidf.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.02)
    except (ValueError, ProcessLookupError):
        pass
    pidf.unlink()


def restart(root: Path, port: int, video: str = "") -> int:
    if _mode(root) == "fail-restart":
        print("unit edgemask.service failed to start", file=sys.stderr)
        return 1
    stop(root)
    log = open(root / "service.log", "ab")
    if video:  # the real service
        argv = [
            str(Path(sys.executable).parent / "edgemask"),
            "run",
            "--source",
            video,
            "--loop",
            "--headless",
            "--bundle",
            str(root / "current"),
            "--metrics-port",
            str(port),
            "--state-dir",
            str(root / "svc"),
            "--start-timeout",
            "10",
        ]
    else:
        argv = [sys.executable, __file__, "serve", str(root), str(port)]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (root / "service.pid").write_text(str(p.pid))
    for _ in range(1500 if video else 250):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return 0
        time.sleep(0.02)
    return 1


def serve(root: Path, port: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edgemask.bundle.bundle import manifest_identity

    model = manifest_identity(root / "current") if (root / "current" / "manifest.json").exists() else {}
    t0 = time.monotonic()

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            mode = _mode(root)
            m = dict(model)
            if mode == "wrong-model":
                m["manifest_sha256"] = "0" * 64
            body = {"status": "ok", "frames": int((time.monotonic() - t0) * 50), "inferences": 1, "model": m}
            code = 503 if mode == "down" else 200
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a) -> None:
            pass

    HTTPServer(("127.0.0.1", port), H).serve_forever()


if __name__ == "__main__":
    cmd, root = sys.argv[1], Path(sys.argv[2])
    if cmd == "restart":
        sys.exit(restart(root, int(sys.argv[3])))
    elif cmd == "restart-real":
        sys.exit(restart(root, int(sys.argv[3]), sys.argv[4]))
    elif cmd == "serve":
        serve(root, int(sys.argv[3]))
    else:
        stop(root)

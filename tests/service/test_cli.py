"""``edgemask run`` and ``edgemask service install`` through the CLI: bad input, SIGTERM, the unit file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from service_fakes import free_port, wait_for
from typer.testing import CliRunner

from edgemask.cli.run import register

APP_CODE = "import typer; from edgemask.cli.run import register; app = typer.Typer(); register(app); app()"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def invoke(app, *args, env=None):
    r = CliRunner().invoke(app, list(args), env=env)
    return r.exit_code, r.output


def one_line_error(code: int, out: str) -> str:
    assert code == 1, out
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def test_null_backend_run_prints_a_summary(app, video, tmp_path):
    code, out = invoke(
        app,
        "run",
        "--source",
        str(video),
        "--backend",
        "null",
        "--headless",
        "--max-frames",
        "8",
        "--state-dir",
        str(tmp_path / "s"),
        "--json",
        "--log-level",
        "warning",
    )
    assert code == 0, out
    s = json.loads(out[out.index("{") :])
    assert s["frames"] == 8 and s["stop_reason"] == "max_frames" and "p99" in s["latency_ms"]["total"]


def test_missing_camera_lists_cameras(app, tmp_path):
    line = one_line_error(*invoke(app, "run", "--camera", "97", "--backend", "null", "--state-dir", str(tmp_path)))
    assert "camera 97 does not exist" in line and "cameras here:" in line


def test_unreachable_rtsp(app, tmp_path):
    t0 = time.monotonic()
    line = one_line_error(
        *invoke(
            app,
            "run",
            "--source",
            f"rtsp://127.0.0.1:{free_port()}/cam",
            "--backend",
            "null",
            "--open-timeout",
            "3",
            "--state-dir",
            str(tmp_path),
        )
    )
    assert "cannot open rtsp://127.0.0.1" in line and time.monotonic() - t0 < 15


def test_unreachable_stream_is_exactly_one_line_on_the_terminal(tmp_path):
    # In a fresh process, as a user sees it: FFmpeg and OpenCV print to stderr themselves
    # ("[tcp @ 0x..] Connection refused", "[ WARN:0] ...") unless told not to.
    # One attempt (a start timeout shorter than the first backoff): retries log a line each.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            APP_CODE,
            "run",
            "--source",
            f"rtsp://127.0.0.1:{free_port()}/cam",
            "--backend",
            "null",
            "--open-timeout",
            "3",
            "--start-timeout",
            "0.1",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(Path.cwd())},
    )
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot open rtsp://"), lines


def test_unreachable_stream_with_metrics_port_exits(tmp_path):
    # The metrics port is bound before the source opens; a failed open must not hang on it.
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            APP_CODE,
            "run",
            "--source",
            f"rtsp://127.0.0.1:{free_port()}/cam",
            "--backend",
            "null",
            "--open-timeout",
            "2",
            "--metrics-port",
            str(free_port()),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert r.returncode == 1 and "cannot open rtsp://" in r.stderr


@pytest.mark.parametrize("source", ["camera", "rtsp"])
def test_a_failed_start_writes_nothing(app, tmp_path, source):
    out = tmp_path / "out"
    src = (
        ["--camera", "97"]
        if source == "camera"
        else ["--source", f"rtsp://127.0.0.1:{free_port()}/cam", "--open-timeout", "2"]
    )
    code, text = invoke(
        app,
        "run",
        *src,
        "--backend",
        "null",
        "--events",
        str(out / "ev" / "events.jsonl"),
        "--snapshots",
        str(out / "snaps"),
        "--record",
        str(out / "rec.mp4"),
        "--state-dir",
        str(out / "state"),
    )
    one_line_error(code, text)
    assert not out.exists()  # no empty events file, outbox or folders left by a start that never ran


def test_missing_camera_is_found_before_the_bundle_is_loaded(app, tmp_path):
    t0 = time.monotonic()
    line = one_line_error(
        *invoke(
            app, "run", "--camera", "97", "--bundle", str(tmp_path / "not-yet-exported"), "--state-dir", str(tmp_path)
        )
    )
    assert "camera 97 does not exist" in line and time.monotonic() - t0 < 2


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--precision", "int8"], "no onnx model at precision 'int8'"),
        (["--backend", "tpu"], "unknown backend 'tpu'"),
        (["--alert-on", "no_hat"], "--alert-on names no_hat"),
    ],
)
def test_bundle_backend_precision_mismatch(app, video, tmp_path, tiny_bundle, extra, fragment):
    line = one_line_error(
        *invoke(app, "run", "--source", str(video), "--bundle", str(tiny_bundle), "--state-dir", str(tmp_path), *extra)
    )
    assert fragment in line


def test_damaged_bundle_is_refused(app, video, tmp_path, tiny_bundle):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    with open(b / "model.fp32.onnx", "ab") as f:
        f.write(b"\0")
    line = one_line_error(*invoke(app, "run", "--source", str(video), "--bundle", str(b), "--state-dir", str(tmp_path)))
    assert "failed verification" in line


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--events", "{blocker}/events.jsonl"], "cannot write --events"),
        (["--record", "{blocker}/out.mp4"], "--record"),
        (["--mqtt", "mqtt://broker.local:99999/a"], "malformed"),
        (["--mqtt", "broker.local/a"], "must start with mqtt://"),
        (["--mqtt", "mqtt://edge:hunter2@broker/a"], "EDGEMASK_MQTT_PASSWORD"),
        (["--webhook", "ftp://x/y"], "http:// or https://"),
        (["--detector", "yunet"], "needs --face-model"),
        (["--face-model", "{blocker}"], "is not a YuNet ONNX model"),
        (["--state-dir", "{blocker}/state"], "--state-dir"),
        (["--snapshots", "{blocker}"], "is not a folder"),
        (["--precision", "FP16"], "unknown --precision 'FP16'"),
        ([], "--bundle is required"),
    ],
)
def test_bad_options_fail_before_any_work(app, video, tmp_path, extra, fragment, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    extra = [e.replace("{blocker}", str(blocker)) for e in extra]
    backend = [] if fragment == "--bundle is required" else ["--backend", "null"]
    if not backend:  # an install without the shipped pretrained bundle
        import edgemask.pretrained

        monkeypatch.setattr(edgemask.pretrained, "default_bundle", lambda: None)
    t0 = time.monotonic()
    code, out = invoke(app, "run", "--source", str(video), *backend, "--state-dir", str(tmp_path / "s"), *extra)
    line = one_line_error(code, out)
    assert fragment in line and "hunter2" not in out and time.monotonic() - t0 < 10


def test_sigterm_stops_cleanly(tmp_path, video):
    events = tmp_path / "e.jsonl"
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            APP_CODE,
            "run",
            "--source",
            str(video),
            "--loop",
            "--fps",
            "30",
            "--backend",
            "null",
            "--headless",
            "--detector",
            "none",
            "--events",
            str(events),
            "--state-dir",
            str(state),
            "--json",
            "--log-level",
            "warning",
            "--alert-on",
            "mask,no_mask,mask_incorrect",
            "--min-confidence",
            "0",
            "--vote-window",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert wait_for(lambda: events.exists() and events.stat().st_size > 2000, 30), (
            p.stderr.read() if p.poll() else ""
        )
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 10
    s = json.loads(out[out.index("{") :])
    assert s["stop_reason"] == "signal" and s["frames"] > 5 and s["alerts_total"] >= 1
    lines = events.read_text().splitlines()
    assert all(json.loads(ln) for ln in lines)  # closed cleanly: every line whole
    # outbox checkpointed into the database file on shutdown (the alert went to the log sink)
    wal = state / "outbox.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_service_install_writes_a_unit(app, tmp_path):
    out_path = tmp_path / "edgemask.service"
    code, out = invoke(
        app,
        "service",
        "install",
        "--output",
        str(out_path),
        "--",
        "--camera",
        "0",
        "--bundle",
        "/opt/edgemask/bundle",
        "--mqtt",
        "mqtt://edge@broker.local/site/cam1/alerts",
    )
    assert code == 0, out
    text = out_path.read_text()
    assert "Type=notify" in text and "WatchdogSec=30" in text and "Restart=always" in text
    assert (
        "run --camera 0 --bundle /opt/edgemask/bundle --mqtt mqtt://edge@broker.local/site/cam1/alerts --headless"
        in text
    )
    assert "systemctl enable --now edgemask.service" in out
    assert "logs: journalctl -u edgemask -f" in out  # commands to copy are not wrapped mid-line


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "give the run options after '--'"),
        (["--", "--camra", "0"], "not valid"),
        (["--", "--bundle", "/opt/edgemask/bundle"], "not valid: give exactly one video source"),
        (["--", "--camera", "0", "--bundle", "/opt/b", "--precision", "FP16"], "unknown --precision"),
        (["--", "--camera", "0", "--mqtt", "mqtt://u:s3cr3t@b/t"], "edgemask.env"),
        (["--", "--source", "rtsp://admin:s3cr3t@cam.local/live"], "EDGEMASK_SOURCE_PASSWORD"),
    ],
)
def test_service_install_refuses_bad_run_options(app, tmp_path, args, fragment):
    code, out = invoke(app, "service", "install", "--output", str(tmp_path / "u.service"), *args)
    assert fragment in one_line_error(code, out) and not (tmp_path / "u.service").exists()
    assert "s3cr3t" not in out  # the refusal does not print the secret it refuses


def test_config_file_fills_options_the_command_line_does_not_give(app, video, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[run]\nmax_frames = 6\nbackend = "null"\nheadless = true\nstate_dir = "{tmp_path / "s"}"\n')
    code, out = invoke(app, "run", "--source", str(video), "--config", str(cfg), "--json", "--log-level", "warning")
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["frames"] == 6
    code, out = invoke(
        app,
        "run",
        "--source",
        str(video),
        "--config",
        str(cfg),
        "--max-frames",
        "3",
        "--json",
        "--log-level",
        "warning",
    )
    assert code == 0 and json.loads(out[out.index("{") :])["frames"] == 3  # the command line wins

"""Every command of the README's command table, run as a user types it.

Each test runs the *installed* console script (the ``edgemask`` next to
``sys.executable``) in a subprocess with the README's arguments, scaled down
in data size only, once with stdout to a pipe and once on a pseudo-terminal.
It asserts the exit code, the files written and that no traceback appears.
``test_readme_table_is_covered`` fails when the README names a command that
has no case here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("edgemask")

pytestmark = pytest.mark.skipif(not EXE.is_file(), reason=f"console script {EXE} not installed (pip install -e .)")


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS="100", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    return env


def run_pipe(args: list, cwd: Path, timeout: float = 600):
    p = subprocess.run(
        [str(EXE), *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def run_pty(args: list, cwd: Path, timeout: float = 600):
    """Run with stdout and stderr on a pseudo-terminal (what a user's shell gives)."""
    import pty

    master, slave = pty.openpty()
    env = _env()
    env["TERM"] = "xterm"
    p = subprocess.Popen([str(EXE), *args], cwd=cwd, env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"edgemask {' '.join(args)} ran past {timeout} s on a terminal")
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                if p.poll() is not None:
                    break
                continue
            chunks.append(data)
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(), b"".join(chunks).decode(errors="replace")


RUNNERS = {"pipe": run_pipe, "pty": run_pty}


def check(rc: int, out: str, args: list, expect_rc: int = 0) -> None:
    assert "Traceback" not in out, f"edgemask {' '.join(map(str, args))} printed a traceback:\n{out[-3000:]}"
    assert rc == expect_rc, f"edgemask {' '.join(map(str, args))} exited {rc}, not {expect_rc}:\n{out[-3000:]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One tiny synthetic dataset, a 3-epoch run and its bundle, made through the CLI itself."""
    base = tmp_path_factory.mktemp("cli_user")
    steps = [
        ["data", "synth", "--out", "data/synth", "--n", "96", "--size", "32", "--seed", "0", "--scenes", "3"],
        # README: --epochs 15; here 3 epochs of several steps (64 training crops, batch 16).
        [
            "train",
            "--data",
            "data/synth",
            "--arch",
            "seed_cnn",
            "--epochs",
            "3",
            "--size",
            "32",
            "--batch-size",
            "16",
            "--out",
            "runs/NAME",
        ],
        ["export", "runs/NAME", "--out", "export/NAME", "--precision", "fp32,fp16,int8", "--calibration", "default"],
        # A tiny detector run (3 epochs on the synthetic scenes, small input) for 'detector eval'.
        [
            "detector",
            "train",
            "--data",
            "data/synth",
            "--out",
            "runs/det",
            "--epochs",
            "3",
            "--input-width",
            "96",
            "--input-height",
            "64",
            "--batch-size",
            "4",
        ],
    ]
    for args in steps:
        rc, out = run_pipe(args, base)
        check(rc, out, args)
    if importlib.util.find_spec("cryptography") is not None:
        # A signing key, and one copy of the bundle per way of running, so signing leaves export/NAME as it was.
        args = ["keys", "generate", "--out", "keys"]
        check(*run_pipe(args, base), args)
        for tag in RUNNERS:
            shutil.copytree(base / "export" / "NAME", base / "export" / f"sign-{tag}")
    return base


# name in the README table -> (args, files that must exist afterwards, expected exit code)
# {tag} is "pipe" or "pty", so each way of running writes its own outputs.
CASES = {
    "data synth": (
        ["data", "synth", "--out", "fresh/{tag}", "--n", "30", "--size", "32", "--seed", "0", "--scenes", "2"],
        ["fresh/{tag}/dataset.json", "fresh/{tag}/crops"],
        0,
    ),
    "data summary": (["data", "summary", "data/synth"], [], 0),
    "models": (["models"], [], 0),
    "train": (
        [
            "train",
            "--data",
            "data/synth",
            "--arch",
            "seed_cnn",
            "--epochs",
            "3",
            "--size",
            "32",
            "--batch-size",
            "16",
            "--out",
            "runs/{tag}",
        ],
        ["runs/{tag}/weights.safetensors", "runs/{tag}/model.json", "runs/{tag}/metrics.json"],
        0,
    ),
    "eval": (["eval", "runs/NAME", "--data", "data/synth"], [], 0),
    "export": (
        ["export", "runs/NAME", "--out", "export/{tag}", "--precision", "fp32,fp16,int8", "--calibration", "default"],
        ["export/{tag}/manifest.json"],
        0,
    ),
    "export --detector": (
        [
            "export",
            "runs/NAME",
            "--out",
            "export/det-{tag}",
            "--detector",
            "runs/det",
            "--precision",
            "fp32,int8",
            "--detector-calibration-count",
            "8",
        ],
        ["export/det-{tag}/manifest.json", "export/det-{tag}/detector/model.int8.onnx"],
        0,
    ),
    "detector train": (
        [
            "detector",
            "train",
            "--data",
            "data/synth",
            "--out",
            "runs/det-{tag}",
            "--epochs",
            "3",
            "--input-width",
            "96",
            "--input-height",
            "64",
            "--batch-size",
            "4",
        ],
        ["runs/det-{tag}/weights.safetensors", "runs/det-{tag}/model.json", "runs/det-{tag}/metrics.json"],
        0,
    ),
    # Three scenes hold no held-out image, so the whole set is scored.
    "detector eval": (["detector", "eval", "runs/det", "--data", "data/synth", "--split", "all"], [], 0),
    "keys generate": (["keys", "generate", "--out", "keys-{tag}"], ["keys-{tag}"], 0),
    "bundle sign": (["bundle", "sign", "export/sign-{tag}", "--key", "{key}"], ["export/sign-{tag}/manifest.sig"], 0),
    "bundle verify": (["bundle", "verify", "export/NAME"], [], 0),
    "bundle show": (["bundle", "show", "export/NAME"], [], 0),
    "bundle pack": (["bundle", "pack", "export/NAME", "--out", "pkg-{tag}.embundle"], ["pkg-{tag}.embundle"], 0),
    "device status": (["device", "status", "--root", "box-{tag}"], [], 0),
    "fleet deploy": (
        ["fleet", "deploy", "x.embundle", "--inventory", str(ROOT / "devices" / "fleet.example.toml"), "--dry-run"],
        [],
        0,
    ),
    # A box that refuses connections: one per-box error, exit 1.
    "fleet status": (["fleet", "status", "--inventory", str(ROOT / "tests" / "fleet" / "unreachable.toml")], [], 1),
    "fleet rollback": (["fleet", "rollback", "--inventory", str(ROOT / "tests" / "fleet" / "unreachable.toml")], [], 1),
    "fleet export-ansible": (
        [
            "fleet",
            "export-ansible",
            "pkg-{tag}.embundle",
            "--inventory",
            str(ROOT / "devices" / "fleet.example.toml"),
            "--out",
            "ansible-{tag}",
        ],
        ["ansible-{tag}/deploy.yml", "ansible-{tag}/inventory.yml"],
        0,
    ),
    "compare": (["compare", "export/NAME", "--data", "data/synth", "--n", "24"], [], 0),
    "bench": (["bench", "export/NAME", "--warmup", "1", "--iters", "3", "--batch-iters", "2"], [], 0),
    "attack": (["attack", "export/NAME", "--data", "data/synth", "--out", "adv/{tag}", "--n", "4"], ["adv/{tag}"], 0),
    "stability": (
        [
            "stability",
            "export/NAME",
            "--data",
            "data/synth",
            "--n",
            "6",
            "--out",
            "reports/{tag}",
            "--noise-trials",
            "1",
        ],
        ["reports/{tag}"],
        0,
    ),
    # No camera here: the same service on a photo folder, bounded by --max-frames.
    "run": (
        [
            "run",
            "--source",
            "data/synth/scenes/images",
            "--bundle",
            "export/NAME",
            "--headless",
            "--events",
            "events-{tag}.jsonl",
            "--max-frames",
            "3",
            "--state-dir",
            "state-{tag}",
        ],
        [],
        0,
    ),
    "service install": (
        [
            "service",
            "install",
            "--output",
            "unit-{tag}.service",
            "--",
            "--camera",
            "0",
            "--bundle",
            "/opt/edgemask/bundle",
        ],
        ["unit-{tag}.service"],
        0,
    ),
    "devices list": (["devices", "list"], [], 0),
    "devices show": (["devices", "show", "jetson-nano"], [], 0),
    "export --device": (
        ["export", "runs/NAME", "--out", "export/dev-{tag}", "--device", "jetson-nano"],
        ["export/dev-{tag}/manifest.json"],
        0,
    ),
    # No TensorRT here: one clean line saying so, exit 1.
    "engine build": (["engine", "build", "export/NAME", "--device", "jetson-orin-nano", "--precision", "int8"], [], 1),
    "engine check-qdq": (["engine", "check-qdq", "export/NAME", "--device", "jetson-xavier-nx"], [], 0),
    "doctor": (["doctor", "--bundle", "export/NAME"], [], None),
}

NEEDS_FLEET = {"keys generate", "bundle sign"}

SLOW_ON_PTY = {
    "detector train",
    "train",
    "export",
    "export --device",
    "export --detector",
    "stability",
    "attack",
    "compare",
}


def _params():
    for name in CASES:
        for tag in RUNNERS:
            marks = [pytest.mark.slow] if (tag == "pty" and name in SLOW_ON_PTY) else []
            yield pytest.param(name, tag, id=f"{name.replace(' ', '_')}-{tag}", marks=marks)


@pytest.mark.parametrize("name,tag", list(_params()))
def test_readme_command(world, name, tag):
    args, files, expect = CASES[name]
    if name in NEEDS_FLEET and importlib.util.find_spec("cryptography") is None:
        pytest.skip("signing needs the fleet extra (pip install 'edgemask[fleet]')")
    keys = sorted((world / "keys").glob("*.key"))
    args = [a.format(tag=tag, key=keys[0] if keys else "") for a in args]
    rc, out = RUNNERS[tag](args, world)
    if expect is None:  # doctor: 0 when all checks pass, 1 when one fails (no GPU here); never a crash
        assert rc in (0, 1), out[-2000:]
        expect = rc
    check(rc, out, args, expect)
    for f in files:
        assert (world / f.format(tag=tag)).exists(), f"edgemask {' '.join(args)} did not write {f.format(tag=tag)}"
    if name == "engine build":
        # On a terminal a transient spinner is drawn and erased first; what stays is one line.
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
        lines = [ln for ln in re.split(r"[\r\n]+", plain) if ln.strip()]
        errors = [ln for ln in lines if "error:" in ln]
        assert len(errors) == 1 and "TensorRT" in errors[0] and lines[-1] == errors[0], out
        if tag == "pipe":
            assert len(lines) == 1, out
    if name == "train":
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # a terminal gets bold numbers
        assert "best epoch" in plain and " of 3 " in plain, plain[-1500:]


def test_train_resume_from_other_cwd(world, tmp_path):
    """An interrupted run (checkpoint at epoch 2) continues with --resume from another working directory."""
    import json

    run = world / "runs" / "resume"
    args = ["train", "--data", "data/synth", "--epochs", "2", "--size", "32", "--batch-size", "16", "--out", str(run)]
    check(*run_pipe(args, world), args)
    # A finished run says so instead of stretching it to the default 15 epochs.
    rc, out = run_pipe(["train", "--out", str(run), "--resume"], tmp_path)
    check(rc, out, ["resume"], 1)
    assert "finished" in out and "--epochs" in out, out
    # Raising --epochs explicitly continues it; the data path was stored resolved, so another cwd works.
    rc, out = run_pty(["train", "--out", str(run), "--resume", "--epochs", "3"], tmp_path)
    check(rc, out, ["resume --epochs 3"], 0)
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3


def test_version():
    rc, out = run_pipe(["--version"], ROOT)
    check(rc, out, ["--version"])
    from edgemask import __version__

    assert out.strip() == f"edgemask {__version__}"


def _readme_commands() -> list:
    text = (ROOT / "README.md").read_text()
    sec = text.split("## What it does, command by command", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in sec.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cols = [c.strip() for c in line.strip("|").split("|")]
        if len(cols) < 2 or cols[1] == "command":
            continue
        for cmd in re.findall(r"`edgemask ([^`]+)`", cols[1]):
            words = cmd.split()
            name = words[0]
            if len(words) > 1 and name in {
                "data",
                "bundle",
                "devices",
                "service",
                "engine",
                "detector",
                "keys",
                "device",
                "fleet",
            }:
                name += " " + words[1]
            if name == "export" and "--device" in words:
                name = "export --device"
            if name == "export" and "--detector" in words:
                name = "export --detector"
            names.append(name)
    return names


def test_readme_table_is_covered():
    names = _readme_commands()
    assert len(names) >= 15, names  # the table was found and read
    missing = [n for n in names if n not in CASES]
    assert not missing, f"README command table names commands with no console-script test: {missing}"

"""Bad input to the CLI: each case exits 1 with one line naming the fix, no traceback, nothing half-written.

Cases run the installed console script in a subprocess against one small run
made once per module. The table in README.md (this folder) lists them.
"""

from __future__ import annotations

import shutil

import pytest
from badinput_helpers import EXE, cli, judge

pytestmark = pytest.mark.skipif(not EXE.is_file(), reason=f"console script {EXE} not installed (pip install -e .)")


@pytest.fixture(scope="module")
def base(badinput_shared):
    return badinput_shared.root


def test_train_reports_the_files_it_skipped(badinput_shared):
    """The shared dataset holds one corrupt PNG: training says so (and points at data summary)."""
    out = " ".join(badinput_shared.train_output.split())
    assert "skipped 1 file(s)/box(es) of the dataset (first: crops/mask/zz_corrupt.png: corrupt" in out, out
    assert "'edgemask data summary" in out


def _copy_run(base, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(base / "run", dst)
    return dst


def _truncate_ck(run):
    p = run / "checkpoint.safetensors"
    p.write_bytes(p.read_bytes()[:100])


def _garbage_ck(run):
    (run / "checkpoint.safetensors").write_bytes(b"\x00garbage" * 50)


def _bad_ck_json(run):
    (run / "checkpoint.json").write_text("{not json")


def _ck_json_list(run):
    (run / "checkpoint.json").write_text("[1, 2, 3]")


def _bad_config(run):
    (run / "config.json").write_text("\x00\x01")


def _unchanged(run):
    pass


# id -> (how to damage the copied run, extra args after 'train --out RUN --resume', words the one line must hold)
RESUME_CASES = {
    "resume-truncated-checkpoint": (_truncate_ck, ["--epochs", "3"], ["damaged", "--overwrite"]),
    "resume-garbage-checkpoint": (_garbage_ck, ["--epochs", "3"], ["damaged", "--overwrite"]),
    "resume-checkpoint-json-garbage": (_bad_ck_json, ["--epochs", "3"], ["not valid JSON", "--overwrite"]),
    "resume-checkpoint-json-wrong-type": (_ck_json_list, ["--epochs", "3"], ["fields", "--overwrite"]),
    "resume-config-json-garbage": (_bad_config, [], ["damaged", "--overwrite"]),
    "resume-finished-run": (_unchanged, [], ["finished", "--epochs"]),
}


def _assert_clean(rc, out, err, words):
    verdict, why = judge(rc, out, err, words)
    assert verdict == "clean", f"{verdict}: {why}"


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_bad_state(base, tmp_path, case):
    damage, extra, words = RESUME_CASES[case]
    run = _copy_run(base, tmp_path)
    damage(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, out, err = cli(["train", "--out", str(run), "--resume", *extra], tmp_path)
    _assert_clean(rc, out, err, words)
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert after == before, "a refused resume changed the run folder"


# id -> (args, words the one line must hold)
ARG_CASES = {
    "train-epochs-zero": (["train", "--data", "data", "--epochs", "0", "--out", "new"], ["--epochs"]),
    "train-lr-negative": (["train", "--data", "data", "--lr", "-1", "--out", "new"], ["--lr"]),
    "train-size-tiny": (["train", "--data", "data", "--size", "4", "--out", "new"], ["--size"]),
    "train-label-map-no-equals": (["train", "--data", "data", "--label-map", "face", "--out", "new"], ["="]),
    "train-no-data": (["train", "--out", "new"], ["--data"]),
    "train-existing-run": (["train", "--data", "data", "--epochs", "1", "--out", "run"], ["--overwrite"]),
    "resume-no-run": (["train", "--out", "nowhere", "--resume"], ["--resume"]),
}


@pytest.mark.parametrize("case", list(ARG_CASES))
def test_bad_cli_values(base, case):
    args, words = ARG_CASES[case]
    rc, out, err = cli(args, base)
    _assert_clean(rc, out, err, words)
    assert not (base / "new").exists() and not (base / "nowhere").exists(), "a refused command left a folder"


_INTERRUPT_HOOK = """
import os, signal
import edgemask.data.imagefile as _imf

# Ctrl-C as on a terminal: a test runner started in the background (`cmd &` in a script) passes SIGINT
# on ignored, and Python then never installs its KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)

_real, _calls = _imf.decode_image, [0]


def _decode(data):  # the 5th image decoded while loading: Ctrl-C
    _calls[0] += 1
    if _calls[0] == 5:
        os.kill(os.getpid(), signal.SIGINT)
    return _real(data)


_imf.decode_image = _decode
"""


def test_ctrl_c_while_images_load_claims_no_checkpoint(base, tmp_path):
    """A resume interrupted while loading saves nothing, and must not say it did, whatever the old checkpoint's time."""
    import os
    import subprocess

    from badinput_helpers import cli_env, snapshot

    run = _copy_run(base, tmp_path)
    # Stamped a minute ahead, as when the run was copied from a box whose clock runs fast: a
    # check of "was it written since we started?" by time alone is fooled by that.
    import time

    ahead = time.time() + 60
    os.utime(run / "checkpoint.json", (ahead, ahead))
    before = snapshot(run)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_INTERRUPT_HOOK)  # runs inside the console script, before it starts
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
    p = subprocess.run(
        [str(EXE), "train", "--out", str(run), "--resume", "--epochs", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert p.returncode == 130, (p.returncode, p.stdout, p.stderr)
    assert "interrupted while loading images; nothing new was saved" in p.stderr, p.stderr
    assert "checkpoint saved" not in p.stderr
    assert snapshot(run) == before

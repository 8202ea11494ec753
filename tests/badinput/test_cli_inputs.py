"""Bad input to the CLI: each case exits 1 with one line naming the fix, no traceback, nothing half-written.

Cases run the installed console script in a subprocess against one small run
made once per module. The table in README.md (this folder) lists them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).with_name("edgemask")
pytestmark = pytest.mark.skipif(not EXE.is_file(), reason=f"console script {EXE} not installed (pip install -e .)")


def cli(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS="200", NO_COLOR="1")
    p = subprocess.run([str(EXE), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=300)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    b = tmp_path_factory.mktemp("badcli")
    for args in (["data", "synth", "--out", "data", "--n", "60", "--size", "32", "--scenes", "1"],
                 ["train", "--data", "data", "--epochs", "1", "--size", "32", "--batch-size", "16", "--out", "run"]):
        rc, out, err = cli(args, b)
        assert rc == 0, out + err
    return b


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
    assert "Traceback" not in out + err, out + err
    assert rc == 1, (rc, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and "━" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


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

"""What every bad-input case shares: running the console script, judging its output, the shared tiny run.

Used by the ``test_*.py`` files beside it and by ``tally.py``, which runs the
same cases against any checkout of ``edgemask/`` and counts the outcomes.

A case passes ("clean") when the command exits 1, prints exactly one
``error:`` line holding the words that name the fix, prints no traceback, and
leaves nothing half-written: every output path it was given still does not
exist, and every input it was pointed at is byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

EXE = Path(sys.executable).with_name("edgemask")
#: Set by tally.py: a folder holding another ``edgemask/`` package to run the cases against.
CODE_ENV = "EDGEMASK_BADINPUT_CODE"
VERDICTS = ("clean", "traceback", "wrong exit", "half-written", "misleading message")
#: Address-space cap of every command run here: a reader that decodes an image bomb or
#: reads /dev/zero dies of MemoryError instead of taking the machine's memory with it.
MEMORY_LIMIT = 6 << 30


def cli_env() -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS="200", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    for k in [k for k in env if k.startswith("EDGEMASK_") and k != CODE_ENV]:
        env.pop(k)  # no secrets or search paths from the caller's shell
    code = os.environ.get(CODE_ENV)
    if code:
        env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli(args: List[str], cwd: Path, timeout: float = 180) -> Tuple[Optional[int], str, str]:
    """Run ``edgemask ARGS`` as a user would (stdin closed, stdout to a pipe), under :data:`MEMORY_LIMIT`.

    Returns (exit code, stdout, stderr); the exit code is None when the command
    ran past ``timeout`` seconds (it is killed: a hang).
    """
    cwd = Path(cwd)
    p = subprocess.Popen(
        [str(EXE), *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_limit_memory if sys.platform.startswith("linux") else None,
    )
    try:
        out, err = p.communicate(timeout=timeout)
        rc: Optional[int] = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        rc = None
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def message_lines(err: str) -> List[str]:
    """stderr lines a user reads (progress-bar redraws left out)."""
    return [ln for ln in err.splitlines() if ln.strip() and "━" not in ln]


def judge(rc: Optional[int], out: str, err: str, words: List[str], changed: str = "") -> Tuple[str, str]:
    """(verdict, why) of one run; verdicts in :data:`VERDICTS`, worst first after 'clean'."""
    text = out + err
    if "Traceback (most recent call last)" in text:
        return "traceback", text.strip().splitlines()[-1][:200]
    if rc != 1:
        return "wrong exit", "ran past its timeout (hung)" if rc is None else f"exit {rc}: {text.strip()[-200:]}"
    if changed:
        return "half-written", changed
    lines = message_lines(err)
    if len(lines) != 1 or not lines[0].startswith("error:"):
        return "misleading message", f"{len(lines)} stderr lines: {' | '.join(lines)[:300]}"
    missing = [w for w in words if w not in lines[0]]
    if missing:
        return "misleading message", f"the line lacks {missing}: {lines[0][:300]}"
    return "clean", lines[0]


def snapshot(path: Path) -> object:
    """Contents of a file or folder tree, never opening anything but regular files (a FIFO would hang)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return {p.name: snapshot(p) for p in sorted(path.iterdir())}
    if stat.S_ISREG(st.st_mode):
        return path.read_bytes()
    return ("special", stat.S_IFMT(st.st_mode))


# --------------------------------------------------------------------------- shared material


@dataclass
class Shared:
    """One tiny dataset, trained run and exported bundle, made once and only ever copied."""

    root: Path
    data: Path
    run: Path
    bundle: Path
    train_output: str = ""


RECIPE = 'source = "synth"\ncount = 24\nstratified = true\nseed = 7\n'


def make_shared(root: Path) -> Shared:
    """Synthesize 60 crops (2 scenes), train 1 epoch at 32 px, export fp32/fp16/int8: about a minute on 2 cores.

    One corrupt PNG sits in the dataset, so training must report a skipped file.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe.toml").write_text(RECIPE)
    steps = [
        ["data", "synth", "--out", "data", "--n", "60", "--size", "32", "--scenes", "2"],
        None,
        ["train", "--data", "data", "--epochs", "1", "--size", "32", "--batch-size", "16", "--out", "run"],
        ["export", "run", "--out", "bundle", "--precision", "fp32,fp16,int8", "--calibration", "recipe.toml"],
    ]
    outputs = []
    for args in steps:
        if args is None:
            (root / "data" / "crops" / "mask" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
            continue
        rc, out, err = cli(args, root, timeout=900)
        assert rc == 0, f"edgemask {' '.join(args)} failed while making the shared run:\n{out}\n{err}"
        outputs.append(out + err)
    return Shared(root=root, data=root / "data", run=root / "run", bundle=root / "bundle", train_output=outputs[1])


# --------------------------------------------------------------------------- cases


@dataclass
class Work:
    """A case's scratch folder: copies of the shared material on demand, and the paths its args name."""

    tmp: Path
    shared: Shared
    vars: Dict[str, str] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.tmp / rel

    def copy(self, what: str) -> Path:
        """A private copy of the shared ``data``, ``run`` or ``bundle`` (symlinks kept as links)."""
        dst = self.tmp / what
        if not dst.exists():
            shutil.copytree(getattr(self.shared, what), dst, symlinks=True)
        self.vars[what] = str(dst)
        return dst

    def manifest(self, edit: Callable[[dict], object]) -> Path:
        """Copy the bundle and rewrite its manifest.json through ``edit(d)`` (which changes d in place)."""
        b = self.copy("bundle")
        d = json.loads((b / "manifest.json").read_text())
        edit(d)
        (b / "manifest.json").write_text(json.dumps(d, indent=2))
        return b

    def rehash(self, rel: str) -> None:
        """After replacing a bundle file on purpose, record its new hash, so only the content check can catch it."""
        import hashlib

        b = self.tmp / "bundle"
        data = (b / rel).read_bytes()

        def edit(d: dict) -> None:
            d["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

        self.manifest(edit)


@dataclass
class Case:
    """One bad input.

    ``args`` may name ``{tmp}``, ``{data}``, ``{run}``, ``{bundle}`` (the case's
    copies, made by ``setup``) and ``{shared}`` (the read-only originals' folder). ``absent`` paths must not exist afterwards;
    ``unchanged`` paths must be byte-for-byte as they were before the run.
    """

    id: str
    area: str
    what: str
    args: List[str]
    words: List[str]
    setup: Callable[[Work], None] = lambda w: None
    absent: List[str] = field(default_factory=lambda: ["{tmp}/out"])
    unchanged: List[str] = field(default_factory=list)
    timeout: float = 120


def _fill(s: str, w: Work) -> str:
    return s.format(tmp=w.tmp, **w.vars)


def run_case(case: Case, tmp: Path, shared: Shared, timeout: Optional[float] = None) -> Tuple[str, str]:
    """Set the case up in ``tmp``, run it, and judge it: (verdict, why)."""
    w = Work(Path(tmp), shared)
    w.tmp.mkdir(parents=True, exist_ok=True)
    w.vars["shared"] = str(shared.root)
    for what in ("data", "run", "bundle"):
        w.vars.setdefault(what, str(w.tmp / what))
    case.setup(w)
    watched = [Path(_fill(p, w)) for p in case.unchanged]
    before = [snapshot(p) for p in watched]
    rc, out, err = cli([_fill(a, w) for a in case.args], w.tmp, timeout=timeout or case.timeout)
    changed = [str(p) for p, b in zip(watched, before) if snapshot(p) != b]
    made = [_fill(p, w) for p in case.absent if Path(_fill(p, w)).exists()]
    why = ""
    if made:
        why = f"left {', '.join(made)} behind"
    elif changed:
        why = f"changed {', '.join(changed)}"
    return judge(rc, out, err, case.words, why)


__all__ = [
    "CODE_ENV",
    "Case",
    "EXE",
    "Shared",
    "VERDICTS",
    "Work",
    "cli",
    "cli_env",
    "judge",
    "make_shared",
    "message_lines",
    "run_case",
    "snapshot",
]

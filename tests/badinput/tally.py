"""Run the bad-input cases against a checkout of ``edgemask/`` and print what happened, as a table.

    python tests/badinput/tally.py                      # the code installed in this environment
    python tests/badinput/tally.py --code /tmp/before   # another edgemask/ (e.g. main before a fix)

``--code DIR`` puts ``DIR`` (a folder holding an ``edgemask/`` package) first
on the console script's PYTHONPATH, so the same cases, judged by the same
rules as the tests (``badinput_helpers.judge``), run against that code. To
count the cases against the code before a change::

    git worktree add /tmp/before <commit>   # or: git archive <commit> edgemask | tar -x -C /tmp/before
    python tests/badinput/tally.py --code /tmp/before

The shared run and bundle are always made with the installed code (a broken
checkout must not be able to spoil the material), in ``--work`` (default: a
fresh temporary folder). Prints one row per case with ``--cases``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # badinput_helpers, and hostile_files in tests/

from badinput_helpers import CODE_ENV, VERDICTS, make_shared, run_case  # noqa: E402


def all_cases():
    import test_data_inputs
    import test_model_inputs

    return [*test_data_inputs.CASES, *test_model_inputs.CASES]


def readme_table(cases) -> str:
    """The cases as the Markdown table in README.md: id, area, the bad input, what the one line must say."""
    rows = ["| case | area | bad input | the one line holds |", "|---|---|---|---|"]
    for c in cases:
        words = ", ".join(f"`{w}`" for w in c.words)
        rows.append(f"| {c.id} | {c.area} | {c.what.replace('|', '/')} | {words.replace('|', '/')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", help="folder holding the edgemask/ package to test (default: the installed one)")
    ap.add_argument("--work", help="scratch folder (default: a new temporary one)")
    ap.add_argument("--cases", action="store_true", help="also print one row per case")
    ap.add_argument("--only", help="comma-separated case ids")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as hung (wrong exit)")
    ap.add_argument("--table", action="store_true", help="only print the README table of the cases (runs nothing)")
    a = ap.parse_args(argv)
    if a.table:
        print(readme_table(all_cases()))
        return 0
    work = Path(a.work or tempfile.mkdtemp(prefix="badinput-tally-"))
    cases = all_cases()
    if a.only:
        keep = set(a.only.split(","))
        cases = [c for c in cases if c.id in keep]
    os.environ.pop(CODE_ENV, None)
    t0 = time.time()
    shared = make_shared(work / "shared") if not (work / "shared" / "bundle").is_dir() else None
    if shared is None:
        from badinput_helpers import Shared

        s = work / "shared"
        shared = Shared(root=s, data=s / "data", run=s / "run", bundle=s / "bundle")
    if a.code:
        code = Path(a.code).resolve()
        if not (code / "edgemask" / "__init__.py").is_file():
            ap.error(f"--code {code} holds no edgemask/ package")
        os.environ[CODE_ENV] = str(code)
    rows = []
    shutil.rmtree(work / "cases", ignore_errors=True)  # each case starts from an empty folder
    for i, case in enumerate(cases):
        verdict, why = run_case(case, work / "cases" / f"{i:03d}-{case.id}", shared, timeout=a.timeout)
        rows.append((case, verdict, why))
        print(f"  {case.id}: {verdict}", file=sys.stderr, flush=True)
    counts = Counter(v for _, v, _ in rows)
    if a.cases:
        print("| case | area | verdict | what it printed |")
        print("|---|---|---|---|")
        for case, verdict, why in rows:
            print(f"| {case.id} | {case.area} | {verdict} | {why.replace('|', '/')[:160]} |")
        print()
    print(f"code: {a.code or 'installed edgemask'}; {len(rows)} cases in {time.time() - t0:.0f} s")
    print("| cases | " + " | ".join(VERDICTS) + " |")
    print("|---|" + "---|" * len(VERDICTS))
    print(f"| {len(rows)} | " + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

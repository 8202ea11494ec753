"""Long commands in a log or a pipe print plain progress lines (a live bar there shows nothing until it ends)."""

from __future__ import annotations

import io

from rich.console import Console

from edgemask.cli._common import LogProgress


def _bar(clock):
    buf = io.StringIO()
    bar = LogProgress(Console(file=buf, width=200), every=30.0)
    bar._clock = lambda: clock[0]
    bar._start = clock[0]
    return bar, buf


def test_a_line_every_interval_and_at_the_end():
    clock = [0.0]
    bar, buf = _bar(clock)
    with bar:
        t = bar.add_task("training", total=100, info="")
        for step in range(1, 101):
            clock[0] = step * 1.0  # one second per step
            bar.update(t, completed=step, info=f"loss {1 / step:.3f}")
    lines = buf.getvalue().splitlines()
    assert lines[0] == "training: 30/100 loss 0.033 [0:30]"
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["30/100", "60/100", "90/100", "100/100"]
    assert lines[-1].endswith("[1:40]")


def test_stages_print_when_done_after_a_quiet_start_and_removed_tasks_are_ignored():
    clock = [0.0]
    bar, buf = _bar(clock)
    for epoch in (1, 2, 3):
        t = bar.add_task(f"epoch {epoch}", total=3)
        for step in (1, 2, 3):
            clock[0] += 6.0
            bar.update(t, completed=step, total=3, info="")
        bar.remove_task(t)
        bar.update(t, completed=3)  # after removal: nothing
    # epoch 1 ends at 18 s, inside the quiet first 30 s: a job that short (or an early error) prints no progress
    assert buf.getvalue().splitlines() == ["epoch 2: 3/3 [0:18]", "epoch 3: 3/3 [0:18]"]


def test_a_job_that_fails_at_once_prints_nothing():
    clock = [0.0]
    bar, buf = _bar(clock)
    t = bar.add_task("loading images", total=61)
    clock[0] = 0.2
    bar.update(t, completed=61)
    assert buf.getvalue() == ""

"""Long commands in a log or a pipe print plain progress lines (a live bar there shows nothing until it ends)."""

from __future__ import annotations

import io

from rich.console import Console

from edgemask.cli._common import LogProgress


def _bar(clock):
    buf = io.StringIO()
    bar = LogProgress(Console(file=buf, width=200), every=30.0)
    bar._clock = lambda: clock[0]
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


def test_short_stages_print_once_when_done_and_removed_tasks_are_ignored():
    clock = [0.0]
    bar, buf = _bar(clock)
    for epoch in (1, 2):
        t = bar.add_task(f"epoch {epoch}", total=3)
        for step in (1, 2, 3):
            clock[0] += 0.5
            bar.update(t, completed=step, total=3, info="")
        bar.remove_task(t)
        bar.update(t, completed=3)  # after removal: nothing
    assert buf.getvalue().splitlines() == ["epoch 1: 3/3 [0:01]", "epoch 2: 3/3 [0:01]"]

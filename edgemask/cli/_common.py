"""Helpers shared by every CLI command: error handling and the console."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Mapping, Sequence

import typer
from rich.console import Console
from rich.markup import escape

from edgemask.errors import EdgemaskError

# Import names of the packages only `pip install 'edgemask[train]'` brings.
TRAIN_EXTRA_MODULES = frozenset(
    {"torch", "onnx", "onnxconverter_common", "onnxslim", "safetensors", "matplotlib", "skimage"}
)

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def run_cli() -> Iterator[None]:
    """Turn user-facing errors into one red line and exit code 1.

    ``EdgemaskError`` means the user gave us something we cannot use; its
    message already says how to fix it, so a traceback would only hide it.
    Ctrl-C exits 130 quietly (the library has already saved what it could).
    Any other exception is a bug and propagates with its traceback.
    """
    try:
        yield
    except EdgemaskError as e:
        from edgemask.utils.redact import redact

        text = redact(e).strip()  # the last net: no message shows a URL password or a known secret
        msg = text.splitlines()[0] if text else type(e).__name__
        err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except ModuleNotFoundError as e:
        # The device runtime (`pip install edgemask`) has no torch / ONNX tooling;
        # a workstation command that needs them says which extra to install.
        root = (e.name or "").split(".")[0]
        if root not in TRAIN_EXTRA_MODULES:
            raise
        err_console.print("[bold red]error:[/] " + escape(train_extra_message(root)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None


def train_extra_message(missing: str) -> str:
    """What a workstation command says when ``missing`` (a train-extra package) cannot be imported."""
    if sys.version_info < (3, 10):
        # The train extra is Python 3.10+ only (torch); JetPack 5's 3.8 runs the device runtime.
        return (
            f"this command needs the train extra ({missing} is not installed), which needs Python 3.10+ "
            f"(this is Python {sys.version_info[0]}.{sys.version_info[1]}); run it on a workstation: "
            "pip install 'edgemask[train]'"
        )
    return f"this command needs the train extra ({missing} is not installed): pip install 'edgemask[train]'"


def fail(message: str) -> None:
    """Print one error line and exit 1 (for checks done in the CLI layer)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.stderr.flush()
    raise typer.Exit(code=1)


def parse_label_map(text: str | None) -> dict[str, str]:
    """Parse ``--label-map "face=no_mask,mask_chin=mask_incorrect"`` into a dict."""
    from edgemask.errors import ConfigError

    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(
                f"--label-map entry {item!r} has no '='; write it as dataset_label=class, e.g. face=no_mask"
            )
        src, dst = (s.strip() for s in item.split("=", 1))
        if not src or not dst:
            raise ConfigError(f"--label-map entry {item!r} is incomplete; write it as dataset_label=class")
        out[src] = dst
    return out


def progress_bar(transient: bool = False):
    """A rich Progress with the columns every long command uses.

    On a log or a pipe a live bar draws nothing until it ends, so a long
    non-transient job (training) prints plain lines there instead
    (:class:`LogProgress`); a transient bar stays silent off a terminal.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not transient and not err_console.is_terminal:
        return LogProgress(err_console)
    # A transient bar on a non-terminal (a log, a pipe) would leave only a blank line behind.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=transient and not err_console.is_terminal,
    )


class LogProgress:
    """The part of rich's Progress the CLI uses, printed as plain lines for a log or a pipe.

    A task prints a line when it completes and, while it runs, at most every
    ``every`` seconds: ``description done/total info [elapsed]``. Nothing is
    printed in the first ``every`` seconds, so a short job, or one that fails
    on bad input at once, leaves only its result or its one-line error.
    """

    def __init__(self, out: Console, every: float = 30.0):
        import time

        self._out, self._every, self._clock = out, float(every), time.monotonic
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0
        self._start = self._clock()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def add_task(self, description: str, total: float = 1, **fields: Any) -> int:
        now = self._clock()
        self._next += 1
        self._tasks[self._next] = {"d": description, "done": 0, "total": total, "info": "", "t0": now, "last": now}
        self._tasks[self._next].update({k: v for k, v in fields.items() if k == "info"})
        return self._next

    def update(self, task_id: int, completed: float | None = None, total: float | None = None, **fields: Any) -> None:
        t = self._tasks.get(task_id)
        if t is None:
            return
        if total is not None:
            t["total"] = total
        if "info" in fields:
            t["info"] = fields["info"]
        if completed is None or completed == t["done"]:
            return
        t["done"] = completed
        now = self._clock()
        finished = completed >= t["total"]
        if now - self._start < self._every:
            return
        if finished or now - t["last"] >= self._every:
            t["last"] = now
            self._print(t, now)

    def _print(self, t: dict[str, Any], now: float) -> None:
        secs = int(now - t["t0"])
        info = f" {t['info']}" if t["info"] else ""
        self._out.print(
            f"{t['d']}: {t['done']:g}/{t['total']:g}{info} [{secs // 60}:{secs % 60:02d}]",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def remove_task(self, task_id: int) -> None:
        self._tasks.pop(task_id, None)

    def stop(self) -> None:
        self._tasks.clear()


def progress_callback(bar: Any, labels: Mapping[str, str] | None = None, renamed: Sequence[str] = ()):
    """A :class:`edgemask.progress.Progress` that draws one rich bar per stage.

    ``labels`` maps a stage name to the bar's title (other stages show their
    name); the note the library formatted goes in the info column unchanged.
    A stage starting with one of ``renamed`` (e.g. ``"epoch "``: ``"epoch 1"``,
    ``"epoch 2"``...) shares one bar slot: the next such stage replaces the
    previous bar instead of stacking a new one under it.
    """
    labels = dict(labels or {})
    tasks: dict[str, int] = {}  # slot -> rich task id
    names: dict[str, str] = {}  # slot -> the stage drawn there now

    def cb(stage: str, done: int, total: int, note: str = "") -> None:
        slot = next((r for r in renamed if stage.startswith(r)), stage)
        if slot in tasks and names[slot] != stage:
            # Rich's ``Progress.tasks`` positions shift once a task is removed, hence ids kept by slot.
            bar.remove_task(tasks.pop(slot))
        if slot not in tasks:
            tasks[slot] = bar.add_task(labels.get(stage, stage), total=max(total, 1), info="")
            names[slot] = stage
        bar.update(tasks[slot], completed=done, total=max(total, 1), info=note)

    return cb

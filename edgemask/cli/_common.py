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
    """A rich Progress with the columns every long command uses."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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

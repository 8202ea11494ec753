"""``Progress``: the one progress-callback shape of every long library call.

A long call (``train``, ``export_bundle``, ``stability_report``, ``run_demo``,
``write_synth_dataset``, ``compare_bundle``...) takes ``progress=None`` and
calls ``progress(stage, done, total, note)``:

* ``stage``: a short name of the step (``"fp32"``, ``"train"``, ``"load"``);
  a new stage name means a new bar;
* ``done``/``total``: items finished of this stage; ``done == total`` ends it;
* ``note``: text the *library* formats for the user ("max |Δ| 3.1e-05",
  "fooled 180/200", "epoch 3 loss 0.412"); "" when there is nothing to say.

The CLI draws bars from it (``cli._common.progress_callback``) without knowing
what a stage computes. Imported by the device runtime: Python 3.8 syntax only.
"""

from __future__ import annotations

from typing import Protocol  # 3.8+


class Progress(Protocol):
    """``progress(stage, done, total, note="")``; see the module docstring."""

    def __call__(self, stage: str, done: int, total: int, note: str = "") -> None: ...


def _no_progress(stage: str, done: int, total: int, note: str = "") -> None:
    pass


#: The progress callback that draws nothing: ``progress = progress or NO_PROGRESS``.
NO_PROGRESS: Progress = _no_progress


def staged(progress: Progress | None, stage: str):
    """``progress`` bound to one ``stage``, as the ``(done, total)`` callback the data loaders take."""
    p = progress or NO_PROGRESS

    def cb(done: int, total: int) -> None:
        p(stage, done, total)

    return cb


def prefixed(progress: Progress | None, prefix: str) -> Progress:
    """``progress`` with ``prefix`` before every stage name (a call nested in a bigger one, e.g. the demo)."""
    p = progress or NO_PROGRESS

    def cb(stage: str, done: int, total: int, note: str = "") -> None:
        p(prefix + stage, done, total, note)

    return cb


__all__ = ["NO_PROGRESS", "Progress", "prefixed", "staged"]

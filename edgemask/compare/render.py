"""Rich tables for :class:`ComparisonResult` and :class:`BenchResult` (no computing here)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from edgemask.compare.bench import BenchResult
from edgemask.compare.compare import ComparisonResult


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def _ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def comparison_table(result: ComparisonResult) -> Table:
    """One row per engine: accuracy, agreement with float, |Δlogit|, tolerance verdict."""
    title = f"{result.n} images from {result.source or 'inputs'}; reference {result.reference}"
    t = Table(title=title)
    t.add_column("engine", no_wrap=True)
    if result.has_labels:
        t.add_column("acc", justify="right", no_wrap=True)
    for col in ("agree", "max |Δ|", "mean |Δ|"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("tolerance")
    t.add_column("verdict", no_wrap=True)
    for e in result.engines:
        verdict = "[dim]reference[/]" if e.is_reference else ("[green]pass[/]" if e.passed else "[bold red]FAIL[/]")
        row = [e.engine + (" [dim](emulated)[/]" if e.describe.get("emulated") else "")]
        if result.has_labels:
            row.append(_pct(e.accuracy))
        row += [_pct(e.agreement), _num(e.max_abs_diff), _num(e.mean_abs_diff), rule_text(e.tolerance), verdict]
        t.add_row(*row)
    return t


def rule_text(rule: dict[str, float]) -> str:
    """``{"max_abs_diff": 0.05, "min_agreement": 0.99}`` -> ``|Δ| ≤ 0.05 or agree ≥ 99%``."""
    parts = []
    if "max_abs_diff" in rule:
        parts.append(f"|Δ| ≤ {rule['max_abs_diff']:g}")
    if "min_agreement" in rule:
        parts.append(f"agree ≥ {rule['min_agreement'] * 100:g}%")
    return " or ".join(parts) or "-"


def confusion_tables(result: ComparisonResult) -> list[Table]:
    """Per engine, confusion vs labels (when present) and vs the float reference.

    Rows are the truth (or the reference's prediction), columns this engine's prediction.
    """
    names = result.class_names
    tables = []
    for e in result.engines:
        if e.is_reference and not result.has_labels:
            continue
        blocks = []
        if e.confusion is not None:
            blocks.append(("label", e.confusion))
        if not e.is_reference:
            blocks.append(("float", e.confusion_vs_reference))
        for kind, cm in blocks:
            t = Table(title=f"{e.engine}: rows = {kind}, cols = {e.engine}", title_justify="left")
            t.add_column("")
            for n in names:
                t.add_column(n, justify="right")
            if kind == "label" and e.per_class_recall is not None:
                t.add_column("recall", justify="right")
            for i, n in enumerate(names):
                cells = [f"[bold]{v}[/]" if j == i else (f"[red]{v}[/]" if v else "0") for j, v in enumerate(cm[i])]
                if kind == "label" and e.per_class_recall is not None:
                    cells.append(_pct(e.per_class_recall.get(n)))
                t.add_row(n, *cells)
            tables.append(t)
    return tables


def bench_table(result: BenchResult) -> Table:
    """One row per engine: batch-1 p50/p99 and batch-N per-image time and throughput."""
    b = result.config.get("batch", 0)
    n = result.machine.get("threads")
    t = Table(title=f"latency (ms) and throughput; {n} thread{'' if n == 1 else 's'}", caption_justify="left")
    t.add_column("engine", no_wrap=True)
    for col in ("b1 p50", "b1 p99", "b1 call", f"b{b} ms/img", f"b{b} img/s", "thr"):
        t.add_column(col, justify="right", no_wrap=True)
    skipped = []
    for e in result.engines:
        if e.skipped:
            t.add_row(e.engine, "[yellow]skipped[/]", "", "", "", "", "")
            skipped.append(f"{e.engine}: {e.skipped}")
            continue
        t.add_row(
            e.engine,
            _ms(e.p50_ms),
            _ms(e.p99_ms),
            _ms(e.call_p50_ms),
            _ms(e.per_image_ms),
            f"{e.throughput_ips:,.0f}",
            str(e.describe.get("num_threads", "-")),
        )
    if skipped:
        t.caption = "\n".join(skipped)
    return t


def machine_lines(machine: dict[str, Any]) -> list[str]:
    """Human lines describing where a benchmark ran."""
    v = machine.get("versions", {})
    libs = ", ".join(f"{k} {val}" for k, val in v.items())
    load = " ".join(str(x) for x in machine.get("load_average") or []) or "n/a"
    threads = machine.get("threads")
    return [
        f"machine: {machine.get('cpu')} — {machine.get('usable_cores')} of {machine.get('cores')} cores usable, "
        f"{threads} thread{'' if threads == 1 else 's'}; load average {load}",
        f"platform: {machine.get('platform')}",
        f"versions: {libs}",
    ]

"""Rendering a bundle's manifest as rich tables (``edgemask bundle show``, ``edgemask export``).

Rendering only: the numbers come from the manifest that ``load_manifest`` parsed.
"""

from __future__ import annotations

from typing import Any

from edgemask.bundle.manifest import BundleManifest


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v) * 100:.1f}%"


def _sci(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1e}"


def models_table(m: BundleManifest, title: str | None = None):
    """Precision, file, format, opset, size, max |Δlogit| vs torch and agreement, one row per model."""
    from rich.table import Table

    t = Table(title=title or f"{m.name} v{m.version}: models")
    for col, just in (
        ("precision", "left"),
        ("file", "left"),
        ("format", "left"),
        ("opset", "right"),
        ("size KiB", "right"),
        ("max |Δlogit| vs torch", "right"),
        ("agreement", "right"),
        ("notes", "left"),
    ):
        t.add_column(col, justify=just)
    for e in m.models:
        size = m.files.get(e.file, {}).get("bytes")
        x = e.extra or {}
        agree = _pct(x.get("agreement_vs_torch"))
        if "agreement_vs_fp32_calibration_set" in x:
            agree += f" (calib. set {_pct(x['agreement_vs_fp32_calibration_set'])})"
        notes = []
        if e.quantization:
            q = e.quantization
            notes.append(
                f"{q.get('format', '?')} {q.get('method', '?')}"
                f"{', per-channel' if q.get('per_channel') else ''}"
                f"{', symmetric' if q.get('symmetric') else ''}"
            )
        cv = x.get("opencv")
        if isinstance(cv, dict):
            notes.append(
                f"OpenCV {'ok' if cv.get('ok') else 'FAILED'}"
                + (f" (Δ {_sci(cv.get('max_abs_diff'))})" if cv.get("ok") else f": {cv.get('error', '')}")
            )
        if x.get("simplified_by"):
            notes.append(f"simplified by {x['simplified_by']}")
        if e.device:
            notes.append(f"device {e.device}")
        t.add_row(
            e.precision,
            e.file,
            e.format,
            "-" if e.opset is None else str(e.opset),
            _kib(size),
            _sci(x.get("max_abs_diff_vs_torch")),
            agree if x else "-",
            "; ".join(notes),
        )
    return t


def detector_table(m: BundleManifest):
    """The face detector's models: parity with torch (heatmap, decoded boxes) against the golden tolerance."""
    from rich.table import Table

    d = m.detector
    assert d is not None
    t = Table(
        title=f"detector {d.arch} {d.width}x{d.height} (stride {d.output.get('stride')}, score >= "
        f"{d.decode.get('score_threshold')}, NMS IoU {d.decode.get('nms_iou')})"
    )
    for col, just in (
        ("precision", "left"),
        ("file", "left"),
        ("format", "left"),
        ("size KiB", "right"),
        ("max |Δheat| vs torch", "right"),
        ("boxes alike", "right"),
        ("tolerance", "left"),
        ("notes", "left"),
    ):
        t.add_column(col, justify=just)
    tol = (d.golden or {}).get("tolerance") or {}
    for e in d.models:
        x = e.extra or {}
        par = x.get("parity_vs_torch") or {}
        alike = _pct(par.get("box_agreement")) if par else "-"
        if x.get("parity_vs_fp32_calibration_scenes"):
            alike += f" (calib. scenes {_pct(x['parity_vs_fp32_calibration_scenes'].get('box_agreement'))})"
        tp = tol.get(e.precision) if e.format == "onnx" else None
        tol_s = (
            f"Δheat ≤ {_sci(tp.get('heat_max_abs'))}, boxes ≥ {_pct(tp.get('box_agreement'))}"
            if isinstance(tp, dict)
            else "-"
        )
        notes = []
        if e.quantization:
            notes.append(f"{e.quantization.get('format', '?')} {e.quantization.get('method', '?')}")
        cv = x.get("opencv")
        if isinstance(cv, dict):
            notes.append(f"OpenCV {'ok' if cv.get('ok') else 'FAILED'}")
        if e.device:
            notes.append(f"device {e.device}")
        t.add_row(
            e.precision,
            e.file,
            e.format,
            _kib(m.files.get(e.file, {}).get("bytes")),
            _sci(par.get("heat_max_abs")) if par else "-",
            alike,
            tol_s,
            "; ".join(notes),
        )
    return t


def manifest_renderables(m: BundleManifest) -> list[Any]:
    """Everything ``bundle show`` prints: summary, models, preprocessing, calibration, files."""
    from rich.table import Table

    out: list[Any] = []
    s = Table(title=f"bundle {m.name}", show_header=False)
    s.add_column("field", style="bold")
    s.add_column("value")
    s.add_row("version", str(m.version))
    s.add_row("created", m.created)
    s.add_row("arch", f"{m.arch} " + ", ".join(f"{k}={v}" for k, v in m.arch_args.items() if k not in ("mean", "std")))
    s.add_row("classes", ", ".join(m.class_names))
    s.add_row(
        "input",
        f"{m.input.name}: {m.input.dtype} {m.input.layout} {m.input.shape}, {m.input.channel_order}, "
        f"range {m.input.range}",
    )
    p = m.preprocessing
    s.add_row(
        "preprocessing",
        f"resize {p.resize}; mean {[round(v, 4) for v in p.mean]}, "
        f"std {[round(v, 4) for v in p.std]} "
        f"({'inside the model' if p.normalization_in_model else 'apply before the model'})",
    )
    s.add_row("face crop", f"{p.crop}, margin {p.crop_margin:g} of the box's longer side per side")
    s.add_row("opset", str(m.opset))
    if m.golden:
        g = m.golden
        s.add_row(
            "golden",
            f"{g.get('count')} inputs ({g.get('inputs')}), reference {g.get('outputs')}; tolerance "
            + ", ".join(
                f"{k} {('not enforced' if v is None else _sci(v))}" for k, v in (g.get("tolerance") or {}).items()
            ),
        )
    s.add_row("producer", ", ".join(f"{k} {v}" for k, v in m.producer.items()))
    if m.source_run:
        s.add_row("source run", m.source_run)
    s.add_row(
        "signature",
        "unsigned" if not m.signature else f"{m.signature.get('algorithm')} key {m.signature.get('key_id')}",
    )
    out.append(s)
    out.append(models_table(m))
    if m.detector is not None:
        out.append(detector_table(m))
    if m.calibration:
        c = m.calibration
        ct = Table(title="calibration", show_header=False)
        ct.add_column("field", style="bold")
        ct.add_column("value")
        ct.add_row("recipe", f"{c.get('recipe')} (sha256 {str(c.get('recipe_sha256'))[:12]}…)")
        ct.add_row("source", f"{c.get('source')}" + (f" via {c['generator']}" if c.get("generator") else ""))
        ct.add_row(
            "images",
            f"{c.get('count')} ({', '.join(f'{k} {v}' for k, v in (c.get('per_class') or {}).items())}), "
            f"{'stratified' if c.get('stratified') else 'random'}, seed {c.get('seed')}",
        )
        ct.add_row("images sha256", str(c.get("images_sha256")))
        ct.add_row("method", str(c.get("method")) + (f" ({c['percentile']})" if c.get("percentile") else ""))
        ct.add_row("table / cache", f"{c.get('table')} / {c.get('cache')} ({c.get('cache_header')})")
        out.append(ct)
    ft = Table(title="files")
    ft.add_column("file")
    ft.add_column("KiB", justify="right")
    ft.add_column("sha256")
    for rel, meta in sorted(m.files.items()):
        ft.add_row(rel, _kib(meta.get("bytes")), str(meta.get("sha256", ""))[:16] + "…")
    out.append(ft)
    return out

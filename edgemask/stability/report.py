"""Rendering a :class:`~edgemask.stability.result.StudyResult`: JSON, CSV, Markdown, HTML with plots.

The HTML is self-contained: CSS inline, plots embedded as base64 PNGs, no
scripts and no external assets, so it can be mailed or archived as one file.
matplotlib (Agg) is imported only here, only when the HTML is rendered.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np

from edgemask.stability.result import DEFINITIONS, StudyResult, column_name, headline_rows
from edgemask.utils.io import atomic_dir

REPORT_FILES = ("report.json", "samples.csv", "report.md", "report.html", "config.json")


# ----------------------------------------------------------------------------- formatting
def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100.0 * v:.{digits}f}%"


def num(v: float | None, fmt: str = ".4f") -> str:
    return "–" if v is None else format(v, fmt)


def _frac(k: int | None, n: int | None) -> str:
    return "–" if k is None or n is None else f"{k}/{n}"


def headline_table(result: StudyResult, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-engine table (shared by Markdown, HTML and the CLI).

    ``compact``: short headers and no counts, for an 80-column terminal (the counts stay in report.md).
    """
    if compact:
        header = ["engine", "source", "clean\nacc", "agree", "trans-\nfer", "adv.\nagree", "ρ_adv", "missed"]
    else:
        header = [
            "engine",
            "source",
            "clean acc",
            "agreement",
            "transfer rate",
            "adv. agreement",
            "ρ_adv (n)",
            "no_mask→mask",
        ]
    rows = []
    for h in headline_rows(result):
        transfer, rho = pct(h.transfer_rate), num(h.rho_adv)
        if not compact:
            transfer += f" ({_frac(h.transfer_k, h.transfer_n)})"
            rho += f" ({h.rho_n})"
        rows.append(
            [
                h.engine,
                h.source,
                pct(h.clean_accuracy),
                pct(h.agreement),
                transfer,
                pct(h.adv_agreement),
                rho,
                _frac(h.missed_alerts, h.missed_alert_n),
            ]
        )
    return header, rows


# ----------------------------------------------------------------------------- files
def write_report(result: StudyResult, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write every report file into ``out_dir``, which appears complete or not at all.

    Returns:
        ``Path(out_dir)``.
    """
    out = Path(out_dir)
    replace = overwrite or (out.is_dir() and not any(out.iterdir()))
    with atomic_dir(out, overwrite=replace) as tmp:
        d = result.to_dict()
        (tmp / "report.json").write_text(
            json.dumps(d, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8"
        )
        (tmp / "config.json").write_text(json.dumps(d["config"], indent=2) + "\n", encoding="utf-8")
        write_samples_csv(result, tmp / "samples.csv")
        (tmp / "report.md").write_text(render_markdown(result), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(result), encoding="utf-8")
    return out


def write_samples_csv(result: StudyResult, path: Path) -> None:
    """The per-sample table; empty cells where a value is undefined (e.g. α-min of an unfooled sample)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=result.columns, extrasaction="ignore")
        w.writeheader()
        for row in result.rows:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})


def read_samples_csv(path: str | Path) -> list[dict[str, str]]:
    """The per-sample table back as strings (for checks and notebooks)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- markdown
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


#: (title, header, rows, note) of one table of the Markdown and HTML reports.
Section = Tuple[str, List[str], List[List[str]], str]  # typing's names: Python 3.8 evaluates this line


def _sections(result: StudyResult) -> list[Section]:
    """(title, header, rows, note) of every table, shared by Markdown and HTML, in report order."""
    out = [
        _float_attack_section(result),
        _engines_section(result),
        _alpha_sweep_section(result),
        _noise_section(result),
        _eight_bit_section(result),
        _per_class_section(result),
        _flips_section(result),
    ]
    if result.int8_attack:
        out.append(_int8_attack_section(result))
    if result.twin:
        out.append(_twin_section(result))
    out.append(_sensitivity_section(result))
    return out


def _float_attack_section(result: StudyResult) -> Section:
    fa = result.float_attack
    gap = fa.get("median_margin_adv")
    return (
        "Float model under DeepFool",
        [
            "norm",
            "n",
            "fooled",
            "ρ_adv mean (n)",
            "ρ median",
            "‖r‖₂ median",
            "‖r‖∞ median",
            "mean iterations",
            "logit gap past boundary, median",
            "zero-gradient stops",
        ],
        [
            [
                fa["norm"],
                str(fa["n"]),
                f"{pct(fa['fooling_rate'])} ({fa['n_success']})",
                f"{num(fa['mean_rho'])} ({fa['n_success']})",
                num(fa["median_rho"]),
                num(fa["median_l2"]),
                num(fa["median_linf"]),
                num(fa["mean_iterations"], ".2f"),
                num(gap, ".2e"),
                str(fa["n_zero_grad"]),
            ]
        ],
        f"source: {fa.get('source')}; {fa.get('what', '')}. DeepFool stops just past the float model's "
        "boundary: the overshoot adds about η times the logit gap of the last step only, so x_adv is "
        "classified wrongly by a margin of the order shown (margin_adv in samples.csv).",
    )


def _engines_section(result: StudyResult) -> Section:
    """The headline table, with a note on the logit gap and on QDQ graphs placed for TensorRT."""
    gap = result.float_attack.get("median_margin_adv")
    h, rows = headline_table(result)
    note = (
        "transfer rate counts k/n over T_E; no_mask→mask counts missed alerts over ground-truth no_mask faces "
        "the engine alerted on. An engine whose logits differ from the float model's by more than the float "
        "logit gap past the boundary" + (f" (median {gap:.2e})" if gap is not None else "") + " can undo the "
        "flip, so a transfer rate below 100% at α = 1 measures that margin as much as the engine's stability; "
        "the α-sweep shows how much further along r each engine flips too."
    )
    for e in result.engines:
        q = e["label"].get("quantization") or {}
        if e["backend"] == "onnxrt" and q.get("target") == "tensorrt":
            note += (
                f" {e['key']}: the QDQ graph is placed for TensorRT ({q.get('placement', 'Q/DQ on Conv/Gemm inputs')}),"
                " which ONNX Runtime's CPU provider runs as float ops on exactly quantized tensors, not as "
                "integer kernels."
            )
    return ("Engines", h, rows, note)


def _alpha_sweep_section(result: StudyResult) -> Section:
    return (
        "α-sweep: fraction whose prediction changed (x + α·r)",
        ["engine", "n"] + [f"α={a:g}" for a in result.alphas],
        [[e["key"], str(e["alpha_sweep_n"])] + [pct(v) for v in e["alpha_sweep"]] for e in result.engines],
        "α = 1 is x_adv itself; the same samples as the transfer rate",
    )


def _noise_section(result: StudyResult) -> Section:
    return (
        "Random noise of equal ‖r‖₂ vs the DeepFool direction",
        ["engine", "noise flip rate", "transfer rate", "trials"],
        [
            [e["key"], pct(e["noise_flip_rate"]), pct(e["transfer_rate"]), str(e["noise_trials"])]
            for e in result.engines
        ],
        "u is Gaussian, scaled per sample so that the perturbation applied after clipping has ‖·‖₂ = ‖r‖₂; "
        "over T_E; far fewer flips than the transfer rate mean the attack's direction, not its size, does "
        "the work",
    )


def _eight_bit_section(result: StudyResult) -> Section:
    return (
        "Stored as 8-bit pixels",
        ["engine", "still adversarial after round(255·x_adv)/255"],
        [
            [e["key"], f"{pct(e['eight_bit_still_adversarial'])} ({_frac(e['eight_bit_k'], e['eight_bit_n'])})"]
            for e in result.engines
        ],
        "among the samples whose x_adv fooled the engine",
    )


def _per_class_section(result: StudyResult) -> Section:
    pc_rows = []
    for e in result.engines:
        for c, v in e["per_class"].items():
            pc_rows.append(
                [
                    e["key"],
                    c,
                    str(v["n"]),
                    pct(v["clean_accuracy"]),
                    f"{pct(v['transfer_rate'])} ({_frac(v['transfer_k'], v['transfer_n'])})",
                    num(v["rho_adv"]),
                ]
            )
    return ("Per class (ground truth)", ["engine", "class", "n", "clean acc", "transfer rate", "ρ_adv"], pc_rows, "")


def _flips_section(result: StudyResult) -> Section:
    fl_rows = []
    for e in result.engines:
        for i, ci in enumerate(result.class_names):
            for j, cj in enumerate(result.class_names):
                if i != j and e["flips"][i][j]:
                    fl_rows.append([e["key"], f"{ci} → {cj}", str(e["flips"][i][j])])
    return ("Where predictions went (clean → adversarial, over T_E)", ["engine", "flip", "count"], fl_rows, "")


def _int8_attack_section(result: StudyResult) -> Section:
    ia = result.int8_attack
    return (
        "DeepFool directly against the int8 model",
        ["quantity", "value"],
        [
            ["source", f"{ia['source']} (fake-quant twin, mode {ia['twin_mode']})"],
            ["ρ_adv int8 (n)", f"{num(ia['rho_adv_int8'])} ({ia['rho_n_int8']})"],
            ["ρ_adv float (n)", f"{num(ia['rho_adv_float'])} ({ia['rho_n_float']})"],
            [
                "paired: ρ int8 / ρ float, median (n)",
                f"{num(ia['paired_ratio_median'], '.3f')} ({ia['paired_n']})",
            ],
            ["paired means: int8 / float", f"{num(ia['paired_rho_int8'])} / {num(ia['paired_rho_float'])}"],
            [
                "twin's x_adv also fools " + str(ia.get("engine_check")),
                f"{pct(ia.get('fools_engine_rate'))} ({_frac(ia.get('fools_engine_k'), ia.get('fools_engine_n'))})",
            ],
            ["twin clean accuracy", pct(ia.get("twin_clean_accuracy"))],
        ],
        "ρ of the int8 model's own minimal perturbations; the twin's gradients use a straight-through rounding estimate",
    )


def _twin_section(result: StudyResult) -> Section:
    tw = result.twin
    rows = []
    for mode, a in (tw.get("agreement") or {}).items():
        rows.append(
            [
                mode + (" (chosen)" if mode == tw.get("mode") else ""),
                pct(a["argmax_agreement"], 2),
                num(a["max_abs_diff"], ".2e"),
                num(a["mean_abs_diff"], ".2e"),
                num(a["logit_range"], ".2f"),
            ]
        )
    return (
        "Fake-quant twin vs " + str(tw.get("engine", "onnxrt:int8")),
        ["twin mode", "argmax agreement", "max |Δlogit|", "mean |Δlogit|", "logit range"],
        rows,
        str(tw.get("chosen_by", "")),
    )


def _sensitivity_section(result: StudyResult) -> Section:
    sens_rows = []
    for e in result.engines:
        for s, v in e["sensitivity"].items():
            sens_rows.append(
                [
                    e["key"],
                    e["source"],
                    s,
                    num(v["mean"], ".3f"),
                    num(v["median"], ".3f"),
                    num(v["p90"], ".3f"),
                    pct(v["zero_fraction"]),
                ]
            )
    return (
        "Local sensitivity ‖f(x+δ)−f(x)‖₂/‖δ‖₂",
        ["engine", "source", "‖δ‖/‖x‖", "mean", "median", "p90", "no change"],
        sens_rows,
        "finite differences along random directions; the same δ for every engine",
    )


def _provenance(result: StudyResult) -> list[list[str]]:
    m = result.meta
    v = m.get("versions", {})
    rows = [
        [
            "bundle",
            f"{m['bundle']['name']} v{m['bundle']['version']} ({m['bundle']['arch']}, {m['bundle']['input_size']}px)",
        ],
        [
            "dataset",
            f"{m.get('dataset', {}).get('path', '(in memory)')}: {m['n']} images, "
            f"{m.get('dataset', {}).get('sample', 'as given')}",
        ],
        ["seed", str(m["seed"])],
        ["device", m["device"]],
        ["TF32", f"pinned off during the study (before: {m['tf32']['before']})"],
        ["versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)],
        ["host", ", ".join(f"{k}={val}" for k, val in m.get("host", {}).items())],
    ]
    for e in result.engines:
        lab = {k: val for k, val in e["label"].items() if k not in ("quantization",)}
        q = e["label"].get("quantization")
        extra = (
            f"; quantization: {q.get('format')} target={q.get('target')} reduce_range={q.get('reduce_range')}"
            if q
            else ""
        )
        rows.append([f"engine {e['key']}", f"{e['source']}: {json.dumps(lab, default=str)}{extra}"])
    return rows


def render_markdown(result: StudyResult) -> str:
    """The report as Markdown (tables only; the plots are in the HTML)."""
    parts = [
        f"# Stability report: {result.meta['bundle']['name']}\n\n",
        f"DeepFool ({result.float_attack['norm']}, overshoot {result.config['overshoot']}, "
        f"max {result.config['max_iter']} iterations) on the float model; every engine on clean and adversarial "
        f"inputs. Every number is labelled with what produced it: `engine` (a real runtime) or `host-emulation`.\n\n",
    ]
    if result.warnings:
        parts.append("## Warnings\n")
        parts += [f"- {w}\n" for w in result.warnings]
        parts.append("\n")
    for title, header, rows, note in _sections(result):
        parts.append(f"## {title}\n\n")
        parts.append(_md_table(header, rows) if rows else "_(none)_\n")
        if note:
            parts.append(f"\n{note}\n")
        parts.append("\n")
    parts.append("## Provenance\n\n" + _md_table(["", ""], _provenance(result)) + "\n")
    parts.append("## Definitions\n\n" + "".join(f"- **{k}**: {v}\n" for k, v in DEFINITIONS.items()))
    parts.append("\nPer-sample numbers: `samples.csv`. Plots: `report.html`.\n")
    return "".join(parts)


# ----------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#666;font-size:.85em}
.warn{background:#fff4e0;border-left:4px solid #f0a000;padding:.5em 1em}img{max-width:100%}
.src-engine{color:#185}.src-host-emulation{color:#a50}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            cls = f' class="src-{c}"' if c in ("engine", "host-emulation") else ""
            cells.append(f"<td{cls}>{html.escape(str(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(result: StudyResult) -> str:
    """One self-contained HTML page: tables, plots as inline PNGs, no external references."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Stability report: {html.escape(result.meta['bundle']['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Stability report: {html.escape(result.meta['bundle']['name'])}</h1>",
        f"<p>DeepFool ({html.escape(result.float_attack['norm'])}, overshoot {result.config['overshoot']}, "
        f"max {result.config['max_iter']} iterations) on the float model, {result.meta['n']} images; each engine "
        "on clean, adversarial, rescaled, noisy and 8-bit inputs. Source <span class='src-engine'>engine</span> = "
        "a real runtime; <span class='src-host-emulation'>host-emulation</span> = computed on this host to "
        "imitate one.</p>",
    ]
    if result.warnings:
        parts.append(
            "<div class='warn'><b>Warnings</b><ul>"
            + "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
            + "</ul></div>"
        )
    plots = make_plots(result)
    for title, header, rows, note in _sections(result):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(_html_table(header, rows) if rows else "<p>(none)</p>")
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        for key, (after, caption) in _PLOT_PLACES.items():
            if title.startswith(after) and key in plots:
                parts.append(
                    f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{plots[key]}'>"
                    f"<figcaption class='note'>{html.escape(caption)}</figcaption></figure>"
                )
    if "examples" in plots:
        parts.append("<h2>Examples</h2>")
        parts.append(
            f"<figure><img alt='adversarial examples' src='data:image/png;base64,{plots['examples']}'>"
            "<figcaption class='note'>clean | adversarial | perturbation (magnified to the full range, grey = 0). "
            "Titles: ground truth; float prediction clean → adversarial.</figcaption></figure>"
        )
    parts.append("<h2>Provenance</h2>" + _html_table(["", ""], _provenance(result)))
    parts.append(
        "<h2>Definitions</h2><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
        + "</ul>"
    )
    parts.append("<p class='note'>Per-sample numbers: samples.csv; summary: report.json.</p></body></html>\n")
    return "".join(parts)


# plot key -> (section title it follows, caption)
_PLOT_PLACES = {
    "rho": (
        "Engines",
        "ρ = ‖r‖₂/‖x‖₂ of the perturbations that fooled each engine (float attack), and of the direct int8 attack",
    ),
    "alpha": (
        "α-sweep",
        "fraction of predictions changed by x + α·r, per engine; dashed: random noise of the same ‖r‖₂",
    ),
    "sens": ("Local sensitivity", "local sensitivity per engine and probe size (log scale)"),
}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_plots(result: StudyResult) -> dict[str, str]:
    """Base64 PNGs: ρ histograms, α-sweep curves, sensitivity bars, example grid."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    rows = result.rows
    # ρ histograms: one panel per engine (+ float attack, + direct int8 attack).
    series: list[tuple[str, np.ndarray]] = [
        ("float (attacked model)", np.array([r["rho"] for r in rows if r["float_success"]], dtype=float))
    ]
    for e in result.engines:
        c = column_name(e["key"])
        vals = [
            r["rho"] for r in rows if r["float_success"] and r[f"{c}_clean"] == r["float_pred"] and r[f"{c}_fooled"]
        ]
        series.append((f"{e['key']} ({e['source']})", np.array(vals, dtype=float)))
    if result.int8_attack:
        series.append(
            (
                "int8 direct attack (twin)",
                np.array([r["int8_direct_rho"] for r in rows if r.get("int8_direct_success")], dtype=float),
            )
        )
    allv = (
        np.concatenate([v[np.isfinite(v)] for _, v in series if v.size])
        if any(v.size for _, v in series)
        else np.zeros(0)
    )
    if allv.size:
        bins = np.linspace(0, float(np.percentile(allv, 99.5)) * 1.05 + 1e-12, 30)
        fig, axes = plt.subplots(len(series), 1, figsize=(7, 1.3 * len(series) + 0.6), sharex=True, squeeze=False)
        for ax, (name, v) in zip(axes[:, 0], series):
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, color="#3a7" if "direct" not in name else "#c63")
            ax.set_ylabel("count", fontsize=7)
            ax.set_title(
                f"{name}: n={v.size}, mean ρ={np.mean(v):.4f}" if v.size else f"{name}: none", fontsize=8, loc="left"
            )
            ax.tick_params(labelsize=7)
        axes[-1, 0].set_xlabel("ρ = ‖r‖₂ / ‖x‖₂")
        fig.tight_layout()
        out["rho"] = _png(fig)
    # α-sweep
    if result.engines:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for i, e in enumerate(result.engines):
            color = plt.cm.tab10(i % 10)
            ys = [np.nan if v is None else v for v in e["alpha_sweep"]]
            # Equally spaced α (categorical axis): the interesting part is 1 … 1.1, crowded on a linear axis.
            ax.plot(range(len(result.alphas)), ys, "o-", color=color, label=f"{e['key']} ({e['source']})", ms=3)
            if e["noise_flip_rate"] is not None:
                ax.axhline(e["noise_flip_rate"], color=color, ls="--", lw=0.8)
        ax.set_xticks(range(len(result.alphas)), [f"{a:g}" for a in result.alphas])
        if 1.0 in result.alphas:
            ax.axvline(result.alphas.index(1.0), color="#999", lw=0.6)
        ax.set_xlabel("α (x + α·r), not to scale")
        ax.set_ylabel("fraction changed")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["alpha"] = _png(fig)
    # sensitivity
    sens = [
        (e["key"], s, v["mean"]) for e in result.engines for s, v in e["sensitivity"].items() if v["mean"] is not None
    ]
    if sens:
        scales = sorted({s for _, s, _ in sens}, key=float)
        keys = [e["key"] for e in result.engines]
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / max(1, len(scales))
        for si, s in enumerate(scales):
            vals = [next((m for k2, s2, m in sens if k2 == k and s2 == s), np.nan) for k in keys]
            ax.bar(
                np.arange(len(keys)) + si * width,
                [max(v, 1e-6) if np.isfinite(v) else np.nan for v in vals],
                width,
                label=f"‖δ‖/‖x‖={s}",
            )
        ax.set_xticks(np.arange(len(keys)) + width * (len(scales) - 1) / 2, keys, fontsize=7, rotation=15)
        ax.set_yscale("log")
        ax.set_ylabel("mean ‖Δf‖/‖δ‖")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["sens"] = _png(fig)
    # examples grid
    if result.examples:
        k = len(result.examples)
        fig, axes = plt.subplots(k, 3, figsize=(6, 2.1 * k), squeeze=False)
        for row, ex in zip(axes, result.examples):
            x, xa = ex["x"], ex["x_adv"]
            r = xa - x
            m = float(np.abs(r).max()) or 1.0
            imgs = [x, xa, 0.5 + r / (2 * m)]
            titles = [
                f"#{ex['index']} truth {ex['label']}\nclean: {ex['float'][0]}",
                f"adversarial: {ex['float'][1]}",
                f"r × {0.5 / m:.0f}",
            ]
            for ax, im, t in zip(row, imgs, titles):
                ax.imshow(np.clip(np.transpose(im, (1, 2, 0)), 0, 1), interpolation="nearest")
                ax.set_title(t, fontsize=7)
                ax.axis("off")
        fig.tight_layout()
        out["examples"] = _png(fig)
    return out


__all__ = [
    "REPORT_FILES",
    "headline_table",
    "make_plots",
    "read_samples_csv",
    "render_html",
    "render_markdown",
    "write_report",
    "write_samples_csv",
]

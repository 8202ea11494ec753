"""``edgemask stability`` (the DeepFool transfer study, with report) and ``edgemask attack`` (DeepFool alone)."""

from __future__ import annotations

from typing import Any, Optional

import typer

from edgemask.cli._common import console, err_console, progress_bar, progress_callback, run_cli
from edgemask.stability.config import AttackConfig, StabilityConfig

_S = StabilityConfig()
# "\\[" keeps rich from reading "[@target]" as a markup tag (it would vanish from --help).
_ENGINES_HELP = (
    "Engines as backend:precision\\[@target], comma-separated, e.g. 'torch:fp32,onnxrt:fp16,onnxrt:int8,"
    "twin:int8' ('twin' = the fake-quant torch twin of the int8 model, a host emulation; @cuda runs torch "
    "on the GPU or ONNX Runtime with its CUDA provider). Default: torch:fp32, onnxrt at every precision "
    "of the bundle, TensorRT engines that can run here, twin:int8."
)

_STAGES = {
    "load": "loading images",
    "attack": "DeepFool on the float model",
    "engines": "engines",
    "int8 attack": "DeepFool on the int8 twin",
    "report": "writing report",
    "png": "writing PNGs",
}


def _floats(text: str, what: str) -> tuple[float, ...]:
    from edgemask.errors import ConfigError

    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers such as 0.5,1,2; got {text!r}") from None


def print_headline(result: Any) -> None:
    """The per-engine table, the direct int8 attack line, and the warnings."""
    from rich import box
    from rich.table import Table

    from edgemask.stability.report import headline_table, num, pct

    compact = console.width < 110  # an 80-column terminal: short headers, no rules, counts left to report.md
    header, rows = headline_table(result, compact=compact)
    fa = result.float_attack
    t = Table(
        box=None if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
        title=f"stability of {result.meta['bundle']['name']}: DeepFool {fa['norm']} on the float model, "
        f"{fa['n']} images, fooled {pct(fa['fooling_rate'])}, mean ρ {num(fa['mean_rho'])}",
    )
    for i, h in enumerate(header):
        # Engine and source names must stay whole (they label every number); numbers may fold.
        t.add_column(h, justify="left" if i < 2 else "right", no_wrap=i < 2, overflow="fold")
    for r in rows:
        style = None if r[1] == "engine" else "yellow"
        t.add_row(*r, style=style)
    console.print(t)
    if compact:
        console.print("missed = no_mask faces an engine now calls mask (missed alerts); counts per cell in report.md")
    gap = fa.get("median_margin_adv")
    if gap is not None:
        console.print(
            f"x_adv lies a median {gap:.2e} logits past the float model's boundary: an engine whose logits "
            "differ by more can undo the flip, so read the transfer rate with the α-sweep in report.md"
        )
    ia = result.int8_attack
    if ia:
        console.print(
            f"int8 attacked directly (fake-quant twin, {ia['twin_mode']} arithmetic, host emulation): "
            f"mean ρ {num(ia['rho_adv_int8'])} (n={ia['rho_n_int8']}) vs float {num(ia['rho_adv_float'])} "
            f"(n={ia['rho_n_float']}); paired median ratio {num(ia['paired_ratio_median'], '.3f')}; "
            f"fools {ia.get('engine_check')}: {pct(ia.get('fools_engine_rate'))}"
        )
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


def stability_cmd(
    bundle: str = typer.Argument(
        ..., help="Bundle folder written by 'edgemask export' (hashes verified; needs weights.safetensors)."
    ),
    data: str = typer.Option(
        ..., "--data", "-d", help="Dataset in any layout 'train' reads; loaded at the bundle's input size and classes."
    ),
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="Report folder to write (report.json, samples.csv, report.md, report.html, config.json).",
    ),
    n: int = typer.Option(_S.n, "--n", help="Images to study, a seeded stratified sample (0 = every image)."),
    norm: str = typer.Option(_S.norm, help="DeepFool norm: l2 or linf."),
    overshoot: float = typer.Option(_S.overshoot, help="DeepFool overshoot η: iterates are x + (1+η)·r."),
    max_iter: int = typer.Option(_S.max_iter, help="DeepFool iteration cap per image."),
    candidates: int = typer.Option(
        _S.candidates,
        help="DeepFool looks only at the top classes of the clean logits "
        "(0 = every class); set it for models with many classes.",
    ),
    engines: Optional[str] = typer.Option(None, "--engines", "-e", help=_ENGINES_HELP),
    alphas: str = typer.Option(",".join(f"{a:g}" for a in _S.alphas), help="Scales of the α-sweep x + α·r."),
    noise_trials: int = typer.Option(
        _S.noise_trials, help="Random directions per image for the equal-‖r‖₂ noise baseline."
    ),
    sensitivity_scales: str = typer.Option(
        ",".join(f"{s:g}" for s in _S.sensitivity_scales), help="‖δ‖/‖x‖ of the local-sensitivity probes."
    ),
    int8_attack: bool = typer.Option(
        _S.int8_attack,
        "--int8-attack/--no-int8-attack",
        help="Also run DeepFool directly on the int8 model through its fake-quant twin.",
    ),
    twin_mode: str = typer.Option(
        _S.twin_mode,
        help="Twin arithmetic: auto (closest to onnxrt:int8), reference (QDQ spec), x86-u8s8 (ORT's saturating x86 kernels).",
    ),
    seed: int = typer.Option(_S.seed, help="Seed for the sample, the noise and the probes."),
    batch_size: int = typer.Option(
        _S.batch_size, help="Images per engine call and DeepFool working set (0 = automatic)."
    ),
    device: str = typer.Option(_S.device, help="Where the float model and the twin run: auto, cpu or cuda."),
    examples: int = typer.Option(_S.examples, help="Adversarial examples shown in the HTML report."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report folder."),
) -> None:
    """Attack the float model with DeepFool and measure how every engine of the bundle reacts.

    DeepFool finds, per image, a small perturbation r that flips the float
    model's own prediction (ρ = ‖r‖₂/‖x‖₂ measures how small). Every engine then
    sees x and x + r. Per engine: clean accuracy, agreement with the float
    model, transfer rate (among images the float model was fooled on and the
    engine agreed with it when clean, the share the engine is fooled on too),
    adversarial agreement, ρ_adv and missed alerts (no_mask → mask); plus the
    α-sweep x + α·r, a random-noise baseline of the same size, the effect of
    8-bit storage, DeepFool straight on the int8 model and a local sensitivity
    estimate. Every number says whether a real engine or a host emulation
    produced it.

    Example: edgemask stability export/mask-v1 --data data/heldout --n 300 --out reports/mask-v1

    Python: edgemask.stability.stability_report(bundle, data, out, StabilityConfig(n=300))
    """
    with run_cli():
        from edgemask.stability.pipeline import stability_report

        cfg = StabilityConfig(
            n=n,
            norm=norm,
            overshoot=overshoot,
            max_iter=max_iter,
            candidates=candidates,
            alphas=_floats(alphas, "--alphas"),
            noise_trials=noise_trials,
            sensitivity_scales=_floats(sensitivity_scales, "--sensitivity-scales"),
            seed=seed,
            batch_size=batch_size,
            engines=tuple(s for s in (engines or "").split(",") if s.strip()),
            int8_attack=int8_attack,
            twin_mode=twin_mode,
            device=device,
            examples=examples,
            overwrite=overwrite,
        ).validate()
        with progress_bar(transient=True) as bar:
            result = stability_report(bundle, data, out, cfg, progress=progress_callback(bar, _STAGES))
        print_headline(result)
        console.print(f"report in [bold]{out}/[/] (report.html, report.md, report.json, samples.csv)")


def attack_cmd(
    model: str = typer.Argument(
        ..., help="A bundle folder ('edgemask export') or a training run folder ('edgemask train')."
    ),
    data: str = typer.Option(..., "--data", "-d", help="Dataset in any layout 'train' reads."),
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for the adversarial set (x.npy, x_adv.npy, r.npy, samples.csv, adversarial/ PNGs).",
    ),
    n: int = typer.Option(_S.n, "--n", help="Images to attack, a seeded stratified sample (0 = every image)."),
    norm: str = typer.Option(_S.norm, help="DeepFool norm: l2 or linf."),
    overshoot: float = typer.Option(_S.overshoot, help="DeepFool overshoot η."),
    max_iter: int = typer.Option(_S.max_iter, help="DeepFool iteration cap per image."),
    candidates: int = typer.Option(_S.candidates, help="Top classes of the clean logits DeepFool considers (0 = all)."),
    target: str = typer.Option(
        "float", help="float (the torch model) or int8 (a bundle's int8 model via its fake-quant twin)."
    ),
    seed: int = typer.Option(_S.seed, help="Seed for the sample."),
    batch_size: int = typer.Option(_S.batch_size, help="DeepFool working set (0 = automatic)."),
    device: str = typer.Option(_S.device, help="auto, cpu or cuda."),
    png: bool = typer.Option(
        True, "--png/--no-png", help="Also save x_adv as 8-bit PNGs in ImageFolder layout (by ground truth)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Run DeepFool alone and save the adversarial images.

    The .npy files hold the exact float tensors; the PNGs are what an 8-bit
    camera pipeline could store (rounding can undo a small perturbation: the
    summary says how often it did). Each image is attacked away from the
    model's own prediction, right or wrong.

    Example: edgemask attack export/mask-v1 --data data/heldout --n 200 --out adv/mask-v1

    Python: edgemask.stability.attack_to_folder(model, data, out, AttackConfig(n=200))
    """
    with run_cli():
        from edgemask.stability.attack import attack_to_folder
        from edgemask.stability.report import num, pct

        cfg = AttackConfig(
            n=n,
            norm=norm,
            overshoot=overshoot,
            max_iter=max_iter,
            candidates=candidates,
            seed=seed,
            batch_size=batch_size,
            device=device,
            overwrite=overwrite,
            target=target,
            png=png,
        )
        with progress_bar(transient=True) as bar:
            info = attack_to_folder(model, data, out, cfg, progress=progress_callback(bar, _STAGES))
        s = info["summary"]
        console.print(
            f"DeepFool {s['norm']} on {info['model']['target']} ({info['model']['source']}): fooled "
            f"{pct(s['fooling_rate'])} of {s['n']}; ρ mean {num(s['mean_rho'])}, median {num(s['median_rho'])}; "
            f"mean iterations {num(s['mean_iterations'], '.2f')}; still adversarial as 8-bit PNG "
            f"{pct(s.get('eight_bit_still_adversarial'))}"
        )
        console.print(f"adversarial set in [bold]{out}/[/]")


def register(app: typer.Typer) -> None:
    app.command("stability")(stability_cmd)
    app.command("attack")(attack_cmd)

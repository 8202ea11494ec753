"""StabilityConfig: the defaults of ``edgemask stability`` in one place.

The CLI shows these as its ``--help`` defaults and every report carries the
resolved config it was made with (``config.json`` and ``report.json``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edgemask.errors import ConfigError

#: Perturbation scales of the α-sweep (DESIGN.md §5): x + α·r, clipped to [0, 1].
DEFAULT_ALPHAS = (0.5, 1.0, 1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0)
NORMS = ("l2", "linf")
#: How the fake-quant twin computes: "auto" picks the mode that best matches onnxrt:int8.
TWIN_MODES = ("auto", "reference", "x86-u8s8")
#: Pseudo-backend name of the fake-quant torch twin in ``engines`` ("twin:int8").
TWIN_BACKEND = "twin"


@dataclass
class StabilityConfig:
    """Everything the stability study needs.

    Attributes:
        n: samples drawn (stratified by class, seeded) from the dataset; 0 = all.
        norm: DeepFool norm, ``l2`` (the paper's) or ``linf``.
        overshoot: DeepFool η; iterates are ``x + (1+η)·r``.
        max_iter: DeepFool iteration cap per sample.
        candidates: DeepFool considers only the top classes of the clean logits
            (the prediction included); 0 = every class. Worth setting for
            models with many classes, where each candidate costs a backward pass.
        alphas: scales of the perturbation sweep.
        noise_trials: random directions per sample for the equal-‖r‖₂ noise baseline.
        sensitivity_scales: ‖δ‖₂ / ‖x‖₂ of the random probes of the local
            sensitivity ‖f(x+δ) − f(x)‖₂ / ‖δ‖₂ (one estimate per scale).
        sensitivity_trials: random δ per sample and scale.
        seed: seeds the sample choice, noise and probes (the attack itself is deterministic).
        batch_size: images per engine call and DeepFool working set (0 = DeepFool's own choice).
        engines: ``backend:precision`` list; empty = torch:fp32, every ONNX
            precision of the bundle on onnxrt, TensorRT engines when they can
            run here, and the fake-quant twin of int8.
        int8_attack: also run DeepFool directly against the int8 model through its fake-quant twin.
        twin_mode: arithmetic of the twin (see :class:`~edgemask.stability.fakequant.FakeQuantTwin`).
        device: where the float model and the twin run: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        examples: adversarial examples shown in the report's image grid.
        overwrite: replace an existing report folder.
    """

    n: int = 1000
    norm: str = "l2"
    overshoot: float = 0.02
    max_iter: int = 50
    candidates: int = 0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    noise_trials: int = 5
    sensitivity_scales: tuple[float, ...] = (0.001, 0.01)
    sensitivity_trials: int = 2
    seed: int = 0
    batch_size: int = 128
    engines: tuple[str, ...] = ()
    int8_attack: bool = True
    twin_mode: str = "auto"
    device: str = "auto"
    examples: int = 8
    overwrite: bool = False

    def validate(self) -> "StabilityConfig":
        """Raise a ConfigError naming the first bad field; return self."""
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 0:
            raise ConfigError(f"--n must be a whole number >= 0 (0 = every image), got {self.n!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)} (e.g. --norm l2)")
        if not (isinstance(self.overshoot, (int, float)) and 0 <= self.overshoot < 1):
            raise ConfigError(f"--overshoot must be in [0, 1) (the paper uses 0.02), got {self.overshoot!r}")
        if not isinstance(self.max_iter, int) or isinstance(self.max_iter, bool) or self.max_iter < 1:
            raise ConfigError(f"--max-iter must be an integer >= 1 (default 50), got {self.max_iter!r}")
        if (
            not isinstance(self.candidates, int)
            or isinstance(self.candidates, bool)
            or self.candidates == 1
            or self.candidates < 0
        ):
            raise ConfigError(
                f"--candidates must be 0 (every class) or >= 2 (the prediction and at least one "
                f"other), got {self.candidates!r}"
            )
        if not self.alphas or any(
            not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0) for a in self.alphas
        ):
            raise ConfigError(
                f"--alphas must be positive numbers such as 0.5,1,2; got {','.join(map(str, self.alphas)) or 'none'}"
            )
        if self.noise_trials < 0:
            raise ConfigError(f"--noise-trials must be >= 0 (0 = no noise baseline), got {self.noise_trials}")
        if self.sensitivity_trials < 0:
            raise ConfigError(
                f"sensitivity_trials must be >= 0 (0 = no sensitivity estimate), got {self.sensitivity_trials}"
            )
        if any(not (0 < s < 1) for s in self.sensitivity_scales):
            raise ConfigError(
                "--sensitivity-scales are ‖δ‖/‖x‖ ratios in (0, 1), e.g. 0.001,0.01; got "
                f"{','.join(map(str, self.sensitivity_scales))}"
            )
        if self.batch_size < 0:
            raise ConfigError(f"--batch-size must be >= 1 (or 0 for automatic), got {self.batch_size}")
        if self.twin_mode not in TWIN_MODES:
            raise ConfigError(f"unknown --twin-mode {self.twin_mode!r}; choose one of {', '.join(TWIN_MODES)}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.examples < 0:
            raise ConfigError(f"--examples must be >= 0 (0 = no example grid), got {self.examples}")
        parse_engines(self.engines)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("alphas", "sensitivity_scales", "engines"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StabilityConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("alphas", "sensitivity_scales", "engines"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass
class AttackConfig(StabilityConfig):
    """``edgemask attack``'s settings: the DeepFool fields of :class:`StabilityConfig`, plus two of its own.

    The study-only fields (alphas, noise_trials, sensitivity_*, engines, int8_attack, twin_mode, examples)
    are ignored. A separate class keeps these two out of the study's ``config.json`` and ``report.json``.

    Attributes:
        target: ``float`` (the torch model) or ``int8`` (a bundle's int8 model through its fake-quant twin).
        png: also write x_adv as 8-bit PNGs in ImageFolder layout, by ground truth.
    """

    target: str = "float"
    png: bool = True


def parse_engines(spec: str | tuple[str, ...] | list[str] | None) -> list[tuple[str, str, str | None]]:
    """``"torch:fp32,onnxrt:int8@cuda"`` → ``[("torch", "fp32", None), ("onnxrt", "int8", "cuda")]``.

    The optional ``@target`` is the torch device (``torch:fp32@cuda``) or the
    ONNX Runtime execution providers (``onnxrt:fp16@cuda``, ``onnxrt:int8@tensorrt``).
    Backend names are checked against the registry (plus ``twin``) when the
    engines are opened, not here, so this stays import-light.

    Raises:
        ConfigError: an item without ``:``, or an unknown precision.
    """
    from edgemask.bundle.manifest import PRECISIONS

    if spec is None:
        return []
    items = list(spec.split(",") if isinstance(spec, str) else spec)
    out: list[tuple[str, str, str | None]] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        if ":" not in item:
            raise ConfigError(
                f"engine {item!r} has no precision; write backend:precision, e.g. onnxrt:int8 "
                f"(precisions: {', '.join(PRECISIONS)})"
            )
        backend, rest = (s.strip() for s in item.split(":", 1))
        precision, _, target = (s.strip() for s in rest.partition("@"))
        if precision not in PRECISIONS:
            raise ConfigError(
                f"engine {item!r} has unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
            )
        if not backend:
            raise ConfigError(f"engine {item!r} has no backend name; e.g. onnxrt:{precision}")
        if "@" in item and not target:
            raise ConfigError(f"engine {item!r} has an empty target after '@'; e.g. onnxrt:{precision}@cuda")
        entry = (backend, precision, target or None)
        if entry not in out:
            out.append(entry)
    return out


def engine_key(backend: str, precision: str, target: str | None = None) -> str:
    """The name an engine has in reports: ``backend:precision[@target]``."""
    return f"{backend}:{precision}" + (f"@{target}" if target else "")


__all__ = [
    "DEFAULT_ALPHAS",
    "NORMS",
    "TWIN_BACKEND",
    "TWIN_MODES",
    "AttackConfig",
    "StabilityConfig",
    "engine_key",
    "parse_engines",
]

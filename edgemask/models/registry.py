"""A small timm-style registry: names → factories with their default args."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from edgemask.errors import ModelError

# ImageNet statistics are a poor fit for face crops; these are the per-channel
# mean/std of typical RGB face crops and only need to be roughly right, since
# training adapts to them. They are stored in the model and in the manifest.
DEFAULT_MEAN = (0.5, 0.45, 0.42)
DEFAULT_STD = (0.25, 0.25, 0.25)


class Normalize(nn.Module):
    """(x - mean) / std with per-channel constants held as buffers.

    Living inside the model means the ONNX graph and every engine apply the
    same normalization; the attack works on raw [0,1] pixels.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,C,H,W) -> (N,C,H,W)
        return (x - self.mean) / self.std


class EdgeMaskNet(nn.Module):
    """Base class: records what a consumer needs to feed the model."""

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        in_chans: int = 3,
        mean: tuple[float, ...] = DEFAULT_MEAN,
        std: tuple[float, ...] = DEFAULT_STD,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.input_size = input_size
        self.in_chans = in_chans
        self.normalize = Normalize(tuple(mean), tuple(std))


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture."""

    name: str
    factory: Callable[..., EdgeMaskNet]
    description: str
    family: str  # "cnn" | "linear" | "mlp" | "detector": the stability study compares families
    defaults: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"  # "classify": crops -> logits (N, K); "detect": frames -> dense heads


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, family: str, description: str, task: str = "classify") -> Callable:
    """Decorator that adds a factory to the registry under ``name`` (``task``: classify | detect)."""

    def deco(fn: Callable[..., EdgeMaskNet]) -> Callable[..., EdgeMaskNet]:
        sig = inspect.signature(fn)
        defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
        _REGISTRY[name] = ModelSpec(name, fn, description, family, defaults, task)
        return fn

    return deco


def list_models(task: str | None = "classify") -> list[str]:
    """Names of the registered architectures for ``task`` (``None``: all), sorted.

    The default lists the classifiers: everything that maps a face crop to
    logits (train, export, the stability study). ``task="detect"`` lists the
    face detectors (``edgemask detector train --arch``).
    """
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of ``name``; a ``ModelError`` listing valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown architecture {name!r}; choose one of: {', '.join(list_models(None))}") from None


def create_model(name: str, **args: Any) -> EdgeMaskNet:
    """Build architecture ``name`` with ``args`` overriding its defaults.

    Args:
        name: a name from :func:`list_models`.
        **args: factory arguments, e.g. ``num_classes=3, input_size=64``.

    Raises:
        ModelError: unknown name or an argument the factory does not take.
    """
    spec = get_model_spec(name)
    unknown = set(args) - set(inspect.signature(spec.factory).parameters)
    if unknown:
        raise ModelError(
            f"architecture {name!r} has no argument(s) {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(sorted(spec.defaults))}"
        )
    return spec.factory(**args)


def resolved_args(name: str, **args: Any) -> dict[str, Any]:
    """The factory's defaults overlaid with ``args``: what model.json records."""
    spec = get_model_spec(name)
    out = dict(spec.defaults)
    out.update(args)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}

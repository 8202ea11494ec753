"""The one weight loader: an architecture from the registry plus a ``.safetensors`` state dict.

Run folders (``load_run``), detector runs, bundles (the torch runner) and the
stability study all load float weights through :func:`load_weights`, so a
truncated file, a wrong architecture or a shape mismatch reads the same
everywhere. Safetensors only: a checkpoint from someone else is never
unpickled (DESIGN §6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgemask.errors import ModelError

#: The fix-it line when the caller does not name one (what produced the file).
DEFAULT_FIX = "re-run 'edgemask train', or re-export the bundle"


def load_weights(
    arch: str,
    arch_args: dict[str, Any],
    path: str | Path,
    *,
    fix: str = DEFAULT_FIX,
    described_by: str | Path | None = None,
) -> nn.Module:
    """``create_model(arch, **arch_args)`` with the state dict at ``path`` loaded strictly, on CPU, in eval mode.

    Args:
        arch, arch_args: what :func:`edgemask.models.create_model` builds.
        path: a ``.safetensors`` file holding the model's state dict.
        fix: the one fix-it line every error ends with, naming what makes
            the file again (e.g. "re-run 'edgemask train'").
        described_by: the file that named ``arch`` and ``arch_args``
            (``model.json``, ``manifest.json``), for the message when the
            architecture cannot be built from them.

    Raises:
        ModelError: a missing or unreadable file, an architecture that cannot
            be built from ``arch_args``, or weights that do not fit it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from edgemask.models import create_model

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} is missing; {fix}")
    try:
        model = create_model(arch, **arch_args)
    except (TypeError, ValueError, RuntimeError) as e:  # e.g. "num_classes": "three"
        where = f"{described_by}: " if described_by else ""
        raise ModelError(
            f"{where}architecture {arch!r} cannot be built from its arch_args "
            f"({type(e).__name__}: {_first_line(e)}); {fix}"
        ) from None
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path} is not a readable safetensors file ({e}); {fix}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path} does not match architecture {arch!r} ({_first_line(e)}); {fix}") from None
    return model.eval()


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


__all__ = ["DEFAULT_FIX", "load_weights"]

"""Warning callbacks that pass each distinct warning on once."""

from __future__ import annotations

from typing import Callable, List, Optional


def once_each(on_warning: Optional[Callable[[str], None]], seen: List[str]) -> Callable[[str], None]:
    """A warning callback that records each distinct warning in ``seen`` and passes it on once."""

    def warn(w: str) -> None:
        if w not in seen:
            seen.append(w)
            if on_warning is not None:
                on_warning(w)

    return warn


__all__ = ["once_each"]

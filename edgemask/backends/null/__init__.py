"""The ``null`` backend: deterministic fake logits, no model file needed."""

from edgemask.backends.null.runner import NullRunner

__all__ = ["NullRunner"]

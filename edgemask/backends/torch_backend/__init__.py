"""The ``torch`` backend: the float model in PyTorch eager mode, from the bundle's weights."""

from edgemask.backends.torch_backend.runner import TorchRunner

__all__ = ["TorchRunner"]

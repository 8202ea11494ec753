"""Error types.

Every error a user can cause (bad input, missing file, unsupported option) is an
:class:`EdgemaskError`. Its message says what was wrong, what was expected and
how to fix it, on one line. The CLI prints it and exits 1 without a traceback;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgemaskError(Exception):
    """Root of all user-facing errors."""


class DataError(EdgemaskError):
    """A dataset, image or annotation that cannot be used."""


class ConfigError(EdgemaskError):
    """An option, config file or profile with a wrong or missing value."""


class ModelError(EdgemaskError):
    """An unknown architecture or a run/weights file that cannot be loaded."""


class ExportError(EdgemaskError):
    """ONNX export, quantization or engine build failed."""


class BundleError(EdgemaskError):
    """A bundle whose manifest, hashes or signature do not check out."""


class BackendError(EdgemaskError):
    """An inference backend that is unknown, unavailable or misused."""


class NotAvailableError(BackendError):
    """An optional dependency (TensorRT, pycuda, a camera) is not present here."""


class SourceError(EdgemaskError):
    """A camera or video source that cannot be opened."""

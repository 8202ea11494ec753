"""edgemask: face-mask detection on edge cameras, and how stable the deployed model is.

Importing this package is cheap: heavy or optional dependencies (torch,
onnxruntime, OpenCV, TensorRT) are imported by the functions that need them.
"""

from __future__ import annotations

from edgemask.utils.lazy import lazy_exports

__version__ = "0.1.0"

from edgemask.errors import EdgemaskError  # noqa: E402

# Public name -> module that defines it; resolved on first use.
_LAZY = {
    "create_model": "edgemask.models",
    "list_models": "edgemask.models",
    "train": "edgemask.training",
    "load_run": "edgemask.training",
    "evaluate_run": "edgemask.training",
    "load_dataset": "edgemask.data",
    "write_synth_dataset": "edgemask.data.synth",
    "TrainConfig": "edgemask.config",
    "export_bundle": "edgemask.export",
    "load_bundle": "edgemask.bundle",
    "verify_bundle": "edgemask.bundle",
    "get_backend": "edgemask.backends",
    "list_backends": "edgemask.backends",
    "runner_from_bundle": "edgemask.backends",
    "deepfool": "edgemask.attacks",
    "stability_report": "edgemask.stability",
    "run_study": "edgemask.stability",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["EdgemaskError", "__version__", *_LAZY]

"""Model architectures and their registry.

Every model takes float32 NCHW pixels in [0, 1] and returns logits; the
mean/std normalization is a layer inside the model, so attacks, exports and
engines all work in pixel space and cannot disagree about preprocessing.
"""

# Importing the architecture modules registers them.
from edgemask.models import baselines as _baselines  # noqa: F401,E402
from edgemask.models import facedet as _facedet  # noqa: F401,E402
from edgemask.models import mobilenet as _mobilenet  # noqa: F401,E402
from edgemask.models import seed_cnn as _seed_cnn  # noqa: F401,E402
from edgemask.models.flops import count_flops, count_parameters
from edgemask.models.registry import ModelSpec, create_model, get_model_spec, list_models, register_model
from edgemask.models.weights import load_weights

__all__ = [
    "ModelSpec",
    "count_flops",
    "count_parameters",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_weights",
    "register_model",
]

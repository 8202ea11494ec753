"""Adversarial attacks used by the stability study.

Only DeepFool for now (DESIGN.md §5): batched, L2 and Linf, on logits, against
the model's own prediction.
"""

from edgemask.attacks.deepfool import NORMS, DeepFoolResult, deepfool

__all__ = ["NORMS", "DeepFoolResult", "deepfool"]

"""Face crops for the classifier: a re-export of :mod:`edgemask.data.crops`.

The service cuts live crops with the very function training used (one home,
``data/crops.py``); this name stays for the vision-side callers.
"""

from __future__ import annotations

from edgemask.data.crops import face_crops

__all__ = ["face_crops"]

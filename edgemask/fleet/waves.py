"""Waves: a canary, then cumulative percentages of the fleet; halt when failures pass a threshold."""

from __future__ import annotations

import math
from typing import List, Sequence

from edgemask.fleet.inventory import Rollout


def plan_waves(names: Sequence[str], rollout: Rollout) -> List[List[str]]:
    """Split ``names`` (inventory order) into waves: ``canary`` boxes, then each cumulative percentage.

    The last wave always reaches 100 %; empty waves are dropped.
    """
    n = len(names)
    waves: List[List[str]] = []
    done = 0
    if rollout.canary and n:
        done = min(n, rollout.canary)
        waves.append(list(names[:done]))
    targets = [int(math.ceil(float(p) / 100.0 * n)) for p in rollout.waves] + [n]
    for t in targets:
        t = max(done, min(n, t))
        if t > done:
            waves.append(list(names[done:t]))
            done = t
    return waves


def over_threshold(failed: int, attempted: int, max_fail_percent: float, canary: bool = False) -> bool:
    """True when the rollout must stop: any canary failure, or failures/attempted above the threshold."""
    if failed == 0:
        return False
    if canary:
        return True
    return failed * 100.0 > float(max_fail_percent) * attempted


__all__ = ["over_threshold", "plan_waves"]

"""Self-test of a release on the box's own runner, before it is switched in.

Two parts:

* golden: ``golden/inputs.npy`` through the box's runner must reproduce
  ``golden/outputs.fp32.npy`` within the manifest's tolerance for the
  precision (max |Δlogit|). Where the manifest enforces none (int8), top-1
  agreement must reach what the export measured, less one image.
* probe: the bundle's DeepFool probe set (adversarial inputs lying just past
  the float model's boundary); the share whose argmax on this engine differs
  from the float model's is the flip rate, recorded, not judged: it is the
  on-device stability figure.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from edgemask.bundle.bundle import Bundle


@dataclass
class SelfTest:
    ok: bool
    backend: str
    precision: str
    golden_count: int = 0
    golden_max_abs_diff: Optional[float] = None
    golden_tolerance: Optional[float] = None
    golden_agreement: Optional[float] = None
    probe_count: int = 0
    probe_flips: int = 0
    probe_flip_rate: Optional[float] = None
    probe_transfer_rate: Optional[float] = None  # share still misclassified vs the clean float prediction
    probe_flipped: List[int] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _infer(runner: Any, x: np.ndarray, batch: int = 16) -> np.ndarray:
    outs = [
        np.asarray(runner.infer(np.ascontiguousarray(x[i : i + batch])), np.float64) for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def run_selftest(bundle: Bundle, runner: Any, backend: str, precision: str) -> SelfTest:
    """Run the golden check and the probe set on an active ``runner``."""
    t0 = time.perf_counter()
    m = bundle.manifest
    res = SelfTest(ok=True, backend=backend, precision=precision)
    g = m.golden or {}
    if not g.get("inputs") or not g.get("outputs"):
        res.ok = False
        res.problems.append("the bundle has no golden set; re-export it (edgemask export writes one)")
    else:
        x = np.load(bundle.path(g["inputs"]), allow_pickle=False).astype(np.float32)
        ref = np.load(bundle.path(g["outputs"]), allow_pickle=False).astype(np.float64)
        out = _infer(runner, x)
        res.golden_count = int(len(x))
        if out.shape != ref.shape:
            res.ok = False
            res.problems.append(f"golden outputs have shape {out.shape}, the bundle's {ref.shape}")
        else:
            diff = float(np.max(np.abs(out - ref))) if out.size else 0.0
            agree = float(np.mean(out.argmax(1) == ref.argmax(1))) if len(out) else 1.0
            res.golden_max_abs_diff, res.golden_agreement = diff, agree
            tol = (g.get("tolerance") or {}).get(precision)
            res.golden_tolerance = tol
            if tol is not None:
                if not diff <= float(tol):
                    res.ok = False
                    res.problems.append(
                        f"golden logits differ by {diff:.3g}, the manifest allows {tol:.3g} at {precision}"
                    )
            else:
                want = float((g.get("agreement") or {}).get(precision, 1.0)) - 1.0 / max(1, len(out))
                if agree < want:
                    res.ok = False
                    res.problems.append(
                        f"golden top-1 agreement {agree:.1%} is below the export's "
                        f"{want + 1.0 / max(1, len(out)):.1%} at {precision}"
                    )
    p = m.probe or {}
    if p.get("inputs") and int(p.get("count", 0)) > 0:
        xp = np.load(bundle.path(p["inputs"]), allow_pickle=False).astype(np.float32)
        pred = _infer(runner, xp).argmax(1)
        f_adv = np.asarray(p.get("float_pred_adv", []), np.int64)
        f_clean = np.asarray(p.get("float_pred_clean", []), np.int64)
        if len(f_adv) != len(pred):
            res.problems.append(f"probe set has {len(pred)} inputs but {len(f_adv)} float predictions; ignored")
        else:
            flips = pred != f_adv
            res.probe_count, res.probe_flips = int(len(pred)), int(flips.sum())
            res.probe_flip_rate = float(flips.mean()) if len(pred) else None
            res.probe_flipped = [int(i) for i in np.flatnonzero(flips)]
            if len(f_clean) == len(pred) and len(pred):
                res.probe_transfer_rate = float(np.mean(pred != f_clean))
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def selftest_release(bundle_dir: Any, backend: str, precision: str) -> SelfTest:
    """Load a release (hashes verified), make its runner, run :func:`run_selftest`."""
    from edgemask.backends import runner_from_bundle
    from edgemask.bundle import load_bundle
    from edgemask.errors import EdgemaskError

    bundle = load_bundle(bundle_dir)
    try:
        runner = runner_from_bundle(bundle, backend, precision)
        runner.activate()
    except EdgemaskError as e:
        return SelfTest(
            ok=False,
            backend=backend,
            precision=precision,
            problems=[f"the box's runner cannot load it: {str(e).splitlines()[0]}"],
        )
    try:
        return run_selftest(bundle, runner, backend, precision)
    finally:
        runner.deactivate()


__all__ = ["SelfTest", "run_selftest", "selftest_release"]

"""Train/val/test splits that are stratified and never leak duplicates.

Public face-mask sets contain the same picture more than once (re-uploads,
copies across class folders). If one copy lands in train and another in test,
test accuracy measures memory, not generalisation. So we split *groups* of
identical content (``FaceDataset.groups``), never single samples, and stratify
per class so every split sees every class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgemask.errors import ConfigError

if TYPE_CHECKING:
    from edgemask.data.dataset import FaceDataset

SPLITS = ("train", "val", "test")
#: A class this many times larger than the smallest one triggers a warning.
IMBALANCE_RATIO = 3.0
#: Fewer samples than this in a class triggers a warning.
MIN_CLASS_SAMPLES = 10


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even (round(0.5) == 0); we want 0.5 → 1.
    return int(np.floor(x + 0.5))


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.shape != (3,) or not np.all(np.isfinite(fr)) or np.any(fr < 0) or abs(fr.sum() - 1.0) > 1e-6:
        raise ConfigError(
            f"split fractions must be three non-negative numbers (train, val, test) summing to 1, got {tuple(fractions)}; e.g. (0.8, 0.1, 0.1)"
        )
    return fr


def split_indices(
    labels: np.ndarray,
    groups: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split sample indices into train/val/test by group, stratified by class.

    Each group (identical content, or one VOC scene) goes to exactly one
    split, so duplicates and crops of one photo never straddle splits. A
    group's class is the rarest class (fewest samples overall; ties → lower
    index) among its members. Within each class the groups are sorted by
    id and shuffled with a generator seeded by ``(seed, class)``, so the split
    does not depend on sample order and adding a class leaves the others'
    splits unchanged. Fractions count groups. A class with ≥3 groups gets at
    least one group in val and in test (when their fraction is > 0), and train
    keeps at least one group.

    Args:
        labels: (N,) integer class indices.
        groups: N group ids (content hashes).
        fractions: (train, val, test), non-negative, summing to 1.
        seed: shuffling seed.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each a sorted int64 array;
        together they cover ``range(N)`` exactly once.

    Raises:
        ConfigError: bad ``fractions``.
        ValueError: ``labels`` and ``groups`` differ in length.
    """
    fr = _check_fractions(fractions)
    labels = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    if len(groups) != labels.shape[0]:
        raise ValueError(f"labels ({labels.shape[0]}) and groups ({len(groups)}) differ in length")

    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    group_ids = sorted(members)
    # A group (e.g. one VOC scene) is stratified under its rarest class, so a
    # 3 % class that mostly shares photos with a common one still reaches
    # val and test instead of riding along with the majority.
    freq = np.bincount(labels, minlength=int(labels.max()) + 1 if labels.size else 1)
    group_label = {g: int(min(set(labels[members[g]].tolist()), key=lambda c: (freq[c], c))) for g in group_ids}

    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in sorted(set(group_label.values())):
        gs = [g for g in group_ids if group_label[g] == c]
        n = len(gs)
        n_val, n_test = _round_half_up(fr[1] * n), _round_half_up(fr[2] * n)
        if n >= 3:
            n_val = max(n_val, 1) if fr[1] > 0 else 0
            n_test = max(n_test, 1) if fr[2] > 0 else 0
        keep_train = 1 if fr[0] > 0 and n > 0 else 0
        while n_val + n_test > n - keep_train:  # rounding up overshot: take back from the larger
            if n_val >= n_test and n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, c]).permutation(n)
        for rank, k in enumerate(perm):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out[split].extend(members[gs[k]])
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}


def split_heldout_photos(
    labels: np.ndarray,
    groups: Sequence[str],
    sources: Sequence[str],
    folder: str,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    heldout: float = 0.2,
    heldout_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Like :func:`split_indices`, but the test split is a detector run's held-out photos.

    A crop's photo is its source up to ``#`` (VOC sources are
    ``images/<file>#<object>``), named by :func:`edgemask.data.detection.photo_name`;
    the photos :func:`~edgemask.data.detection.is_heldout` picks with
    ``(heldout_seed, heldout)`` are the test split, exactly the ones
    ``edgemask detector train --heldout F --split-seed S`` on the same folder
    never trains on. The other crops split into train and val by group, in the
    ratio of ``fractions[0]`` to ``fractions[1]``.
    """
    from edgemask.data.detection import is_heldout, photo_name

    fr = _check_fractions(fractions)
    if not 0.0 < heldout < 1.0:
        raise ConfigError(f"--heldout must be in (0, 1) to hold photos out, got {heldout}")
    if fr[0] + fr[1] <= 0:
        raise ConfigError("the split needs a train and a val share beside the held-out photos")
    labels = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    test = np.array([is_heldout(photo_name(folder, s.split("#")[0]), heldout_seed, heldout) for s in sources], bool)
    rest = np.nonzero(~test)[0]
    if not len(rest):
        raise ConfigError(f"--heldout {heldout} holds out every photo of {folder}; lower it")
    share = (fr[0] / (fr[0] + fr[1]), fr[1] / (fr[0] + fr[1]), 0.0)
    inner = split_indices(labels[rest], [groups[i] for i in rest], fractions=share, seed=seed)
    out = {s: np.sort(rest[inner[s]]).astype(np.int64) for s in ("train", "val")}
    out["test"] = np.nonzero(test)[0].astype(np.int64)
    return out


def imbalance_warning(counts: Mapping[str, int]) -> str | None:
    """A one-line warning when classes are badly unbalanced or tiny, else None.

    Args:
        counts: samples per class name.

    Returns:
        The warning when the largest class has more than 3× the samples of the
        smallest, or a class has fewer than 10 samples; otherwise None.
    """
    if not counts:
        return None
    parts: list[str] = []
    tiny = {k: int(v) for k, v in counts.items() if int(v) < MIN_CLASS_SAMPLES}
    if tiny:
        parts.append("too few samples to train or test reliably: " + ", ".join(f"{k} has {v}" for k, v in tiny.items()))
    big = max(counts, key=lambda k: counts[k])
    small = min(counts, key=lambda k: counts[k])
    if counts[small] > 0 and counts[big] > IMBALANCE_RATIO * counts[small]:
        parts.append(
            f"class imbalance: {big} has {counts[big]} samples, {counts[big] / counts[small]:.1f}x {small} ({counts[small]}); "
            "accuracy will flatter the large class, so watch per-class recall (class weights or more data help)"
        )
    return "; ".join(parts) or None


def summary(ds: FaceDataset, splits: Mapping[str, np.ndarray]) -> dict:
    """Counts per class and split, plus duplicates, skips and a warning.

    Args:
        ds: the loaded dataset.
        splits: output of :func:`split_indices` for it.

    Returns:
        JSON-ready dict: ``classes``; ``counts[split][class]`` for each split
        and ``"total"``; ``n_samples``, ``n_groups``, ``n_duplicates``
        (samples that repeat another's content), ``n_skipped``, ``format``,
        ``root``, ``image_size``, ``warning`` (str or None).
    """
    names = list(ds.class_names)
    counts: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        idx = np.asarray(splits.get(s, np.empty(0, dtype=np.int64)), dtype=np.int64)
        bc = np.bincount(ds.labels[idx], minlength=len(names)) if idx.size else np.zeros(len(names), dtype=np.int64)
        counts[s] = {n: int(c) for n, c in zip(names, bc)}
    total = np.bincount(ds.labels, minlength=len(names))
    counts["total"] = {n: int(c) for n, c in zip(names, total)}
    n_groups = len(set(ds.groups))
    return {
        "format": ds.format,
        "root": ds.root,
        "image_size": int(ds.images.shape[1]) if ds.images.ndim == 4 else None,
        "classes": names,
        "counts": counts,
        "n_samples": len(ds.labels),
        "n_groups": n_groups,
        "n_duplicates": len(ds.labels) - n_groups,
        "n_skipped": len(ds.skipped),
        "face_crops": ds.face_crops,
        "warning": imbalance_warning(counts["total"]),
    }

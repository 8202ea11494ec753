"""Group-aware, stratified, deterministic splits; summary and imbalance warning."""

from __future__ import annotations

import numpy as np
import pytest

from edgemask.data import FaceDataset, imbalance_warning, split_indices, summary
from edgemask.errors import ConfigError


def _data(counts=(200, 100, 30), dup_every=4, seed=0):
    """Labels and groups where every 4th sample duplicates its predecessor."""
    labels = np.concatenate([np.full(n, c, np.int64) for c, n in enumerate(counts)])
    groups = [f"g{i}" for i in range(len(labels))]
    for i in range(1, len(labels)):
        if i % dup_every == 0 and labels[i] == labels[i - 1]:
            groups[i] = groups[i - 1]
    return labels, groups


def test_partition_and_fractions():
    labels, groups = _data()
    s = split_indices(labels, groups)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(len(labels)))  # each index exactly once
    assert all(v.dtype == np.int64 and np.all(np.diff(v) > 0) for v in s.values())
    # Stratified: per class, 80/10/10 of its groups (rounded), ~80/10/10 of its samples.
    for c, n in enumerate((200, 100, 30)):
        n_groups = len({g for g, lab in zip(groups, labels) if lab == c})
        got_groups = [len({groups[i] for i in s[k] if labels[i] == c}) for k in ("train", "val", "test")]
        assert got_groups[1] == got_groups[2] == int(0.1 * n_groups + 0.5), (c, got_groups)
        got = [int(np.sum(labels[s[k]] == c)) for k in ("train", "val", "test")]
        assert abs(got[0] / n - 0.8) < 0.08 and abs(got[1] / n - 0.1) < 0.05 and abs(got[2] / n - 0.1) < 0.05, (c, got)


def test_duplicates_never_straddle_splits():
    labels, groups = _data()
    s = split_indices(labels, groups, seed=3)
    where = {}
    for k, idx in s.items():
        for i in idx:
            where.setdefault(groups[i], set()).add(k)
    assert all(len(v) == 1 for v in where.values())
    assert len(where) < len(groups)  # the fixture really has duplicates


def test_group_with_mixed_labels_stays_together():
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
    s = split_indices(labels, groups, fractions=(0.5, 0.25, 0.25))
    assert sum(0 in v and 1 in v for v in (set(x.tolist()) for x in s.values())) == 1


def test_deterministic_and_seeded():
    labels, groups = _data()
    a = split_indices(labels, groups, seed=1)
    b = split_indices(labels, groups, seed=1)
    c = split_indices(labels, groups, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_independent_of_sample_order():
    labels, groups = _data()
    perm = np.random.default_rng(0).permutation(len(labels))
    s1 = split_indices(labels, groups)
    s2 = split_indices(labels[perm], [groups[i] for i in perm])
    for k in s1:
        assert sorted(groups[i] for i in s1[k]) == sorted(groups[perm[i]] for i in s2[k])


def test_tiny_classes_get_val_and_test():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 2)
    groups = [str(i) for i in range(len(labels))]
    s = split_indices(labels, groups)
    for k in ("train", "val", "test"):
        assert np.sum(labels[s[k]] == 1) == 1  # 3 groups → one per split
    assert np.sum(labels[s["train"]] == 2) == 2  # 2 groups: both train


def test_zero_fraction_split_stays_empty():
    labels = np.array([0] * 10 + [1] * 10)
    s = split_indices(labels, [str(i) for i in range(20)], fractions=(0.9, 0.0, 0.1))
    assert s["val"].size == 0 and s["test"].size == 2


@pytest.mark.parametrize("fr", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.1, -0.05, -0.05)])
def test_bad_fractions(fr):
    with pytest.raises(ConfigError):
        split_indices(np.zeros(4), list("abcd"), fractions=fr)


def test_imbalance_warning():
    assert imbalance_warning({"mask": 300, "no_mask": 100}) is None
    w = imbalance_warning({"mask": 301, "no_mask": 100})
    assert w and "mask has 301" in w and "3.0x" in w
    w = imbalance_warning({"mask": 12, "no_mask": 9})
    assert w and "no_mask has 9" in w and "mask has 12" not in w


def test_summary_counts():
    labels, groups = _data(counts=(40, 20, 5))
    n = len(labels)
    ds = FaceDataset(
        images=np.zeros((n, 8, 8, 3), np.uint8),
        labels=labels,
        class_names=["mask", "no_mask", "mask_incorrect"],
        sources=[str(i) for i in range(n)],
        groups=groups,
        skipped=[("x.png", "corrupt")],
        format="imagefolder",
        root="r",
    )
    s = split_indices(labels, groups)
    out = summary(ds, s)
    assert out["counts"]["total"] == {"mask": 40, "no_mask": 20, "mask_incorrect": 5}
    for k in ("train", "val", "test"):
        assert sum(out["counts"][k].values()) == len(s[k])
    assert out["n_duplicates"] == n - len(set(groups)) > 0
    assert out["n_skipped"] == 1 and out["image_size"] == 8
    assert "mask_incorrect has 5" in out["warning"]


def test_merge_groups_joins_samples_sharing_any_key():
    from edgemask.data.imagefolder import merge_groups

    # Photo A has crops a1, a2; photo B has b1 and a copy of a2's pixels; photo C stands alone.
    keys = [("A", "a1"), ("A", "a2"), ("B", "b1"), ("B", "a2"), ("C", "c1")]
    g = merge_groups(keys)
    assert g[0] == g[1] == g[2] == g[3] != g[4]
    assert merge_groups(list(reversed(keys))) == list(reversed(g))  # order-free ids


def test_rare_class_in_shared_groups_still_reaches_val_and_test():
    # 40 scenes, each 10 'mask' crops; 10 of them also hold one 'mask_incorrect' crop.
    labels, groups = [], []
    for k in range(40):
        labels += [0] * 10 + ([2] if k < 10 else [])
        groups += [f"s{k}"] * (11 if k < 10 else 10)
    s = split_indices(np.array(labels), groups, seed=0)
    for name in ("val", "test"):
        assert np.sum(np.array(labels)[s[name]] == 2) >= 1, name

"""Multilabel stratified split: bucket shares, extra labels, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hpo.data import aihub
from hpo.data.split import EXTRA_BINS, Item, assign_folds, columns, label_matrix
from hpo.data.synth import _plan


def _twin_items(cows: int, pigs: int, seed: int = 0) -> list[Item]:
    """A label-only twin: the synthetic plan's per-image box counts at the real proportions."""
    rng = np.random.default_rng(seed)
    items = []
    for s in _plan(cows, pigs, seed=seed, corrupt=0):
        long_side = rng.uniform(50, 400, s.boxes)
        ratio = rng.choice([0.6, 1.0, 1.7], s.boxes)
        items.append(Item(s.animal, tuple(zip(long_side * ratio, long_side)), (s.width, s.height)))
    return items


def test_each_bucket_valid_share_within_one_image_of_20_percent():
    items = _twin_items(1800, 640)
    fold = assign_folds(items, folds=5, seed=42)
    valid = fold == 4
    assert abs(valid.sum() - len(items) / 5) <= 1
    for col in aihub.BUCKET_COLUMNS:
        n = sum(1 for it in items if it.bucket == col)
        v = sum(1 for it, is_valid in zip(items, valid) if is_valid and it.bucket == col)
        assert n > 50 and abs(v - 0.2 * n) <= 1, (col, n, v)
    for animal in aihub.NAMES:
        n = sum(1 for it in items if it.animal == animal)
        v = sum(1 for it, is_valid in zip(items, valid) if is_valid and it.animal == animal)
        assert abs(v - 0.2 * n) <= 1, (animal, n, v)


def test_every_fold_is_balanced_and_the_folds_partition():
    items = _twin_items(600, 200)
    fold = assign_folds(items, folds=5, seed=42)
    sizes = Counter(fold.tolist())
    assert sorted(sizes) == [0, 1, 2, 3, 4] and sum(sizes.values()) == 800
    assert all(abs(n - 160) <= 1 for n in sizes.values())
    for k in range(5):
        for col in aihub.BUCKET_COLUMNS:
            n = sum(1 for it in items if it.bucket == col)
            v = sum(1 for it, f in zip(items, fold) if f == k and it.bucket == col)
            assert abs(v - n / 5) <= 1.5, (k, col, n, v)


def test_deterministic_and_seed_dependent():
    items = _twin_items(300, 100)
    a = assign_folds(items, seed=42)
    assert (a == assign_folds(items, seed=42)).all()
    assert (a != assign_folds(items, seed=7)).any()
    assert set(assign_folds(items, folds=3, seed=42).tolist()) == {0, 1, 2}


def test_label_matrix_columns_and_extra_bins():
    cow = Item("cow", ((200.0, 100.0), (300.0, 150.0), (40.0, 20.0)), (1920, 1080))
    pig = Item("pig", ((100.0, 100.0),) * 9, (1280, 960))
    empty = Item("cow", (), (1920, 1080))
    assert cow.bucket == "cow <4" and pig.bucket == "pig 8-12" and empty.bucket == "cow <4"
    # ratio = median w/h = 2.0 -> wide; size = median sqrt(wh)/1920 = 141/1920 = 0.074 -> medium
    assert cow.extra("ratio") == "ratio >=1.25" and cow.extra("size") == "size 0.05-0.15"
    # pig: 100x100 on 1280 -> 0.078, square
    assert pig.extra("ratio") == "ratio 0.8-1.25" and pig.extra("size") == "size 0.05-0.15"
    assert empty.extra("ratio") is None
    cols = columns(["ratio", "size"])
    assert cols[:8] == ["pig", "cow", *aihub.BUCKET_COLUMNS]
    assert cols[8:] == [b for kind in ("ratio", "size") for b, _ in EXTRA_BINS[kind]]
    y = label_matrix([cow, pig, empty], ["ratio", "size"])
    assert y.shape == (3, 14)
    assert [cols[j] for j in np.flatnonzero(y[0])] == ["cow", "cow <4", "ratio >=1.25",
                                                       "size 0.05-0.15"]
    assert [cols[j] for j in np.flatnonzero(y[2])] == ["cow", "cow <4"]


def test_stratify_extra_balances_the_extra_bins_too():
    items = _twin_items(1200, 400, seed=1)
    fold = assign_folds(items, folds=5, seed=42, extra=["ratio", "size"])
    valid = fold == 4
    for kind in ("ratio", "size"):
        for label, _ in EXTRA_BINS[kind]:
            n = sum(1 for it in items if it.extra(kind) == label)
            v = sum(1 for it, is_valid in zip(items, valid) if is_valid and it.extra(kind) == label)
            assert abs(v - 0.2 * n) <= 2, (label, n, v)

"""Multilabel stratified K-fold split of the livestock images.

Each image gets one-hot labels: its class, its per-class box-count bucket (the seed project's split)
and, with ``extra``, the bucket of its median box aspect ratio and of its median box size (the
seed author's "future work"). :class:`iterstrat.ml_stratifiers.MultilabelStratifiedKFold` then deals
the images into folds that keep every label's share, so every fold looks like the whole data set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpo.data import aihub

#: ``--stratify-extra`` bins. Ratio is the image's median box width / height in pixels, with
#: log-symmetric bins. Size is the median box's sqrt(w * h) over the image's long side, which is
#: the box side as a fraction of the letterboxed training image: the bins are COCO's small
#: (< 32 px) / medium (< 96 px) / large boxes at imgsz 640.
EXTRA_BINS: dict[str, tuple[tuple[str, float], ...]] = {
    "ratio": (("ratio <0.8", 0.0), ("ratio 0.8-1.25", 0.8), ("ratio >=1.25", 1.25)),
    "size": (("size <0.05", 0.0), ("size 0.05-0.15", 0.05), ("size >=0.15", 0.15)),
}
EXTRA_KINDS: tuple[str, ...] = tuple(EXTRA_BINS)


@dataclass(frozen=True)
class Item:
    """What the split needs to know about one image."""

    animal: str
    #: (width, height) in pixels of each kept box.
    boxes: tuple[tuple[float, float], ...]
    image_size: tuple[int, int]

    @property
    def bucket(self) -> str:
        return aihub.bucket(self.animal, len(self.boxes))

    def extra(self, kind: str) -> str | None:
        """The image's ``kind`` bin, or None for an image without boxes."""
        if not self.boxes:
            return None
        if kind == "ratio":
            value = float(np.median([w / h for w, h in self.boxes]))
        else:
            long_side = max(self.image_size)
            value = float(np.median([math.sqrt(w * h) / long_side for w, h in self.boxes]))
        chosen = EXTRA_BINS[kind][0][0]
        for label, low in EXTRA_BINS[kind]:
            if value >= low:
                chosen = label
        return chosen


def columns(extra: Sequence[str] = ()) -> list[str]:
    """Names of the one-hot label columns, in matrix order."""
    cols = list(aihub.NAMES) + list(aihub.BUCKET_COLUMNS)
    for kind in extra:
        cols += [label for label, _ in EXTRA_BINS[kind]]
    return cols


def label_matrix(items: Sequence[Item], extra: Sequence[str] = ()) -> np.ndarray:
    """The one-hot label matrix the stratifier balances."""
    index = {name: i for i, name in enumerate(columns(extra))}
    y = np.zeros((len(items), len(index)), dtype=np.int8)
    for row, item in enumerate(items):
        y[row, index[item.animal]] = 1
        y[row, index[item.bucket]] = 1
        for kind in extra:
            label = item.extra(kind)
            if label is not None:
                y[row, index[label]] = 1
    return y


def assign_folds(items: Sequence[Item], *, folds: int = 5, seed: int = 42,
                 extra: Sequence[str] = ()) -> np.ndarray:
    """Fold index (0..folds-1) of every item: fold k is the k-th test set of the K-fold split."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = label_matrix(items, extra)
    out = np.full(len(items), -1, dtype=np.int64)
    kfold = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(kfold.split(np.zeros(len(items)), y)):
        out[test] = k
    assert (out >= 0).all()
    return out

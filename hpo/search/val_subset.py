"""Cheaper per-epoch validation for pruning: a fixed subset of the validation images, the full set last.

On a GPU, validating every epoch on the full set is a large part of a short trial (an H100 epoch of
lr_momentum's shape: ~13 s with validation, ~9 s without). Pruning decisions only need a ranking of
the trials at each epoch, which a fixed part of the validation set gives; the trial's value must be
on the full set. So with a study's ``val_fraction`` below 1, every epoch but the last validates on the
same subset, and the last epoch (and Ultralytics' final validation of best.pt) on every image.

The subset is whole batches of Ultralytics' own validation loader, spread evenly over it: the
loader sorts images by aspect ratio (``rect``) and letterboxes each batch to its own shape, so whole
batches keep those shapes (any other cut would stack images of different sizes), reuse the same
dataset object (no second label cache), and sample every aspect ratio. The fraction is therefore
rounded up to whole batches (at least one).

The hook is three Ultralytics callbacks; nothing of Ultralytics is patched or subclassed.
"""

from __future__ import annotations

import math
from typing import Any


def subset_batches(n_images: int, batch_size: int, fraction: float) -> list[list[int]] | None:
    """Image indices of the chosen batches (contiguous runs of ``batch_size``), or None for all of them.

    ``ceil(fraction * batches)`` batches, evenly spaced from the first to the last: deterministic, the
    same for every trial and epoch of a study on the same data and batch size.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    batches = math.ceil(n_images / batch_size) if n_images and batch_size else 0
    keep = max(1, math.ceil(fraction * batches - 1e-9))
    if batches == 0 or keep >= batches:
        return None
    chosen = [0] if keep == 1 else sorted({round(i * (batches - 1) / (keep - 1)) for i in range(keep)})
    return [list(range(b * batch_size, min((b + 1) * batch_size, n_images))) for b in chosen]


def subset_loader(full: Any, fraction: float) -> Any | None:
    """A loader over the chosen batches of Ultralytics' validation loader ``full`` (None: all batches).

    Same dataset object, collate function, pinning and (at most as many) worker processes; an
    ``InfiniteDataLoader`` like ``full``, so its workers persist across epochs and ``close()`` ends them.
    """
    from ultralytics.data.build import InfiniteDataLoader

    dataset = full.dataset
    batches = subset_batches(len(dataset), int(full.batch_size or 1), fraction)
    if batches is None:
        return None
    workers = min(full.num_workers, len(batches)) if len(batches) > 1 else 0
    return InfiniteDataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=full.collate_fn,
                              pin_memory=full.pin_memory, worker_init_fn=full.worker_init_fn,
                              **({"prefetch_factor": 2} if workers else {}))


class ValidationSubset:
    """Swaps the validator's loader per validation: the subset for epochs before the last, else all images.

    Register :meth:`callbacks` on the model before ``train()``; :meth:`on_subset` tells whether a
    validation ran on the subset (none can be cut from a single validation batch: then every epoch
    validates on all images).
    """

    def __init__(self, fraction: float, *, subset_used: bool = False) -> None:
        """``subset_used``: epochs before this process (a resumed trial) already validated on the subset."""
        self.fraction = fraction
        self.trainer: Any = None
        self.source: Any = None  # the trainer's test_loader the subset was cut from
        self.loader: Any = None
        self.subset_used = subset_used

    def callbacks(self) -> list[tuple[str, Any]]:
        return [("on_pretrain_routine_start", self._remember), ("on_val_start", self._choose),
                ("on_train_end", self._close_quietly)]

    def _remember(self, trainer: Any) -> None:
        self.trainer = trainer

    def _choose(self, validator: Any) -> None:
        trainer = self.trainer
        full = getattr(trainer, "test_loader", None)
        if full is None:
            return
        final = not validator.training or trainer.epoch + 1 >= trainer.epochs
        if final:
            if validator.training and self.subset_used:
                # best.pt is chosen by fitness: the earlier subset validations must not compete with the
                # full-set one, so the last epoch (the trial's value) is also the weights kept.
                trainer.best_fitness = None
            validator.dataloader = full
            return
        if self.source is not full:  # first validation, or Ultralytics rebuilt its loader (OOM retry)
            self.close()
            self.loader, self.source = subset_loader(full, self.fraction), full
        validator.dataloader = self.loader if self.loader is not None else full
        self.subset_used = self.subset_used or self.loader is not None

    def on_subset(self, validator: Any) -> bool:
        """Whether ``validator`` is running on the subset right now."""
        return self.loader is not None and validator.dataloader is self.loader

    def _close_quietly(self, trainer: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.loader is not None:
            try:
                self.loader.close()
            except Exception:  # noqa: BLE001 - workers already gone
                pass
        self.loader = None
        self.source = None

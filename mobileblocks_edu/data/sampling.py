"""The order of an epoch: a seeded shuffle that any run and any resume repeat exactly.

:class:`EpochSampler` shuffles with ``derive_seed(seed, epoch)`` and :func:`set_epoch` hands the
epoch and the seed to a loader's sampler, dataset and generator (or to a
:class:`~mobileblocks_edu.data.batched.TensorBatches`).
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from ..env import check_positive
from .images import derive_seed


class EpochSampler(Sampler[int]):
    """Shuffles ``range(n)`` with the seed ``derive_seed(seed, epoch)``: the order of epoch ``e``
    is the same in every run and after every resume. Call :meth:`set_epoch` before each epoch.

    In a distributed run, process ``rank`` of ``num_replicas`` takes the positions ``rank,
    rank + W, rank + 2W, ...`` of that one order (``W = num_replicas``): the shards are disjoint,
    and batch ``k`` of every shard together is batch ``k`` of one process with ``W`` times the
    batch. ``even`` (training) first drops the last ``n mod W`` positions, so that every process
    has as many; without it (evaluation) the shards hold every index exactly once.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, *, rank: int = 0, num_replicas: int = 1,
                 even: bool = True):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0 (the dataset's length), got {n!r}")
        check_positive("num_replicas", num_replicas, int)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an integer in [0, {num_replicas - 1}], got {rank!r}")
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0
        self.rank, self.num_replicas, self.even = rank, num_replicas, even

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        self.epoch = int(epoch)
        if seed is not None:
            self.seed = int(seed)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        kept = self.n - self.n % self.num_replicas if self.even else self.n
        return iter(order[self.rank:kept:self.num_replicas])

    def __len__(self) -> int:
        kept = self.n - self.n % self.num_replicas if self.even else self.n
        return len(range(self.rank, kept, self.num_replicas))


def set_epoch(loader: DataLoader, epoch: int, seed: Optional[int] = None) -> None:
    """Prepare ``loader`` for epoch ``epoch``: the sampler's shuffle, the dataset's augmentations
    and the loader's own generator (which seeds its workers) all follow ``(seed, epoch)``.

    Workers must not be persistent: a persistent worker keeps its own copy of the dataset and
    would not see the new epoch.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0 (counting from 0), got {epoch!r}")
    if not isinstance(loader, DataLoader) and hasattr(loader, "set_epoch"):  # TensorBatches
        loader.set_epoch(epoch, seed)
        return
    if getattr(loader, "persistent_workers", False):
        raise ValueError("set_epoch needs persistent_workers=False (workers keep a stale copy of the dataset)")
    for obj in (loader.sampler, getattr(loader.batch_sampler, "sampler", None), loader.dataset):
        if obj is not None and hasattr(obj, "set_epoch"):
            try:
                obj.set_epoch(epoch, seed=seed)
            except TypeError:  # a set_epoch(epoch) without a seed, e.g. DistributedSampler
                obj.set_epoch(epoch)
    if loader.generator is not None and seed is not None:
        loader.generator.manual_seed(derive_seed(seed, epoch, 2))


__all__ = ["EpochSampler", "set_epoch"]

"""Training on several processes with PyTorch's own engine: ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N -m mobileblocks_edu.train ...`` starts N copies of the command and
tells each its place through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``). :func:`process_group` joins them (NCCL between GPUs, one GPU
per process; gloo on the CPU), and :func:`~mobileblocks_edu.train.fit` then

* gives each process one shard of every batch (:func:`shard_loader`): process ``r`` of ``W``
  takes positions ``r, r + W, r + 2W, ...`` of the epoch's seeded order, so the ``W``
  micro-batches of step ``k`` together are batch ``k`` of one process with the same global
  batch size (``--batch-size`` stays the global batch);
* wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the
  gradients over the processes after every backward pass (BatchNorm normalises each micro-batch
  by its own statistics, and the running statistics are process 0's);
* lets process 0 alone write checkpoints and results (and take the run folder's lock), and every
  process evaluate a shard of the evaluation images, the counts and the confusion matrix then
  added up (:func:`all_reduce_sum`). Sharded rather than on process 0 alone: the evaluation is
  W times faster, the other processes do not wait idle (with NCCL, a long wait can outlast the
  collectives' timeout), and adding integer counts is exact, so every image counts exactly once.

A plain ``python -m mobileblocks_edu.train`` is one process of a world of one: nothing changes.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler

from ..data.datasets import EpochSampler

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: ``rank`` of ``size``; ``local_rank``
    counts the processes of this machine (and picks its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Process 0, the one that writes the run's files and shows progress."""
        return self.rank == 0


def world() -> World:
    """The world of the current process group, or a world of one when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched_by_torchrun() -> bool:
    """Whether the environment holds the variables ``torchrun`` sets for its processes."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[World]:
    """Under ``torchrun``, join the run's process group for the duration of the block (NCCL when
    the run uses CUDA, each process on GPU ``LOCAL_RANK``; gloo on the CPU) and leave it after.
    Otherwise, or when a group exists already, do nothing. Yields :func:`world`."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    cuda = torch.cuda.is_available() and str(device).split(":")[0] in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device, w: World) -> torch.device:
    """The device of this process: with several processes on CUDA, GPU ``local_rank``."""
    if w.size > 1 and device.type == "cuda":
        return torch.device("cuda", w.local_rank)
    return device


def shard_loader(loader: DataLoader, w: World, train: bool) -> DataLoader:
    """This process's part of ``loader``, which yields batches of the global batch size.

    Training (``train=True``): a loader over the same dataset whose :class:`EpochSampler` keeps
    every ``W``-th index of the epoch's order (the same seeded order in every process), with a
    batch of ``batch_size / W``. Evaluation: every ``W``-th image, so that the shards together
    hold every image exactly once. A world of one gets ``loader`` back unchanged.
    """
    if w.size == 1:
        return loader
    if hasattr(loader, "shard"):  # TensorBatches: the same positions of the same order
        if train:
            check_batch_size(loader.batch_size, w)
        return loader.shard(w.rank, w.size)
    sampler, n = loader.sampler, len(loader.dataset)
    if train and not isinstance(sampler, EpochSampler):
        raise ValueError("a distributed run needs a training loader with an EpochSampler (data.build_loaders)")
    if not train and not isinstance(sampler, (EpochSampler, SequentialSampler)):
        raise ValueError("a distributed run evaluates in order: the evaluation loader must not shuffle")
    if train:
        check_batch_size(loader.batch_size, w)
    if n < w.size:
        raise ValueError(f"{n} images cannot be shared by {w.size} processes")
    shard = EpochSampler(n, getattr(sampler, "seed", 0), train and getattr(sampler, "shuffle", True),
                         rank=w.rank, num_replicas=w.size, even=train)
    workers = loader.num_workers
    return DataLoader(loader.dataset, batch_size=loader.batch_size // w.size if train else loader.batch_size,
                      sampler=shard, drop_last=loader.drop_last, num_workers=workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, generator=loader.generator, worker_init_fn=loader.worker_init_fn,
                      persistent_workers=loader.persistent_workers,
                      **({"prefetch_factor": loader.prefetch_factor} if workers else {}))


def check_batch_size(batch_size: int, w: World) -> None:
    """Raise ``ValueError`` unless the global ``batch_size`` splits evenly over the processes."""
    if batch_size % w.size:
        raise ValueError(f"batch_size={batch_size} (the global batch) is not divisible by the {w.size} "
                         f"processes: choose a multiple of {w.size}")


def wrap(model: nn.Module, w: World, device: torch.device) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` for several processes
    (the weights are broadcast from process 0 here), else ``model`` itself."""
    if w.size == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the processes (a new tensor, on ``t``'s device; NCCL sums on the GPU)."""
    if world().size == 1:
        return t.clone()
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device
    out = t.to(dev, copy=True)
    dist.all_reduce(out)
    return out.to(t.device)


def broadcast_buffers(*modules: nn.Module) -> None:
    """Give every process process 0's buffers (BatchNorm statistics) of ``modules``: after an
    epoch each process has updated them from its own last micro-batch."""
    if world().size == 1:
        return
    for m in modules:
        for b in m.buffers():
            dist.broadcast(b, 0)


def on_main(fn: Callable[[], T], w: World) -> T:
    """Run ``fn`` in process 0 only; if it raises, raise the same error in every process (instead
    of leaving the others waiting for a process that has stopped)."""
    error = None
    if w.is_main:
        try:
            value = fn()
        except Exception as e:
            error = e
    if w.size > 1:
        box = [error]
        dist.broadcast_object_list(box, 0)
        error = box[0]
    if error is not None:
        raise error
    return value if w.is_main else None


__all__ = ["World", "world", "launched_by_torchrun", "process_group", "local_device", "shard_loader",
           "check_batch_size", "wrap", "all_reduce_sum", "broadcast_buffers", "on_main"]

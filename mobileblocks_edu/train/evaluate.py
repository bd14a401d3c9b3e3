"""Evaluation of a classifier: loss, top-1, top-5, per-class accuracy and the confusion matrix."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..blocks.layers import eval_mode
from ..env import check_device, check_positive
from . import distributed
from .recipes import amp_dtype, autocast


@dataclass
class EvalResult:
    """Accuracy of a classifier on a dataset; accuracies in percent.

    ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j``; ``per_class[i]`` is
    the recall of class ``i`` (``None`` when the data holds no image of it).
    """

    loss: float
    top1: float
    top5: float
    per_class: list
    confusion: torch.Tensor
    n: int
    classes: Optional[list] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = self.confusion.tolist()
        return d


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = prediction."""
    check_positive("num_classes", num_classes, int)
    for name, t in (("targets", targets), ("preds", preds)):
        if t.numel() and not 0 <= int(t.min()) <= int(t.max()) < num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes - 1}], "
                             f"got values from {int(t.min())} to {int(t.max())}")
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """How many targets are among the ``k`` highest logits (``k`` capped at the number of classes)."""
    check_positive("k", k, int)
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: Optional[Union[str, torch.device]] = None,
    amp: str = "auto",
    num_classes: Optional[int] = None,
    channels_last: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Top-1, top-5, per-class accuracy and confusion matrix of ``model`` on ``loader``
    (the loss is plain cross-entropy, without label smoothing).

    In a distributed run whose loader holds one shard of the images (its sampler's
    ``num_replicas`` > 1, :func:`mobileblocks_edu.train.distributed.shard_loader`), every process
    evaluates its shard and the sums and the confusion matrix are added over the processes, so
    each image counts exactly once and every process returns the result for all of them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = check_device(device)
    dtype = amp_dtype(amp, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top-1 hits, top-5 hits, images
    all_t, all_p, outputs = [], [], 0
    with eval_mode(model):  # every submodule gets its own mode back (a frozen BN stays in eval)
        for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
            x, y = x.to(device, memory_format=fmt), y.to(device)
            with autocast(device, dtype):
                logits = model(x)
            logits, outputs = logits.float(), logits.shape[1]
            if len(y) and int(y.max()) >= outputs:
                raise ValueError(f"the data has label {int(y.max())} but the model has {outputs} outputs")
            sums += torch.tensor([float(nn.functional.cross_entropy(logits, y, reduction="sum")),
                                  topk_correct(logits, y, 1), topk_correct(logits, y, 5), len(y)], dtype=torch.float64)
            all_t.append(y.cpu())
            all_p.append(logits.argmax(1).cpu())
    if sums[3] == 0:
        raise ValueError("evaluate got an empty loader")
    classes = getattr(loader.dataset, "classes", None)
    num_classes = max(num_classes or (len(classes) if classes else 0), outputs)  # a model may have more outputs
    cm = confusion_matrix(torch.cat(all_t), torch.cat(all_p), num_classes)
    if getattr(loader.sampler, "num_replicas", 1) > 1:  # one shard per process: add up the shards
        sums, cm = distributed.all_reduce_sum(sums), distributed.all_reduce_sum(cm)
    loss, top1, top5, n = sums.tolist()
    per_class = [100.0 * float(cm[i, i]) / float(s) if s > 0 else None for i, s in enumerate(cm.sum(1).tolist())]
    return EvalResult(loss / n, 100.0 * top1 / n, 100.0 * top5 / n, per_class, cm, int(n),
                      list(classes) if classes else None)


__all__ = ["EvalResult", "confusion_matrix", "topk_correct", "evaluate"]

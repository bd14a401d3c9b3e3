"""A few steps of training for the dense models, small enough to watch in a lesson.

:func:`train_steps` runs AdamW (the optimizer both papers switch their detection and segmentation
libraries to) for a number of steps over a dataset of :mod:`.data`, and returns the loss of every
step: the sum of torchvision's losses for a detector (box regression and classification), the
cross-entropy of the upsampled logits (plus 0.4 x the auxiliary head's) for a segmenter.
:func:`freeze_backbone` keeps a pretrained backbone fixed so that only the new head learns.
:func:`mean_iou` and :func:`detect` read the results.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..blocks.layers import eval_mode
from ..env import check_positive
from .data import collate


def is_detector(model: nn.Module) -> bool:
    return hasattr(model, "anchor_generator") or hasattr(model, "rpn")


def _det_targets(model: nn.Module, targets: list[dict]) -> list[dict]:
    masks = hasattr(model, "roi_heads") and model.roi_heads.has_mask()
    keys = ("boxes", "labels", "masks") if masks else ("boxes", "labels")
    return [{k: t[k] for k in keys} for t in targets]


def freeze_backbone(model: nn.Module) -> int:
    """Stop the gradients of the backbone's (classifier's) weights; the number of parameters frozen.
    :func:`train_steps` keeps the BatchNorms whose weights are all frozen in eval mode."""
    body = model.backbone
    frozen = 0
    for name, p in body.named_parameters():
        if not name.startswith(("extra", "fpn")):  # SSDLite's extra blocks and the FPN are new
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def segmentation_loss(model: nn.Module, images: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    out = model(images)
    loss = F.cross_entropy(out["out"], semantic)
    if "aux" in out:
        loss = loss + 0.4 * F.cross_entropy(out["aux"], semantic)
    return loss


def train_steps(model: nn.Module, dataset: Dataset, steps: int = 20, batch_size: int = 4, lr: float = 1e-3,
                weight_decay: float = 1e-4, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` for ``steps`` batches of ``dataset`` (cycling through it) and return the losses.

    ``progress`` shows a progress bar with the running loss while it trains (removed when done)."""
    check_positive("steps", steps, int)
    check_positive("batch_size", batch_size, int)
    if batch_size < 2 and not is_detector(model):
        raise ValueError("a segmenter trains with batch_size >= 2 (its image-pooling BatchNorm needs two values)")
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator,
                        drop_last=len(dataset) >= batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    with eval_mode(model):  # gives every module its own mode back afterwards
        model.train()
        for m in model.modules():  # a frozen BatchNorm keeps its statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        bar = tqdm(itertools.islice(itertools.cycle(loader), steps), total=steps, desc="steps", leave=False,
                   disable=not progress, dynamic_ncols=True)
        for images, targets in bar:
            if is_detector(model):
                loss = sum(model(images, _det_targets(model, targets)).values())
            else:
                loss = segmentation_loss(model, torch.stack(images), torch.stack([t["semantic"] for t in targets]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses


@torch.no_grad()
def mean_iou(model: nn.Module, dataset: Dataset, num_classes: int) -> float:
    """Mean intersection over union of a segmenter's predictions over ``dataset`` (classes present)."""
    inter, union = torch.zeros(num_classes), torch.zeros(num_classes)
    for i in range(len(dataset)):
        image, target = dataset[i]
        with eval_mode(model):
            pred = model(image[None])["out"].argmax(1)[0]
        for c in range(num_classes):
            p, t = pred == c, target["semantic"] == c
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    present = union > 0
    return float((inter[present] / union[present]).mean())


@torch.no_grad()
def detect(model: nn.Module, images: list, score: float = 0.3) -> list[dict]:
    """The detections of a detector (eval mode) with a score of at least ``score``."""
    with eval_mode(model):
        out = model(images)
    return [{k: v[d["scores"] >= score] for k, v in d.items()} for d in out]

"""The dense models counted the papers' way, beside the papers' printed numbers.

Parameters are those of the whole model (auxiliary heads included); FLOPs are fvcore's convention
(EMO's, see :mod:`mobileblocks_edu.analysis.complexity`) of the model's trunk (backbone, neck,
head; :func:`~.backbones.trunk`) at the model's input size, padded to a multiple of 32 the way the
detectors' transforms pad a batch (800x1333 is counted as 800x1344).

A count *lands on* a printed number when it is within half a unit of the printed last digit plus
:data:`REL_TOLERANCE` of the number (:func:`within`): "2.3M" accepts 2.25M - 0.115M to 2.35M + 0.115M.
"""
from __future__ import annotations

import math
import re
from typing import Optional, Sequence

from torch import nn

from ..analysis.complexity import ATTENTION_OPS, count_flops, count_params, flop_breakdown
from ..models.registry import create_model, model_cfg
from .backbones import trunk

REL_TOLERANCE = 0.05
UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_printed(printed: str) -> tuple[float, float]:
    """``"2.3M"`` -> ``(2.3e6, 0.1e6)``: the value and one unit of its last printed digit."""
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*([KMG]?)\s*", str(printed))
    if not m:
        raise ValueError(f"a printed count looks like '2.3M' or '178.11G', got {printed!r}")
    whole, frac, unit = m.groups()
    scale = UNITS[unit]
    return float(f"{whole}.{frac or 0}") * scale, 10 ** -len(frac or "") * scale


def within(ours: float, printed: str, rel: float = REL_TOLERANCE) -> bool:
    """True when ``ours`` is within half a unit of ``printed``'s last digit plus ``rel`` of it."""
    value, unit = parse_printed(printed)
    return abs(ours - value) <= unit / 2 + rel * value


def padded(size: Sequence[int], multiple: int = 32) -> tuple[int, int]:
    """``(H, W)`` rounded up to a multiple of ``multiple`` (what torchvision's detection transform does)."""
    return tuple(int(math.ceil(s / multiple) * multiple) for s in size[-2:])


def count_dense(name: str, size: Optional[Sequence[int]] = None, model: Optional[nn.Module] = None,
                flops: Optional[int] = None) -> dict:
    """Parameters and fvcore FLOPs of the registered dense model ``name`` at ``size`` (H, W; default:
    its input size), with the paper's printed numbers when it has them. ``model`` and ``flops``: the
    model already built and its FLOPs already counted at that size (counted here when ``None``)."""
    cfg = model_cfg(name)
    if cfg.task == "classification":
        raise ValueError(f"{name} is a classifier; count_dense counts the detection and segmentation models")
    if name.startswith("maskrcnn"):
        raise ValueError(f"{name} is a two-stage detector: count its backbone (model.backbone.body), as its paper does")
    model = model if model is not None else create_model(name)
    hw = padded(size if size is not None else cfg.input_size)
    row = dict(model=name, input=f"{hw[0]}x{hw[1]}", params=count_params(model),
               flops=flops if flops is not None else count_flops(trunk(model), (1, 3, *hw), "fvcore"))
    for key in ("params", "flops"):
        if key in cfg.paper:
            row[f"paper_{key}"] = cfg.paper[key]
            row[f"{key}_error"] = row[key] / parse_printed(cfg.paper[key])[0] - 1
            row[f"{key}_ok"] = within(row[key], cfg.paper[key])
    return row


def attention_macs(module: nn.Module, size: Sequence[int]) -> int:
    """Multiply-adds of the attention products (``Q Kᵀ`` and ``A V``) of one forward pass at ``size`` (H, W)."""
    bd = flop_breakdown(module, (1, 3, *size[-2:]), "macs")
    return sum(n for (_, op), n in bd.items() if any(a in op for a in ATTENTION_OPS))


def tokens(size: Sequence[int], stride: int) -> int:
    """Tokens of the map at ``stride`` for an ``(H, W)`` input (the convolutions round up)."""
    return math.prod(math.ceil(s / stride) for s in size[-2:])

"""A classifier as a backbone: its feature maps at several strides, with their channels.

A detector or a segmenter does not read the classifier's pooled vector but the maps the network
computes on the way: the output of every stage, at strides 2, 4, 8, 16 and 32 of the input.
:func:`feature_levels` names them for every family of the library, :class:`FeatureBackbone`
runs the network up to the deepest map asked for and returns the maps at the chosen strides
(an ``OrderedDict``, the form torchvision's heads take), with ``strides`` and ``channels``.

Where a stride has several maps (GhostNet's last stage and its 1x1 ``final_conv`` to 960
channels, both at stride 32), the backbone returns the *last* one, the map the classifier's
head reads; EMO's final LayerNorm (part of its classification head) is not applied.

======================  ==============================  =======================================
family                  levels (stride: channels)       modules
======================  ==============================  =======================================
EMO                     2: 24, 4/8/16/32: embed_dims    ``stage0`` .. ``stage4``
GhostNet, MoCoViT(-D)   2: 16w, 2, 4, 8, 16, 32,        ``stem``, ``stages[0..4]``, ``final_conv``
                        32: 960w
MobileNetV2             2: 32, then its seven rows,     ``stem``, ``blocks[0..6]``, ``conv_head``
                        32: 1280
======================  ==============================  =======================================
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..blocks.layers import eval_mode, is_symbolic
from ..models.emo import EMO
from ..models.ghostnet import GhostNet
from ..models.mobilenetv2 import MobileNetV2


class Level(NamedTuple):
    """One feature map of a backbone: its name, the module that makes it from the previous one,
    its stride (input size / map size) and its channels."""

    name: str
    module: nn.Module
    stride: int
    channels: int


def _modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` in the order the classifier runs them up to its last feature map."""
    if isinstance(model, EMO):
        return [(f"stage{i}", nn.Sequential(*stage)) for i, stage in enumerate(model.stages())]
    if isinstance(model, GhostNet):  # MoCoViT and MoCoViT-D too
        return ([("stem", model.stem)] + [(f"stages.{i}", s) for i, s in enumerate(model.stages)]
                + [("final_conv", model.final_conv)])
    if isinstance(model, MobileNetV2):
        return ([("stem", model.stem)] + [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
                + [("conv_head", model.conv_head)])
    raise TypeError(f"no feature levels are known for {type(model).__name__}; "
                    "the backbones are EMO, GhostNet, MoCoViT, MoCoViT-D and MobileNetV2 models")


def feature_levels(model: nn.Module, probe: int = 64) -> list[Level]:
    """Every feature map of ``model`` in order, with stride and channels, measured by running a
    ``probe x probe`` image through it once (eval mode, no gradients)."""
    if not isinstance(probe, int) or probe < 32 or probe % 32:
        raise ValueError(f"probe must be a multiple of 32, got {probe!r}")
    levels, w = [], next(model.parameters())
    x = torch.zeros(1, 3, probe, probe, dtype=w.dtype, device=w.device)
    with eval_mode(model), torch.no_grad():
        for name, module in _modules(model):
            x = module(x)
            levels.append(Level(name, module, probe // x.shape[-1], x.shape[1]))
    return levels


def _pick(levels: list[Level], strides: Sequence[int]) -> list[int]:
    """Index of the last level at each stride."""
    have = sorted({lv.stride for lv in levels})
    if isinstance(strides, (str, bytes)) or not strides:
        raise ValueError(f"strides must be a non-empty list of strides from {have}, got {strides!r}")
    if list(strides) != sorted(set(strides)) or any(s not in have for s in strides):
        raise ValueError(f"strides must be increasing and from {have}, got {list(strides)!r}")
    return [max(i for i, lv in enumerate(levels) if lv.stride == s) for s in strides]


class FeatureBackbone(nn.Module):
    """The maps of ``model`` at ``strides`` (e.g. ``(8, 16, 32)``), as ``OrderedDict("0": ..., "1": ...)``.

    The classifier's modules are shared, not copied: the backbone holds the stages up to the deepest
    map asked for (the classifier head and every later module are left out of it). ``strides`` and
    ``channels`` list what each returned map has; ``out_channels`` is ``channels`` (torchvision's name).
    """

    def __init__(self, model: nn.Module, strides: Sequence[int] = (8, 16, 32)):
        super().__init__()
        levels = feature_levels(model)
        picked = _pick(levels, strides)
        self.names = [lv.name for lv in levels[:picked[-1] + 1]]
        self.body = nn.ModuleList([lv.module for lv in levels[:picked[-1] + 1]])
        self.picked = picked
        self.strides = [levels[i].stride for i in picked]
        self.channels = [levels[i].channels for i in picked]
        self.out_channels = list(self.channels)
        self.channels_last = isinstance(model, EMO) and model.channels_last and not model.reference_order

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        if not is_symbolic(x):
            check_feature_input(x, self.strides[-1])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = OrderedDict()
        for i, module in enumerate(self.body):
            x = module(x)
            if i in self.picked:
                out[str(len(out))] = x.contiguous()
        return out


def check_feature_input(x, min_size: int) -> None:
    """A ``ValueError`` unless ``x`` is a batch of images ``(B, 3, H, W)`` at least ``min_size`` pixels high
    and wide (the deepest map must keep one pixel)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"a backbone expects a batch of images (B, 3, H, W), got {shape}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} pixels are too small for a map at stride {min_size}: "
                         f"H and W must be at least {min_size}")
    if not x.is_floating_point():
        raise ValueError(f"a backbone expects floating-point images, got {x.dtype}")


def feature_table(model: nn.Module, size: int = 224) -> list[dict]:
    """``[{"level", "stride", "channels", "map"}]`` for every level of ``model`` at ``size x size``."""
    return [dict(level=lv.name, stride=lv.stride, channels=lv.channels, map=f"{size // lv.stride}x{size // lv.stride}")
            for lv in feature_levels(model)]


class Trunk(nn.Module):
    """A dense model up to its head's outputs, on a batch of images already at the model's size: what
    the FLOPs are counted on and what is exported to ONNX (no resizing, no box decoding or NMS, no
    auxiliary head, no final upsampling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        m = self.model
        features = m.backbone(x)
        if hasattr(m, "anchor_generator"):  # SSD, RetinaNet
            features = list(features.values()) if isinstance(features, dict) else [features]
            out = m.head(features)
            return out["cls_logits"], out["bbox_regression"]
        return m.classifier(features["out"])  # segmentation: the logits at the backbone's stride


def trunk(model: nn.Module) -> Trunk:
    """The part of a dense model that does the multiply-adds (see :class:`Trunk`)."""
    if hasattr(model, "rpn"):
        raise TypeError(f"{type(model).__name__} is a two-stage detector: its heads run on the proposals of each "
                        "image, so it has no trunk up to fixed head outputs; count model.backbone instead")
    if not hasattr(model, "backbone") or not (hasattr(model, "head") or hasattr(model, "classifier")):
        raise TypeError(f"trunk() takes a detector or a segmenter of this library, got {type(model).__name__}")
    return Trunk(model)

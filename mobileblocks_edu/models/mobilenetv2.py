"""MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381), built from the library's IRB.

Table 2 of the paper: a 3x3 stem, seven stages of inverted residual blocks given as
(t = expansion, c = channels, n = repeats, s = stride of the first block), a 1x1 convolution
to 1280 channels, global average pooling and a linear classifier.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..blocks.irb import InvertedResidual
from ..blocks.layers import ConvNormAct, kaiming_init, make_divisible
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_num_classes, check_positive, check_rate, check_ratio
from ._base import Classifier
from .registry import register_model

# (t, c, n, s) of the paper's Table 2
MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(Classifier):
    """MobileNetV2.

    Args:
        num_classes: classifier outputs.
        width: channel multiplier (channels rounded to multiples of 8), as ``GhostNet(width)``.
        stages: ``(t, c, n, s)`` rows; defaults to the paper's.
        stem_stride: stride of the 3x3 stem (2 for ImageNet, 1 for 32x32 inputs).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, rising linearly over the blocks.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        stages: Sequence[tuple[int, int, int, int]] = MOBILENETV2_STAGES,
        stem_stride: int = 2,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        check_num_classes(num_classes)
        check_ratio("width", width, why="the channel multiplier")
        check_positive("stem_stride", stem_stride, int)
        check_rate("drop_rate", drop_rate)
        check_rate("drop_path_rate", drop_path_rate)
        rows = [tuple(r) for r in stages]
        if not rows or not all(len(r) == 4 and all(isinstance(v, (int, float)) and v > 0 for v in r) for r in rows):
            raise ValueError(f"stages must be rows (t, c, n, s) of positive numbers, got {stages!r}")
        for i, (t, c, n, s) in enumerate(rows):
            check_ratio(f"stages[{i}] t", t, 1, "the expansion ratio of the row's blocks")
            for name, v in (("c", c), ("n", n), ("s", s)):
                check_positive(f"stages[{i}] {name}", v, int)
        stem_chs = make_divisible(32 * width, 8)
        self.num_features = make_divisible(1280 * max(1.0, width), 8)
        self.num_classes, self.width = num_classes, width
        self.stem = ConvNormAct(3, stem_chs, 3, stem_stride, act_layer=nn.ReLU6)
        n_blocks = sum(n for _, _, n, _ in stages)
        blocks, in_chs, i = [], stem_chs, 0
        for t, c, n, s in stages:
            out_chs = make_divisible(c * width, 8)
            stage = []
            for j in range(n):
                stage.append(InvertedResidual(
                    in_chs, out_chs, s if j == 0 else 1, exp_ratio=t,
                    drop_path_rate=drop_path_rate * i / max(1, n_blocks - 1),
                ))
                in_chs, i = out_chs, i + 1
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvNormAct(in_chs, self.num_features, 1, act_layer=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        kaiming_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))  # (B, 1280, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, 1280)
        return x if pre_logits else self.classifier(self.drop(x))

    def reset_classifier(self, num_classes: int) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.conv_head]


@register_model(
    reference={"params": 3_504_872, "macs": 300.77e6},
    paper={"params": "3.4M", "flops": "300M"},
    source="MobileNetV2 paper, Table 4; exact counts of the widely used torchvision/timm model",
)
def mobilenetv2_100(num_classes: int = 1000, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0x at 224x224: 3,504,872 parameters, 300.77M multiply-adds."""
    return MobileNetV2(num_classes, width=1.0, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD)
def mobilenetv2_100_cifar(num_classes: int = 10, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0x for 32x32 inputs (CIFAR-10), with the strides of ``ghostnet_100_cifar``.

    Two of the five stride-2 steps become stride 1: the stem and the first block of the
    160-channel stage. The map then shrinks 32 -> 16 -> 8 -> 4 and the last stages work on 4x4
    maps, as the ImageNet layout does on a 128x128 image (it would end at 1x1 here). Keeping
    the early stride-2 steps (rather than the late ones) keeps the multiply-adds in the range
    of the other small-input models of the training lab. Same blocks and parameters as
    ``mobilenetv2_100`` except the 10-class classifier.
    """
    stages = [(t, c, n, 1 if c == 160 else s) for t, c, n, s in MOBILENETV2_STAGES]
    return MobileNetV2(num_classes, width=1.0, stages=stages, stem_stride=1, **kwargs)


@register_model(input_size=(3, 128, 128))
def mobilenetv2_100_imagenette(num_classes: int = 10, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0x for the 10-class ImageNet subset (Imagenette) at 128x128.

    The ImageNet layout unchanged (five stride-2 steps: maps 64, 32, 16, 8, 4), the input size
    of the other Imagenette models of the training lab; 10 classes.
    """
    return MobileNetV2(num_classes, width=1.0, **kwargs)

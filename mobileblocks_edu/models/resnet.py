"""ResNet-20 for CIFAR-10 (He et al., CVPR 2016, arXiv:1512.03385, section 4.2): the training lab's calibration
baseline, a plain convolutional network with no efficient operator at all.

A 3x3 convolution to 16 channels, three stages of ``n`` basic blocks (two 3x3 convolutions each) on maps of 32, 16
and 8 pixels with 16, 32 and 64 channels, global average pooling and a linear classifier: ``6n + 2`` layers
(``n = 3``: 20). The shortcuts are the paper's option A: the identity, and where a stage starts, every second
pixel with the new channels zero-padded, so the shortcuts have no parameters (0.27M in the paper's Table 6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.layers import ConvNormAct, DropPath, kaiming_init
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_num_classes, check_positive, check_rate
from ._base import Classifier
from .registry import register_model

RESNET_CIFAR_WIDTHS = (16, 32, 64)  # channels of the three stages (maps of 32, 16 and 8 pixels)


class BasicBlock(nn.Module):
    """``relu(drop_path(bn(conv3x3(relu(bn(conv3x3(x)))))) + shortcut(x))``; the first conv has the block's stride;
    ``drop_path_rate``: stochastic depth on the residual branch (not in the paper; the lab's recipes ask for it)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, drop_path_rate: float = 0.0):
        super().__init__()
        check_positive("stride", stride, int)
        check_rate("drop_path_rate", drop_path_rate)
        if out_chs < in_chs:
            raise ValueError(f"a zero-padded shortcut cannot narrow the channels: in_chs {in_chs} > out_chs {out_chs}")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride
        self.conv1 = ConvNormAct(in_chs, out_chs, 3, stride)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = nn.ReLU()

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:  # option A: (B, C, H, W) -> (B, C', H/s, W/s)
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_chs - self.in_chs
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv2(self.conv1(x))) + self.shortcut(x))

    def extra_repr(self) -> str:
        return f"{self.in_chs} -> {self.out_chs}, stride {self.stride}, shortcut: identity, zero-padded"


class ResNetCifar(Classifier):
    """The CIFAR ResNet of the paper's section 4.2: ``6 * depth_n + 2`` layers.

    Args:
        num_classes: classifier outputs.
        depth_n: basic blocks per stage (3: ResNet-20, 5: ResNet-32, 9: ResNet-56).
        widths: channels of the three stages.
        drop_path_rate: stochastic depth, rising linearly over the blocks (0 in the paper).
    """

    def __init__(self, num_classes: int = 10, depth_n: int = 3, widths: tuple[int, ...] = RESNET_CIFAR_WIDTHS,
                 drop_path_rate: float = 0.0):
        super().__init__()
        check_num_classes(num_classes)
        check_positive("depth_n", depth_n, int)
        check_rate("drop_path_rate", drop_path_rate)
        for i, w in enumerate(widths):
            check_positive(f"widths[{i}]", w, int)
        self.num_classes, self.num_features, self.depth_n = num_classes, widths[-1], depth_n
        self.stem = ConvNormAct(3, widths[0], 3)
        stages, in_chs, n_blocks = [], widths[0], len(widths) * depth_n
        for i, w in enumerate(widths):
            rates = [drop_path_rate * (i * depth_n + j) / max(1, n_blocks - 1) for j in range(depth_n)]
            stages.append(nn.Sequential(*[BasicBlock(in_chs if j == 0 else w, w, 2 if i and not j else 1, rates[j])
                                          for j in range(depth_n)]))
            in_chs = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        kaiming_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, 64, H/4, W/4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, 64)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.stages[-1][-1]]


@register_model(
    input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
    reference={"params": 269_722},
    paper={"params": "0.27M"},
    source="ResNet paper, Table 6 (CIFAR-10); exact count of option A's parameter-free shortcuts",
)
def resnet20_cifar(num_classes: int = 10, **kwargs) -> ResNetCifar:
    """ResNet-20 for 32x32 inputs (CIFAR-10): 269,722 parameters, 0.27M in the paper's Table 6."""
    return ResNetCifar(num_classes, depth_n=3, **kwargs)


__all__ = ["BasicBlock", "ResNetCifar", "resnet20_cifar", "RESNET_CIFAR_WIDTHS"]

"""The Inverted Residual Block of MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381).

.. math::

    Y = X + \\mathrm{PW}_{\\lambda C \\to C}\\big(\\mathrm{DW}_{k\\times k}(\\mathrm{PW}_{C \\to \\lambda C}(X))\\big)

Expand the C channels to λC with a 1x1 convolution (BN, ReLU6), mix each channel spatially
with a k x k depthwise convolution (BN, ReLU6), project back with a *linear* 1x1 convolution
(BN, no activation: the "linear bottleneck"), and add the input when shapes allow.
"""
from __future__ import annotations

import torch
from torch import nn

from ..env import check_bool, check_positive, check_rate, check_ratio
from .layers import ConvNormAct, DropPath, LayerFactory, check_factory, check_input, check_kernel


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual block.

    Args:
        in_chs: input channels C.
        out_chs: output channels.
        stride: stride of the depthwise convolution (2 halves H and W).
        exp_ratio: expansion ratio λ; the hidden width is ``round(in_chs * exp_ratio)``.
            With ``exp_ratio == 1`` there is no expansion convolution (MobileNetV2's first block).
        dw_kernel_size: kernel size k of the depthwise convolution.
        act_layer: activation after the expansion and the depthwise convolution.
        norm_layer: normalisation after every convolution.
        drop_path_rate: stochastic depth on the residual branch.
        has_skip: add the input; defaults to ``stride == 1 and in_chs == out_chs``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        exp_ratio: float = 6.0,
        dw_kernel_size: int = 3,
        act_layer: LayerFactory = nn.ReLU6,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        drop_path_rate: float = 0.0,
        has_skip: bool | None = None,
    ):
        super().__init__()
        check_positive("in_chs", in_chs, int)
        check_positive("out_chs", out_chs, int)
        check_ratio("exp_ratio", exp_ratio, 1, "the hidden width is exp_ratio x in_chs")
        check_positive("stride", stride, int)
        check_kernel("dw_kernel_size", dw_kernel_size)
        check_factory("act_layer", act_layer)
        check_factory("norm_layer", norm_layer)
        check_rate("drop_path_rate", drop_path_rate)
        if has_skip is not None:
            check_bool("has_skip", has_skip)
        hidden = round(in_chs * exp_ratio)
        can_skip = stride == 1 and in_chs == out_chs
        if has_skip and not can_skip:
            raise ValueError(
                f"has_skip=True needs stride=1 and in_chs == out_chs, got stride={stride}, "
                f"in_chs={in_chs}, out_chs={out_chs}"
            )
        self.in_chs, self.out_chs, self.stride, self.exp_ratio = in_chs, out_chs, stride, exp_ratio
        self.has_skip = can_skip if has_skip is None else has_skip
        # (B, C, H, W) -> (B, λC, H, W)
        self.conv_pw = (
            ConvNormAct(in_chs, hidden, 1, norm_layer=norm_layer, act_layer=act_layer)
            if exp_ratio != 1
            else nn.Identity()
        )
        # (B, λC, H, W) -> (B, λC, H/s, W/s), one k x k filter per channel
        self.conv_dw = ConvNormAct(
            hidden, hidden, dw_kernel_size, stride, groups=hidden, norm_layer=norm_layer, act_layer=act_layer
        )
        # (B, λC, H/s, W/s) -> (B, C_out, H/s, W/s), linear bottleneck
        self.conv_pwl = ConvNormAct(hidden, out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_chs)
        y = self.conv_pwl(self.conv_dw(self.conv_pw(x)))
        return x + self.drop_path(y) if self.has_skip else y

    def extra_repr(self) -> str:
        return (
            f"in_chs={self.in_chs}, out_chs={self.out_chs}, stride={self.stride}, "
            f"exp_ratio={self.exp_ratio}, has_skip={self.has_skip}"
        )

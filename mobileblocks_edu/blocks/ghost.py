"""Ghost modules and Ghost bottlenecks (GhostNet, Han et al., CVPR 2020, arXiv:1911.11907).

A convolution's output maps are often near-copies of one another ("ghosts"). A Ghost module
computes only ``m = ceil(n / s)`` *intrinsic* maps with an ordinary (here 1x1) convolution and
derives the others with one cheap ``d x d`` depthwise convolution per intrinsic map:

.. math::

    Y' = \\mathrm{PW}_{C \\to m}(X), \\qquad
    Y = \\big[\\,Y';\\ \\mathrm{DW}_{d \\times d}(Y')\\,\\big]_{1..n}

With ratio ``s = 2`` a Ghost module ``C -> n`` costs ``H W (C n/2 + d² n/2)`` multiply-adds
instead of the ``H W C n`` of a 1x1 convolution: about half.

The Ghost bottleneck stacks two Ghost modules like MobileNetV2's inverted residual block:
expand with a Ghost module (ReLU), downsample with a depthwise convolution when the stride is 2,
optionally squeeze-excite, project with a Ghost module (no activation), add a shortcut.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..env import check_number, check_positive, check_rate
from .layers import (
    ConvNormAct,
    DropPath,
    LayerFactory,
    SqueezeExcite,
    check_factory,
    check_input,
    check_kernel,
    make_divisible,
)


class GhostModule(nn.Module):
    """``concat(primary(x), cheap(primary(x)))[:, :out_chs]``.

    Args:
        in_chs: input channels C.
        out_chs: output channels n.
        kernel_size: kernel of the primary convolution (1: a Ghost "linear layer").
        ratio: s; ``ceil(out_chs / s)`` intrinsic maps, each giving ``s - 1`` ghosts.
        dw_size: kernel d of the cheap depthwise convolution.
        stride: stride of the primary convolution.
        act_layer: activation after both convolutions (``None``: a linear Ghost module, as in
            the projection of a Ghost bottleneck).
        norm_layer: normalisation after both convolutions (``None``: none, and the convolutions
            get a bias).

    Both convolutions have no bias and are followed by the norm, as in the reference GhostNet.
    When ``out_chs`` is odd, the last ghost map is computed and dropped.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ):
        super().__init__()
        check_positive("in_chs", in_chs, int)
        check_positive("out_chs", out_chs, int)
        check_kernel("dw_size", dw_size)
        check_factory("act_layer", act_layer)
        check_factory("norm_layer", norm_layer)
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"ratio must be an int >= 2, got {ratio!r}")
        self.in_chs, self.out_chs = in_chs, out_chs
        init_chs = math.ceil(out_chs / ratio)  # m intrinsic maps
        new_chs = init_chs * (ratio - 1)  # ghosts: s - 1 per intrinsic map
        # (B, C, H, W) -> (B, m, H/stride, W/stride)
        bias = norm_layer is None  # without a norm after it, a convolution keeps its bias
        self.primary_conv = ConvNormAct(in_chs, init_chs, kernel_size, stride, norm_layer=norm_layer,
                                        act_layer=act_layer, bias=bias)
        # (B, m, H', W') -> (B, m(s-1), H', W'), one d x d filter per ghost
        self.cheap_operation = ConvNormAct(
            init_chs, new_chs, dw_size, 1, groups=init_chs, norm_layer=norm_layer, act_layer=act_layer, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_chs)
        x1 = self.primary_conv(x)  # (B, m, H, W) intrinsic maps
        x2 = self.cheap_operation(x1)  # (B, m(s-1), H, W) ghosts
        return torch.cat([x1, x2], dim=1)[:, : self.out_chs]  # (B, n, H, W)

    def extra_repr(self) -> str:
        return f"in_chs={self.in_chs}, out_chs={self.out_chs}"


def ghost_se(chs: int, se_ratio: float = 0.25, act_layer: LayerFactory = nn.ReLU) -> SqueezeExcite:
    """GhostNet's squeeze-excitation: reduce to ``make_divisible(chs · se_ratio, 4)`` channels,
    ReLU, expand, hard-sigmoid gate ``relu6(x + 3) / 6``."""
    check_number("se_ratio", se_ratio, 0, why="the reduced width is se_ratio x chs, rounded to a multiple of 4")
    return SqueezeExcite(chs, make_divisible(chs * se_ratio, 4), act_layer=act_layer, gate_layer=nn.Hardsigmoid)


class GhostBottleneck(nn.Module):
    """GhostNet's bottleneck:

    .. math::

        Y = \\mathrm{shortcut}(X) + \\mathrm{Ghost}_{\\mathrm{hid} \\to C_{out}}\\Big(
            \\mathrm{SE}\\big(\\mathrm{DW}_{k, s}(\\mathrm{Ghost}_{C_{in} \\to \\mathrm{hid}}(X))\\big)\\Big)

    Args:
        in_chs: input channels.
        mid_chs: hidden (expansion) channels.
        out_chs: output channels.
        dw_kernel_size: kernel k of the stride-2 depthwise convolution and of the shortcut's.
        stride: 1 or 2; with 2 a depthwise convolution (k, stride 2) + BN follows the expansion.
        act_layer: activation of the expansion Ghost module and of the SE.
        se_ratio: squeeze-excitation after the (strided) expansion when > 0; reduced width
            ``make_divisible(mid_chs · se_ratio, 4)``, hard-sigmoid gate.
        drop_path_rate: stochastic depth on the main branch.

    The shortcut is the identity when ``stride == 1`` and ``in_chs == out_chs``, else a
    depthwise k x k convolution (stride s) + BN followed by a 1x1 convolution + BN.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        act_layer: LayerFactory = nn.ReLU,
        se_ratio: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        for name, chs in (("in_chs", in_chs), ("mid_chs", mid_chs), ("out_chs", out_chs)):
            check_positive(name, chs, int)
        if isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        check_kernel("dw_kernel_size", dw_kernel_size)
        check_number("se_ratio", se_ratio, 0, why="0: no squeeze-excitation")
        check_factory("act_layer", act_layer)
        check_rate("drop_path_rate", drop_path_rate)
        self.in_chs, self.mid_chs, self.out_chs, self.stride = in_chs, mid_chs, out_chs, stride
        self.ghost1 = GhostModule(in_chs, mid_chs, act_layer=act_layer)  # (B, C_in, H, W) -> (B, hid, H, W)
        # (B, hid, H, W) -> (B, hid, H/2, W/2): the only place the main branch downsamples
        self.conv_dw = (
            ConvNormAct(mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs, act_layer=None)
            if stride > 1
            else nn.Identity()
        )
        self.se = ghost_se(mid_chs, se_ratio) if se_ratio > 0 else nn.Identity()
        self.ghost2 = GhostModule(mid_chs, out_chs, act_layer=None)  # linear projection to C_out
        self.has_skip = stride == 1 and in_chs == out_chs
        if self.has_skip:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvNormAct(in_chs, in_chs, dw_kernel_size, stride, groups=in_chs, act_layer=None),
                ConvNormAct(in_chs, out_chs, 1, act_layer=None),
            )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_chs)
        y = self.ghost2(self.se(self.conv_dw(self.ghost1(x))))
        return self.shortcut(x) + self.drop_path(y)

    def extra_repr(self) -> str:
        return f"in_chs={self.in_chs}, mid_chs={self.mid_chs}, out_chs={self.out_chs}, stride={self.stride}"


__all__ = ["GhostModule", "GhostBottleneck", "ghost_se"]

"""Theoretical receptive fields and the maximum path length (EMO, Zhang et al., ICCV 2023,
arXiv:2301.01146, Table 2 and Sec. 2.3).

Every spatial operator of the book moves information in one of three ways: a k x k convolution
(stride 1, zero padding) lets an output pixel see the input pixels within Chebyshev distance
``r = (k - 1) / 2``; windowed attention lets it see its own w x w window (contiguous ``"block"``
tiles or interleaved ``"grid"`` windows, exactly as
:func:`~mobileblocks_edu.blocks.attention.window_partition` cuts them); global attention lets it see
every pixel. Pointwise layers (1x1 convolutions, norms, activations) and residual additions add
nothing: each operator's reach already contains the pixel itself. A *layer* is a sequence of
operators (an iRMB is "window attention, then a k x k DW-conv"). :func:`reach` applies a layer
n times to one pixel (the theoretical receptive field); :func:`max_path_length` counts the
layers until every pixel reaches every other:

.. math::

    \\mathrm{MPL} = \\min\\{n : \\text{after } n \\text{ layers every pixel reaches every other}\\},

``inf`` when the reach stops growing first. EMO's Table 2 gives the orders of magnitude,
``O(2W/(k-1))`` for a convolution, ``O(inf)`` for W-MHSA, ``O(1)`` for MHSA, and ``O(2W/(k-1+2w))``
for the cascade (Sec. 2.3); they and the exact closed forms (``conv_mpl``, ``window_mpl``,
``cascade_mpl_block``) live with the other formulas in :mod:`mobileblocks_edu.analysis.complexity`. All
three kinds of operator act separately on rows and columns, so the 2-D count is the larger of the
two 1-D counts (:func:`max_path_length` uses this; ``separable=False`` runs the full 2-D
propagation, and the tests check that both agree).

:func:`dependency` measures the same thing on a real module: which input pixels each output pixel
depends on (a non-zero gradient), so that the rules above are checked against the library's
blocks; :func:`mpl_from_dependency` is the one maximum-path-length count of both. Effective
receptive fields and feature similarity are in :mod:`mobileblocks_edu.analysis.erf`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..blocks.attention import WINDOW_LAYOUTS, window_partition, window_reverse
from ..blocks.layers import eval_mode
from ..env import check_bool, check_positive

OP_KINDS = ("conv", "window", "global")


# ---- operators and their reach ------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One spatial operator, as far as reach is concerned.

    * ``Op("conv", k)``: a k x k convolution (k odd, stride 1, zero padding ``k // 2``).
    * ``Op("window", w, layout)``: attention inside w x w windows, ``layout`` ``"block"`` or ``"grid"``.
    * ``Op("global")``: attention over the whole map.
    """

    kind: str
    size: int = 1
    layout: str = "block"

    def __post_init__(self):
        if self.kind not in OP_KINDS:
            raise ValueError(f"kind must be one of {OP_KINDS}, got {self.kind!r}")
        check_positive("size", self.size, int)
        if self.kind == "conv" and self.size % 2 == 0:
            raise ValueError(f"a convolution's kernel size must be odd (same padding), got {self.size}")
        if self.layout not in WINDOW_LAYOUTS:
            raise ValueError(f"layout must be one of {WINDOW_LAYOUTS}, got {self.layout!r}")

    def __call__(self, reached: torch.Tensor) -> torch.Tensor:
        """Spread ``reached`` ``(N, 1, H, W)`` (1 = reached) by one application of the operator."""
        if self.kind == "conv":  # the k x k neighbourhood: a max-pool with the same footprint
            return F.max_pool2d(reached, self.size, stride=1, padding=self.size // 2)
        if self.kind == "global":
            return reached.amax(dim=(2, 3), keepdim=True).expand_as(reached)
        wins, info = window_partition(reached, self.size, self.layout)  # (N·nW, 1, w, w)
        full = wins.amax(dim=(2, 3), keepdim=True).expand_as(wins)  # a window is reached as a whole
        return window_reverse(full.contiguous(), info)  # (N, 1, H, W), padding cropped

    def __str__(self) -> str:
        if self.kind == "conv":
            return f"conv {self.size}×{self.size}"
        if self.kind == "window":
            return f"{self.layout} windows {self.size}×{self.size}"
        return "global attention"


Layer = Union[Op, Sequence[Op]]


def conv_op(kernel_size: int) -> Op:
    """A k x k convolution (also a depthwise one): reach ``(k - 1) / 2`` pixels per layer."""
    return Op("conv", kernel_size)


def window_op(window_size: int, layout: str = "block") -> Op:
    """Attention inside w x w windows in the given layout."""
    return Op("window", window_size, layout)


def global_op() -> Op:
    """Attention over every pixel."""
    return Op("global")


def _ops(layer: Layer) -> tuple[Op, ...]:
    ops = (layer,) if isinstance(layer, Op) else tuple(layer)
    if not ops or not all(isinstance(o, Op) for o in ops):
        raise ValueError(f"layer must be an Op or a non-empty sequence of Ops, got {layer!r}")
    return ops


def apply_layer(layer: Layer, reached: torch.Tensor) -> torch.Tensor:
    """Apply the operators of one layer, in order, to the reach maps ``(N, 1, H, W)``."""
    for op in _ops(layer):
        reached = op(reached)
    return reached


def module_layer(name: str, kernel_size: int = 3, window_size: int = 7, layout: str = "block") -> tuple[Op, ...]:
    """The reach rule of one block of the book, by name.

    ``"MHSA"``, ``"MoSA"`` and ``"MTB"``: global attention (MoSA's DW refiner and the MoFFN's
    depthwise convolutions lie inside a global reach anyway). ``"W-MHSA"`` and ``"EW-MHSA"``:
    windows. ``"DW-conv"`` and ``"IRB"``: a k x k convolution. ``"iRMB"``: windows, then the
    k x k DW-conv (EMO's F = (DW-Conv, Skip)(EW-MHSA), the default ``op_order="attn_dw"``);
    ``"iRMB dw_attn"``: the other order.
    """
    table = {
        "MHSA": (global_op(),),
        "MoSA": (global_op(),),
        "MTB": (global_op(),),
        "W-MHSA": (window_op(window_size, layout),),
        "EW-MHSA": (window_op(window_size, layout),),
        "DW-conv": (conv_op(kernel_size),),
        "IRB": (conv_op(kernel_size),),
        "iRMB": (window_op(window_size, layout), conv_op(kernel_size)),
        "iRMB dw_attn": (conv_op(kernel_size), window_op(window_size, layout)),
    }
    if name not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    return table[name]


# ---- theoretical receptive field and maximum path length ------------------------------------------


def _size2(size: Union[int, Sequence[int]]) -> tuple[int, int]:
    try:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a pair (height, width), got {size!r}") from None
    check_positive("height", h, int)
    check_positive("width", w, int)
    return h, w


def reach(layer: Layer, size: Union[int, Sequence[int]], n_layers: int,
          source: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """The theoretical receptive field: the ``(H, W)`` boolean map of pixels that ``source``
    (default: the centre) reaches after ``n_layers`` applications of ``layer``.

    Each single operator is symmetric (a reaches b iff b reaches a); a sequence is not: the
    input pixels an output pixel depends on are what it reaches through the operators in
    reverse order.
    """
    H, W = _size2(size)
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
        raise ValueError(f"n_layers must be an integer >= 0, got {n_layers!r}")
    try:
        i, j = source if source is not None else (H // 2, W // 2)
    except (TypeError, ValueError):
        raise ValueError(f"source must be a pair (row, column), got {source!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (i, j)):
        raise ValueError(f"source must be a pair of integers (row, column), got {source!r}")
    if not (0 <= i < H and 0 <= j < W):
        raise ValueError(f"source {source} lies outside the {H}x{W} map")
    m = torch.zeros(1, 1, H, W)
    m[0, 0, i, j] = 1
    for _ in range(n_layers):
        m = apply_layer(layer, m)
    return m[0, 0] > 0


@functools.lru_cache(maxsize=4096)
def _mpl_2d(layer: tuple[Op, ...], H: int, W: int) -> float:
    return mpl_from_dependency(layer_dependency(layer, (H, W)))


def max_path_length(layer: Layer, size: Union[int, Sequence[int]], separable: bool = True) -> float:
    """Layers needed until every pixel of an H x W map reaches every other (``inf``: never).

    ``separable=True`` propagates along rows and columns separately (maps of 1 x H and 1 x W) and
    takes the larger count, which is exact for the operators here (their reach from one pixel is
    always a product of a row set and a column set); ``separable=False`` propagates the full
    ``(H·W)`` x ``(H·W)`` reach, for checking.
    """
    H, W = _size2(size)
    layer = _ops(layer)
    check_bool("separable", separable)
    if not separable:
        return _mpl_2d(layer, H, W)
    return max(_mpl_2d(layer, 1, H), _mpl_2d(layer, 1, W))


# ---- measured dependency on real modules ----------------------------------------------------------------


def dependency(module: Callable[[torch.Tensor], torch.Tensor], in_chs: int, size: Union[int, Sequence[int]],
               x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Which input pixels each output pixel of ``module`` depends on, measured with autograd.

    Returns ``D: (H·W, H·W)`` bool with ``D[o, i]`` true when the gradient of output pixel ``o``
    (summed over channels) with respect to input pixel ``i`` (summed over |.| of the channels) is
    non-zero. The input (random unless ``x`` is given, shape ``(1, C, H, W)``) is repeated once
    per output pixel, so one backward pass gives every row: a module is measured in eval mode
    (where samples do not mix) and given its own modes back afterwards. Output and input must
    have the same H x W.
    """
    H, W = _size2(size)
    check_positive("in_chs", in_chs, int)
    if not callable(module):
        raise ValueError(f"module must be a module or function (B, C, H, W) -> (B, C', H, W), got {module!r}")
    N = H * W
    if x is None:
        x = torch.randn(1, in_chs, H, W)
    elif not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1 or tuple(x.shape[1:]) != (in_chs, H, W):
        raise ValueError(f"x must have shape (1, {in_chs}, {H}, {W}), got {tuple(x.shape)}")
    xs = x.detach().expand(N, -1, -1, -1).clone().requires_grad_(True)
    with eval_mode(module):
        y = module(xs)
    if y.shape[-2:] != (H, W):
        raise ValueError(f"dependency needs an output of the input's size {H}x{W}, got {tuple(y.shape[-2:])}")
    idx = torch.arange(N)
    y.flatten(2)[idx, :, idx].sum().backward()  # sample o: output pixel o, all channels
    return (xs.grad.abs().sum(1) > 0).view(N, N)


def layer_dependency(layer: Layer, size: Union[int, Sequence[int]]) -> torch.Tensor:
    """The dependency matrix ``(H·W, H·W)`` the reach rule ``layer`` predicts for one layer:
    ``D[o, i]`` true when input pixel i reaches output pixel o (the transpose of the reach maps)."""
    H, W = _size2(size)
    N = H * W
    return (apply_layer(layer, torch.eye(N).view(N, 1, H, W)) > 0).view(N, N).T


def mpl_from_dependency(dep: torch.Tensor) -> float:
    """MPL of a stack of identical layers with dependency matrix ``dep`` ``(N, N)``: the smallest
    n with ``dep^n`` (boolean matrix power, ``dep^0`` the identity) full; ``inf`` when it stops
    growing. Every layer's reach holds the pixel itself, so the powers only grow."""
    d = dep.float()
    reached, n = torch.eye(len(d)), 0
    while not bool((reached > 0).all()):
        new = ((reached @ d) > 0).float()
        if torch.equal(new, reached):
            return math.inf
        reached, n = new, n + 1
    return n


__all__ = [
    "OP_KINDS", "Op", "conv_op", "window_op", "global_op", "apply_layer", "module_layer", "reach", "max_path_length",
    "dependency", "layer_dependency", "mpl_from_dependency",
]

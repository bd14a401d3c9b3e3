"""Receptive fields, maximum path length and feature similarity (EMO, Zhang et al., ICCV 2023,
arXiv:2301.01146, Table 2, Sec. 2.3 and Fig. 9; Luo et al., NeurIPS 2016, arXiv:1701.04128).

**Theoretical reach.** Every spatial operator of the book moves information in one of three ways:
a k x k convolution (stride 1, zero padding) lets an output pixel see the input pixels within
Chebyshev distance ``r = (k - 1) / 2``; windowed attention lets it see its own w x w window
(contiguous ``"block"`` tiles or interleaved ``"grid"`` windows, exactly as
:func:`~mobileblocks_edu.attention.window_partition` cuts them); global attention lets it see
every pixel. Pointwise layers (1x1 convolutions, norms, activations) and residual additions add
nothing: each operator's reach already contains the pixel itself. A *layer* is a sequence of
operators (an iRMB is "window attention, then a k x k DW-conv"). Starting from one map per source
pixel with only that pixel reached, :func:`max_path_length` applies the layer until every map is
full:

.. math::

    \\mathrm{MPL} = \\min\\{n : \\text{after } n \\text{ layers every pixel reaches every other}\\},

``inf`` when the reach stops growing first. EMO's Table 2 gives the orders of magnitude,
``O(2W/(k-1))`` for a convolution, ``O(inf)`` for W-MHSA, ``O(1)`` for MHSA, and ``O(2W/(k-1+2w))``
for the cascade (Sec. 2.3); the exact counts are :func:`conv_mpl` ``= ceil(2(W-1)/(k-1))`` and
:func:`cascade_mpl_block` (block windows). All three kinds of operator act separately on rows and
columns, so the 2-D count is the larger of the two 1-D counts (:func:`max_path_length` uses this;
``separable=False`` runs the full 2-D propagation, and the tests check that both agree).

:func:`dependency` measures the same thing on a real module: which input pixels each output pixel
depends on (a non-zero gradient), so that the rules above are checked against the library's blocks.

**Effective receptive field** (Luo et al.): the gradient of one central output pixel (summed over
channels) with respect to the input, ``|d y_c(i, j) / d x|``, averaged over inputs. It is the part
of the theoretical field that actually matters, usually a small, roughly Gaussian blob.

**Feature similarity** (EMO Fig. 9): cosine similarities between the feature vectors of the
pixels on the diagonal of a feature map, averaged over images.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .attention import WINDOW_LAYOUTS, window_partition, window_reverse
from .env import check_positive

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
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    check_positive("height", h, int)
    check_positive("width", w, int)
    return h, w


def reach(layer: Layer, size: Union[int, Sequence[int]], n_layers: int, source: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """The theoretical receptive field: the ``(H, W)`` boolean map of pixels that ``source``
    (default: the centre) reaches after ``n_layers`` applications of ``layer``.

    Each single operator is symmetric (a reaches b iff b reaches a); a sequence is not: the
    input pixels an output pixel depends on are what it reaches through the operators in
    reverse order.
    """
    H, W = _size2(size)
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    i, j = source if source is not None else (H // 2, W // 2)
    if not (0 <= i < H and 0 <= j < W):
        raise ValueError(f"source {source} lies outside the {H}x{W} map")
    m = torch.zeros(1, 1, H, W)
    m[0, 0, i, j] = 1
    for _ in range(n_layers):
        m = apply_layer(layer, m)
    return m[0, 0] > 0


def rf_side(layer: Layer, size: int, n_layers: int) -> int:
    """Side of the square reached from the centre of a ``size x size`` map after ``n_layers``
    (the classic receptive-field size ``1 + n(k - 1)`` for a stack of k x k convolutions)."""
    r = reach(layer, size, n_layers)
    rows, cols = r.any(1).nonzero(), r.any(0).nonzero()
    return int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1


@functools.lru_cache(maxsize=4096)
def _mpl_2d(layer: tuple[Op, ...], H: int, W: int) -> float:
    N = H * W
    if N == 1:
        return 0
    m = torch.eye(N).view(N, 1, H, W)  # one reach map per source pixel
    if N <= 1024:  # small maps: apply the layer once, then iterate its (N, N) reach matrix
        step = (apply_layer(layer, m) > 0).view(N, N).float()
        reached, n = step, 1
        while not bool((reached > 0).all()):
            new = ((reached @ step) > 0).float()
            if torch.equal(new, reached):  # nothing grew: some pairs are never connected
                return math.inf
            reached, n = new, n + 1
        return n
    n = 0
    while True:
        n += 1
        new = apply_layer(layer, m)
        if bool(new.all()):
            return n
        if torch.equal(new, m):
            return math.inf
        m = new


def max_path_length(layer: Layer, size: Union[int, Sequence[int]], separable: bool = True) -> float:
    """Layers needed until every pixel of an H x W map reaches every other (``inf``: never).

    ``separable=True`` propagates along rows and columns separately (maps of 1 x H and 1 x W) and
    takes the larger count, which is exact for the operators here (their reach from one pixel is
    always a product of a row set and a column set); ``separable=False`` propagates the full
    ``(H·W)`` x ``(H·W)`` reach, for checking.
    """
    H, W = _size2(size)
    layer = _ops(layer)
    if not separable:
        return _mpl_2d(layer, H, W)
    return max(_mpl_2d(layer, 1, H), _mpl_2d(layer, 1, W))


def reach_counts(layer: Layer, size: int, n_layers: int, source: Optional[tuple[int, int]] = None) -> list[int]:
    """How many pixels ``source`` (default: centre) reaches after 0, 1, ..., ``n_layers`` layers."""
    H, W = _size2(size)
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
        raise ValueError(f"n_layers must be an integer >= 0, got {n_layers!r}")
    i, j = _check_position("source", source, H, W) if source is not None else (H // 2, W // 2)
    m = torch.zeros(1, 1, H, W)
    m[0, 0, i, j] = 1
    counts = [1]
    for _ in range(n_layers):
        m = apply_layer(layer, m)
        counts.append(int(m.sum()))
    return counts


# ---- closed forms -------------------------------------------------------------------------------------


def conv_mpl(size: int, kernel_size: int) -> float:
    """Exact MPL of a stack of k x k convolutions on a W x W map: ``ceil(2(W - 1)/(k - 1))``
    (corner to corner is W - 1 pixels, each layer moves (k - 1)/2). EMO's Table 2: O(2W/(k - 1))."""
    if size == 1:
        return 0
    if kernel_size == 1:
        return math.inf
    return math.ceil(2 * (size - 1) / (kernel_size - 1))


def window_mpl(size: int, window_size: int) -> float:
    """Exact MPL of windowed attention alone (either layout): 1 when one window covers the
    map, else ``inf``: pixels in different windows never meet (EMO's Table 2: O(Inf))."""
    if size == 1:
        return 0
    return 1 if window_size >= size else math.inf


def cascade_mpl_block(size: int, kernel_size: int, window_size: int) -> float:
    """Exact MPL of the iRMB cascade (block windows of w, then a k x k convolution) on W x W.

    After a layer's attention the reach is a run of whole windows; the convolution then pokes
    ``r = (k - 1)/2`` pixels out of it, into ``s = ceil(r / w)`` more windows on each side, which
    the next layer's attention fills. With ``n_w = ceil(W / w)`` windows per side, the slowest
    pairs are at the two ends of the map:

    .. math::

        \\mathrm{MPL} = 1 + \\max\\Big(\\Big\\lceil \\frac{n_w - 1 - \\lfloor r / w \\rfloor}{s} \\Big\\rceil,
        \\Big\\lceil \\frac{\\lceil (W - r) / w \\rceil - 1}{s} \\Big\\rceil\\Big).

    For ``r < w`` this is ``ceil(W / w)``: the frontier advances one window per layer, the
    convolution only bridges window borders. EMO's Sec. 2.3 gives the order O(2W/(k - 1 + 2w)).
    """
    W, w, r = size, window_size, (kernel_size - 1) // 2
    if W == 1:
        return 0
    n_w = math.ceil(W / w)
    if n_w == 1:
        return 1
    if r == 0:
        return math.inf
    s = math.ceil(r / w)
    left = math.ceil(max(0, n_w - 1 - r // w) / s)  # from the last window to pixel 0
    right = math.ceil(max(0, math.ceil((W - r) / w) - 1) / s)  # from the first window to pixel W - 1
    return 1 + max(left, right)


# ---- measured dependency on real modules ----------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(fn):
    """Put ``fn`` (when it is a module) and all its submodules in eval mode, and give every one of
    them its own mode back afterwards. A new module is in train mode, where BatchNorm mixes the
    samples of a batch and dropout is random: neither belongs in a measurement of one pixel's
    dependencies."""
    if not isinstance(fn, nn.Module):
        yield fn
        return
    modes = [(m, m.training) for m in fn.modules()]
    fn.eval()
    try:
        yield fn
    finally:
        for m, training in modes:
            m.training = training


def _check_position(name: str, position, h: int, w: int) -> tuple[int, int]:
    try:
        i, j = position
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (row, column), got {position!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (i, j)) or not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"{name} must be (row, column) with 0 <= row < {h} and 0 <= column < {w}, got {position!r}")
    return i, j


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
    N = H * W
    if x is None:
        x = torch.randn(1, in_chs, H, W)
    elif x.dim() != 4 or x.shape[0] != 1 or tuple(x.shape[1:]) != (in_chs, H, W):
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
    """MPL of a stack of identical layers with dependency matrix ``dep``: the smallest n with
    ``dep^n`` (boolean matrix power) full; ``inf`` when it stops growing."""
    d = dep.float()
    reached = d.clone()
    n = 1
    while not bool((reached > 0).all()):
        new = ((reached @ d) > 0).float()
        if torch.equal(new, (reached > 0).float()):
            return math.inf
        reached, n = new, n + 1
    return n


# ---- effective receptive fields --------------------------------------------------------------------------


class _Stop(Exception):
    pass


def effective_receptive_field(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                              position: Optional[tuple[int, int]] = None,
                              layer: Optional[nn.Module] = None) -> torch.Tensor:
    """Luo et al.'s effective receptive field: ``mean_b |d (sum_c y[b, c, i, j]) / d x[b]|``
    summed over the input channels, an ``(H, W)`` map.

    Args:
        fn: a module or function ``(B, C, H, W) -> (B, C', h, w)``; with ``layer`` given, ``fn``
            is a model and ``y`` is the output of ``layer`` inside it (the forward pass stops
            there).
        x: the inputs ``(B, C, H, W)``: random maps for untrained stacks, real images for models.
        position: output pixel ``(i, j)``; default the centre ``(h // 2, w // 2)``.
        layer: a submodule of ``fn`` whose output is the map ``y``.

    A module ``fn`` is measured in eval mode and given its own modes back afterwards.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch (B, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    with eval_mode(fn):
        x = x.detach().clone().requires_grad_(True)
        if layer is None:
            y = fn(x)
        else:
            box: list[torch.Tensor] = []

            def hook(m, args, out):
                box.append(out)
                raise _Stop

            handle = layer.register_forward_hook(hook)
            try:
                fn(x)
            except _Stop:
                pass
            finally:
                handle.remove()
            if not box:
                raise ValueError("layer did not run in the forward pass of fn")
            y = box[0]
        if y.dim() != 4:
            raise ValueError(f"the output map must be (B, C, h, w), got shape {tuple(y.shape)}")
        h, w = y.shape[-2:]
        i, j = _check_position("position", position, h, w) if position is not None else (h // 2, w // 2)
        y[:, :, i, j].sum().backward()
    return x.grad.abs().sum(1).mean(0)  # (H, W)


def erf_area(erf: torch.Tensor, mass: float = 0.9) -> int:
    """The number of pixels that hold ``mass`` of the ERF's total (largest first): a
    centre-free size of the effective receptive field."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    v = erf.flatten().double().sort(descending=True).values
    total = v.sum()
    if total <= 0:
        return 0
    return int((v.cumsum(0) < (mass - 1e-9) * total).sum()) + 1


def erf_radius(erf: torch.Tensor, centre: Optional[tuple[int, int]] = None, mass: float = 0.9) -> int:
    """The smallest r such that the (2r + 1) x (2r + 1) square around ``centre`` (default: the
    map's centre) holds ``mass`` of the ERF."""
    if erf.dim() != 2:
        raise ValueError(f"erf must be an (H, W) map, got shape {tuple(erf.shape)}")
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    H, W = erf.shape
    ci, cj = _check_position("centre", centre, H, W) if centre is not None else (H // 2, W // 2)
    erf = erf.double()
    total = float(erf.sum())
    if total <= 0:
        return 0
    for r in range(max(H, W)):
        box = erf[max(0, ci - r): ci + r + 1, max(0, cj - r): cj + r + 1]
        if float(box.sum()) >= (mass - 1e-9) * total:
            return r
    return max(H, W)


# ---- stacks of blocks for ERF experiments ---------------------------------------------------------------

STACK_KINDS = ("IRB", "EW-MHSA", "iRMB", "DW-conv")


def block_stack(kind: str, depth: int, dim: int = 16, exp_ratio: float = 2.0, kernel_size: int = 3,
                window_size: int = 7, layout: str = "block", dim_head: int = 8) -> nn.Sequential:
    """``depth`` library blocks of one kind, ``dim`` channels, stride 1, in eval mode:

    * ``"IRB"``: MobileNetV2's inverted residual block (k x k DW-conv).
    * ``"DW-conv"``: the iRMB with F = DW-conv only (EMO's ablation "DW-conv only").
    * ``"EW-MHSA"``: the iRMB with F = EW-MHSA only, in ``layout`` windows of ``window_size``.
    * ``"iRMB"``: the full iRMB, EW-MHSA then DW-conv.
    """
    from .irb import InvertedResidual
    from .irmb import iRMB

    if kind not in STACK_KINDS:
        raise ValueError(f"kind must be one of {STACK_KINDS}, got {kind!r}")
    check_positive("depth", depth, int)

    def make():
        if kind == "IRB":
            return InvertedResidual(dim, dim, exp_ratio=exp_ratio, dw_kernel_size=kernel_size)
        return iRMB(dim, dim, exp_ratio=exp_ratio, dw_kernel_size=kernel_size, has_attn=kind in ("EW-MHSA", "iRMB"),
                    has_dw=kind != "EW-MHSA", dim_head=dim_head, window_size=window_size, window_layout=layout)

    return nn.Sequential(*[make() for _ in range(depth)]).eval()


# ---- feature maps and similarity (EMO Fig. 9) --------------------------------------------------------------


@torch.no_grad()
def feature_maps(model: nn.Module, layers: Sequence[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of ``layers`` (submodules of ``model``) for the input ``x``, in order (eval mode
    is the caller's business)."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one submodule of the model")
    outs: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda m, a, o, k=k: outs.__setitem__(k, o)) for k, m in enumerate(layers)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [k for k in range(len(layers)) if k not in outs]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass")
    return [outs[k] for k in range(len(layers))]


def _unit_pixels(feat: torch.Tensor) -> torch.Tensor:
    if feat.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(feat.shape)}")
    return F.normalize(feat.float().flatten(2), dim=1)  # (B, C, H·W), unit vectors per pixel


def diagonal_similarity(feat: torch.Tensor) -> torch.Tensor:
    """EMO Fig. 9: the ``(n, n)`` cosine similarities between the feature vectors of the ``n =
    min(H, W)`` pixels ``(t, t)`` on the diagonal of ``feat: (B, C, H, W)``, averaged over B."""
    if feat.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(feat.shape)}")
    B, C, H, W = feat.shape
    n = min(H, W)
    t = torch.arange(n)
    d = F.normalize(feat.float()[:, :, t, t], dim=1)  # (B, C, n)
    return (d.transpose(1, 2) @ d).mean(0)  # (n, n)


def similarity_by_distance(feat: torch.Tensor) -> tuple[list[int], list[float]]:
    """Mean cosine similarity of all pixel pairs of ``feat: (B, C, H, W)`` grouped by their
    Chebyshev distance (0 .. max(H, W) - 1): how quickly features decorrelate across the map."""
    B, C, H, W = feat.shape
    u = _unit_pixels(feat)
    sim = (u.transpose(1, 2) @ u).mean(0)  # (H·W, H·W)
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ii, jj = ii.flatten(), jj.flatten()
    dist = torch.maximum((ii[:, None] - ii[None]).abs(), (jj[:, None] - jj[None]).abs())
    ds = sorted(set(dist.flatten().tolist()))
    return ds, [float(sim[dist == d].mean()) for d in ds]


__all__ = [
    "OP_KINDS",
    "Op",
    "conv_op",
    "window_op",
    "global_op",
    "apply_layer",
    "module_layer",
    "reach",
    "rf_side",
    "reach_counts",
    "max_path_length",
    "conv_mpl",
    "window_mpl",
    "cascade_mpl_block",
    "eval_mode",
    "dependency",
    "layer_dependency",
    "mpl_from_dependency",
    "effective_receptive_field",
    "erf_area",
    "erf_radius",
    "STACK_KINDS",
    "block_stack",
    "feature_maps",
    "diagonal_similarity",
    "similarity_by_distance",
]

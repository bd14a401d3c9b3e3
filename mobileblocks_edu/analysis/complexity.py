"""Counting parameters and FLOPs, measured and by formula.

Papers say "FLOPs" for different counts; the library names three conventions (all count one
multiply-add as one operation):

* ``"macs"``: multiply-adds of convolutions, linear layers and matrix products, attention
  included (``Q Kᵀ`` and ``A V``). Nothing else. For convolutional networks this is what
  MobileNetV2 and GhostNet report ("FLOPs" in their tables); MobileNetV2 1.0x is 300.77M at
  224x224.
* ``"conv_linear"``: the same without the attention products: only convolutions and linear
  layers. The convention behind MoCoViT's tables (they grow linearly with H·W although
  attention does not), equal to ``"macs"`` for networks without attention.
* ``"fvcore"``: what fvcore's ``FlopCountAnalysis`` reports, the convention of EMO's tables:
  the ``"macs"`` count plus eval-mode BatchNorm (2 per element, 1 without affine), LayerNorm
  and GroupNorm (5 per element, 4 without affine) and adaptive average pooling (1 per input
  element). Activations, softmax, elementwise additions and plain ``mean`` are not counted.

Matrix products are counted with PyTorch's own formulas (``torch.utils.flop_counter``), fused
attention kernels included (fvcore misses them); norms and pooling per module. Each count goes to
the innermost module that ran it (:func:`flop_breakdown`). Large inputs are counted on the meta device.

Every analytic formula of the book lives here and returns a :class:`Cost`; costs add, so a
block's formula is the sum of its parts'. In order: EMO's Table 2; EW-MHSA, the IRB and the iRMB;
MoCoViT's modules; the dynamic ReLU; the maximum path length in closed form (the paper's orders
and the exact counts, which the tests check against :mod:`mobileblocks_edu.analysis.receptive`). The tests
check every formula against the measured :func:`count_cost` of the library module.
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..blocks.dyrelu import DYRELU_MODES, hyper_width
from ..blocks.layers import eval_mode, make_divisible
from ..env import check_positive

CONVENTIONS = ("macs", "conv_linear", "fvcore")
ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")  # aten ops of attention products
InputSpec = Union[Sequence[int], torch.Tensor]
META_FROM_ELEMENTS = 3 * 256 * 256  # inputs of this many elements or more are counted on the meta device


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _norm_pool_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """fvcore's count for the norm and pooling modules; 0 for every other module."""
    if isinstance(module, _BatchNorm):  # eval mode: a per-channel scale and shift
        return out.numel() * (2 if module.affine else 1)
    if isinstance(module, nn.LayerNorm):
        return out.numel() * (5 if module.elementwise_affine else 4)
    if isinstance(module, nn.GroupNorm):
        return out.numel() * (5 if module.affine else 4)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return inp.numel()
    return 0


def _attention_macs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> int:
    """Multiply-adds of ``softmax(Q Kᵀ) V`` for query (..., L, E), key (..., S, E), value (..., S, Eᵥ):
    ``L·S·E`` for ``Q Kᵀ`` plus ``L·S·Eᵥ`` for ``A V``, per batch and head."""
    *lead, L, E = query.shape
    S, Ev = value.shape[-2:]
    return math.prod(lead) * L * S * (E + Ev)


def _is_fused_attention(op: str) -> bool:
    """The aten ops behind ``F.scaled_dot_product_attention``'s fused kernels: the CPU flash kernel,
    flash / memory-efficient / cuDNN on GPU, and the overrideable op of other backends (the math
    fallback is not one: it runs as ``bmm``/``matmul`` and is counted as such)."""
    return op.startswith("_scaled_dot_product_") and op.endswith(("attention", "attention_for_cpu",
                                                                  "attention_overrideable"))


def _torch_formula(formula, args, kwargs, out) -> int:
    """Call a ``torch.utils.flop_counter`` formula; it takes the output as ``out_val`` (torch 2.4+) or
    ``out`` (2.2, 2.3)."""
    try:
        return formula(*args, **kwargs, out_val=out)
    except TypeError:
        return formula(*args, **kwargs, out=out)


class _MatmulCounter(TorchDispatchMode):
    """Adds the multiply-adds of every matrix-product-like aten op to the current module's count:
    PyTorch's own formulas, and :func:`_attention_macs` for the fused attention kernels on every
    torch (which of them PyTorch's registry knows depends on the version; a count must not)."""

    def __init__(self, record, skip_attention: bool = False):
        super().__init__()
        self.record, self.skip_attention = record, skip_attention

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = str(func._overloadpacket).split(".")[-1]
        if _is_fused_attention(op):
            n = _attention_macs(*args[:3])
        else:
            formula = flop_registry.get(func._overloadpacket)
            if formula is None:
                return out
            n = _torch_formula(formula, args, kwargs, out) // 2  # PyTorch counts 2 FLOPs per multiply-add
        if not (self.skip_attention and any(a in op for a in ATTENTION_OPS)):
            self.record(op, n)
        return out


def flop_breakdown(module: nn.Module, inputs: InputSpec, convention: str = "fvcore") -> dict[tuple[str, str], int]:
    """Run one forward pass in eval mode and return ``{(module_name, op): count}``.

    ``module_name`` is the qualified name of the innermost module that executed the operation
    (``""`` for the root); ``op`` is an aten op name (``convolution``, ``addmm``, ``bmm``,
    ``_scaled_dot_product_flash_attention_for_cpu``, ...) or the norm/pool module's class name.
    ``inputs`` is an input shape such as ``(1, 3, 224, 224)`` or a tensor.
    """
    _check_convention(convention)
    names: dict[int, str] = {}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    stack: list[str] = [""]

    def record(op: str, n: int) -> None:
        if n:
            counts[(stack[-1], op)] += int(n)

    def pre_hook(m, args):
        stack.append(names.get(id(m), stack[-1]))

    def post_hook(m, args, out):
        # a norm or pooling module's own count belongs to that module, then leave it
        if convention == "fvcore" and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            record(type(m).__name__, _norm_pool_flops(m, args[0], out))
        stack.pop()

    def run(net: nn.Module, x: torch.Tensor) -> dict[tuple[str, str], int]:
        counts.clear()
        names.clear()
        names.update({id(m): n for n, m in net.named_modules()})
        handles = [nn.modules.module.register_module_forward_pre_hook(pre_hook),
                   nn.modules.module.register_module_forward_hook(post_hook)]
        try:  # eval_mode: each module gets its own mode back (a frozen BN stays in eval)
            with eval_mode(net), torch.no_grad(), _MatmulCounter(record, skip_attention=convention == "conv_linear"):
                net(x)
        finally:
            for h in handles:
                h.remove()
            del stack[1:]
        return dict(counts)

    if isinstance(inputs, torch.Tensor):
        return run(module, inputs)
    # Counts depend on shapes only: a large input is counted on a copy of the module on the meta
    # device, without computing (RetinaNet at 800x1344: 0.4 s, not 12 s). Attention then runs as
    # PyTorch's math path (``bmm``), the same count under another op name. A module that needs
    # real values (data-dependent control flow) is run on real zeros.
    shape = tuple(inputs)
    if math.prod(shape) >= META_FROM_ELEMENTS:
        with contextlib.suppress(Exception):
            memo = {id(t): nn.Parameter(t.detach().to("meta"), t.requires_grad) if isinstance(t, nn.Parameter)
                    else t.to("meta") for t in [*module.parameters(), *module.buffers()]}
            return run(copy.deepcopy(module, memo), torch.zeros(shape, device="meta"))
    p = next(module.parameters(), torch.zeros(()))
    return run(module, torch.zeros(shape, device=p.device, dtype=p.dtype))


def count_flops(module: nn.Module, input_shape: InputSpec, convention: str = "fvcore") -> int:
    """Total operations of one forward pass of ``module`` (eval mode) in the named convention.

    >>> count_flops(nn.Conv2d(3, 8, 3, padding=1, bias=False), (1, 3, 32, 32), "macs")
    221184
    """
    return sum(flop_breakdown(module, input_shape, convention).values())


def group_counts(breakdown: dict[tuple[str, str], int], depth: int = 1) -> dict[str, int]:
    """Sum a :func:`flop_breakdown` by the first ``depth`` components of the module names
    (``depth=1``: per top-level child such as ``stage1``)."""
    out: dict[str, int] = defaultdict(int)
    for (name, _), n in breakdown.items():
        key = ".".join(name.split(".")[:depth]) if name else "(root)"
        out[key] += n
    return dict(out)


def params_by_prefix(module: nn.Module, depth: int = 1) -> dict[str, int]:
    """Parameter counts grouped by the first ``depth`` components of the parameter names."""
    out: dict[str, int] = defaultdict(int)
    for name, p in module.named_parameters():
        parts = name.split(".")[:-1]  # drop "weight"/"bias"
        out[".".join(parts[:depth]) or "(root)"] += p.numel()
    return dict(out)


# ---- one cost type -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """Cost of one module on a C x H x W map, batch 1, by formula or measured (:func:`count_cost`).

    * ``params``: learnable parameters (norms included).
    * ``macs``: multiply-adds of convolutions, linear layers and attention products (``"macs"``).
    * ``linear_macs``: the same without the attention products (``"conv_linear"``), the
      convention of MoCoViT's tables.
    * ``norm_flops``: what ``"fvcore"`` adds to ``macs``: eval-mode norms and adaptive pooling.
    * ``paper_flops``: the paper's own expression where it gives one, else ``None``: EMO's Table 2
      (2 FLOPs per multiply-add, plus 3 per softmax entry), MoCoViT's Eq. 4 for MoSA.
    * ``mpl``: the maximum path length as the paper states its order (EMO's Table 2, Sec. 2.3),
      in layers, ``inf`` when some pixels never meet; ``None`` where no one states it.

    Costs add, and ``sum()`` works: a block is the sum of its parts. A sum has no paper expression
    and no path length (they belong to a whole module): set them with ``dataclasses.replace``.
    """

    params: int
    macs: int
    linear_macs: int
    norm_flops: int = 0
    paper_flops: Optional[int] = None
    mpl: Optional[float] = None

    def flops(self, convention: str) -> int:
        """Operations in one of :data:`CONVENTIONS`."""
        _check_convention(convention)
        return {"macs": self.macs, "conv_linear": self.linear_macs, "fvcore": self.macs + self.norm_flops}[convention]

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.params + other.params, self.macs + other.macs, self.linear_macs + other.linear_macs,
                    self.norm_flops + other.norm_flops)

    def __radd__(self, other) -> "Cost":  # sum() starts from 0
        return Cost(0, 0, 0) + self if isinstance(other, int) and other == 0 else NotImplemented


def count_cost(module: nn.Module, inputs: InputSpec) -> Cost:
    """The measured :class:`Cost` of ``module``: parameters and one forward pass in every convention."""
    macs = count_flops(module, inputs, "macs")
    return Cost(count_params(module), macs, count_flops(module, inputs, "conv_linear"),
                count_flops(module, inputs, "fvcore") - macs)


def _tokens(height: int, width: Optional[int]) -> tuple[int, int, int]:
    width = height if width is None else width
    return height, width, height * width


def batchnorm_cost(chs: int, height: int, width: Optional[int] = None) -> Cost:
    """An eval-mode BatchNorm with affine parameters: ``2C`` parameters, no multiply-adds, and 2
    operations per element in fvcore's count."""
    _, _, L = _tokens(height, width)
    return Cost(2 * chs, 0, 0, norm_flops=2 * chs * L)


def pointwise_cost(in_chs: int, out_chs: int, height: int, width: Optional[int] = None, bias: bool = False) -> Cost:
    """A 1x1 convolution (a linear layer per pixel): ``C_in C_out (+ C_out)`` parameters,
    ``C_in C_out L`` multiply-adds."""
    _, _, L = _tokens(height, width)
    macs = in_chs * out_chs * L
    return Cost(in_chs * out_chs + (out_chs if bias else 0), macs, macs)


# ---- EMO Table 2 -----------------------------------------------------------------------------------


def mhsa_cost(dim: int, height: int, width: Optional[int] = None, qkv_bias: bool = True) -> Cost:
    """Global MHSA on a C x H x W map, L = H·W tokens.

    params ``4(C + 1)C`` (Q, K, V, O with biases); multiply-adds ``4C²L`` (projections, the
    ``linear_macs``) ``+ 2CL²`` (Q Kᵀ and A V); the paper writes ``8C²L + 4CL² + 3L²``; MPL O(1) = 1.
    """
    C = dim
    _, _, L = _tokens(height, width)
    params = 4 * C * C + (4 if qkv_bias else 2) * C
    return Cost(params, 4 * C * C * L + 2 * C * L * L, 4 * C * C * L,
                paper_flops=8 * C * C * L + 4 * C * L * L + 3 * L * L, mpl=1.0)


def wmhsa_cost(dim: int, height: int, window_size: int, width: Optional[int] = None) -> Cost:
    """Window MHSA (w x w windows, l = w² tokens each) on a C x H x W map.

    Projections act on the L = H·W real tokens (``4C²L``); attention runs over the padded map,
    ``Lp = Hp·Wp`` tokens in windows of l: ``2C·Lp·l``. The paper (maps divisible by w) writes
    ``8C²L + 4CLl + 3Ll``. Windows never exchange information: the paper's MPL is O(Inf). (It
    assumes several windows: when one window covers the map, the exact MPL is 1.)
    """
    C, w = dim, window_size
    H, W, L = _tokens(height, width)
    Lp = math.ceil(H / w) * w * math.ceil(W / w) * w
    l = w * w
    return Cost(4 * (C + 1) * C, 4 * C * C * L + 2 * C * Lp * l, 4 * C * C * L,
                paper_flops=8 * C * C * L + 4 * C * L * l + 3 * L * l, mpl=math.inf)


def conv_cost(dim: int, kernel_size: int, height: int, groups: int = 1, width: Optional[int] = None,
              bias: bool = True) -> Cost:
    """k x k convolution C -> C with G groups (and a bias) on a C x H x W map.

    params ``(C k²/G + 1) C``; multiply-adds ``(C k²/G) L C``; paper ``(2 C k²/G) L C``;
    MPL ``2W/(k - 1)`` (W = the larger side).
    """
    C, k, G = dim, kernel_size, groups
    H, W, L = _tokens(height, width)
    macs = C * k * k // G * L * C
    return Cost((C * k * k // G + bias) * C, macs, macs, paper_flops=2 * macs,
                mpl=2 * max(H, W) / (k - 1) if k > 1 else math.inf)


def dwconv_cost(dim: int, kernel_size: int, height: int, width: Optional[int] = None, bias: bool = True) -> Cost:
    """Depthwise k x k convolution (G = C) with a bias: params ``(k² + 1) C``, multiply-adds
    ``k² L C``, paper ``2k² L C``, MPL ``2W/(k - 1)``."""
    return conv_cost(dim, kernel_size, height, groups=dim, width=width, bias=bias)


# ---- EW-MHSA, the IRB and the iRMB (EMO Sec. 2.3, MobileNetV2) ----------------------------------------


def ewmhsa_cost(dim: int, hidden: int, height: int, window_size: Optional[int] = None, width: Optional[int] = None,
                attn_before_mlp_e: bool = True, project_padding: bool = False, v_groups: int = 1) -> Cost:
    """EW-MHSA with MLP_e included: Q, K from C channels, values expanded to λC = ``hidden``.

    On a C x H x W map (L = H·W real tokens, Lp = Hp·Wp after padding to windows of l = w²):

    * params ``2C² + 2C`` (W_q, W_k with biases) ``+ C·λC/G + λC`` (MLP_e with bias, G groups).
    * multiply-adds ``2C²·L`` (Q, K) ``+ C·λC/G·L`` (MLP_e): the ``linear_macs``; ``+ C·Lp·l``
      (Q Kᵀ) ``+ C_v·Lp·l`` (A V) with ``C_v = C`` in the efficient order (attention before
      MLP_e) and ``C_v = λC`` in the paper's order: the efficient order saves ``(λ - 1)·C·Lp·l``.
    * ``project_padding=True``: the reference order, which runs Q/K and MLP_e inside the padded
      windows (L becomes Lp in the projection terms).
    * Without it (the library's fast path), a map that fits in one window with padding attends
      over its L pixels plus one key standing for all padded ones: the attention terms become
      ``(C + C_v)·L·(L + 1)``.
    * ``paper_flops``: EMO gives no EW-MHSA row; by analogy with its W-MHSA row, ``2·macs + 3·Lp·l``.
    * MPL: 1 for global attention (``window_size=None``), ∞ with windows.
    """
    C, hid = dim, hidden
    H, W, L = _tokens(height, width)
    w_h, w_w = (H, W) if window_size is None else (window_size, window_size)
    Lp = math.ceil(H / w_h) * w_h * math.ceil(W / w_w) * w_w
    l = w_h * w_w
    params = 2 * C * C + 2 * C + C * hid // v_groups + hid
    linear = (2 * C * C + C * hid // v_groups) * (Lp if project_padding else L)
    c_v = C if attn_before_mlp_e else hid
    attn_pairs = Lp * l  # (query, key) pairs over the padded windows
    if not project_padding and Lp == l and L < l:  # one padded window: L queries, L + 1 keys
        attn_pairs = L * (L + 1)
    macs = linear + (C + c_v) * attn_pairs
    return Cost(params, macs, linear, paper_flops=2 * macs + 3 * Lp * l, mpl=1.0 if window_size is None else math.inf)


def irb_cost(dim: int, exp_ratio: float, height: int, kernel_size: int = 3, width: Optional[int] = None) -> Cost:
    """MobileNetV2's inverted residual block C -> λC -> C (:class:`~mobileblocks_edu.blocks.irb.InvertedResidual`,
    stride 1): 1x1 expansion + BN (none at λ = 1), k x k DW-conv + BN, 1x1 projection + BN, no
    biases; hidden width ``round(λC)``. The path length is the DW-conv's, ``2W/(k - 1)``."""
    hid = round(dim * exp_ratio)
    expand = (pointwise_cost(dim, hid, height, width) + batchnorm_cost(hid, height, width) if exp_ratio != 1
              else Cost(0, 0, 0))
    dw = dwconv_cost(hid, kernel_size, height, width, bias=False)
    total = expand + dw + batchnorm_cost(hid, height, width) + pointwise_cost(hid, dim, height, width) \
        + batchnorm_cost(dim, height, width)
    return replace(total, mpl=dw.mpl)


def irmb_cost(dim: int, exp_ratio: float, height: int, kernel_size: int = 3, window_size: int = 7,
              width: Optional[int] = None) -> Cost:
    """EMO's iRMB C -> λC -> C (:class:`~mobileblocks_edu.blocks.irmb.iRMB` with ``has_attn=True``, stride
    1, the library's defaults): BN, EW-MHSA in w x w windows (:func:`ewmhsa_cost`), k x k DW-conv
    without bias + BN, 1x1 projection MLP_s without bias; hidden width ``int(λC)``. The path
    length is the paper's order of the cascade, :func:`irmb_mpl`."""
    hid = int(dim * exp_ratio)
    H, W, _ = _tokens(height, width)
    total = (batchnorm_cost(dim, H, W) + ewmhsa_cost(dim, hid, H, window_size, W)
             + dwconv_cost(hid, kernel_size, H, W, bias=False) + batchnorm_cost(hid, H, W)
             + pointwise_cost(hid, dim, H, W))
    return replace(total, mpl=irmb_mpl(max(H, W), kernel_size, window_size))


# ---- MoCoViT: vanilla self-attention vs MoSA, MLP vs MoFFN, Transformer block vs MTB ---------------------


def ghost_module_cost(in_chs: int, out_chs: int, height: int, width: Optional[int] = None, ratio: int = 2,
                      dw_size: int = 3) -> Cost:
    """Ghost module ``in -> out`` (1x1 primary convolution to ``m = ceil(out/s)`` maps, d x d
    depthwise cheap operation to ``m(s-1)`` ghosts, BN after both, no biases).

    params ``C_in m + d² m(s-1) + 2m + 2m(s-1)``; multiply-adds ``N (C_in m + d² m(s-1))``
    (the ghosts beyond ``out`` are computed, then dropped).
    """
    _, _, N = _tokens(height, width)
    m = math.ceil(out_chs / ratio)
    new = m * (ratio - 1)
    macs = N * (in_chs * m + dw_size * dw_size * new)
    return Cost(in_chs * m + dw_size * dw_size * new, macs, macs) + batchnorm_cost(m + new, height, width)


def ghost_se_cost(chs: int, se_ratio: float = 0.25) -> Cost:
    """GhostNet's squeeze-excitation on ``chs`` channels (reduced to ``r = make_divisible(chs ·
    se_ratio, 4)``): params ``2 chs r + r + chs``; multiply-adds ``2 chs r`` (on the pooled
    1x1 map, independent of the resolution; the squeeze is a plain mean, which fvcore leaves out)."""
    r = make_divisible(chs * se_ratio, 4)
    return Cost(2 * chs * r + r + chs, 2 * chs * r, 2 * chs * r)


def mosa_cost(dim: int, height: int, width: Optional[int] = None, dw_kernel_size: int = 3,
              out_proj: bool = True) -> Cost:
    """MoSA (:class:`~mobileblocks_edu.blocks.mtb.MoSA`): Ghost V projection, ``softmax(V Vᵀ/√d) V``,
    depthwise refiner (k x k + BN), Ghost output projection; global attention, MPL 1.

    multiply-adds ``2 · N (C·C/2 + 9·C/2)`` (two Ghost modules, C even) ``+ N C k²``
    ``+ 2 N² C``. The paper's Eq. 4 is ``paper_flops = N C² + 2 N² C``: one full C x C projection
    and the two attention products. At C = 160 the two Ghost modules and the refiner cost
    ``28,480 N`` against its ``25,600 N``.
    """
    _, _, N = _tokens(height, width)
    g = ghost_module_cost(dim, dim, height, width)
    refiner = dwconv_cost(dim, dw_kernel_size, height, width, bias=False) + batchnorm_cost(dim, height, width)
    lin = g + refiner + (g if out_proj else Cost(0, 0, 0))
    attn = 2 * N * N * dim
    return replace(lin, macs=lin.macs + attn, paper_flops=N * dim * dim + attn, mpl=1.0)


def mlp_cost(dim: int, hidden: int, height: int, width: Optional[int] = None, bias: bool = True) -> Cost:
    """The Transformer MLP/FFN ``C -> hidden -> C`` (:class:`~mobileblocks_edu.blocks.attention.FFN`):
    params ``2 C·hid + hid + C`` (with biases); multiply-adds ``2 N C·hid``."""
    return pointwise_cost(dim, hidden, height, width, bias) + pointwise_cost(hidden, dim, height, width, bias)


def moffn_cost(dim: int, hidden: int, height: int, width: Optional[int] = None, se_ratio: float = 0.0) -> Cost:
    """MoFFN (:class:`~mobileblocks_edu.blocks.mtb.MoFFN`): Ghost ``C -> hid`` (ReLU), optional SE,
    Ghost ``hid -> C``. At C = 160, hid = 960: ``158,640 N`` multiply-adds against the MLP's
    ``307,200 N`` (the paper's "1.9x"), plus 460,800 for the SE."""
    c = ghost_module_cost(dim, hidden, height, width) + ghost_module_cost(hidden, dim, height, width)
    return c + ghost_se_cost(hidden, se_ratio) if se_ratio > 0 else c


def transformer_block_cost(dim: int, hidden: int, height: int, width: Optional[int] = None) -> Cost:
    """The pre-norm Transformer block (:class:`~mobileblocks_edu.blocks.attention.TransformerBlock`):
    two LayerNorms (``2C`` parameters and 5 fvcore operations per element each), vanilla
    self-attention (:func:`mhsa_cost`) and the MLP."""
    _, _, N = _tokens(height, width)
    norms = Cost(4 * dim, 0, 0, norm_flops=2 * 5 * dim * N)
    return norms + mhsa_cost(dim, height, width) + mlp_cost(dim, hidden, height, width)


def mtb_cost(dim: int, hidden: int, height: int, width: Optional[int] = None, se_ratio: float = 0.0,
             out_proj: bool = True) -> Cost:
    """The Mobile Transformer Block (:class:`~mobileblocks_edu.blocks.mtb.MobileTransformerBlock`):
    MoSA + MoFFN, no norms outside the Ghost modules; global attention, MPL 1."""
    c = mosa_cost(dim, height, width, out_proj=out_proj) + moffn_cost(dim, hidden, height, width, se_ratio)
    return replace(c, mpl=1.0)


# ---- the dynamic ReLU (MoCoViT-D) -------------------------------------------------------------------


def dyrelu_cost(chs: int, k: int = 2, reduction: int = 4, mode: str = "b") -> Cost:
    """One :class:`~mobileblocks_edu.blocks.dyrelu.DyReLU`: its hyper-function's two linear layers,
    parameters ``C r + r + (r + 1)·2K C'`` and multiply-adds ``C r + r·2K C'`` per image, whatever
    the map size, with ``r = max(1, C // R)`` and ``C' = C`` (DY-ReLU-B) or 1 (DY-ReLU-A). The K
    lines cost ``K C H W`` multiplications, which, as for every activation, no convention counts."""
    for name, value in (("chs", chs), ("k", k), ("reduction", reduction)):
        check_positive(name, value, int)
    if mode not in DYRELU_MODES:
        raise ValueError(f"mode must be one of {DYRELU_MODES}, got {mode!r}")
    r, c_out = hyper_width(chs, reduction), (chs if mode == "b" else 1)
    macs = chs * r + r * 2 * k * c_out
    return Cost(chs * r + r + (r + 1) * 2 * k * c_out, macs, macs)


# ---- maximum path length in closed form (EMO Table 2, Sec. 2.3) ------------------------------------------


def irmb_mpl(size: int, kernel_size: int, window_size: int) -> float:
    """EMO's order of the maximum path length of the DW-conv + EW-MHSA cascade: ``2W / (k - 1 + 2w)``."""
    return 2 * size / (kernel_size - 1 + 2 * window_size)


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


__all__ = [
    "CONVENTIONS", "ATTENTION_OPS", "count_params", "count_flops", "flop_breakdown", "group_counts",
    "params_by_prefix", "count_cost", "Cost", "batchnorm_cost", "pointwise_cost", "mhsa_cost", "wmhsa_cost",
    "conv_cost", "dwconv_cost", "ewmhsa_cost", "irb_cost", "irmb_cost", "ghost_module_cost", "ghost_se_cost",
    "mosa_cost", "mlp_cost", "moffn_cost", "transformer_block_cost", "mtb_cost", "dyrelu_cost", "irmb_mpl",
    "conv_mpl", "window_mpl", "cascade_mpl_block",
]

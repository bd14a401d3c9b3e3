"""Counting parameters and FLOPs, measured and by formula.

Two papers, two conventions (both count one multiply-add as one operation):

* ``"macs"``: multiply-adds of convolutions, linear layers and matrix products, attention
  included (``Q Kᵀ`` and ``A V``). Nothing else. The convention of MobileNetV2, GhostNet and
  MoCoViT ("FLOPs" in their tables); MobileNetV2 1.0x is 300.77M at 224x224.
* ``"fvcore"``: what fvcore's ``FlopCountAnalysis`` reports, the convention of EMO's tables:
  the ``"macs"`` count plus eval-mode BatchNorm (2 per element, 1 without affine), LayerNorm
  and GroupNorm (5 per element, 4 without affine) and adaptive average pooling (1 per input
  element). Activations, softmax, elementwise additions and plain ``mean`` are not counted.

Matrix products are counted with PyTorch's own formulas (``torch.utils.flop_counter``), which
see every convolution, ``mm``/``addmm``/``bmm`` and the fused
``scaled_dot_product_attention`` kernels (fvcore itself misses the fused kernel). Norms and
pooling are counted per module. Each count is attributed to the innermost module that ran it,
so :func:`flop_breakdown` can say where the operations go.

The analytic formulas of EMO's Table 2 (:func:`mhsa_cost`, :func:`wmhsa_cost`,
:func:`conv_cost`, :func:`dwconv_cost`) give parameters, the paper's FLOPs, the multiply-adds
of our convention and the maximum path length; the tests check them against measured counts.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

CONVENTIONS = ("macs", "fvcore")
InputSpec = Union[Sequence[int], torch.Tensor]


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


class _MatmulCounter(TorchDispatchMode):
    """Adds the multiply-adds of every matrix-product-like aten op to the current module's count."""

    def __init__(self, record):
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            # PyTorch counts 2 FLOPs per multiply-add
            self.record(str(func._overloadpacket).split(".")[-1], formula(*args, **kwargs, out_val=out) // 2)
        return out


def flop_breakdown(
    module: nn.Module, inputs: InputSpec, convention: str = "fvcore"
) -> dict[tuple[str, str], int]:
    """Run one forward pass in eval mode and return ``{(module_name, op): count}``.

    ``module_name`` is the qualified name of the innermost module that executed the operation
    (``""`` for the root); ``op`` is an aten op name (``convolution``, ``addmm``, ``bmm``,
    ``_scaled_dot_product_flash_attention_for_cpu``, ...) or the norm/pool module's class name.
    ``inputs`` is an input shape such as ``(1, 3, 224, 224)`` or a tensor.
    """
    _check_convention(convention)
    names = {id(m): n for n, m in module.named_modules()}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    stack: list[str] = [""]

    def record(op: str, n: int) -> None:
        if n:
            counts[(stack[-1], op)] += int(n)

    def pre_hook(m, args):
        stack.append(names.get(id(m), stack[-1]))

    def post_hook(m, args, out):
        stack.pop()
        if convention == "fvcore" and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            record(type(m).__name__, _norm_pool_flops(m, args[0], out))

    if isinstance(inputs, torch.Tensor):
        x = inputs
    else:
        try:
            p = next(module.parameters())
            device, dtype = p.device, p.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        x = torch.zeros(tuple(inputs), device=device, dtype=dtype)

    was_training = module.training
    handles = [
        nn.modules.module.register_module_forward_pre_hook(pre_hook),
        nn.modules.module.register_module_forward_hook(post_hook),
    ]
    module.eval()
    try:
        with torch.no_grad(), _MatmulCounter(record):
            module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return dict(counts)


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


# ---- EMO Table 2: analytic complexity ----------------------------------------------------------


@dataclass(frozen=True)
class ModuleCost:
    """Analytic cost of one module on a C x H x W map.

    * ``params``: learnable parameters.
    * ``macs``: multiply-adds in this library's conventions (``"macs"`` and, for these
      norm-free modules, ``"fvcore"`` too).
    * ``paper_flops``: EMO's Table 2 expression, which counts 2 FLOPs per multiply-add and, for
      attention, 3 per softmax entry (exp, sum, divide). Neither convention counts the softmax.
    * ``mpl``: maximum path length (EMO's Table 2 / Sec. 2.3), in layers; ``math.inf`` when
      some positions are never connected.
    """

    params: int
    macs: int
    paper_flops: int
    mpl: float


def _tokens(height: int, width: Optional[int]) -> tuple[int, int, int]:
    width = height if width is None else width
    return height, width, height * width


def mhsa_cost(dim: int, height: int, width: Optional[int] = None, qkv_bias: bool = True) -> ModuleCost:
    """Global MHSA on a C x H x W map, L = H·W tokens.

    params ``4(C + 1)C`` (Q, K, V, O with biases); multiply-adds ``4C²L`` (projections)
    ``+ 2CL²`` (Q Kᵀ and A V); the paper writes ``8C²L + 4CL² + 3L²``; MPL O(1) = 1.
    """
    C = dim
    _, _, L = _tokens(height, width)
    params = 4 * C * C + (4 if qkv_bias else 2) * C
    macs = 4 * C * C * L + 2 * C * L * L
    return ModuleCost(params, macs, 8 * C * C * L + 4 * C * L * L + 3 * L * L, 1.0)


def wmhsa_cost(dim: int, height: int, window_size: int, width: Optional[int] = None) -> ModuleCost:
    """Window MHSA (w x w windows, l = w² tokens each) on a C x H x W map.

    Projections act on the L = H·W real tokens (``4C²L``); attention runs over the padded map,
    ``Lp = Hp·Wp`` tokens in windows of l: ``2C·Lp·l``. The paper (maps divisible by w) writes
    ``8C²L + 4CLl + 3Ll``. Windows never exchange information: MPL = ∞.
    """
    C, w = dim, window_size
    H, W, L = _tokens(height, width)
    Lp = math.ceil(H / w) * w * math.ceil(W / w) * w
    l = w * w
    macs = 4 * C * C * L + 2 * C * Lp * l
    return ModuleCost(4 * (C + 1) * C, macs, 8 * C * C * L + 4 * C * L * l + 3 * L * l, math.inf)


def conv_cost(dim: int, kernel_size: int, height: int, groups: int = 1, width: Optional[int] = None) -> ModuleCost:
    """k x k convolution C -> C with G groups and a bias on a C x H x W map.

    params ``(C k²/G + 1) C``; multiply-adds ``(C k²/G) L C``; paper ``(2 C k²/G) L C``;
    MPL ``2W/(k - 1)`` (W = the larger side).
    """
    C, k, G = dim, kernel_size, groups
    H, W, L = _tokens(height, width)
    macs = C * k * k // G * L * C
    return ModuleCost((C * k * k // G + 1) * C, macs, 2 * macs, 2 * max(H, W) / (k - 1) if k > 1 else math.inf)


def dwconv_cost(dim: int, kernel_size: int, height: int, width: Optional[int] = None) -> ModuleCost:
    """Depthwise k x k convolution (G = C) with a bias: params ``(k² + 1) C``, multiply-adds
    ``k² L C``, paper ``2k² L C``, MPL ``2W/(k - 1)``."""
    return conv_cost(dim, kernel_size, height, groups=dim, width=width)


def irmb_mpl(size: int, kernel_size: int, window_size: int) -> float:
    """EMO's maximum path length of the DW-conv + EW-MHSA cascade: ``2W / (k - 1 + 2w)``."""
    return 2 * size / (kernel_size - 1 + 2 * window_size)


__all__ = [
    "CONVENTIONS",
    "count_params",
    "count_flops",
    "flop_breakdown",
    "group_counts",
    "params_by_prefix",
    "ModuleCost",
    "mhsa_cost",
    "wmhsa_cost",
    "conv_cost",
    "dwconv_cost",
    "irmb_mpl",
]

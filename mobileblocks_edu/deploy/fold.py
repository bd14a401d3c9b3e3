"""BatchNorm folding: a trained network's BatchNorms merged into its convolutions.

In eval mode a BatchNorm is a per-channel affine map with frozen statistics,

.. math::

    \\mathrm{BN}(y) = \\gamma \\frac{y - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta = s \\odot y + t,
    \\qquad s = \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad t = \\beta - s \\mu,

so after a convolution ``y = W * x + b`` it merges into it: ``W' = s · W`` (per output channel),
``b' = s · b + t``. A BatchNorm *before* a 1x1 convolution folds too (``W' = W · diag(s)``,
``b' = b + W t``). A LayerNorm normalises every pixel by statistics of *that input*, computed at
run time, so nothing can be precomputed: it stays in the graph (MoCoViT's argument, Sec. 3).
:func:`fold_batchnorm` returns a folded copy; :func:`norm_counts` counts what is left.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..blocks.layers import ConvNormAct

BN_TYPES = (nn.BatchNorm2d,)
LN_TYPES = (nn.LayerNorm, nn.GroupNorm)


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, t)`` with ``BN(y) = s ⊙ y + t`` in eval mode (per channel)."""
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -s * bn.running_mean
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode: ``W' = s·W``, ``b' = s·b + t``
    (PyTorch's ``torch.nn.utils.fusion.fuse_conv_bn_eval`` computes the same)."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, BN_TYPES):
        raise TypeError("conv must be an nn.Conv2d and bn an nn.BatchNorm2d, "
                        f"got {type(conv).__name__}, {type(bn).__name__}")
    if bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False): it cannot fold")
    s, t = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    fused.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))  # (out, in/groups, k, k), scaled per output channel
    b = conv.bias if conv.bias is not None else torch.zeros_like(s)
    fused.bias = nn.Parameter(s * b + t)
    return fused


@torch.no_grad()
def fold_bn_into_next_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A new 1x1 convolution equal to ``conv(bn(x))`` in eval mode: ``W' = W·diag(s)``, ``b' = b + W t``.

    Only exact for a 1x1 kernel without padding (a padded border would see ``t`` instead of zero)
    and ``groups=1``.
    """
    if conv.kernel_size != (1, 1) or conv.padding not in ((0, 0), 0) or conv.groups != 1:
        raise ValueError("only a 1x1 convolution without padding and groups=1 can absorb a preceding BatchNorm, "
                         f"got {conv}")
    s, t = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    w = conv.weight[:, :, 0, 0]  # (out, in)
    fused.weight.copy_(conv.weight * s.view(1, -1, 1, 1))
    b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=w.device, dtype=w.dtype)
    fused.bias = nn.Parameter(b + w @ t)
    return fused


def _fold_prenorm(blk: nn.Module) -> bool:
    """Fold an iRMB's pre-norm BatchNorm into its 1x1 expansion ``v`` (blocks without attention:
    with attention, the padded pixels of a window are zeros *after* the norm, and folding would
    move them before it). Returns ``True`` when it folded."""
    from ..blocks.irmb import iRMB

    if not isinstance(blk, iRMB) or blk.has_attn or not isinstance(blk.norm, BN_TYPES):
        return False
    v = getattr(blk, "v", None)
    if not isinstance(v, ConvNormAct):
        return False
    conv = v.conv
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding not in ((0, 0), 0):
        return False
    v.conv = fold_bn_into_next_conv(blk.norm, conv)
    blk.norm = nn.Identity()
    return True


def fold_batchnorm(model: nn.Module, prenorm: bool = True) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm that follows a convolution folded into it.

    Three patterns are folded (the original model is not changed):

    * ``ConvNormAct``: ``act(BN(conv(x)))`` -> ``act(conv'(x))``, the unit of every CNN in the book;
    * ``nn.Sequential(conv, BN, ...)``: EMO's stem;
    * with ``prenorm=True``, the pre-norm BatchNorm of an iRMB without attention folds forward
      into its 1x1 expansion (``W' = W·diag(s)``, ``b' = b + W t``): EMO's stages 1-2.

    Each folded BatchNorm becomes ``nn.Identity``; LayerNorms stay (they cannot fold). Use
    :func:`norm_counts` on the model before and after to see what was removed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a model), got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    for mod in list(folded.modules()):
        if prenorm:
            _fold_prenorm(mod)
        if isinstance(mod, ConvNormAct) and isinstance(mod.norm, BN_TYPES) and isinstance(mod.conv, nn.Conv2d):
            mod.conv = fold_conv_bn(mod.conv, mod.norm)
            mod.norm = nn.Identity()
        elif isinstance(mod, nn.Sequential):
            keys = list(mod._modules)
            for a, b in zip(keys, keys[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], BN_TYPES):
                    mod._modules[a] = fold_conv_bn(mod._modules[a], mod._modules[b])
                    mod._modules[b] = nn.Identity()
    return folded


def norm_counts(model: nn.Module) -> dict[str, int]:
    """How many normalisation layers ``model`` runs at inference, and their parameters and buffers.

    ``batchnorm``: BatchNorm layers; ``layernorm``: LayerNorm (and GroupNorm) layers;
    ``norm_tensors``: elements of their weights, biases and running statistics.
    """
    bn = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    ln = [m for m in model.modules() if isinstance(m, LN_TYPES)]
    numel = sum(t.numel() for m in bn + ln for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
                if t.dim() > 0)
    return {"batchnorm": len(bn), "layernorm": len(ln), "norm_tensors": numel}


__all__ = ["BN_TYPES", "LN_TYPES", "bn_scale_shift", "fold_conv_bn", "fold_bn_into_next_conv", "fold_batchnorm",
           "norm_counts"]

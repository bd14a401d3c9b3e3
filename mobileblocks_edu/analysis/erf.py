"""Effective receptive fields and feature similarity (Luo et al., NeurIPS 2016, arXiv:1701.04128;
EMO, Zhang et al., ICCV 2023, arXiv:2301.01146, Fig. 9).

**Effective receptive field** (Luo et al.): the gradient of one central output pixel (summed over
channels) with respect to the input, ``|d y_c(i, j) / d x|``, averaged over inputs. It is the part
of the theoretical field (:mod:`mobileblocks_edu.analysis.receptive`) that actually matters, usually a
small, roughly Gaussian blob.

**Feature similarity** (EMO Fig. 9): cosine similarities between the feature vectors of the
pixels on the diagonal of a feature map, averaged over images.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.layers import eval_mode
from ..env import check_positive


def _check_position(name: str, position, h: int, w: int) -> tuple[int, int]:
    try:
        i, j = position
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (row, column), got {position!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (i, j)) or not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"{name} must be (row, column) with 0 <= row < {h} and 0 <= column < {w}, got {position!r}")
    return i, j


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
        hint = ": add a batch dimension with x.unsqueeze(0)" if isinstance(x, torch.Tensor) and x.dim() == 3 else ""
        raise ValueError(f"x must be a non-empty batch (B, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating-point (gradients flow only through floats), got {x.dtype}")
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
    if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not 0 < mass <= 1:
        raise ValueError(f"mass must be a number in (0, 1], got {mass!r}")
    v = erf.flatten().double().sort(descending=True).values
    total = v.sum()
    if total <= 0:
        return 0
    return int((v.cumsum(0) < (mass - 1e-9) * total).sum()) + 1


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
    from ..blocks.irb import InvertedResidual
    from ..blocks.irmb import iRMB

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
    "effective_receptive_field", "erf_area", "STACK_KINDS", "block_stack", "feature_maps", "diagonal_similarity",
    "similarity_by_distance",
]

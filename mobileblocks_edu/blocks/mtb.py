"""The Mobile Transformer Block of MoCoViT (Ma et al., 2022, arXiv:2205.12635, Sec. 3).

Two residuals, no LayerNorm (BatchNorm lives inside the Ghost modules and folds into the
convolutions at deployment), ReLU instead of GELU:

.. math::

    X' = X + \\mathrm{MoSA}(X), \\qquad Y = X' + \\mathrm{MoFFN}(X')

**MoSA** (Mobile Self-Attention, Eqs. 2-3). One Ghost module computes the values
``V = Ghost(X)``; *branch sharing* reuses them as queries and keys (``Q = K = V``), and a
depthwise convolution refines V:

.. math::

    \\mathrm{MoSA}(X) = \\mathrm{Ghost}_o\\Big(\\mathrm{softmax}\\big(V V^\\top / \\sqrt{d}\\big)\\, V
        + \\mathrm{DW}_{3 \\times 3}(V)\\Big)

The softmax runs over the ``N = H·W`` spatial tokens: ``V`` is read as an ``N x C`` matrix
(one row per pixel, split into heads), so the attention map is ``(B, heads, N, N)``.

**MoFFN** (Mobile FFN): the two linear layers of the MLP become Ghost modules, with BN inside,
ReLU, and a squeeze-excitation after the up-projection:
``MoFFN(X) = Ghost_{hid -> C}(SE(Ghost_{C -> hid}(X)))``.

Choices the paper leaves open, made here (the book's MoCoViT lesson checks them against the
paper's budget):

* **Output projection**: a linear Ghost module after the attention (``out_proj=True``). With it
  the MoSA of a 160-channel block costs 28,480 multiply-adds per token against the 102,400 of
  vanilla self-attention's four projections: the paper's "3.6x fewer FLOPs"; and MoCoViT 1.0x
  then has 5,300,268 parameters (the paper: 5.3M).
* **No activation** after the V projection and the output projection: they replace linear
  layers. The expansion Ghost module of the MoFFN has ReLU, as in a Ghost bottleneck.
* **Heads**: 4 (``num_heads``). Every GhostNet width is a multiple of 4, so 4 heads divide
  every width multiplier; heads change neither parameters nor multiply-adds.
* **Squeeze-excitation**: per block (``se_ratio``). The library puts it in MTBs 2 and 4,
  where GhostNet's replaced bottlenecks had it. The paper only says that SE "is also applied after
  the up-projection"; the placement is the book's reading of GhostNet's pattern and of the
  paper's 5.3M budget (lesson 10).

**The vanilla parts of the paper's Table 7** (``attn_layer="mhsa"``, ``ffn_layer="mlp"``): the
Transformer block's own layers from :mod:`mobileblocks_edu.blocks.attention`, each with the pre-norm
the vanilla block has ("LayerNorm is applied before every block", Sec. 3.1):
``X' = X + MHSA(LN(X))`` with separate Q, K, V projections (1x1 convolutions with bias) and an
output projection, and ``Y = X' + MLP(LN(X'))`` with two 1x1 convolutions and GELU at the MoFFN's
hidden width (no squeeze-excitation). ``vanilla_norm="bn"`` puts a BatchNorm there instead
(the paper's Table 8 "BN ahead"). The MoSA and MoFFN parts keep their BN inside, unless
``norm_position="ahead"``: then their convolutions lose the BN (and get a bias) and one
``vanilla_norm`` pre-norm sits ahead of each part, the other two columns of the paper's Table 8.
"""
from __future__ import annotations

import torch
from torch import nn

from ..env import check_bool, check_number, check_positive, check_rate
from .attention import FFN, MHSA, WindowAttention, resolve_heads
from .ghost import GhostModule, ghost_se
from .layers import ConvNormAct, DropPath, LayerFactory, LayerNorm2d, check_input, check_kernel

ATTN_LAYERS = ("mosa", "mhsa")
FFN_LAYERS = ("moffn", "mlp")
VANILLA_NORMS = {"ln": LayerNorm2d, "bn": nn.BatchNorm2d}
NORM_POSITIONS = ("inside", "ahead")


class MoSA(nn.Module):
    """Mobile Self-Attention: ``Ghost_o(softmax(V Vᵀ/√d) V + DW(V))`` with ``V = Ghost_v(X)``.

    Args:
        dim: channels C (input and output).
        num_heads: attention heads h (``dim`` must be divisible by it); ``d = C / h``.
        dw_kernel_size: kernel of the depthwise refiner (3 in the paper).
        out_proj: apply a linear Ghost module ``C -> C`` after the attention (see the module
            docstring); ``False`` returns ``softmax(V Vᵀ/√d) V + DW(V)`` as in Eq. 3.
        act_layer: activation after the V projection (``None``: linear, the default).
        norm_layer: the norm inside the Ghost modules and after the refiner (``None``: none, for a
            norm ahead of the block, the paper's Table 8).
        fused: use ``F.scaled_dot_product_attention`` (one kernel, no N x N map stored) or the
            readable softmax path. ``set_attention(mosa, keep_attn=True)`` (see
            :func:`~mobileblocks_edu.blocks.attention.set_attention`) keeps the last attention map
            ``(B, heads, N, N)`` in ``mosa.attn.last_attn``.

    Parameters at C = 160: 13,840 (Ghost V) + 1,760 (DW 3x3 + BN) + 13,840 (Ghost O) = 29,440.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        dw_kernel_size: int = 3,
        out_proj: bool = True,
        act_layer: LayerFactory = None,
        fused: bool = True,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ):
        super().__init__()
        check_positive("dim", dim, int)
        check_kernel("dw_kernel_size", dw_kernel_size)
        check_bool("out_proj", out_proj)
        num_heads = resolve_heads(dim, num_heads, None)
        self.dim, self.num_heads = dim, num_heads
        # f_v = f_k = f_q (branch sharing)
        self.v = GhostModule(dim, dim, act_layer=act_layer, norm_layer=norm_layer)
        self.attn = WindowAttention(num_heads, dim // num_heads, window_size=None, fused=fused)
        self.refine = ConvNormAct(dim, dim, dw_kernel_size, groups=dim, act_layer=None, norm_layer=norm_layer,
                                  bias=norm_layer is None)  # DW(V)
        self.proj = GhostModule(dim, dim, act_layer=None, norm_layer=norm_layer) if out_proj else nn.Identity()

    def attend(self, v: torch.Tensor) -> torch.Tensor:
        """``softmax(V Vᵀ/√d) V`` over the H·W tokens of ``v: (B, C, H, W)`` -> ``(B, C, H, W)``.

        Q = K = V: the same map is passed as query, key and value.
        """
        return self.attn(v, v, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        v = self.v(x)  # (B, C, H, W)
        return self.proj(self.attend(v) + self.refine(v))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


class MoFFN(nn.Module):
    """Mobile FFN: ``Ghost_{hid -> C}(SE(Ghost_{C -> hid}(X)))``, BN inside, ReLU.

    Args:
        dim: channels C (input and output).
        mid_chs: hidden width, the channels after the up-projection (960 for C = 160 in MoCoViT 1.0x).
        se_ratio: squeeze-excitation after the up-projection when > 0 (GhostNet's: reduce to
            ``make_divisible(mid_chs · se_ratio, 4)``, ReLU, hard-sigmoid gate).
        act_layer: activation of the up-projection (ReLU, not the MLP's GELU).
        norm_layer: the norm inside both Ghost modules (``None``: none, see :class:`MoSA`).

    The same layers as a stride-1 Ghost bottleneck without its shortcut: 160,880 parameters at
    C = 160, mid_chs 960 (622,880 with SE).
    """

    def __init__(self, dim: int, mid_chs: int, se_ratio: float = 0.0, act_layer: LayerFactory = nn.ReLU,
                 norm_layer: LayerFactory = nn.BatchNorm2d):
        super().__init__()
        check_positive("dim", dim, int)
        check_positive("mid_chs", mid_chs, int)
        check_number("se_ratio", se_ratio, 0, why="0: no squeeze-excitation")
        self.dim, self.mid_chs = dim, mid_chs
        # (B, C, H, W) -> (B, hid, H, W)
        self.ghost1 = GhostModule(dim, mid_chs, act_layer=act_layer, norm_layer=norm_layer)
        self.se = ghost_se(mid_chs, se_ratio) if se_ratio > 0 else nn.Identity()
        self.ghost2 = GhostModule(mid_chs, dim, act_layer=None, norm_layer=norm_layer)  # (B, hid, H, W) -> (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        return self.ghost2(self.se(self.ghost1(x)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mid_chs={self.mid_chs}"


class MobileTransformerBlock(nn.Module):
    """MTB: ``x = x + MoSA(x)``, then ``x = x + MoFFN(x)``. No LayerNorm, one residual each.

    With the switches of the paper's Table 7, either part can be the vanilla Transformer's:
    ``x = x + MHSA(norm(x))`` and/or ``x = x + MLP(norm(x))`` (see the module docstring).

    Args:
        dim: channels C.
        mid_chs: MoFFN hidden channels (also the vanilla MLP's).
        num_heads: attention heads (MoSA or MHSA).
        se_ratio: squeeze-excitation inside the MoFFN (0: none; the vanilla MLP has none).
        dw_kernel_size: kernel of MoSA's depthwise refiner.
        out_proj: MoSA's output Ghost projection.
        act_layer: activation of the MoFFN's up-projection.
        drop_path_rate: stochastic depth on both residual branches.
        fused: fused attention kernel (see :class:`MoSA`).
        attn_layer: ``"mosa"`` (MoCoViT) or ``"mhsa"`` (vanilla self-attention with a pre-norm).
        ffn_layer: ``"moffn"`` (MoCoViT) or ``"mlp"`` (vanilla MLP with GELU and a pre-norm).
        vanilla_norm: the pre-norm of the vanilla parts: ``"ln"`` (LayerNorm over channels, as in
            the vanilla Transformer block) or ``"bn"`` (BatchNorm).
        norm_position: where MoSA and MoFFN normalise (the paper's Table 8): ``"inside"`` (BN after
            every convolution inside them, MoCoViT's choice) or ``"ahead"`` (one ``vanilla_norm``
            pre-norm ahead of each, none inside: "LN ahead" or "BN ahead").
    """

    def __init__(
        self,
        dim: int,
        mid_chs: int,
        num_heads: int = 4,
        se_ratio: float = 0.0,
        dw_kernel_size: int = 3,
        out_proj: bool = True,
        act_layer: LayerFactory = nn.ReLU,
        drop_path_rate: float = 0.0,
        fused: bool = True,
        attn_layer: str = "mosa",
        ffn_layer: str = "moffn",
        vanilla_norm: str = "ln",
        norm_position: str = "inside",
    ):
        super().__init__()
        if attn_layer not in ATTN_LAYERS:
            raise ValueError(f"attn_layer must be one of {ATTN_LAYERS}, got {attn_layer!r}")
        if ffn_layer not in FFN_LAYERS:
            raise ValueError(f"ffn_layer must be one of {FFN_LAYERS}, got {ffn_layer!r}")
        if vanilla_norm not in VANILLA_NORMS:
            raise ValueError(f"vanilla_norm must be one of {sorted(VANILLA_NORMS)}, got {vanilla_norm!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {NORM_POSITIONS}, got {norm_position!r}")
        check_positive("dim", dim, int)
        check_positive("mid_chs", mid_chs, int)
        check_rate("drop_path_rate", drop_path_rate)
        self.dim, self.attn_layer, self.ffn_layer = dim, attn_layer, ffn_layer
        self.norm_position = norm_position
        norm = VANILLA_NORMS[vanilla_norm]
        ahead = norm_position == "ahead"
        inside = None if ahead else nn.BatchNorm2d  # the norm inside MoSA's and MoFFN's convolutions
        if attn_layer == "mosa":
            self.norm1 = norm(dim) if ahead else nn.Identity()  # BN lives inside MoSA's Ghost modules
            self.attn = MoSA(dim, num_heads, dw_kernel_size, out_proj, fused=fused, norm_layer=inside)
        else:
            self.norm1 = norm(dim)
            self.attn = MHSA(dim, num_heads, fused=fused)  # W_q, W_k, W_v, W_o: 4(C + 1)C parameters
        if ffn_layer == "moffn":
            self.norm2 = norm(dim) if ahead else nn.Identity()
            self.ffn = MoFFN(dim, mid_chs, se_ratio, act_layer, norm_layer=inside)
        else:
            self.norm2 = norm(dim)
            self.ffn = FFN(dim, mid_chs / dim, nn.GELU)  # C -> mid_chs -> C, GELU
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        x = x + self.drop_path(self.attn(self.norm1(x)))  # (B, C, H, W)
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, attn_layer={self.attn_layer!r}, ffn_layer={self.ffn_layer!r}"


__all__ = ["MoSA", "MoFFN", "MobileTransformerBlock", "ATTN_LAYERS", "FFN_LAYERS", "VANILLA_NORMS", "NORM_POSITIONS"]

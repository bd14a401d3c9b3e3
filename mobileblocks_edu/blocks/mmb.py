"""The Meta Mobile Block (EMO, Zhang et al., ICCV 2023, arXiv:2301.01146, Sec. 2.2, Fig. 2).

One residual around three steps, with an expansion ratio λ and an efficient operator F:

.. math::

    X_e = \\mathrm{MLP}_e(X) \\in \\mathbb{R}^{\\lambda C \\times H \\times W}, \\quad
    X_f = \\mathcal{F}(X_e), \\quad
    X_s = \\mathrm{MLP}_s(X_f) \\in \\mathbb{R}^{C \\times H \\times W}, \\quad
    Y = X + X_s

(the paper leaves norms and activations out; here an optional pre-norm comes first, MLP_e may
carry a norm and an activation, MLP_s a norm). Three known modules are instances of it:

==========  =====================  ====================  =========================
module      λ                      F                     pre-norm / MLP_e act
==========  =====================  ====================  =========================
IRB         expansion t (6)        k x k DW-conv         none / ReLU6 (BN inside)
FFN         mlp ratio (4)          identity              LayerNorm / GELU
MHSA        1 (exactly)            attention (see below) LayerNorm / none
==========  =====================  ====================  =========================

Where the unification is only approximate, precisely:

* **MHSA.** MLP_e is the value projection W_v and MLP_s the output projection W_o, so λ = 1.
  F is *not* a function of X_e alone: it needs Q = W_q X and K = W_k X from the block's
  (normalised) input, so F carries its own Q/K projection (``2(C + 1)C`` parameters) and is
  called as ``F(X_e, X)``. A λ > 1 would change the module: it is what EMO's EW-MHSA does.
* **FFN and MHSA** are not residual modules themselves; the MMB instance equals the
  *sub-block* ``X + module(LN(X))`` of the two-residual Transformer block, and a Transformer
  block is two MMBs in a row (attention, then FFN).
* **IRB.** Exact, including MobileNetV2's first block (λ = 1: MLP_e is the identity), as long as
  the block has a residual (stride 1, C_in = C_out); the MMB always adds its input.

Beyond the paper's three: :meth:`MetaMobileBlock.mbv3` (MobileNetV3's block: F = DW-conv + SE,
exact) and :meth:`MetaMobileBlock.uib` (MobileNetV4's universal inverted bottleneck: exact only
with its optional first DW-conv in the pre-norm's place, and its layer scale folded into MLP_s).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..env import check_bool, check_positive, check_rate, check_ratio
from .attention import FFN, MHSA, WindowAttention, resolve_heads
from .irb import InvertedResidual
from .layers import (
    ConvNormAct,
    DropPath,
    LayerFactory,
    LayerNorm2d,
    SqueezeExcite,
    check_factory,
    check_input,
    check_kernel,
)

OperatorFactory = Callable[[int], nn.Module]


class AttentionOperator(nn.Module):
    """MHSA's efficient operator F(X_e, X): Q and K from the block input X, values X_e.

    ``qk`` is one 1x1 convolution C -> 2C (W_q and W_k stacked). The values are the already
    projected ``X_e = W_v X`` that the MMB's MLP_e computed.
    """

    needs_input = True  # the MMB calls F(X_e, X)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_bias: bool = True,
        window_size: Optional[int] = None,
        window_layout: str = "block",
        fused: bool = True,
    ):
        super().__init__()
        check_bool("qk_bias", qk_bias)
        num_heads = resolve_heads(dim, num_heads, None)
        self.qk = nn.Conv2d(dim, 2 * dim, 1, bias=qk_bias)  # [W_q; W_k]
        self.attn = WindowAttention(num_heads, dim // num_heads, window_size, window_layout, fused)

    def forward(self, xe: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, k = self.qk(x).chunk(2, dim=1)  # 2 x (B, C, H, W)
        return self.attn(q, k, xe)  # (B, C_v, H, W)


class MetaMobileBlock(nn.Module):
    """``Y = X + drop_path(MLP_s(F(MLP_e(norm(X)))))``, the one-residual Meta Mobile Block MMB(λ, F).

    Args:
        dim: channels C of input and output.
        exp_ratio: expansion ratio λ; MLP_e maps C to ``mid_chs = round(λ C)`` channels.
        operator: the efficient operator F, given as a factory ``mid_chs -> nn.Module``;
            ``None`` means the identity. A module with ``needs_input = True`` is called as
            ``F(X_e, norm(X))``.
        norm_layer: pre-norm on X (``None``: none, as in the IRB).
        act_layer: activation at the end of MLP_e (``None``: linear).
        mlp_norm_layer: normalisation inside MLP_e and MLP_s (BN in the IRB, none in a Transformer).
        bias: biases in MLP_e and MLP_s.
        drop_path_rate: stochastic depth on the residual branch.

    The factories :meth:`irb`, :meth:`ffn` and :meth:`mhsa` build the three instantiations and
    :meth:`from_module` builds one that holds the weights of an existing module.
    """

    def __init__(
        self,
        dim: int,
        exp_ratio: float = 4.0,
        operator: Optional[OperatorFactory] = None,
        norm_layer: LayerFactory = None,
        act_layer: LayerFactory = nn.GELU,
        mlp_norm_layer: LayerFactory = None,
        bias: bool = True,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        check_positive("dim", dim, int)
        check_ratio("exp_ratio", exp_ratio, why="the hidden width is round(exp_ratio x dim)")
        if operator is not None and (isinstance(operator, nn.Module) or not callable(operator)):
            raise ValueError(f"operator must be a factory mid_chs -> module (or None), got {operator!r}")
        check_factory("norm_layer", norm_layer)
        check_factory("mlp_norm_layer", mlp_norm_layer)
        check_bool("bias", bias)
        check_rate("drop_path_rate", drop_path_rate)
        hidden = round(dim * exp_ratio)
        if hidden < 1:
            raise ValueError(f"exp_ratio={exp_ratio} leaves no hidden channels at dim={dim}")
        self.dim, self.exp_ratio, self.mid_chs = dim, exp_ratio, hidden
        self.norm = norm_layer(dim) if norm_layer is not None else nn.Identity()
        # MLP_e: (B, C, H, W) -> (B, λC, H, W); the identity when λ = 1 and nothing is learned
        self.mlp_e = ConvNormAct(dim, hidden, 1, bias=bias, norm_layer=mlp_norm_layer, act_layer=act_layer)
        self.op = operator(hidden) if operator is not None else nn.Identity()  # F: λC -> λC
        # MLP_s: (B, λC, H, W) -> (B, C, H, W), linear
        self.mlp_s = ConvNormAct(hidden, dim, 1, bias=bias, norm_layer=mlp_norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        xn = self.norm(x)
        xe = self.mlp_e(xn)  # X_e: (B, λC, H, W)
        xf = self.op(xe, xn) if getattr(self.op, "needs_input", False) else self.op(xe)  # X_f
        return x + self.drop_path(self.mlp_s(xf))  # Y = X + X_s

    def extra_repr(self) -> str:
        return f"dim={self.dim}, exp_ratio={self.exp_ratio}, mid_chs={self.mid_chs}"

    # ---- the three instantiations of Fig. 2 -------------------------------------------------

    @classmethod
    def irb(cls, dim: int, exp_ratio: float = 6.0, dw_kernel_size: int = 3, act_layer: LayerFactory = nn.ReLU6,
            norm_layer: LayerFactory = nn.BatchNorm2d) -> "MetaMobileBlock":
        """MMB(λ = t, F = k x k DW-conv + BN + act): MobileNetV2's inverted residual block."""
        check_kernel("dw_kernel_size", dw_kernel_size)

        def dw_conv(h: int) -> nn.Module:
            return ConvNormAct(h, h, dw_kernel_size, groups=h, norm_layer=norm_layer, act_layer=act_layer)

        block = cls(dim, exp_ratio, dw_conv, norm_layer=None, act_layer=act_layer, mlp_norm_layer=norm_layer,
                    bias=False)
        if exp_ratio == 1:  # MobileNetV2's first block has no expansion convolution
            block.mlp_e = nn.Identity()
        return block

    @classmethod
    def ffn(cls, dim: int, mlp_ratio: float = 4.0, act_layer: LayerFactory = nn.GELU,
            norm_layer: LayerFactory = LayerNorm2d) -> "MetaMobileBlock":
        """MMB(λ = mlp ratio, F = identity): the FFN sub-block ``X + FFN(LN(X))``."""
        return cls(dim, mlp_ratio, None, norm_layer=norm_layer, act_layer=act_layer, mlp_norm_layer=None, bias=True)

    @classmethod
    def mhsa(cls, dim: int, num_heads: int, window_size: Optional[int] = None, window_layout: str = "block",
             qkv_bias: bool = True, norm_layer: LayerFactory = LayerNorm2d, fused: bool = True) -> "MetaMobileBlock":
        """MMB(λ = 1, F = attention): the attention sub-block ``X + MHSA(LN(X))``.

        MLP_e is W_v (no activation), F holds W_q, W_k and the softmax, MLP_s is W_o.
        """

        def attention(h: int) -> nn.Module:
            return AttentionOperator(h, num_heads, qkv_bias, window_size, window_layout, fused)

        block = cls(dim, 1.0, attention, norm_layer=norm_layer, act_layer=None, mlp_norm_layer=None, bias=True)
        if not qkv_bias:  # W_v has no bias either; W_o keeps its bias
            block.mlp_e.conv.bias = None
        return block

    # ---- beyond Fig. 2: MobileNetV3's block and MobileNetV4's universal inverted bottleneck ----

    @classmethod
    def mbv3(cls, dim: int, mid_chs: int, dw_kernel_size: int = 3, act_layer: LayerFactory = nn.Hardswish,
             se_chs: Optional[int] = None, norm_layer: LayerFactory = nn.BatchNorm2d) -> "MetaMobileBlock":
        """MMB(λ = mid_chs / C, F = k x k DW-conv + BN + act, then SE): MobileNetV3's inverted residual
        block with its shortcut (Howard et al., ICCV 2019, arXiv:1905.02244).

        ``se_chs``: the squeeze width of its squeeze-excitation (ReLU inside, hard-sigmoid gate),
        ``None`` for none; ``mid_chs == dim`` drops the expansion convolution, as MobileNetV3 does.
        The squeeze-excitation is part of F: it reads only the depthwise convolution's output.
        """
        check_positive("mid_chs", mid_chs, int)
        check_kernel("dw_kernel_size", dw_kernel_size)
        if se_chs is not None:
            check_positive("se_chs", se_chs, int)

        def dw_se(h: int) -> nn.Module:
            dw = ConvNormAct(h, h, dw_kernel_size, groups=h, norm_layer=norm_layer, act_layer=act_layer)
            if se_chs is None:
                return dw
            return nn.Sequential(dw, SqueezeExcite(h, se_chs, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid))

        block = cls(dim, mid_chs / dim, dw_se, norm_layer=None, act_layer=act_layer, mlp_norm_layer=norm_layer,
                    bias=False)
        if mid_chs == dim:  # no expansion convolution
            block.mlp_e = nn.Identity()
        return block

    @classmethod
    def uib(cls, dim: int, mid_chs: int, start_dw_kernel_size: int = 0, middle_dw_kernel_size: int = 3,
            act_layer: LayerFactory = nn.ReLU, norm_layer: LayerFactory = nn.BatchNorm2d) -> "MetaMobileBlock":
        """MobileNetV4's universal inverted bottleneck with its shortcut (Qin et al., 2024,
        arXiv:2404.10518) as an MMB: an optional DW-conv *before* the expansion (BN, no activation),
        the expansion (BN, act), an optional DW-conv after it (BN, act), the projection (BN).

        Kernel size 0 leaves a DW-conv out: ``(0, k)`` is the IRB, ``(k, 0)`` the ConvNext-like
        block, ``(k, k)`` ExtraDW, ``(0, 0)`` the FFN. The middle DW-conv is F. The start DW-conv
        has no place in Eq. 1: it works on the C input channels before MLP_e, so it takes the place
        of the MMB's pre-norm (a norm is a per-pixel layer there; this one mixes neighbours). The
        UIB's layer scale is not built: a per-channel scale after MLP_s's BatchNorm folds into that
        BatchNorm's weight and bias.
        """
        check_positive("mid_chs", mid_chs, int)
        for name, k in (("start_dw_kernel_size", start_dw_kernel_size),
                        ("middle_dw_kernel_size", middle_dw_kernel_size)):
            if k != 0:
                check_kernel(name, k)

        def start_dw(c: int) -> nn.Module:
            return ConvNormAct(c, c, start_dw_kernel_size, groups=c, norm_layer=norm_layer, act_layer=None)

        def middle_dw(h: int) -> nn.Module:
            return ConvNormAct(h, h, middle_dw_kernel_size, groups=h, norm_layer=norm_layer, act_layer=act_layer)

        return cls(dim, mid_chs / dim, middle_dw if middle_dw_kernel_size else None,
                   norm_layer=start_dw if start_dw_kernel_size else None, act_layer=act_layer,
                   mlp_norm_layer=norm_layer, bias=False)

    @classmethod
    def from_module(cls, module: nn.Module, norm: Optional[nn.Module] = None) -> "MetaMobileBlock":
        """The MMB instance that computes the same function as ``module``, holding copies of its weights.

        * ``InvertedResidual`` (with a skip) -> equals ``module(x)``.
        * ``FFN`` or ``MHSA`` with its pre-norm ``norm`` (a ``LayerNorm2d``) -> equals
          ``x + module(norm(x))``.
        """
        if isinstance(module, InvertedResidual):
            if not module.has_skip:
                raise ValueError("the MMB always adds its input: only an InvertedResidual with has_skip=True is an MMB")
            dw = module.conv_dw
            block = cls.irb(
                module.in_chs, module.exp_ratio, dw.conv.kernel_size[0],
                act_layer=type(dw.act), norm_layer=type(dw.norm),
            )
            if module.exp_ratio != 1:
                block.mlp_e.load_state_dict(module.conv_pw.state_dict())
            block.op.load_state_dict(dw.state_dict())
            block.mlp_s.load_state_dict(module.conv_pwl.state_dict())
        elif isinstance(module, FFN):
            block = cls.ffn(module.dim, module.fc1.out_channels / module.dim, act_layer=type(module.act))
            block.mlp_e.conv.load_state_dict(module.fc1.state_dict())
            block.mlp_s.conv.load_state_dict(module.fc2.state_dict())
        elif isinstance(module, MHSA):
            a = module.attn
            block = cls.mhsa(module.dim, module.num_heads, a.window_size, a.window_layout,
                             qkv_bias=module.qkv.bias is not None, fused=a.fused)
            C = module.dim
            w, b = module.qkv.weight, module.qkv.bias  # rows: [W_q; W_k; W_v]
            block.op.qk.weight.data.copy_(w[: 2 * C])
            block.mlp_e.conv.weight.data.copy_(w[2 * C :])
            if b is not None:
                block.op.qk.bias.data.copy_(b[: 2 * C])
                block.mlp_e.conv.bias.data.copy_(b[2 * C :])
            block.mlp_s.conv.load_state_dict(module.proj.state_dict())
        else:
            raise TypeError(f"no MMB instantiation known for {type(module).__name__}")
        if isinstance(module, (FFN, MHSA)):
            if norm is None:
                raise ValueError(f"{type(module).__name__} is a sub-block X + module(norm(X)): "
                                 "pass its pre-norm as norm=")
            block.norm.load_state_dict(norm.state_dict())
        return block.train(module.training)


__all__ = ["MetaMobileBlock", "AttentionOperator"]

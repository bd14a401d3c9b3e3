"""The Inverted Residual Mobile Block (iRMB) and its EW-MHSA (EMO, Zhang et al., ICCV 2023,
arXiv:2301.01146, Sec. 2.3, Fig. 4, Eq. 4).

The iRMB is the Meta Mobile Block MMB(λ, F) with a cascaded efficient operator

.. math::

    \\mathcal{F}(\\cdot) = (\\text{DW-Conv}, \\text{Skip})\\big(\\text{EW-MHSA}(\\cdot)\\big), \\qquad
    Y = X + \\mathrm{MLP}_s\\big(\\mathcal{F}(\\mathrm{MLP}_e(\\mathrm{norm}(X)))\\big).

**EW-MHSA** (expanded window MHSA): the attention map is computed from the *unexpanded*
normalised input, Q = W_q X_n and K = W_k X_n (C channels, cheap), while the values are the
*expanded* X_e = MLP_e(X_n) (λC channels). Attention runs inside w x w windows; the map is
zero-padded to a multiple of w and cropped back. For head h with d = C / heads:

.. math::

    A_h = \\mathrm{softmax}\\big(Q_h K_h^\\top / \\sqrt{d}\\big), \\qquad
    \\text{paper order: } A_h\\, (X_e)_h, \\qquad
    \\text{efficient order: } \\mathrm{MLP}_e\\big([A_h (X_n)_h]_h\\big).

**The efficient equivalent** (Sec. 2.3): applying attention *before* MLP_e multiplies the
attention map with C instead of λC channels. The two orders agree exactly when MLP_e is linear
and grouped so that every group stays inside one head (``v_groups`` a multiple of the heads):
then ``A_h (X_h W_h + 1 bᵀ) = (A_h X_h) W_h + 1 bᵀ`` because each row of A_h sums to one
(the bias, and the zero padding, cancel). The reference network uses the efficient order with
one group and a GELU after MLP_e, so there the orders are *different functions*;
:attr:`iRMB.attn_order_exact` says which case a block is in.

Two implementations of the same function (``reference_order``):

* ``reference_order=False`` (default, fast): Q/K and MLP_e run on the H x W map only (never on
  padding), attention runs through :class:`~.attention.WindowAttention` in its tokens-last layout
  (a map smaller than one window attends over its pixels plus a single key standing for all padded
  ones), no forced copies; works in the channels-last memory format. Its ``fused`` switch chooses
  ``F.scaled_dot_product_attention`` or the explicit softmax, as everywhere in the library.
* ``reference_order=True`` (readable): the reference implementation's sequence step by step: pad,
  cut into windows, project Q/K (and V) inside the windows, explicit ``softmax(Q Kᵀ·scale) V``,
  MLP_e inside the windows, merge, crop, with the reference's ``.contiguous()`` copies.

The name says what the switch changes: the order of operations (and so the work on padded
pixels, which a FLOP count sees), not the attention kernel, which is what ``fused`` means in
:mod:`~mobileblocks_edu.blocks.attention`. Either way the attention map is kept on request:
:func:`~mobileblocks_edu.blocks.attention.set_attention` with ``keep_attn=True`` puts it in ``block.attn.last_attn``.

Why the fast path may skip the padded pixels: a padded pixel of the normalised input is 0, so
its key is the key bias b_k and (paper order) its value is ``MLP_e(0)``. Softmax ignores a
constant added to a whole row of scores, so subtracting b_k from *every* key changes nothing
and turns the padded keys into zeros; attention rows sum to one, so subtracting ``MLP_e(0)``
from every value and adding it back afterwards turns the padded values into zeros. After these
two shifts, plain zero padding of the *outputs* of the projections is exact.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..env import check_bool, check_choice, check_divisible, check_number, check_positive, check_rate, check_ratio
from .attention import (
    WINDOW_LAYOUTS,
    WindowAttention,
    check_window,
    merge_heads,
    resolve_heads,
    scaled_dot_product,
    split_heads,
    window_partition,
    window_reverse,
)
from .layers import (
    ConvNormAct,
    DropPath,
    LayerFactory,
    LayerNorm2d,
    SqueezeExcite,
    check_factory,
    check_input,
    check_kernel,
    is_symbolic,
)

OP_ORDERS = ("attn_dw", "dw_attn")


def batchnorm2d(num_features: int) -> nn.BatchNorm2d:
    """``nn.BatchNorm2d`` with eps = 1e-6, the reference EMO network's BatchNorm."""
    return nn.BatchNorm2d(num_features, eps=1e-6)


def _check_block_args(in_chs, out_chs, stride, exp_ratio, dw_kernel_size, v_groups, op_order, se_ratio, has_dw) -> None:
    check_positive("in_chs", in_chs, int)
    check_positive("out_chs", out_chs, int)
    check_positive("stride", stride, int)
    check_ratio("exp_ratio", exp_ratio, 1, "the hidden width is exp_ratio x in_chs")
    check_kernel("dw_kernel_size", dw_kernel_size)
    check_positive("v_groups", v_groups, int)
    if op_order not in OP_ORDERS:
        raise ValueError(f"op_order must be one of {OP_ORDERS}, got {op_order!r}")
    check_number("se_ratio", se_ratio, 0, why="0: no squeeze-excitation")
    if stride > 1 and not has_dw:
        raise ValueError(f"stride={stride} needs the DW-conv (has_dw=True): it does the downsampling")


def _check_switches(switches: dict, layers: dict) -> None:
    """The boolean switches (``has_skip`` and ``dw_skip`` may also be ``None``: the default) and the layer factories."""
    for name, value in switches.items():
        if value is not None or name not in ("has_skip", "dw_skip"):
            check_bool(name, value)
    for name, layer in layers.items():
        check_factory(name, layer)


def _check_sr_ratio(sr_ratio, has_attn, window_size, attn_before_mlp_e, op_order) -> int:
    check_positive("sr_ratio", sr_ratio, int)
    if sr_ratio > 1 and not (has_attn and window_size is None and attn_before_mlp_e and op_order == "attn_dw"):
        raise ValueError("sr_ratio > 1 needs has_attn=True, window_size=None (global attention), "
                         "attn_before_mlp_e=True and op_order='attn_dw'")
    return sr_ratio


class iRMB(nn.Module):  # noqa: N801  (the paper's name)
    """Inverted Residual Mobile Block with the paper's switches.

    ``out = x + drop_path(proj(F(v(norm(x)))))`` where ``v`` is MLP_e (1x1 conv + act),
    ``F`` = EW-MHSA and/or DW-conv, and ``proj`` is MLP_s (a linear 1x1 conv).

    Args:
        in_chs: input channels C.
        out_chs: output channels.
        stride: stride of the DW-conv (2 in the downsampling blocks).
        exp_ratio: expansion ratio λ; hidden width ``mid_chs = int(in_chs * exp_ratio)`` (the reference rounds down).
        dw_kernel_size: kernel k of the depthwise convolution.
        has_attn: use EW-MHSA in F.
        has_dw: use the DW-conv in F. With ``has_attn=has_dw=False``, F is the identity.
        num_heads, dim_head: heads of EW-MHSA (give one; the reference gives ``dim_head``).
        window_size: window side w; ``None`` means global attention over the whole map.
        window_layout: ``"grid"`` (interleaved windows, the reference network) or ``"block"``
            (contiguous tiles, the paper's figures); see :func:`~.attention.window_partition`.
        op_order: ``"attn_dw"`` (EW-MHSA, then DW-conv: the paper's default) or ``"dw_attn"``.
        attn_before_mlp_e: True: the efficient order (attention on the normalised input, then
            MLP_e; the reference network's ``attn_pre``); False: the paper's order (attention on
            the expanded values MLP_e(X)).
        norm_layer: the pre-norm on the input (``None``: no pre-norm, as in the stem block).
        act_layer: activation after MLP_e (``None``: linear MLP_e).
        dw_norm_layer, dw_act_layer: normalisation and activation bound to the DW-conv (BN + SiLU).
        v_proj: with no attention, ``False`` drops MLP_e (the stem block; needs ``exp_ratio=1``).
        v_groups: groups of the MLP_e convolution (1 in the reference network).
        qk_bias, v_bias: biases of the Q/K projection and of MLP_e.
        se_ratio: squeeze-excitation after the DW-conv with ``round(hidden * se_ratio)``
            channels; 0 disables it.
        has_skip: the block's residual; default ``stride == 1 and in_chs == out_chs``.
        dw_skip: the inner residual around the DW-conv (Eq. 4's "Skip"); default ``has_skip``,
            as in the reference network.
        drop_path_rate: stochastic depth on the block's residual branch.
        reference_order: the readable reference-order path (True) or the fast path (False); same function.
        fused: the attention kernel of the fast path: ``F.scaled_dot_product_attention`` (True) or
            the explicit softmax (False); the reference order always writes the softmax out.
        sr_ratio: PVT's spatial reduction in EW-MHSA (global attention, efficient order only): keys
            and values come from ``LN(Conv_{R x R, stride R}(norm(x)))`` (``sr``, ``sr_norm``), the
            queries from every pixel, as in :class:`~.attention.SpatialReductionAttention`; 1: none.

    Parameters are identical for all values of ``attn_before_mlp_e``, ``op_order``,
    ``reference_order`` and ``fused``, so these switches can be flipped on a trained block.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        exp_ratio: float = 1.0,
        dw_kernel_size: int = 3,
        has_attn: bool = False,
        has_dw: bool = True,
        num_heads: Optional[int] = None,
        dim_head: Optional[int] = None,
        window_size: Optional[int] = 7,
        window_layout: str = "grid",
        op_order: str = "attn_dw",
        attn_before_mlp_e: bool = True,
        norm_layer: LayerFactory = batchnorm2d,
        act_layer: LayerFactory = nn.GELU,
        dw_norm_layer: LayerFactory = batchnorm2d,
        dw_act_layer: LayerFactory = nn.SiLU,
        v_proj: bool = True,
        v_groups: int = 1,
        qk_bias: bool = True,
        v_bias: bool = True,
        se_ratio: float = 0.0,
        has_skip: Optional[bool] = None,
        dw_skip: Optional[bool] = None,
        drop_path_rate: float = 0.0,
        reference_order: bool = False,
        fused: bool = True,
        sr_ratio: int = 1,
    ):
        super().__init__()
        self.sr_ratio = _check_sr_ratio(sr_ratio, has_attn, window_size, attn_before_mlp_e, op_order)
        _check_switches(dict(has_attn=has_attn, has_dw=has_dw, attn_before_mlp_e=attn_before_mlp_e, v_proj=v_proj,
                             qk_bias=qk_bias, v_bias=v_bias, reference_order=reference_order, fused=fused,
                             has_skip=has_skip, dw_skip=dw_skip),
                        dict(norm_layer=norm_layer, act_layer=act_layer, dw_norm_layer=dw_norm_layer,
                             dw_act_layer=dw_act_layer))
        _check_block_args(in_chs, out_chs, stride, exp_ratio, dw_kernel_size, v_groups, op_order, se_ratio, has_dw)
        if window_size is not None:
            check_window(window_size, window_layout)
        else:
            check_choice("window_layout", window_layout, WINDOW_LAYOUTS)
        check_rate("drop_path_rate", drop_path_rate)
        hidden = int(in_chs * exp_ratio)
        can_skip = stride == 1 and in_chs == out_chs
        if has_skip and not can_skip:
            raise ValueError(
                f"has_skip=True needs stride=1 and in_chs == out_chs, got stride={stride}, "
                f"in_chs={in_chs}, out_chs={out_chs}"
            )
        self.in_chs, self.out_chs, self.mid_chs = in_chs, out_chs, hidden
        self.stride, self.exp_ratio = stride, exp_ratio
        self.has_attn, self.has_dw = has_attn, has_dw
        self.has_skip = can_skip if has_skip is None else has_skip
        self.dw_skip = (self.has_skip if dw_skip is None else dw_skip) and has_dw
        self.reference_order = reference_order
        self.norm = norm_layer(in_chs) if norm_layer is not None else nn.Identity()
        if has_attn:
            self._build_attention(num_heads, dim_head, window_size, window_layout, op_order, attn_before_mlp_e,
                                  qk_bias, fused)
        elif op_order != "attn_dw":
            raise ValueError("op_order only matters with has_attn=True")
        self.v = self._build_mlp_e(v_proj, v_groups, v_bias, act_layer)
        # DW-conv k x k (stride s) + BN + SiLU: (B, λC, H, W) -> (B, λC, H/s, W/s)
        self.conv_local = (
            ConvNormAct(hidden, hidden, dw_kernel_size, stride, groups=hidden, norm_layer=dw_norm_layer,
                        act_layer=dw_act_layer)
            if has_dw
            else nn.Identity()
        )
        if se_ratio > 0:
            self.se = SqueezeExcite(hidden, rd_chs=max(1, round(hidden * se_ratio)), act_layer=act_layer or nn.ReLU)
        else:
            self.se = nn.Identity()
        # MLP_s: (B, λC, H', W') -> (B, C_out, H', W'), linear, no bias
        self.proj = ConvNormAct(hidden, out_chs, 1, norm_layer=None, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def _build_attention(self, num_heads, dim_head, window_size, window_layout, op_order, attn_before_mlp_e,
                         qk_bias, fused) -> None:
        """EW-MHSA's parts: the Q/K projection and the parameter-free attention core."""
        in_chs = self.in_chs
        self.num_heads = resolve_heads(in_chs, num_heads, dim_head)
        self.dim_head = in_chs // self.num_heads
        if window_size is not None:
            check_window(window_size, window_layout)
        self.window_size, self.window_layout = window_size, window_layout
        self.op_order = op_order
        self._attn_before_mlp_e = attn_before_mlp_e
        self._check_orders(op_order, attn_before_mlp_e, self.stride)
        # [W_q; W_k]: (B, C, H, W) -> (B, 2C, H, W), channels ordered (q|k, heads, dim_head)
        self.qk = ConvNormAct(in_chs, 2 * in_chs, 1, bias=qk_bias, norm_layer=None, act_layer=None)
        # the attention core: windows + softmax; holds the switches fused and keep_attn, and last_attn
        self.attn = WindowAttention(self.num_heads, self.dim_head, window_size, window_layout, fused=fused,
                                    tokens_last=self.sr_ratio == 1)
        if self.sr_ratio > 1:  # PVT's reduction of the keys' and values' map
            self.sr = nn.Conv2d(in_chs, in_chs, self.sr_ratio, self.sr_ratio)
            self.sr_norm = LayerNorm2d(in_chs)

    def _build_mlp_e(self, v_proj: bool, v_groups: int, v_bias: bool, act_layer: LayerFactory) -> nn.Module:
        """MLP_e: (B, C, H, W) -> (B, λC, H, W), a grouped 1x1 convolution and the activation."""
        in_chs, hidden = self.in_chs, self.mid_chs
        if not v_proj and (self.has_attn or hidden != in_chs):
            raise ValueError(f"v_proj=False needs has_attn=False and exp_ratio=1, got has_attn={self.has_attn}, "
                             f"exp_ratio={self.exp_ratio}")
        if not v_proj:
            return nn.Identity()
        check_divisible("in_chs", in_chs, "v_groups", v_groups)
        check_divisible("mid_chs", hidden, "v_groups", v_groups)
        return ConvNormAct(in_chs, hidden, 1, groups=v_groups, bias=v_bias, norm_layer=None, act_layer=act_layer)

    # ---- switches ------------------------------------------------------------------------------

    def _check_orders(self, op_order: str, attn_before_mlp_e: bool, stride: int) -> None:
        if op_order == "dw_attn":
            if attn_before_mlp_e:
                raise ValueError(
                    "op_order='dw_attn' needs attn_before_mlp_e=False: the DW-conv sits between MLP_e and "
                    "the attention, so attention cannot move before MLP_e"
                )
            if stride != 1:
                raise ValueError("op_order='dw_attn' needs stride=1: Q and K come from the block input")
        if not attn_before_mlp_e and self.mid_chs % self.num_heads:
            raise ValueError(
                f"attention on the expanded values (attn_before_mlp_e=False) needs mid_chs={self.mid_chs} "
                f"divisible by num_heads={self.num_heads}"
            )

    @property
    def attn_before_mlp_e(self) -> bool:
        """The efficient order (True) or the paper's order (False); can be switched on a built block."""
        return self._attn_before_mlp_e

    @attn_before_mlp_e.setter
    def attn_before_mlp_e(self, value: bool) -> None:
        check_bool("attn_before_mlp_e", value)
        self._check_orders(self.op_order, value, self.stride)
        self._attn_before_mlp_e = value

    @property
    def attn_order_exact(self) -> bool:
        """True when both orders compute the same function: MLP_e is linear (no activation) and each
        of its groups lies inside one head (``v_groups`` a multiple of ``num_heads``)."""
        if not self.has_attn:
            return True
        linear = isinstance(self.v.act, nn.Identity)
        return linear and self.v.conv.groups % self.num_heads == 0

    # ---- forward -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.in_chs)
        xn = self.norm(x)
        if self.reference_order:
            xn = xn.contiguous()  # the reference's LayerNorm2d copies back to NCHW
        if self.has_attn and self.op_order == "attn_dw":
            h = self.ew_mhsa(xn)  # (B, λC, H, W)
            h = self.local(h)
        elif self.has_attn:  # dw_attn: values are the DW-conv branch's output
            h = self.local(self.v(xn))
            h = self.ew_mhsa(xn, values=h)
        else:
            h = self.local(self.v(xn))
        h = self.proj(h)  # (B, C_out, H', W')
        return x + self.drop_path(h) if self.has_skip else h

    def local(self, h: torch.Tensor) -> torch.Tensor:
        """``h + SE(DW(h))`` with the inner skip, else ``SE(DW(h))``."""
        y = self.se(self.conv_local(h))
        return h + y if self.dw_skip else y

    def ew_mhsa(self, xn: torch.Tensor, values: Optional[torch.Tensor] = None) -> torch.Tensor:
        """EW-MHSA on the normalised input ``xn`` (B, C, H, W); returns (B, λC, H, W), MLP_e included.

        ``values`` (only for ``op_order="dw_attn"``) replaces MLP_e(xn) as the values.
        """
        # Under torch.fx tracing the readable path is recorded: it is exact for every input size and
        # reads no parameter directly (the fast path's padded form subtracts ``qk.conv.bias``, which a
        # graph-mode int8 conversion replaces by a quantized convolution whose ``bias`` is a method).
        if self.sr_ratio > 1:
            return self.ew_mhsa_reduced(xn)
        if not self.reference_order and not is_symbolic(xn):
            return self.ew_mhsa_fast(xn, values)
        return self.ew_mhsa_readable(xn, values)

    def ew_mhsa_reduced(self, xn: torch.Tensor) -> torch.Tensor:
        """EW-MHSA with PVT's spatial reduction: Q from every pixel of ``xn``; K and the values from the
        reduced map ``xr``; attention on C channels, then MLP_e. Both paths compute this one."""
        C, R = self.in_chs, self.sr_ratio
        H, W = xn.shape[-2:]
        if not is_symbolic(xn) and (H % R or W % R):
            raise ValueError(f"iRMB with sr_ratio={R} needs H and W divisible by {R}, got a {H}x{W} map")
        xr = self.sr_norm(self.sr(xn))  # (B, C, H/R, W/R)
        w, b = self.qk.conv.weight, self.qk.conv.bias
        q = F.conv2d(xn, w[:C], None if b is None else b[:C])  # W_q on every pixel
        k = F.conv2d(xr, w[C:], None if b is None else b[C:])  # W_k on the reduced map
        return self.v(self.attn(q, k, xr))  # (B, λC, H, W)

    def ew_mhsa_fast(self, xn: torch.Tensor, values: Optional[torch.Tensor]) -> torch.Tensor:
        """The fast path: projections on the real pixels only, padding after them (module docstring)."""
        C, H, W = self.in_chs, xn.shape[-2], xn.shape[-1]
        w = self.window_size
        padded = w is not None and (H % w != 0 or W % w != 0)
        q, k = self.qk(xn).chunk(2, dim=1)  # 2 x (B, C, H, W)
        if padded and self.qk.conv.bias is not None:
            # keys without their bias: softmax is unchanged, and padded keys become exact zeros
            k = k - self.qk.conv.bias[C:].view(1, C, 1, 1)
        if values is not None:  # dw_attn: padded values are zeros by definition
            return self.attn(q, k, values)
        if self.attn_before_mlp_e:
            return self.v(self.attn(q, k, xn))  # attention on C channels, then MLP_e (λC)
        if not padded:
            return self.attn(q, k, self.v(xn))  # paper order, nothing to pad
        # paper order with padding: padded values would be MLP_e(0) = act(b_v); shift them to zero and back
        b = self.v.conv.bias
        v0 = self.v.act(b.view(1, -1, 1, 1)) if b is not None else self.v.act(xn.new_zeros(1, self.mid_chs, 1, 1))
        return self.attn(q, k, self.v(xn) - v0) + v0

    def ew_mhsa_readable(self, xn: torch.Tensor, values: Optional[torch.Tensor]) -> torch.Tensor:
        """The reference implementation's order of operations, step by step (NCHW, explicit copies)."""
        B, C, H, W = xn.shape
        heads = self.num_heads
        w = self.window_size
        if w is None:  # global attention: one window the size of the map
            xw, info = xn.contiguous(), None
        else:
            xw, info = window_partition(xn, w, self.window_layout)  # (B·nW, C, w, w), zero-padded
            xw = xw.contiguous()
        h_, w_ = xw.shape[-2:]
        q, k = self.qk(xw).chunk(2, dim=1)  # Q, K inside the windows, padded pixels included
        q = split_heads(q, heads).contiguous()  # (B·nW, heads, w², d)
        k = split_heads(k, heads).contiguous()
        if values is not None:
            vals = window_partition(values, w, self.window_layout)[0] if w is not None else values
        elif self.attn_before_mlp_e:
            vals = xw  # efficient order: attend on the normalised input
        else:
            vals = self.v(xw)  # paper order: MLP_e first (padded pixels become MLP_e(0))
        out, attn = scaled_dot_product(q, k, split_heads(vals, heads).contiguous(), self.dim_head**-0.5, fused=False)
        if self.attn.keep_attn:
            self.attn.last_attn = attn.detach()  # (B·nW, heads, w², w²)
        out = merge_heads(out, h_, w_).contiguous()  # (B·nW, C_v, w, w)
        if values is None and self.attn_before_mlp_e:
            out = self.v(out)  # MLP_e inside the windows, as the reference does
        if info is not None:
            out = window_reverse(out, info, tokens_last=False).contiguous()  # (B, λC, H, W), padding cropped
        return out

    def extra_repr(self) -> str:
        s = f"in_chs={self.in_chs}, out_chs={self.out_chs}, mid_chs={self.mid_chs}, stride={self.stride}"
        s += f", has_attn={self.has_attn}, has_dw={self.has_dw}, has_skip={self.has_skip}, dw_skip={self.dw_skip}"
        if self.has_attn:
            win = "global" if self.window_size is None else f"{self.window_size} ({self.window_layout})"
            s += (
                f", num_heads={self.num_heads}, window={win}, op_order={self.op_order}"
                f", attn_before_mlp_e={self.attn_before_mlp_e}"
            )
        return s + f", reference_order={self.reference_order}"


__all__ = ["iRMB", "batchnorm2d", "OP_ORDERS"]

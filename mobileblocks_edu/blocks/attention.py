"""Transformer parts on feature maps: windows, multi-head self-attention, the FFN, the block.

Everything here works on ``(B, C, H, W)`` tensors, like the convolutions it is combined with.
The H·W pixels are the tokens; a 1x1 convolution is a ``Linear`` layer applied to every token
(same weights, same parameter count), so the projections are written as 1x1 convolutions.

Attention (Vaswani et al., 2017), for each head h with ``d = C / heads``:

.. math::

    \\mathrm{head}_h = \\mathrm{softmax}\\big(Q_h K_h^\\top / \\sqrt{d}\\big)\\, V_h, \\qquad
    \\mathrm{MHSA}(X) = W_o\\, [\\mathrm{head}_1; \\dots; \\mathrm{head}_{heads}]

Windowed attention restricts the softmax to the tokens of one w x w window. Two window
layouts exist (:func:`window_partition`): ``"block"`` cuts the map into contiguous w x w tiles
(Swin, and the EMO paper's figures), ``"grid"`` takes interleaved pixels, so that a window spans
the whole map with a stride (the network behind the EMO paper's numbers).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..env import check_bool, check_divisible, check_positive, check_rate, check_ratio
from .layers import DropPath, LayerFactory, LayerNorm2d, check_factory, check_input, is_symbolic

WINDOW_LAYOUTS = ("block", "grid")


class WindowInfo(NamedTuple):
    """What :func:`window_reverse` needs to undo :func:`window_partition`."""

    batch: int
    height: int  # H before padding
    width: int  # W before padding
    n_rows: int  # windows along H (n1 = Hp / w)
    n_cols: int  # windows along W (n2 = Wp / w)
    window_size: int
    layout: str


def check_window(window_size: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``window_size`` is a positive int and ``layout`` one of :data:`WINDOW_LAYOUTS`."""
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size <= 0:
        raise ValueError(f"window_size must be a positive int, got {window_size!r}")
    if layout not in WINDOW_LAYOUTS:
        raise ValueError(f"window_layout must be one of {WINDOW_LAYOUTS}, got {layout!r}")


def window_partition(
    x: torch.Tensor, window_size: int, layout: str = "block", tokens_last: bool = False
) -> tuple[torch.Tensor, WindowInfo]:
    """Split ``(B, C, H, W)`` into ``(B * n1 * n2, C, w, w)`` windows.

    H and W are zero-padded on the bottom and right to ``Hp = n1·w`` and ``Wp = n2·w``.

    * ``"block"``: window (i, j) holds rows ``i·w + r`` and columns ``j·w + c`` (a contiguous tile).
    * ``"grid"``: window (a, b) holds rows ``r·n1 + a`` and columns ``c·n2 + b`` for r, c in 0..w-1
      (pixels n1 and n2 apart: a dilated window that spans the map).

    ``tokens_last=True`` returns the same windows as ``(B * n1 * n2, w², C)``: one row of C
    channels per pixel, row-major within the window, the layout fused attention kernels read
    (for a channels-last input this costs one copy).
    """
    check_window(window_size, layout)
    B, C, H, W = x.shape
    w = window_size
    pad_h, pad_w = (-H) % w, (-W) % w
    if is_symbolic(x) or pad_h or pad_w:  # fx: the size is a symbol, pad by its formula (0 is a no-op)
        x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, C, Hp, Wp), zeros at the bottom/right
    n1, n2 = (H + pad_h) // w, (W + pad_w) // w
    if tokens_last:
        x = x.permute(0, 2, 3, 1)  # (B, Hp, Wp, C), a view of a channels-last map
        if layout == "block":
            x = x.reshape(B, n1, w, n2, w, C).permute(0, 1, 3, 2, 4, 5)  # (B, n1, n2, w, w, C)
        else:
            x = x.reshape(B, w, n1, w, n2, C).permute(0, 2, 4, 1, 3, 5)  # (B, n1, n2, w, w, C)
        return x.reshape(B * n1 * n2, w * w, C), WindowInfo(B, H, W, n1, n2, w, layout)
    if layout == "block":
        x = x.view(B, C, n1, w, n2, w).permute(0, 2, 4, 1, 3, 5)  # (B, n1, n2, C, w, w)
    else:
        x = x.view(B, C, w, n1, w, n2).permute(0, 3, 5, 1, 2, 4)  # (B, n1, n2, C, w, w)
    return x.reshape(B * n1 * n2, C, w, w), WindowInfo(B, H, W, n1, n2, w, layout)


def window_reverse(windows: torch.Tensor, info: WindowInfo, tokens_last: Optional[bool] = None) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B·n1·n2, C, w, w) -> (B, C, H, W)`` (padding cropped).

    Windows in the ``tokens_last`` layout ``(B·n1·n2, w², C)`` come back as a ``(B, C, H, W)``
    tensor with channels-last strides (channels innermost; a view, so a cropped map is not contiguous).
    ``tokens_last=None`` reads the layout off ``windows.dim()`` (3: tokens last); a ``torch.fx``
    trace must pass it, since a proxy has no known number of dimensions.
    """
    B, H, W, n1, n2, w, layout = info
    if tokens_last is None:
        tokens_last = windows.dim() == 3
    if tokens_last:
        C = windows.shape[-1]
        x = windows.view(B, n1, n2, w, w, C)
        if layout == "block":
            x = x.permute(0, 1, 3, 2, 4, 5)  # (B, n1, w, n2, w, C)
        else:
            x = x.permute(0, 3, 1, 4, 2, 5)  # (B, w, n1, w, n2, C)
        x = x.reshape(B, n1 * w, n2 * w, C)[:, :H, :W]
        return x.permute(0, 3, 1, 2)  # (B, C, H, W), channels-last strides
    C = windows.shape[1]
    x = windows.view(B, n1, n2, C, w, w)
    if layout == "block":
        x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, n1, w, n2, w)
    else:
        x = x.permute(0, 3, 4, 1, 5, 2)  # (B, C, w, n1, w, n2)
    x = x.reshape(B, C, n1 * w, n2 * w)
    return x[:, :, :H, :W]


def window_pixels(height: int, width: int, window_size: int, layout: str = "block") -> torch.Tensor:
    """``(n1·n2, w²)``: the flat pixel index ``i·W + j`` held by every window position, ``-1`` for
    padding, as :func:`window_partition` cuts an ``height x width`` map."""
    idx = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width)
    wins, _ = window_partition(idx, window_size, layout)  # (nW, 1, w, w), 0 = padding
    return wins.flatten(1).long() - 1


def window_ids(height: int, width: int, window_size: int, layout: str = "block") -> torch.Tensor:
    """``(Hp, Wp)`` map of window indices (the padded map, ``Hp = n1·w``); ``-1`` marks padded pixels."""
    pix = window_pixels(height, width, window_size, layout)  # (nW, w²)
    n_rows, n_cols = -(-height // window_size), -(-width // window_size)
    ids = torch.full((n_rows * window_size, n_cols * window_size), -1)
    win = torch.arange(pix.shape[0]).unsqueeze(1).expand_as(pix)  # the window of every position
    real = pix >= 0
    flat = torch.full((height * width,), -1)
    flat[pix[real]] = win[real]
    ids[:height, :width] = flat.view(height, width)
    return ids


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    fused: bool = True,
    bias: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``softmax(q kᵀ · scale + bias) v`` for ``q: (..., N, d)``, ``k: (..., M, d)``, ``v: (..., M, d_v)``.

    ``fused=True`` calls ``F.scaled_dot_product_attention`` (one kernel, no N x M map kept);
    ``fused=False`` is the readable version and also returns the attention map ``(..., N, M)``.
    ``bias`` (optional) is added to the scores, broadcast to ``(..., N, M)``.
    """
    if fused:
        if not is_symbolic(q) and math.isclose(scale, float(q.shape[-1]) ** -0.5, rel_tol=1e-6):
            scale = None  # PyTorch's own default, 1/√d: torch 2.2's ONNX exporter cannot export a given scale
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale), None
    attn = (q @ k.transpose(-2, -1)) * scale  # (..., N, M)
    if bias is not None:
        attn = attn + bias
    attn = attn.softmax(dim=-1)
    return attn @ v, attn  # (..., N, d_v)


def split_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(b, heads·d, h, w) -> (b, heads, h·w, d)``: one row per token, one slice per head."""
    b, c, h, w = t.shape
    return t.reshape(b, num_heads, c // num_heads, h * w).transpose(-2, -1)


def merge_heads(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(b, heads, h·w, d) -> (b, heads·d, h, w)``, the inverse of :func:`split_heads`."""
    b, heads, n, d = t.shape
    return t.transpose(-2, -1).reshape(b, heads * d, h, w)


def resolve_heads(dim: int, num_heads: Optional[int], dim_head: Optional[int]) -> int:
    """The number of heads from ``num_heads`` or from ``dim_head`` (``dim / dim_head``), checked to divide ``dim``."""
    if num_heads is None and dim_head is None:
        raise ValueError("give num_heads or dim_head")
    if num_heads is None:
        check_positive("dim_head", dim_head, int)
        check_divisible("dim", dim, "dim_head", dim_head)
        num_heads = dim // dim_head
    check_positive("num_heads", num_heads, int)
    check_divisible("dim", dim, "num_heads", num_heads)
    return num_heads


class WindowAttention(nn.Module):
    """The parameter-free core of (windowed) MHSA: given Q, K, V maps, attend within windows.

    ``forward(q, k, v)`` takes ``(B, C_qk, H, W)``, ``(B, C_qk, H, W)`` and ``(B, C_v, H, W)`` and
    returns ``(B, C_v, H, W)``; C_v may differ from C_qk (EMO's expanded values). With
    ``window_size=None`` attention is global over the H·W tokens. Padded tokens are zeros (the padding
    comes after the projections) and are not masked. Swin and EMO's reference code do not mask
    either, but pad *before* projecting, so their padded keys and values are the projection
    biases b_k and b_v. With ``keep_attn=True`` (readable path only) the last attention
    map ``(B·windows, heads, w², w²)`` is kept in ``self.last_attn`` for plots. ``fused`` and
    ``keep_attn`` are the library's two attention switches: every attention of the library runs
    through this module, and :func:`set_attention` sets both on a whole model.

    ``tokens_last=True`` (fused path only) cuts the windows in the ``(pixels, channels)`` layout,
    so that every head's slice has unit stride and the fused kernel runs without extra copies;
    the output is then in the channels-last memory format. Same values as the default. When the
    whole map fits in one window with padding (a 2x2 map in a 7x7 window), it attends over the
    H·W pixels plus *one* zero key: the P = w² - H·W zero-padded keys all score ``q·0 = 0`` and
    carry the value 0, so together they add ``P·e⁰`` to the softmax's denominator, which a single
    zero key with the score bias ``log P`` reproduces exactly (and padded queries are cropped
    anyway, so they are not computed).
    """

    def __init__(
        self,
        num_heads: int,
        dim_head: int,
        window_size: Optional[int] = None,
        window_layout: str = "block",
        fused: bool = True,
        tokens_last: bool = False,
    ):
        super().__init__()
        check_positive("num_heads", num_heads, int)
        check_positive("dim_head", dim_head, int)
        check_bool("fused", fused)
        check_bool("tokens_last", tokens_last)
        if window_size is not None:
            check_window(window_size, window_layout)
        elif window_layout not in WINDOW_LAYOUTS:
            raise ValueError(f"window_layout must be one of {WINDOW_LAYOUTS}, got {window_layout!r}")
        self.num_heads, self.dim_head = num_heads, dim_head
        self.scale = dim_head**-0.5
        self.window_size, self.window_layout, self.fused = window_size, window_layout, fused
        self.tokens_last = tokens_last
        self.keep_attn = False
        self.last_attn: Optional[torch.Tensor] = None

    def forward_tokens_last(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The fused path in the ``(pixels, channels)`` layout (see the class docstring)."""
        B, _, H, W = q.shape
        w = self.window_size
        info, bias = None, None
        # one window: the whole map, (B, H·W, C). An fx trace has no sizes to compare, so it takes the
        # window path, which is exact for every size (a small map is one padded window there).
        if w is None or (not is_symbolic(q) and H <= w and W <= w):
            q, k, v = (t.permute(0, 2, 3, 1).reshape(B, H * W, t.shape[1]) for t in (q, k, v))
            n_pad = 0 if w is None else w * w - H * W
            if n_pad:  # the padded pixels as one zero key/value with score bias log(n_pad)
                k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))  # (B, H·W + 1, C)
                bias = torch.zeros(1, H * W + 1, dtype=q.dtype, device=q.device)  # (1 query row, keys)
                bias[0, -1] = math.log(n_pad)
        else:
            (q, _), (k, _), (v, info) = (
                window_partition(t, self.window_size, self.window_layout, tokens_last=True) for t in (q, k, v)
            )  # (B·nW, w², C) each

        def heads(t):  # (b, N, heads·d) -> (b, heads, N, d), unit stride along d
            return t.view(t.shape[0], t.shape[1], self.num_heads, -1).transpose(1, 2)

        out, _ = scaled_dot_product(heads(q), heads(k), heads(v), self.scale, fused=True, bias=bias)
        out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)  # (b, N, C_v)
        if info is None:
            return out.view(B, H, W, -1).permute(0, 3, 1, 2)  # (B, C_v, H, W), channels-last strides
        return window_reverse(out, info, tokens_last=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.tokens_last and self.fused and not self.keep_attn:
            return self.forward_tokens_last(q, k, v)
        B, _, H, W = q.shape
        info = None
        if self.window_size is not None:
            # stack q, k, v along channels so that they are cut into the same windows
            c_qk = q.shape[1]
            qkv, info = window_partition(torch.cat([q, k, v], 1), self.window_size, self.window_layout)
            q, k, v = qkv[:, :c_qk], qkv[:, c_qk : 2 * c_qk], qkv[:, 2 * c_qk :]  # (B·nW, C, w, w)
        h, w = q.shape[-2:]
        heads = self.num_heads
        out, attn = scaled_dot_product(
            split_heads(q, heads), split_heads(k, heads), split_heads(v, heads),  # (b, heads, N, d)
            self.scale,
            fused=self.fused and not self.keep_attn,
        )
        if self.keep_attn:
            self.last_attn = attn.detach()
        out = merge_heads(out, h, w)  # (b, C_v, h, w)
        return out if info is None else window_reverse(out, info, tokens_last=False)

    def extra_repr(self) -> str:
        win = "global" if self.window_size is None else f"window_size={self.window_size}, layout={self.window_layout}"
        tl = ", tokens_last=True" if self.tokens_last else ""
        return f"num_heads={self.num_heads}, dim_head={self.dim_head}, {win}, fused={self.fused}{tl}"


class MHSA(nn.Module):
    """Multi-head self-attention on a feature map, global or in w x w windows (W-MHSA).

    ``Q, K, V = W_q X, W_k X, W_v X`` (one 1x1 convolution ``qkv`` to 3C channels), attention per
    head within each window, then the output projection ``proj``. Parameters: ``4(C + 1)C``
    with biases (EMO's Table 2).

    Args:
        dim: channels C.
        num_heads: heads; ``dim`` must be divisible by it. Alternatively give ``dim_head``.
        dim_head: channels per head d.
        qkv_bias: biases in the Q, K, V projections.
        window_size: ``None`` for global attention, else the window side w.
        window_layout: ``"block"`` (contiguous tiles) or ``"grid"`` (interleaved), see
            :func:`window_partition`.
        fused: use ``F.scaled_dot_product_attention`` (default) or the readable softmax path.
    """

    def __init__(
        self,
        dim: int,
        num_heads: Optional[int] = None,
        dim_head: Optional[int] = None,
        qkv_bias: bool = True,
        window_size: Optional[int] = None,
        window_layout: str = "block",
        fused: bool = True,
    ):
        super().__init__()
        check_positive("dim", dim, int)
        check_bool("qkv_bias", qkv_bias)
        num_heads = resolve_heads(dim, num_heads, dim_head)
        self.dim, self.num_heads = dim, num_heads
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)  # [W_q; W_k; W_v]
        self.attn = WindowAttention(num_heads, dim // num_heads, window_size, window_layout, fused)
        self.proj = nn.Conv2d(dim, dim, 1)  # W_o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        q, k, v = self.qkv(x).chunk(3, dim=1)  # 3 x (B, C, H, W)
        return self.proj(self.attn(q, k, v))


class SpatialReductionAttention(nn.Module):
    """Spatial-reduction attention (SRA, PVT: Wang et al., ICCV 2021, arXiv:2102.12122, Sec. 3.3).

    Global attention whose keys and values come from a smaller map: the input is reduced by a
    ``R x R`` convolution of stride R (``sr``) and a LayerNorm (``sr_norm``), so the H·W queries
    attend over ``H·W / R²`` keys, and the attention costs ``R²`` times less:

    .. math::

        \\mathrm{SR}(X) = \\mathrm{LN}(\\mathrm{Conv}_{R \\times R,\\,\\mathrm{stride}\\,R}(X)), \\qquad
        \\mathrm{SRA}(X) = W_o\\,\\mathrm{MHSA}(Q = W_q X,\\; K = W_k\\,\\mathrm{SR}(X),\\; V = W_v\\,\\mathrm{SR}(X))

    ``q`` (C channels) and ``kv`` (2C) are PVT's two linear layers as 1x1 convolutions; with
    ``sr_ratio=1`` there is no reduction (no ``sr``/``sr_norm``) and SRA is plain MHSA with the
    same parameters, ``4(C + 1)C``. With R > 1 the reduction adds ``R²C² + C`` weights and the
    norm's ``2C``. H and W must be multiples of R (PVT's maps at 224x224 are).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True,
                 norm_layer: LayerFactory = LayerNorm2d, fused: bool = True):
        super().__init__()
        check_positive("dim", dim, int)
        check_positive("sr_ratio", sr_ratio, int)
        check_bool("qkv_bias", qkv_bias)
        check_factory("norm_layer", norm_layer)
        num_heads = resolve_heads(dim, num_heads, None)
        self.dim, self.num_heads, self.sr_ratio = dim, num_heads, sr_ratio
        self.q = nn.Conv2d(dim, dim, 1, bias=qkv_bias)  # W_q
        self.kv = nn.Conv2d(dim, 2 * dim, 1, bias=qkv_bias)  # [W_k; W_v]
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)  # (B, C, H, W) -> (B, C, H/R, W/R)
            self.sr_norm = norm_layer(dim)
        self.attn = WindowAttention(num_heads, dim // num_heads, None, fused=fused)
        self.proj = nn.Conv2d(dim, dim, 1)  # W_o

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H/R, W/R)``: the map the keys and values are computed from."""
        if self.sr_ratio == 1:
            return x
        H, W = x.shape[-2:]
        if not is_symbolic(x) and (H % self.sr_ratio or W % self.sr_ratio):
            raise ValueError(f"{type(self).__name__} with sr_ratio={self.sr_ratio} needs H and W divisible by "
                             f"{self.sr_ratio}, got a {H}x{W} map")
        return self.sr_norm(self.sr(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        k, v = self.kv(self.reduce(x)).chunk(2, dim=1)  # 2 x (B, C, H/R, W/R)
        return self.proj(self.attn(self.q(x), k, v))  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, sr_ratio={self.sr_ratio}"


class FFN(nn.Module):
    """The Transformer's feed-forward network: ``fc2(act(fc1(x)))`` on every token.

    ``fc1`` expands C to ``hidden = round(mlp_ratio · C)`` (4C in ViT), ``fc2`` shrinks it back.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, act_layer: LayerFactory = nn.GELU, bias: bool = True):
        super().__init__()
        check_positive("dim", dim, int)
        check_ratio("mlp_ratio", mlp_ratio, why="the hidden width is round(mlp_ratio x dim)")
        check_factory("act_layer", act_layer)
        check_bool("bias", bias)
        hidden = round(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"mlp_ratio={mlp_ratio} leaves no hidden channels at dim={dim}")
        self.dim = dim
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=bias)  # (B, C, H, W) -> (B, λC, H, W)
        self.act = act_layer() if act_layer is not None else nn.Identity()
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=bias)  # (B, λC, H, W) -> (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.dim)
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """The two-residual pre-norm Transformer block (ViT):

    .. math::

        X' = X + \\mathrm{MHSA}(\\mathrm{LN}(X)), \\qquad Y = X' + \\mathrm{FFN}(\\mathrm{LN}(X'))

    With ``sr_ratio`` (an int, 1 included) the attention is PVT's
    :class:`SpatialReductionAttention` instead of :class:`MHSA` (PVT's block).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        window_size: Optional[int] = None,
        window_layout: str = "block",
        norm_layer: LayerFactory = LayerNorm2d,
        act_layer: LayerFactory = nn.GELU,
        drop_path_rate: float = 0.0,
        fused: bool = True,
        sr_ratio: Optional[int] = None,
    ):
        super().__init__()
        check_factory("norm_layer", norm_layer)
        check_rate("drop_path_rate", drop_path_rate)
        self.norm1 = norm_layer(dim)
        if sr_ratio is None:
            self.attn = MHSA(dim, num_heads, window_size=window_size, window_layout=window_layout, fused=fused)
        elif window_size is not None:
            raise ValueError("sr_ratio (spatial-reduction attention, global) and window_size exclude each other")
        else:  # PVT's block
            self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, norm_layer=norm_layer, fused=fused)
        self.norm2 = norm_layer(dim)
        self.mlp = FFN(dim, mlp_ratio, act_layer)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def attention_modules(model: nn.Module) -> list[WindowAttention]:
    """Every attention module of ``model`` in order: the :class:`WindowAttention` cores, through
    which all attention of the library runs (:class:`MHSA`, the MMB's attention, MoSA, iRMB)."""
    return [m for m in model.modules() if isinstance(m, WindowAttention)]


def set_attention(
    model: nn.Module,
    fused: Optional[bool] = None,
    keep_attn: Optional[bool] = None,
    reference_order: Optional[bool] = None,
) -> nn.Module:
    """Choose the attention path of a whole model (or block) in one call; ``None`` leaves a switch as it is.

    * ``fused``: on every attention module (:func:`attention_modules`), ``F.scaled_dot_product_attention``
      (True) or the explicit softmax (False).
    * ``keep_attn``: on every attention module, keep the last attention map in ``.last_attn``
      (this takes the explicit softmax); False also drops the maps kept so far.
    * ``reference_order``: on every module with that switch (:class:`~mobileblocks_edu.blocks.irmb.iRMB`
      and the EMO model), the reference implementation's order of operations step by step.

    Returns ``model``. Raises ``ValueError`` when the model has no attention module.
    """
    for name, value in (("fused", fused), ("keep_attn", keep_attn), ("reference_order", reference_order)):
        if value is not None:
            check_bool(name, value)
    attn = attention_modules(model)
    if not attn:
        raise ValueError(f"{type(model).__name__} has no attention module")
    for m in attn:
        if fused is not None:
            m.fused = bool(fused)
        if keep_attn is not None:
            m.keep_attn = bool(keep_attn)
            if not keep_attn:
                m.last_attn = None
    if reference_order is not None:
        for m in model.modules():
            if hasattr(m, "reference_order"):
                m.reference_order = bool(reference_order)
    return model


__all__ = [
    "WINDOW_LAYOUTS",
    "WindowInfo",
    "check_window",
    "resolve_heads",
    "window_partition",
    "window_pixels",
    "window_ids",
    "window_reverse",
    "scaled_dot_product",
    "split_heads",
    "merge_heads",
    "WindowAttention",
    "MHSA",
    "SpatialReductionAttention",
    "FFN",
    "TransformerBlock",
    "attention_modules",
    "set_attention",
]

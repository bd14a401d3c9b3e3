"""The complexity calculator: parameters, FLOPs and maximum path length of the book's blocks for
any λ, window size, resolution, channels and heads, by formula next to measurement.

Eight modules, each on a C x W x W map (L = W² pixels, expansion λ, hidden width λC):

==========  ==================================================================  ==========
module      library module                                                      acts on
==========  ==================================================================  ==========
MHSA        :class:`~mobileblocks_edu.attention.MHSA`, global                   C
W-MHSA      :class:`~mobileblocks_edu.attention.MHSA` in w x w windows          C
EW-MHSA     the EW-MHSA of an :class:`~mobileblocks_edu.irmb.iRMB` (Q, K, MLP_e  C -> λC
            and the attention: its ``qk``, ``v`` and ``attn`` parts)
DW-conv     a k x k depthwise ``nn.Conv2d`` with bias, F of the IRB             λC
IRB         :class:`~mobileblocks_edu.irb.InvertedResidual`                      C -> λC -> C
iRMB        :class:`~mobileblocks_edu.irmb.iRMB` (EW-MHSA then DW-conv)          C -> λC -> C
MoSA        :class:`~mobileblocks_edu.mtb.MoSA`                                 C
MTB         :class:`~mobileblocks_edu.mtb.MobileTransformerBlock` (hidden λC)    C -> λC -> C
==========  ==================================================================  ==========

For each: parameters, FLOPs in the three conventions of :mod:`mobileblocks_edu.complexity`
(``"macs"``, ``"conv_linear"``, ``"fvcore"``), the paper's FLOPs expression where a paper gives
one (EMO's Table 2, MoCoViT's Eq. 4), and the maximum path length, as EMO's Table 2 states it and
exactly (:mod:`mobileblocks_edu.receptive`). The analytic counts reuse the formulas of
:mod:`mobileblocks_edu.complexity` (``mhsa_cost``, ``wmhsa_cost``, ``ewmhsa_cost``,
``dwconv_cost``, ``mosa_cost``, ``mtb_cost``, ...) and add only what those leave out (the norms
that fvcore counts, the two 1x1 convolutions of the IRB and the iRMB); the measured counts build
the library module on the ``meta`` device (shapes only, no memory, no arithmetic) and count it
with :func:`~mobileblocks_edu.complexity.count_flops`::

    from mobileblocks_edu.calculator import Settings, calculate
    for row in calculate(Settings(dim=64, size=28, exp_ratio=4, window_size=7, num_heads=4)):
        print(row.module, row.params, row.flops["fvcore"], row.mpl_exact)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
from torch import nn

from . import complexity as cx
from .attention import WINDOW_LAYOUTS
from .env import check_divisible, check_positive
from .receptive import max_path_length, module_layer

MODULES = ("MHSA", "W-MHSA", "EW-MHSA", "DW-conv", "IRB", "iRMB", "MoSA", "MTB")
CONVENTIONS = cx.CONVENTIONS


@dataclass(frozen=True)
class Settings:
    """What the calculator's knobs say.

    Args:
        dim: channels C.
        size: the map's side W (H = W).
        exp_ratio: expansion λ (hidden width ``int(λC)``; the IRB rounds, as MobileNetV2 does).
        window_size: window side w of W-MHSA, EW-MHSA and the iRMB.
        num_heads: attention heads (MHSA, W-MHSA, EW-MHSA, MoSA, MTB); ``dim`` must be divisible by it.
        kernel_size: k of the depthwise convolutions (DW-conv, IRB, iRMB); odd.
        window_layout: ``"block"`` (contiguous windows, the paper's figures) or ``"grid"``
            (interleaved, the network behind EMO's numbers). Counts are the same; the exact
            maximum path length of the iRMB is not.
    """

    dim: int = 64
    size: int = 28
    exp_ratio: float = 4.0
    window_size: int = 7
    num_heads: int = 4
    kernel_size: int = 3
    window_layout: str = "block"

    def __post_init__(self):
        check_positive("dim", self.dim, int)
        check_positive("size", self.size, int)
        check_positive("exp_ratio", self.exp_ratio)
        check_positive("window_size", self.window_size, int)
        check_positive("num_heads", self.num_heads, int)
        check_positive("kernel_size", self.kernel_size, int)
        check_divisible("dim", self.dim, "num_heads", self.num_heads)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.window_layout not in WINDOW_LAYOUTS:
            raise ValueError(f"window_layout must be one of {WINDOW_LAYOUTS}, got {self.window_layout!r}")
        if int(self.dim * self.exp_ratio) < 1:
            raise ValueError(f"exp_ratio={self.exp_ratio} leaves no hidden channels at dim={self.dim}")

    @property
    def hidden(self) -> int:
        """λC as the iRMB, EW-MHSA and MTB compute it: ``int(dim * exp_ratio)``."""
        return int(self.dim * self.exp_ratio)

    @property
    def irb_hidden(self) -> int:
        """λC as the IRB computes it: ``round(dim * exp_ratio)``."""
        return round(self.dim * self.exp_ratio)


@dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs (one value per convention) of one module."""

    params: int
    flops: dict


@dataclass(frozen=True)
class Row:
    """One module of the calculator's table: analytic and measured counts side by side.

    ``flops`` and ``flops_measured`` map each convention to a count; ``paper_flops`` is the
    paper's expression (2 FLOPs per multiply-add, plus the softmax for EMO's attention rows) or
    ``None``; ``mpl_paper`` is EMO's Table 2 order of magnitude (``inf`` for windows) and
    ``mpl_exact`` the exact number of stacked blocks until every pixel reaches every other.
    """

    module: str
    channels: str
    params: int
    params_measured: Optional[int]
    flops: dict
    flops_measured: Optional[dict]
    paper_flops: Optional[int]
    mpl_paper: float
    mpl_exact: float
    settings: Settings = field(repr=False, default=None)

    @property
    def agrees(self) -> Optional[bool]:
        """True when every measured count equals its analytic value (``None``: not measured)."""
        if self.params_measured is None:
            return None
        return self.params == self.params_measured and self.flops == self.flops_measured


# ---- building the library modules -----------------------------------------------------------------


def build(module: str, s: Settings) -> nn.Module:
    """The library module behind a calculator row, built on the current default device
    (``with torch.device("meta"): build(...)`` for counting)."""
    from .attention import MHSA
    from .irb import InvertedResidual
    from .irmb import iRMB
    from .mtb import MobileTransformerBlock, MoSA

    C, h = s.dim, s.hidden
    if module == "MHSA":
        return MHSA(C, s.num_heads)
    if module == "W-MHSA":
        return MHSA(C, s.num_heads, window_size=s.window_size, window_layout=s.window_layout)
    if module == "EW-MHSA":  # an iRMB whose F is EW-MHSA only; its qk, v and attn parts are EW-MHSA
        return iRMB(C, C, exp_ratio=s.exp_ratio, has_attn=True, has_dw=False, num_heads=s.num_heads,
                    window_size=s.window_size, window_layout=s.window_layout)
    if module == "DW-conv":
        return nn.Conv2d(h, h, s.kernel_size, padding=s.kernel_size // 2, groups=h)
    if module == "IRB":
        return InvertedResidual(C, C, exp_ratio=s.exp_ratio, dw_kernel_size=s.kernel_size)
    if module == "iRMB":
        return iRMB(C, C, exp_ratio=s.exp_ratio, dw_kernel_size=s.kernel_size, has_attn=True, num_heads=s.num_heads,
                    window_size=s.window_size, window_layout=s.window_layout)
    if module == "MoSA":
        return MoSA(C, s.num_heads)
    if module == "MTB":
        return MobileTransformerBlock(C, h, s.num_heads)
    raise ValueError(f"module must be one of {MODULES}, got {module!r}")


_EW_PARTS = ("qk", "v", "attn")  # the EW-MHSA inside the iRMB built for "EW-MHSA"


def measure(module: str, s: Settings) -> Cost:
    """Count the library module on the ``meta`` device: parameters and the FLOPs of one forward
    pass (batch 1) in every convention."""
    with torch.device("meta"):
        m = build(module, s)
    shape = (1, s.hidden if module == "DW-conv" else s.dim, s.size, s.size)
    if module == "EW-MHSA":
        params = sum(cx.count_params(getattr(m, p)) for p in _EW_PARTS)
        flops = {}
        for conv in CONVENTIONS:
            bd = cx.flop_breakdown(m, shape, conv)
            flops[conv] = sum(n for (name, _), n in bd.items() if name.split(".")[0] in _EW_PARTS)
        return Cost(params, flops)
    return Cost(cx.count_params(m), {conv: cx.count_flops(m, shape, conv) for conv in CONVENTIONS})


# ---- analytic counts -------------------------------------------------------------------------------


def _bn(channels: int, L: int) -> int:
    """fvcore's count of an eval-mode BatchNorm with affine parameters: 2 per element."""
    return 2 * channels * L


def _ghost_bn(out_chs: int, L: int) -> int:
    """The two BatchNorms of a Ghost module (ratio 2): ``m = ceil(out/2)`` intrinsic maps and
    as many ghosts."""
    return _bn(2 * math.ceil(out_chs / 2), L)


def analytic(module: str, s: Settings) -> tuple[str, Cost, Optional[int], float]:
    """``(channels, Cost, paper_flops, mpl_paper)`` of a module by formula."""
    C, W, k, w = s.dim, s.size, s.kernel_size, s.window_size
    L = W * W
    if module == "MHSA":
        c, lin = cx.mhsa_cost(C, W), cx.self_attention_cost(C, W).linear_macs
        return "C", Cost(c.params, {"macs": c.macs, "conv_linear": lin, "fvcore": c.macs}), c.paper_flops, c.mpl
    if module == "W-MHSA":  # the same projections as MHSA, attention inside the windows
        c, lin = cx.wmhsa_cost(C, W, w), cx.self_attention_cost(C, W).linear_macs
        return "C", Cost(c.params, {"macs": c.macs, "conv_linear": lin, "fvcore": c.macs}), c.paper_flops, c.mpl
    if module in ("EW-MHSA", "iRMB"):
        h = s.hidden
        e = cx.ewmhsa_cost(C, h, W, w)
        proj = (2 * C * C + C * h) * L  # Q, K (2C² per pixel) and MLP_e (C·λC): the non-attention part
        if module == "EW-MHSA":
            return "C → λC", Cost(e.params, {"macs": e.macs, "conv_linear": proj, "fvcore": e.macs}), e.paper_flops, e.mpl
        dw = cx.dwconv_cost(h, k, W)
        params = 2 * C + e.params + (dw.params - h) + 2 * h + h * C  # norm, EW-MHSA, DW (no bias) + BN, MLP_s
        macs = e.macs + dw.macs + h * C * L
        flops = {"macs": macs, "conv_linear": macs - (e.macs - proj), "fvcore": macs + _bn(C, L) + _bn(h, L)}
        return "C → λC → C", Cost(params, flops), None, cx.irmb_mpl(W, k, w)
    if module == "DW-conv":
        c = cx.dwconv_cost(s.hidden, k, W)
        return "λC", Cost(c.params, {conv: c.macs for conv in CONVENTIONS}), c.paper_flops, c.mpl
    if module == "IRB":
        h = s.irb_hidden
        expand = s.exp_ratio != 1  # MobileNetV2 has no expansion convolution at λ = 1
        dw = cx.dwconv_cost(h, k, W)
        params = (C * h + 2 * h) * expand + (dw.params - h + 2 * h) + (h * C + 2 * C)  # 1x1 + BN, DW + BN, 1x1 + BN
        macs = C * h * L * expand + dw.macs + h * C * L
        fv = macs + _bn(h, L) * expand + _bn(h, L) + _bn(C, L)
        return "C → λC → C", Cost(params, {"macs": macs, "conv_linear": macs, "fvcore": fv}), None, dw.mpl
    if module == "MoSA":
        c = cx.mosa_cost(C, W)
        fv = c.macs + 2 * _ghost_bn(C, L) + _bn(C, L)  # Ghost V, Ghost O, the refiner's BN
        return "C", Cost(c.params, {"macs": c.macs, "conv_linear": c.linear_macs, "fvcore": fv}), c.paper, 1.0
    if module == "MTB":
        h = s.hidden
        c = cx.mtb_cost(C, h, W)
        fv = c.macs + 2 * _ghost_bn(C, L) + _bn(C, L) + _ghost_bn(h, L) + _ghost_bn(C, L)  # MoSA, then MoFFN
        return "C → λC → C", Cost(c.params, {"macs": c.macs, "conv_linear": c.linear_macs, "fvcore": fv}), None, 1.0
    raise ValueError(f"module must be one of {MODULES}, got {module!r}")


def exact_mpl(module: str, s: Settings) -> float:
    """The exact maximum path length of a stack of the module on the W x W map
    (:func:`mobileblocks_edu.receptive.max_path_length` with the module's reach rule)."""
    return max_path_length(module_layer(module, s.kernel_size, s.window_size, s.window_layout), s.size)


def row(module: str, s: Settings, measured: bool = True) -> Row:
    """One row of the calculator: formula, and (``measured=True``) the library module's counts."""
    channels, cost, paper, mpl = analytic(module, s)
    m = measure(module, s) if measured else None
    return Row(module, channels, cost.params, m.params if m else None, cost.flops, m.flops if m else None,
               paper, mpl, exact_mpl(module, s), s)


def calculate(s: Optional[Settings] = None, modules: Sequence[str] = MODULES, measured: bool = True, **kwargs) -> list[Row]:
    """The calculator's table for ``s`` (or ``Settings(**kwargs)``), one :class:`Row` per module."""
    s = Settings(**kwargs) if s is None else replace(s, **kwargs)
    return [row(m, s, measured) for m in modules]


def sweep(s: Settings, knob: str, values: Sequence, modules: Sequence[str] = MODULES, measured: bool = False) -> dict[str, list[Row]]:
    """Rows for every value of one knob (``"size"``, ``"exp_ratio"``, ``"window_size"``, ``"dim"``,
    ``"num_heads"``, ``"kernel_size"``), other settings fixed: ``{module: [row per value]}``.
    The curves of the book; ``measured=True`` counts every point too."""
    if knob not in Settings.__dataclass_fields__:
        raise ValueError(f"knob must be one of {sorted(Settings.__dataclass_fields__)}, got {knob!r}")
    out: dict[str, list[Row]] = {m: [] for m in modules}
    for v in values:
        sv = replace(s, **{knob: v})
        for m in modules:
            out[m].append(row(m, sv, measured))
    return out


def format_count(n: Optional[float]) -> str:
    """``12_345_678 -> "12.35M"``, ``45_600 -> "45.6k"``, ``inf -> "∞"``, ``None -> "–"``."""
    if n is None:
        return "–"
    if isinstance(n, float) and math.isinf(n):
        return "∞"
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f}G"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f}M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:g}" if isinstance(n, float) else str(n)


def table(rows: Sequence[Row], convention: str = "fvcore") -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of a calculator table in one FLOP convention: parameters and
    FLOPs (formula, and "= measured" or the measured value when it differs), the paper's FLOPs
    expression, and the MPL (paper's order, exact)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    header = ["module", "channels", "parameters", f"FLOPs ({convention})", "paper's FLOPs", "MPL (paper)", "MPL (exact)"]
    cells = []
    for r in rows:
        def pair(a, b):
            if b is None:
                return format_count(a)
            return f"{format_count(a)} ✓" if a == b else f"{format_count(a)} (measured {format_count(b)})"

        mp = r.mpl_paper
        mpl_paper = "∞" if math.isinf(mp) else ("1" if mp == 1 else f"{mp:.1f}")
        cells.append([r.module, r.channels, pair(r.params, r.params_measured),
                      pair(r.flops[convention], r.flops_measured[convention] if r.flops_measured else None),
                      format_count(r.paper_flops), mpl_paper, format_count(r.mpl_exact)])
    return header, cells


__all__ = ["MODULES", "CONVENTIONS", "Settings", "Cost", "Row", "build", "measure", "analytic", "exact_mpl", "row",
           "calculate", "sweep", "format_count", "table"]

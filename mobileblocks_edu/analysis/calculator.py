"""The complexity calculator: parameters, FLOPs and maximum path length of the book's blocks for
any λ, window size, resolution, channels and heads, by formula next to measurement.

Eight modules, each on a C x W x W map (L = W² pixels, expansion λ, hidden width λC):

==========  ==================================================================  ==========
module      library module                                                      acts on
==========  ==================================================================  ==========
MHSA        :class:`~mobileblocks_edu.blocks.attention.MHSA`, global                   C
W-MHSA      :class:`~mobileblocks_edu.blocks.attention.MHSA` in w x w windows          C
EW-MHSA     the EW-MHSA of an :class:`~mobileblocks_edu.blocks.irmb.iRMB` (Q, K, MLP_e  C -> λC
            and the attention: its ``qk``, ``v`` and ``attn`` parts)
DW-conv     a k x k depthwise ``nn.Conv2d`` with bias, F of the IRB             λC
IRB         :class:`~mobileblocks_edu.blocks.irb.InvertedResidual`                      C -> λC -> C
iRMB        :class:`~mobileblocks_edu.blocks.irmb.iRMB` (EW-MHSA then DW-conv)          C -> λC -> C
MoSA        :class:`~mobileblocks_edu.blocks.mtb.MoSA`                                 C
MTB         :class:`~mobileblocks_edu.blocks.mtb.MobileTransformerBlock` (hidden λC)    C -> λC -> C
==========  ==================================================================  ==========

For each: parameters, FLOPs in the three conventions of :mod:`mobileblocks_edu.analysis.complexity`
(``"macs"``, ``"conv_linear"``, ``"fvcore"``), the paper's FLOPs expression where a paper gives
one (EMO's Table 2, MoCoViT's Eq. 4), and the maximum path length, as EMO's Table 2 states it and
exactly (:mod:`mobileblocks_edu.analysis.receptive`). The formulas are those of
:mod:`mobileblocks_edu.analysis.complexity` (:func:`~mobileblocks_edu.analysis.complexity.mhsa_cost`,
``irb_cost``, ``irmb_cost``, ``mtb_cost``, ...); the calculator only lines each one up against
the measured count of the library module, built on the ``meta`` device (shapes only, no memory,
no arithmetic) and counted with :func:`~mobileblocks_edu.analysis.complexity.count_cost`::

    from mobileblocks_edu.analysis.calculator import Settings, calculate
    for row in calculate(Settings(dim=64, size=28, exp_ratio=4, window_size=7, num_heads=4)):
        print(row.module, row.cost.params, row.cost.flops("fvcore"), row.mpl_exact)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
from torch import nn

from ..blocks.attention import WINDOW_LAYOUTS
from ..env import check_bool, check_divisible, check_positive, check_ratio
from . import complexity as cx
from .complexity import Cost
from .receptive import max_path_length, module_layer

MODULES = ("MHSA", "W-MHSA", "EW-MHSA", "DW-conv", "IRB", "iRMB", "MoSA", "MTB")
CHANNELS = {"MHSA": "C", "W-MHSA": "C", "EW-MHSA": "C → λC", "DW-conv": "λC", "IRB": "C → λC → C",
            "iRMB": "C → λC → C", "MoSA": "C", "MTB": "C → λC → C"}  # what each module maps
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
        check_ratio("exp_ratio", self.exp_ratio, 1, "the hidden width is exp_ratio x dim")
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


@dataclass(frozen=True)
class Row:
    """One module of the calculator's table: ``cost`` by formula (with the paper's FLOPs and its
    order of the path length), ``measured`` on the library module (``None``: not measured), and
    ``mpl_exact``, the exact number of stacked blocks until every pixel reaches every other."""

    module: str
    channels: str
    cost: Cost
    measured: Optional[Cost]
    mpl_exact: float
    settings: Settings = field(repr=False, default=None)

    @property
    def agrees(self) -> Optional[bool]:
        """True when every measured count equals its formula (``None``: not measured)."""
        if self.measured is None:
            return None
        m, c = self.measured, self.cost
        return m.params == c.params and all(m.flops(conv) == c.flops(conv) for conv in CONVENTIONS)


# ---- building the library modules -----------------------------------------------------------------


def build(module: str, s: Settings) -> nn.Module:
    """The library module behind a calculator row, built on the current default device
    (``with torch.device("meta"): build(...)`` for counting)."""
    from ..blocks.attention import MHSA
    from ..blocks.irb import InvertedResidual
    from ..blocks.irmb import iRMB
    from ..blocks.mtb import MobileTransformerBlock, MoSA

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


# ---- formula and measurement -------------------------------------------------------------------------


_EW_PARTS = ("qk", "v", "attn")  # the EW-MHSA inside the iRMB built for "EW-MHSA"


def _parts_cost(module: nn.Module, shape: tuple, parts: Sequence[str]) -> Cost:
    """The measured cost of some top-level children of ``module``, run inside its forward pass."""
    flops = {conv: sum(n for (name, _), n in cx.flop_breakdown(module, shape, conv).items()
                       if name.split(".")[0] in parts)
             for conv in CONVENTIONS}
    return Cost(sum(cx.count_params(getattr(module, p)) for p in parts), flops["macs"], flops["conv_linear"],
                flops["fvcore"] - flops["macs"])


def measure(module: str, s: Settings) -> Cost:
    """Count the library module on the ``meta`` device: parameters and the FLOPs of one forward
    pass (batch 1) in every convention."""
    with torch.device("meta"):
        m = build(module, s)
    shape = (1, s.hidden if module == "DW-conv" else s.dim, s.size, s.size)
    return _parts_cost(m, shape, _EW_PARTS) if module == "EW-MHSA" else cx.count_cost(m, shape)


def analytic(module: str, s: Settings) -> Cost:
    """The module's :class:`~mobileblocks_edu.analysis.complexity.Cost` by formula, from
    :mod:`~mobileblocks_edu.analysis.complexity`."""
    C, W, k, w, lam = s.dim, s.size, s.kernel_size, s.window_size, s.exp_ratio
    if module == "MHSA":
        return cx.mhsa_cost(C, W)
    if module == "W-MHSA":
        return cx.wmhsa_cost(C, W, w)
    if module == "EW-MHSA":
        return cx.ewmhsa_cost(C, s.hidden, W, w)
    if module == "DW-conv":
        return cx.dwconv_cost(s.hidden, k, W)
    if module == "IRB":
        return cx.irb_cost(C, lam, W, k)
    if module == "iRMB":
        return cx.irmb_cost(C, lam, W, k, w)
    if module == "MoSA":
        return cx.mosa_cost(C, W)
    if module == "MTB":
        return cx.mtb_cost(C, s.hidden, W)
    raise ValueError(f"module must be one of {MODULES}, got {module!r}")


def exact_mpl(module: str, s: Settings) -> float:
    """The exact maximum path length of a stack of the module on the W x W map
    (:func:`mobileblocks_edu.analysis.receptive.max_path_length` with the module's reach rule)."""
    return max_path_length(module_layer(module, s.kernel_size, s.window_size, s.window_layout), s.size)


def row(module: str, s: Settings, measured: bool = True) -> Row:
    """One row of the calculator: formula, and (``measured=True``) the library module's counts."""
    cost = analytic(module, s)  # checks the name
    return Row(module, CHANNELS[module], cost, measure(module, s) if measured else None, exact_mpl(module, s), s)


def calculate(s: Optional[Settings] = None, modules: Sequence[str] = MODULES, measured: bool = True,
              **kwargs) -> list[Row]:
    """The calculator's table for ``s`` (or ``Settings(**kwargs)``), one :class:`Row` per module."""
    s = Settings(**kwargs) if s is None else replace(s, **kwargs)
    _check_modules(modules)
    check_bool("measured", measured)
    return [row(m, s, measured) for m in modules]


def _check_modules(modules: Sequence[str]) -> None:
    """``modules`` must be a sequence of the calculator's module names (a single name is not)."""
    if isinstance(modules, str):
        raise ValueError(f"modules must be a list of names from {MODULES}, got the single name {modules!r}: "
                         f"write ({modules!r},)")
    for m in modules:
        if m not in MODULES:
            raise ValueError(f"module must be one of {MODULES}, got {m!r}")


def sweep(s: Settings, knob: str, values: Sequence, modules: Sequence[str] = MODULES,
          measured: bool = False) -> dict[str, list[Row]]:
    """Rows for every value of one knob (``"size"``, ``"exp_ratio"``, ``"window_size"``, ``"dim"``,
    ``"num_heads"``, ``"kernel_size"``), other settings fixed: ``{module: [row per value]}``.
    The curves of the book; ``measured=True`` counts every point too."""
    if knob not in Settings.__dataclass_fields__:
        raise ValueError(f"knob must be one of {sorted(Settings.__dataclass_fields__)}, got {knob!r}")
    _check_modules(modules)
    check_bool("measured", measured)
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


def format_mpl(x: Optional[float]) -> str:
    """A path length in layers: ``inf -> "∞"``, ``4 -> "4"``, ``1.75 -> "1.8"``, ``None -> "–"``."""
    if x is None:
        return "–"
    if math.isinf(x):
        return "∞"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def format_table(rows: Sequence[Row], conventions: Sequence[str] = CONVENTIONS) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a calculator table, for ``lab.table(*format_table(rows))``: parameters
    and FLOPs in each convention (the formula, then "✓" when it equals the measured count or the
    measured count when it differs), the paper's FLOPs, and the MPL (paper's order, exact)."""
    for conv in conventions:
        if conv not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {conv!r}")

    def pair(formula: int, measured: Optional[int]) -> str:
        if measured is None:
            return format_count(formula)
        return (f"{format_count(formula)} ✓" if formula == measured
                else f"{format_count(formula)} (measured {format_count(measured)})")

    header = ["module", "channels", "parameters", *[f"FLOPs ({c})" for c in conventions], "paper's FLOPs",
              "MPL (paper's order)", "MPL (exact)"]
    cells = []
    for r in rows:
        c, m = r.cost, r.measured
        cells.append([r.module, r.channels, pair(c.params, None if m is None else m.params),
                      *[pair(c.flops(conv), None if m is None else m.flops(conv)) for conv in conventions],
                      format_count(c.paper_flops), format_mpl(c.mpl), format_mpl(r.mpl_exact)])
    return header, cells


__all__ = ["MODULES", "CHANNELS", "CONVENTIONS", "Settings", "Row", "build", "measure", "analytic", "exact_mpl", "row",
           "calculate", "sweep", "format_count", "format_mpl", "format_table"]

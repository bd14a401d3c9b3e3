"""The complexity calculator: every formula equals the measured count of the library module, in
every convention, over a grid of settings; the maximum path lengths are the exact ones."""
import math
from dataclasses import replace

import pytest

from mobileblocks_edu.analysis import complexity as cx
from mobileblocks_edu.analysis.calculator import (
    MODULES,
    Settings,
    analytic,
    build,
    calculate,
    format_count,
    format_mpl,
    format_table,
    measure,
    sweep,
)
from mobileblocks_edu.analysis.complexity import cascade_mpl_block, conv_mpl

pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = [
    Settings(),  # C 64, 28x28, λ 4, w 7, 4 heads, k 3, block windows
    Settings(dim=48, size=9, exp_ratio=3, window_size=7, num_heads=3, kernel_size=5, window_layout="grid"),  # padding
    Settings(dim=32, size=14, exp_ratio=1, window_size=4, num_heads=2),  # λ = 1: the IRB has no expansion conv
    Settings(dim=40, size=5, exp_ratio=2.5, window_size=7, num_heads=5),  # the map fits in one padded window
    Settings(dim=24, size=16, exp_ratio=6, window_size=2, num_heads=1, kernel_size=7, window_layout="grid"),
]


@pytest.mark.parametrize("s", SETTINGS,
                         ids=lambda s: f"C{s.dim}-W{s.size}-l{s.exp_ratio:g}-w{s.window_size}-h{s.num_heads}")
def test_formulas_equal_measured_counts(s):
    for row in calculate(s):
        assert row.cost.params == row.measured.params, row.module
        for conv in cx.CONVENTIONS:
            assert row.cost.flops(conv) == row.measured.flops(conv), (row.module, conv)
        assert row.agrees
        c = row.cost
        assert c.flops("conv_linear") <= c.flops("macs") <= c.flops("fvcore"), row.module


def test_measured_counts_are_the_library_modules_counts():
    """The "measured" column is count_params/count_flops of the module that build() returns."""
    s = Settings(dim=32, size=12, exp_ratio=2, window_size=4)
    for name in ("IRB", "iRMB", "MTB"):
        m = build(name, s)
        assert measure(name, s).params == cx.count_params(m)
        assert measure(name, s).flops("macs") == cx.count_flops(m, (1, 32, 12, 12), "macs")
    # EW-MHSA is the Q/K, MLP_e and attention of an iRMB: the iRMB minus the rest
    irmb, ew, dw = (measure(n, s) for n in ("iRMB", "EW-MHSA", "DW-conv"))
    h = s.hidden
    rest = 2 * s.dim + (dw.params - h) + 2 * h + h * s.dim  # pre-norm, DW without bias + BN, MLP_s
    assert irmb.params == ew.params + rest


def test_formulas_come_from_the_complexity_module():
    s = Settings(dim=64, size=14, window_size=7, exp_ratio=3, kernel_size=5)
    assert analytic("MHSA", s) == cx.mhsa_cost(64, 14)
    assert analytic("W-MHSA", s) == cx.wmhsa_cost(64, 14, 7)
    assert analytic("EW-MHSA", s) == cx.ewmhsa_cost(64, 192, 14, 7)
    assert analytic("IRB", s) == cx.irb_cost(64, 3, 14, 5)
    assert analytic("iRMB", s) == cx.irmb_cost(64, 3, 14, 5, 7)
    assert analytic("MoSA", s).paper_flops == 14**2 * 64**2 + 2 * 14**4 * 64  # the paper's Eq. 4
    assert analytic("MTB", s) == cx.mtb_cost(64, 192, 14)


def test_maximum_path_lengths():
    s = Settings(dim=32, size=28, window_size=7, kernel_size=5)
    rows = {r.module: r for r in calculate(s, measured=False)}
    assert rows["MHSA"].mpl_exact == rows["MoSA"].mpl_exact == rows["MTB"].mpl_exact == 1
    assert math.isinf(rows["W-MHSA"].mpl_exact) and math.isinf(rows["EW-MHSA"].mpl_exact)
    assert rows["DW-conv"].mpl_exact == rows["IRB"].mpl_exact == conv_mpl(28, 5) == 14
    assert rows["iRMB"].mpl_exact == cascade_mpl_block(28, 5, 7) == 4
    assert rows["iRMB"].cost.mpl == cx.irmb_mpl(28, 5, 7)
    assert rows["DW-conv"].cost.mpl == rows["IRB"].cost.mpl == pytest.approx(2 * 28 / 4)
    grid = {r.module: r for r in calculate(s, measured=False, window_layout="grid")}
    assert grid["iRMB"].mpl_exact == 2 < rows["iRMB"].mpl_exact
    one_window = {r.module: r for r in calculate(s, measured=False, size=7)}
    assert one_window["W-MHSA"].mpl_exact == 1  # a single window is global attention
    assert math.isinf(one_window["W-MHSA"].cost.mpl)  # the paper's O(Inf) assumes several windows


def test_cost_curves_against_resolution():
    s = Settings(dim=32, window_size=7, exp_ratio=2)
    sizes = [7, 14, 28, 56]
    curves = sweep(s, "size", sizes, modules=("MHSA", "W-MHSA", "iRMB", "MTB"))
    macs = {m: [r.cost.macs for r in rows] for m, rows in curves.items()}
    for a, b in zip(macs["W-MHSA"], macs["W-MHSA"][1:]):
        assert b == 4 * a  # windows: linear in the number of pixels
    attn = [r.cost.macs - r.cost.linear_macs for r in curves["MHSA"]]
    assert all(b == 16 * a for a, b in zip(attn, attn[1:]))  # global attention: quadratic
    assert all(r.cost.params == curves["MTB"][0].cost.params for r in curves["MTB"])  # parameters do not depend on W
    lam = sweep(s, "exp_ratio", [1, 2, 4], modules=("EW-MHSA",), measured=True)["EW-MHSA"]
    assert all(r.agrees for r in lam)
    with pytest.raises(ValueError, match="knob"):
        sweep(s, "depth", [1])


def test_settings_errors_name_the_argument():
    with pytest.raises(ValueError, match="dim=30 must be divisible by num_heads=4"):
        Settings(dim=30)
    with pytest.raises(ValueError, match="exp_ratio"):
        Settings(exp_ratio=0)
    with pytest.raises(ValueError, match="window_size"):
        Settings(window_size=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Settings(kernel_size=4)
    with pytest.raises(ValueError, match="window_layout"):
        Settings(window_layout="shifted")
    with pytest.raises(ValueError, match="module must be one of"):
        calculate(Settings(), modules=("ResNet",))


def test_table_and_formatting():
    rows = calculate(Settings(size=14), modules=("MHSA", "iRMB"))
    header, cells = format_table(rows, ("macs",))
    assert header[3] == "FLOPs (macs)" and len(header) == len(cells[0]) == 7 and len(cells) == 2
    assert cells[0][2].endswith("✓") and cells[1][-1] == "2" and cells[1][-2] == "1.8"  # 2·14 / (3 - 1 + 2·7)
    wrong = replace(rows[0], measured=replace(rows[0].measured, params=1))
    assert format_table([wrong])[1][0][2] == "16.6k (measured 1)" and not wrong.agrees
    assert len(format_table(calculate(Settings(), measured=False))[0]) == 9  # all three conventions
    with pytest.raises(ValueError, match="convention"):
        format_table(rows, ("flops",))
    assert [format_mpl(x) for x in (math.inf, 4, 1.75, None)] == ["∞", "4", "1.8", "–"]
    assert [format_count(x) for x in (950, 45_600, 12_345_678, 2.5e9, math.inf, None)] == \
        ["950", "45.6k", "12.35M", "2.50G", "∞", "–"]
    assert set(MODULES) == {"MHSA", "W-MHSA", "EW-MHSA", "DW-conv", "IRB", "iRMB", "MoSA", "MTB"}

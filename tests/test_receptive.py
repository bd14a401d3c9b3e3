"""Receptive fields and maximum path length: the propagation engine against closed forms, an
independent brute-force search and the real library modules."""
import itertools
import math

import pytest
import torch
from torch import nn

from mobileblocks_edu.analysis.complexity import cascade_mpl_block, conv_mpl, irmb_mpl, window_mpl
from mobileblocks_edu.analysis.receptive import (
    Op,
    conv_op,
    dependency,
    global_op,
    layer_dependency,
    max_path_length,
    module_layer,
    mpl_from_dependency,
    reach,
    window_op,
)
from mobileblocks_edu.blocks.attention import MHSA
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoSA

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- closed forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_conv_mpl_is_the_ceil_of_2w_over_k_minus_1(k):
    for W in range(1, 23):
        expected = 0 if W == 1 else (math.inf if k == 1 else math.ceil(2 * (W - 1) / (k - 1)))
        assert max_path_length(conv_op(k), W) == conv_mpl(W, k) == expected, W
        assert conv_mpl(W, k) >= 2 * (W - 1) / (k - 1) if k > 1 else True  # EMO's O(2W/(k-1)), exactly rounded up


@pytest.mark.parametrize("layout", ["block", "grid"])
def test_window_attention_never_connects_windows(layout):
    for W, w in itertools.product(range(1, 16), [1, 2, 3, 4, 7]):
        got = max_path_length(window_op(w, layout), W)
        assert got == window_mpl(W, w), (W, w)
        assert math.isinf(got) == (W > w)  # more than one window per side: O(Inf)
    assert max_path_length(global_op(), 9) == 1  # MHSA: O(1)


def test_block_cascade_matches_its_closed_form():
    for W, k, w in itertools.product(range(1, 21), [1, 3, 5, 7, 9], [1, 2, 3, 4, 7]):
        got = max_path_length((window_op(w, "block"), conv_op(k)), W)
        assert got == cascade_mpl_block(W, k, w), (W, k, w)
    # with r = (k-1)/2 < w the frontier moves one window per layer: ceil(W / w)
    assert cascade_mpl_block(56, 5, 7) == 8 == math.ceil(56 / 7)


def test_the_cascade_claim():
    """EMO Sec. 2.3: the cascade connects every pair of pixels in far fewer blocks than the DW-conv
    alone (window attention alone never does). The exact count is at least the paper's order
    2W/(k-1+2w) and below three times it; grid windows never need more blocks than block windows."""
    for W, k, w in itertools.product([8, 14, 20, 28, 33], [3, 5], [4, 7]):
        block = max_path_length((window_op(w, "block"), conv_op(k)), W)
        grid = max_path_length((window_op(w, "grid"), conv_op(k)), W)
        assert grid <= block <= conv_mpl(W, k)
        assert block < conv_mpl(W, k) / 1.5
        assert irmb_mpl(W, k, w) <= block < 3 * irmb_mpl(W, k, w)
    assert max_path_length((window_op(7, "grid"), conv_op(5)), 14) == 1  # a 5x5 DW-conv closes 2-pixel gaps


@pytest.mark.parametrize("size", [(7, 7), (9, 12), (10, 5)])
@pytest.mark.parametrize("layer", [
    (window_op(3, "grid"), conv_op(3)),
    (window_op(4, "block"), conv_op(5)),
    (conv_op(3), window_op(4, "grid")),
    (window_op(3, "grid"),),
    (conv_op(5),),
], ids=str)
def test_separable_propagation_equals_full_2d(size, layer):
    assert max_path_length(layer, size) == max_path_length(layer, size, separable=False)


def test_single_pixels_and_unconnected_maps():
    assert max_path_length(conv_op(3), 1) == 0 == mpl_from_dependency(torch.ones(1, 1, dtype=torch.bool))
    assert max_path_length(conv_op(1), (1, 4)) == math.inf  # 1x1: nothing ever moves
    assert mpl_from_dependency(torch.eye(3, dtype=torch.bool)) == math.inf


def _brute_force_mpl(layer, H, W):
    """Breadth-first reach on explicit pixel sets, windows from index formulas (no window_partition)."""
    def window_id(i, j, op):
        if op.layout == "block":
            return i // op.size, j // op.size
        n1, n2 = math.ceil(H / op.size), math.ceil(W / op.size)  # grid: rows r·n1 + a
        return i % n1, j % n2

    def step(S, op):
        if op.kind == "global":
            return {(i, j) for i in range(H) for j in range(W)}
        if op.kind == "conv":
            r = op.size // 2
            return {(i, j) for i in range(H) for j in range(W)
                    if any(abs(i - a) <= r and abs(j - b) <= r for a, b in S)}
        ids = {window_id(a, b, op) for a, b in S}
        return {(i, j) for i in range(H) for j in range(W) if window_id(i, j, op) in ids}

    worst = 0
    for src in itertools.product(range(H), range(W)):
        S, n = {src}, 0
        while len(S) < H * W:
            new = S
            for op in layer:
                new = step(new, op)
            if new == S:
                return math.inf
            S, n = new, n + 1
        worst = max(worst, n)
    return worst


@pytest.mark.parametrize("layer", [
    (window_op(3, "grid"), conv_op(3)),
    (window_op(4, "grid"), conv_op(3)),
    (window_op(3, "block"), conv_op(3)),
    (conv_op(3), window_op(2, "grid")),
], ids=str)
@pytest.mark.parametrize("size", [(6, 6), (7, 9)])
def test_propagation_equals_brute_force_search(layer, size):
    assert max_path_length(layer, size, separable=False) == _brute_force_mpl(layer, *size)


def test_theoretical_receptive_field_of_a_conv_stack():
    for k, n in [(3, 1), (3, 4), (5, 3), (7, 2)]:
        side = 1 + n * (k - 1)  # the classic 1 + n(k - 1)
        r = reach(conv_op(k), 31, n)
        assert r.sum() == side * side and r.any(1).sum() == r.any(0).sum() == side  # a side x side square
    assert reach(conv_op(3), 9, 10).all()  # clipped by the map
    r = reach((window_op(4, "block"),), 8, 1, source=(1, 6))
    assert r.sum() == 16 and r[:4, 4:].all()  # the source's window, nothing else


def test_op_errors_name_the_argument():
    with pytest.raises(ValueError, match="odd"):
        Op("conv", 4)
    with pytest.raises(ValueError, match="kind"):
        Op("pool", 3)
    with pytest.raises(ValueError, match="layout"):
        window_op(3, "diagonal")
    with pytest.raises(ValueError, match="size"):
        window_op(0)
    with pytest.raises(ValueError, match="outside"):
        reach(conv_op(3), 5, 1, source=(5, 0))
    with pytest.raises(ValueError, match="name must be one of"):
        module_layer("ResNet")


# ---- the rules against the library's modules -----------------------------------------------------------


C = 16
MODULE_CASES = [
    ("DW-conv 5x5", lambda: nn.Conv2d(C, C, 5, padding=2, groups=C), module_layer("DW-conv", 5), 8),
    ("IRB 3x3", lambda: InvertedResidual(C, C, exp_ratio=2), module_layer("IRB", 3), 8),
    ("MHSA", lambda: MHSA(C, 4), module_layer("MHSA"), 6),
    ("W-MHSA block, padded", lambda: MHSA(C, 4, window_size=3, window_layout="block"),
     module_layer("W-MHSA", 3, 3, "block"), 7),
    ("W-MHSA grid, padded", lambda: MHSA(C, 4, window_size=3, window_layout="grid"),
     module_layer("W-MHSA", 3, 3, "grid"), 7),
    ("EW-MHSA only, grid", lambda: iRMB(C, C, exp_ratio=2, has_attn=True, has_dw=False, dim_head=8, window_size=4,
                                        window_layout="grid"),
     module_layer("EW-MHSA", 3, 4, "grid"), 8),
    ("iRMB block, padded", lambda: iRMB(C, C, exp_ratio=2, has_attn=True, dim_head=8, window_size=3,
                                        window_layout="block"),
     module_layer("iRMB", 3, 3, "block"), 7),
    ("iRMB grid k5, padded", lambda: iRMB(C, C, exp_ratio=2, dw_kernel_size=5, has_attn=True, dim_head=8, window_size=3,
                                          window_layout="grid"), module_layer("iRMB", 5, 3, "grid"), 8),
    ("iRMB dw_attn", lambda: iRMB(C, C, exp_ratio=2, has_attn=True, dim_head=8, window_size=3, window_layout="block",
                                  op_order="dw_attn", attn_before_mlp_e=False),
     module_layer("iRMB dw_attn", 3, 3, "block"), 7),
    ("MoSA", lambda: MoSA(C, 4), module_layer("MoSA"), 5),
    ("MTB", lambda: MobileTransformerBlock(C, 32, 4), module_layer("MTB"), 5),
]


@pytest.mark.parametrize("name,make,layer,size", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_reach_rule_equals_the_modules_gradient_dependency(name, make, layer, size):
    module = make().eval()
    dep = dependency(module, C, size)
    assert torch.equal(dep, layer_dependency(layer, size))
    assert mpl_from_dependency(dep) == max_path_length(layer, size)


def test_dependency_is_not_symmetric_for_a_cascade():
    """Output pixel o depends on the windows that its k x k neighbourhood touches; that is the
    transpose of what input pixel o reaches."""
    d = layer_dependency((window_op(3, "block"), conv_op(3)), 6)
    assert not torch.equal(d, d.T)
    assert torch.equal(d, layer_dependency((conv_op(3), window_op(3, "block")), 6).T)

"""Part II: the iRMB and its EW-MHSA: fast = readable, the efficient equivalent, the switches."""
import pytest
import torch
from torch import nn

from mobileblocks_edu.analysis.complexity import count_flops, count_params, ewmhsa_cost
from mobileblocks_edu.blocks.attention import WindowAttention, set_attention, window_partition, window_reverse
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.layers import LayerNorm2d
from mobileblocks_edu.lab import randomize_

ATOL = 1e-5


def _pair(**kwargs):
    """A randomised block on the fast path and a copy on the readable path (same weights)."""
    fast = randomize_(iRMB(**kwargs)).eval()
    readable = iRMB(**kwargs, reference_order=True).eval()
    readable.load_state_dict(fast.state_dict())
    return fast, readable


ATTN = dict(in_chs=32, out_chs=32, exp_ratio=3, dw_kernel_size=5, has_attn=True, num_heads=4,
            norm_layer=LayerNorm2d)


# ---- the fast and the readable path compute the same function -----------------------------------


@pytest.mark.parametrize("layout", ["grid", "block"])
@pytest.mark.parametrize("window_size,hw", [(7, (14, 14)), (7, (9, 12)), (4, (8, 8)), (7, (2, 3)), (None, (6, 5))])
@pytest.mark.parametrize("attn_before_mlp_e", [True, False])
def test_fast_and_readable_paths_agree(layout, window_size, hw, attn_before_mlp_e):
    fast, readable = _pair(**ATTN, window_size=window_size, window_layout=layout, attn_before_mlp_e=attn_before_mlp_e)
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), readable(x), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize(
    "extra",
    [
        dict(stride=2, out_chs=48),  # attention at the input resolution, DW-conv downsamples
        dict(op_order="dw_attn", attn_before_mlp_e=False),
        dict(v_groups=4, act_layer=None, se_ratio=0.25),
        dict(qk_bias=False, v_bias=False, has_dw=False),
    ],
    ids=["stride2", "dw_attn", "grouped_se", "no_bias_no_dw"],
)
def test_fast_and_readable_paths_agree_for_every_switch(extra):
    fast, readable = _pair(**{**ATTN, **extra, "window_size": 4})
    x = torch.randn(2, 32, 10, 7)  # padding in both directions
    with torch.no_grad():
        torch.testing.assert_close(fast(x), readable(x), atol=ATOL, rtol=ATOL)


def test_fast_path_agrees_in_training_mode_and_gradients():
    fast, readable = _pair(**ATTN, window_size=4, window_layout="grid")
    fast.train(), readable.train()
    x = torch.randn(2, 32, 9, 9, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    fast(x).square().sum().backward()
    readable(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    for (n, p), q in zip(fast.named_parameters(), readable.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-3, rtol=1e-4, msg=n)


def test_fast_path_runs_in_channels_last():
    fast, readable = _pair(**ATTN, window_size=7)
    x = torch.randn(2, 32, 14, 14)
    fast.to(memory_format=torch.channels_last)
    with torch.no_grad():
        y = fast(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(y, readable(x), atol=ATOL, rtol=ATOL)


def test_padding_costs_only_the_readable_path():
    """At a 3x3 map with 7x7 windows, the reference order projects 49 pixels per window."""
    fast, readable = _pair(**ATTN, window_size=7)
    f_fast = count_flops(fast, (1, 32, 3, 3), "fvcore")
    f_read = count_flops(readable, (1, 32, 3, 3), "fvcore")
    C, hidden = 32, 96
    # Q/K (2C²) and MLP_e (C·λC) on 49 instead of 9 pixels; Q Kᵀ and A V (C channels each) over
    # 49 x 49 pairs instead of 9 queries x (9 pixels + 1 key standing for the 40 padded ones)
    assert f_read - f_fast == (2 * C * C + C * hidden) * (49 - 9) + 2 * C * (49 * 49 - 9 * 10)


@pytest.mark.parametrize("layout", ["grid", "block"])
@pytest.mark.parametrize("hw", [(8, 8), (7, 10)])
def test_tokens_last_windows_are_the_same_windows(layout, hw):
    x = torch.randn(2, 6, *hw)
    windows, info = window_partition(x, 4, layout)  # (B·nW, C, w, w)
    tokens, info_t = window_partition(x.contiguous(memory_format=torch.channels_last), 4, layout, tokens_last=True)
    assert info == info_t and tokens.shape == (windows.shape[0], 16, 6)
    assert torch.equal(tokens, windows.flatten(2).transpose(1, 2))
    back = window_reverse(tokens, info)
    assert torch.equal(back, x) and back.stride(1) == 1  # channels innermost


@pytest.mark.parametrize("window_size,layout", [(4, "grid"), (4, "block"), (None, "block")])
def test_tokens_last_attention_equals_the_default(window_size, layout):
    q, k = torch.randn(2, 16, 7, 9), torch.randn(2, 16, 7, 9)
    v = torch.randn(2, 40, 7, 9)  # expanded values: C_v != C_qk
    default = WindowAttention(4, 4, window_size, layout)
    tokens = WindowAttention(4, 4, window_size, layout, tokens_last=True)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (q, k, v)]
    torch.testing.assert_close(tokens(*cl), default(q, k, v), atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(tokens(q, k, v), default(q, k, v), atol=ATOL, rtol=ATOL)


# ---- the efficient equivalent implementation ------------------------------------------------------


@pytest.mark.parametrize("reference_order", [False, True])
@pytest.mark.parametrize("window_size,hw", [(4, (8, 8)), (4, (7, 10)), (None, (5, 5))])
def test_orders_agree_when_mlp_e_is_linear_and_grouped_by_heads(reference_order, window_size, hw):
    blk = randomize_(iRMB(**ATTN, window_size=window_size, act_layer=None, v_groups=4,
                          reference_order=reference_order)).eval()
    assert blk.attn_order_exact
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        efficient = blk(x)
        blk.attn_before_mlp_e = False
        paper = blk(x)
    torch.testing.assert_close(efficient, paper, atol=ATOL, rtol=ATOL)  # padding and biases included


@pytest.mark.parametrize(
    "extra",
    [dict(act_layer=None, v_groups=1), dict(act_layer=nn.GELU, v_groups=4), dict(act_layer=nn.GELU, v_groups=1)],
    ids=["one_group", "gelu", "reference"],
)
def test_orders_differ_otherwise(extra):
    blk = randomize_(iRMB(**ATTN, window_size=4, **extra)).eval()
    assert not blk.attn_order_exact
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        efficient = blk(x)
        blk.attn_before_mlp_e = False
        paper = blk(x)
    diff = (efficient - paper).abs().max().item()
    assert diff > 100 * ATOL, diff  # a different function, not float rounding (about 1e-6 here)


def test_orders_agree_with_one_head_and_no_activation():
    blk = randomize_(iRMB(**{**ATTN, "num_heads": 1}, window_size=4, act_layer=None)).eval()
    assert blk.attn_order_exact
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        a = blk(x)
        blk.attn_before_mlp_e = False
        torch.testing.assert_close(a, blk(x), atol=ATOL, rtol=ATOL)


def test_efficient_order_saves_attention_flops():
    blk = iRMB(**ATTN, window_size=7)
    shape = (1, 32, 14, 14)
    efficient = count_flops(blk, shape, "fvcore")
    blk.attn_before_mlp_e = False
    paper = count_flops(blk, shape, "fvcore")
    # A·V over λC instead of C channels: (λ - 1)·C·L·l more multiply-adds
    assert paper - efficient == (3 - 1) * 32 * 14 * 14 * 49


# ---- the switches -------------------------------------------------------------------------------


def test_without_attention_and_dw_f_is_the_identity():
    blk = randomize_(iRMB(32, 32, exp_ratio=2, has_attn=False, has_dw=False)).eval()
    assert isinstance(blk.conv_local, nn.Identity) and not blk.dw_skip
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), x + blk.proj(blk.v(blk.norm(x))))


def test_dw_only_block_has_the_inner_skip():
    blk = randomize_(iRMB(32, 32, exp_ratio=2, has_attn=False)).eval()
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        h = blk.v(blk.norm(x))
        torch.testing.assert_close(blk(x), x + blk.proj(h + blk.conv_local(h)))
    assert not iRMB(32, 32, exp_ratio=2, dw_skip=False).dw_skip


def test_attention_then_dw_matches_equation_4():
    """F = (DW-Conv, Skip)(EW-MHSA): the DW branch (with its skip) acts on the attention output."""
    blk = randomize_(iRMB(**ATTN, window_size=None)).eval()
    x = torch.randn(1, 32, 5, 5)
    with torch.no_grad():
        xn = blk.norm(x)
        q, k = blk.qk(xn).chunk(2, 1)
        q, k, v = (t.flatten(2).reshape(1, 4, 8, 25).transpose(-2, -1) for t in (q, k, xn))
        a = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, -1)  # (1, heads, 25, 25)
        att = blk.v((a @ v).transpose(-2, -1).reshape(1, 32, 5, 5))  # MLP_e after attention
        expected = x + blk.proj(att + blk.conv_local(att))
        torch.testing.assert_close(blk(x), expected, atol=ATOL, rtol=ATOL)


def test_downsampling_block_shapes_and_skip():
    blk = iRMB(32, 48, stride=2, exp_ratio=4, has_attn=True, num_heads=4)
    assert not blk.has_skip and not blk.dw_skip
    assert blk(torch.randn(1, 32, 14, 15)).shape == (1, 48, 7, 8)


def test_parameter_count_by_formula():
    C, lam, k, heads = 32, 3, 5, 4
    hid = C * lam
    blk = iRMB(C, C, exp_ratio=lam, dw_kernel_size=k, has_attn=True, num_heads=heads, norm_layer=LayerNorm2d,
               se_ratio=0.25)
    rd = round(hid * 0.25)
    expected = (
        2 * C  # LayerNorm
        + 2 * C * C + 2 * C  # W_q, W_k with biases
        + C * hid + hid  # MLP_e with bias
        + k * k * hid + 2 * hid  # DW-conv (no bias) + BN
        + hid * rd + rd + rd * hid + hid  # squeeze-excitation
        + hid * C  # MLP_s, no bias
    )
    assert count_params(blk) == expected
    assert count_params(blk.qk) + count_params(blk.v) == ewmhsa_cost(C, hid, 14, 7).params


@pytest.mark.parametrize("layout", ["grid", "block"])
@pytest.mark.parametrize("C,lam,size,w,heads",
                         [(32, 3, 14, 7, 4), (48, 4, 9, 4, 3), (16, 2, 8, 8, 2), (16, 2, 5, 7, 2)])
@pytest.mark.parametrize("attn_before_mlp_e", [True, False])
def test_ewmhsa_formula_matches_measurement(layout, C, lam, size, w, heads, attn_before_mlp_e):
    blk = iRMB(C, C, exp_ratio=lam, has_attn=True, num_heads=heads, window_size=w, window_layout=layout,
               has_dw=False, norm_layer=None, has_skip=False, attn_before_mlp_e=attn_before_mlp_e)
    blk.proj = nn.Identity()  # measure Q/K, attention and MLP_e only
    cost = ewmhsa_cost(C, C * lam, size, w, attn_before_mlp_e=attn_before_mlp_e)
    assert count_flops(blk, (1, C, size, size), "macs") == cost.macs
    set_attention(blk, reference_order=True)  # the reference order also projects the padded pixels
    padded = ewmhsa_cost(C, C * lam, size, w, attn_before_mlp_e=attn_before_mlp_e, project_padding=True)
    assert count_flops(blk, (1, C, size, size), "macs") == padded.macs


def test_drop_path_acts_per_sample_on_the_residual_branch():
    blk = randomize_(iRMB(16, 16, exp_ratio=2, drop_path_rate=0.5)).train()
    x = torch.randn(256, 16, 4, 4)
    y = blk(x)
    dropped = (y - x).flatten(1).abs().amax(1) == 0
    assert 0.3 < dropped.float().mean().item() < 0.7  # about half of the samples keep only x
    assert isinstance(iRMB(16, 24, stride=2, drop_path_rate=0.5).drop_path, nn.Identity)  # no skip, no drop path


def test_attention_map_is_kept_on_request():
    blk = iRMB(**ATTN, window_size=4, window_layout="grid")
    set_attention(blk, keep_attn=True)
    blk(torch.randn(2, 32, 8, 8))
    attn = blk.attn.last_attn
    assert attn.shape == (2 * 4, 4, 16, 16)  # (B·windows, heads, w², w²)
    torch.testing.assert_close(attn.sum(-1), torch.ones(8, 4, 16))


# ---- clear errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(in_chs=30, out_chs=30, has_attn=True, num_heads=4), r"dim=30 must be divisible by num_heads=4"),
        (dict(in_chs=32, out_chs=32, has_attn=True, dim_head=5), r"dim=32 must be divisible by dim_head=5"),
        (dict(in_chs=32, out_chs=32, exp_ratio=0), r"exp_ratio must be a positive number, got 0"),
        (dict(in_chs=32, out_chs=32, has_attn=True, num_heads=4, window_size=0), r"window_size must be a positive int"),
        (dict(in_chs=32, out_chs=32, has_attn=True, num_heads=4, window_layout="tiles"),
         r"window_layout must be one of"),
        (dict(in_chs=32, out_chs=32, has_attn=True, num_heads=4, op_order="conv_first"), r"op_order must be one of"),
        (dict(in_chs=32, out_chs=32, has_attn=True, num_heads=4, op_order="dw_attn"), r"needs attn_before_mlp_e=False"),
        (dict(in_chs=168, out_chs=168, exp_ratio=3.5, has_attn=True, dim_head=21, attn_before_mlp_e=False),
         r"mid_chs=588 divisible by num_heads=8"),
        (dict(in_chs=32, out_chs=48, stride=2, has_dw=False), r"stride=2 needs the DW-conv"),
        (dict(in_chs=32, out_chs=48, has_skip=True), r"has_skip=True needs stride=1 and in_chs == out_chs"),
        (dict(in_chs=32, out_chs=32, exp_ratio=2, v_proj=False), r"v_proj=False needs has_attn=False and exp_ratio=1"),
        (dict(in_chs=32, out_chs=32, exp_ratio=2, v_groups=3), r"in_chs=32 must be divisible by v_groups=3"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        iRMB(**kwargs)


def test_switching_to_an_impossible_order_is_refused():
    blk = iRMB(168, 168, exp_ratio=3.5, has_attn=True, dim_head=21)  # EMO-1M stage 4: 588 = 8 x 73.5
    with pytest.raises(ValueError, match="divisible by num_heads=8"):
        blk.attn_before_mlp_e = False


def test_bad_input_raises_clear_error():
    with pytest.raises(ValueError, match=r"iRMB expects 32 input channels, got 16"):
        iRMB(32, 32)(torch.randn(1, 16, 4, 4))

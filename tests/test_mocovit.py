"""MoSA, MoFFN, the Mobile Transformer Block and MoCoViT: the attention axis, the block equations,
the analytic counts, and the paper's Tables 1, 2, 3 and 6."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.complexity import (
    count_flops,
    count_params,
    mhsa_cost,
    mlp_cost,
    moffn_cost,
    mosa_cost,
    mtb_cost,
    transformer_block_cost,
)
from mobileblocks_edu.blocks.attention import FFN, MHSA, TransformerBlock, set_attention
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN, MoSA
from mobileblocks_edu.lab import on_meta, randomize_
from mobileblocks_edu.models.ghostnet import architecture_table
from mobileblocks_edu.models.mocovit import mtb_stages


def _permute_tokens(x, perm):  # reorder the H·W positions of (B, C, H, W), keep the shape
    B, C, H, W = x.shape
    return x.flatten(2)[:, :, perm].reshape(B, C, H, W)


def _rowwise_attention(v):
    """The axis of the public re-implementations: softmax(V Vᵀ) on (B, C, H, W) mixes the rows
    of each channel map, an (H x H) map per channel. Kept here as the negative control."""
    attn = (v @ v.transpose(-2, -1)).softmax(-1)  # (B, C, H, H)
    return attn @ v


# ---- MoSA: the attention axis -------------------------------------------------------------------


def test_mosa_attends_over_spatial_tokens():
    mosa = randomize_(MoSA(32, num_heads=4)).eval()
    v = torch.randn(2, 32, 5, 6)
    perm = torch.randperm(30)
    # permuting the H·W positions permutes the attention output the same way
    torch.testing.assert_close(mosa.attend(_permute_tokens(v, perm)), _permute_tokens(mosa.attend(v), perm))
    # ... which the row-wise "attention" does not satisfy
    assert not torch.allclose(_rowwise_attention(_permute_tokens(v, perm)),
                              _permute_tokens(_rowwise_attention(v), perm), atol=1e-3)
    set_attention(mosa, keep_attn=True)
    mosa(torch.randn(2, 32, 5, 6))
    assert mosa.attn.last_attn.shape == (2, 4, 30, 30)  # (B, heads, H·W, H·W)
    torch.testing.assert_close(mosa.attn.last_attn.sum(-1), torch.ones(2, 4, 30))


def test_mosa_equation_written_out():
    """MoSA(X) = Ghost_o(softmax(V Vᵀ/√d) V + DW(V)), V = Ghost_v(X), Q = K = V, per head."""
    mosa = randomize_(MoSA(24, num_heads=3)).eval()
    x = torch.randn(2, 24, 4, 5)
    v = mosa.v(x)  # (B, C, H, W)
    B, C, H, W = v.shape
    t = v.reshape(B, 3, C // 3, H * W).transpose(-2, -1)  # (B, heads, N, d)
    a = torch.softmax(t @ t.transpose(-2, -1) / math.sqrt(C // 3), dim=-1)  # (B, heads, N, N)
    att = (a @ t).transpose(-2, -1).reshape(B, C, H, W)
    torch.testing.assert_close(mosa(x), mosa.proj(att + mosa.refine(v)))


def test_mosa_fused_and_readable_paths_agree():
    mosa = randomize_(MoSA(40, num_heads=4)).eval()
    x = torch.randn(2, 40, 7, 7)
    fused = mosa(x)
    set_attention(mosa, keep_attn=True)  # readable path
    torch.testing.assert_close(mosa(x), fused, atol=1e-4, rtol=1e-4)
    assert mosa.attn.last_attn is not None


def test_mosa_parameters_and_errors():
    assert count_params(MoSA(160)) == 13_840 + 1_760 + 13_840  # Ghost V, DW 3x3 + BN, Ghost O
    assert count_params(MoSA(160, out_proj=False)) == 13_840 + 1_760
    with pytest.raises(ValueError, match="dim=30 must be divisible by num_heads=4"):
        MoSA(30, num_heads=4)
    with pytest.raises(ValueError, match="MoSA expects 32 input channels, got 16"):
        MoSA(32)(torch.randn(1, 16, 4, 4))


# ---- MoFFN and the MTB ----------------------------------------------------------------------------


def test_moffn_is_ghost_se_ghost():
    ffn = randomize_(MoFFN(16, 48, se_ratio=0.25)).eval()
    x = torch.randn(2, 16, 5, 5)
    h = ffn.ghost1(x)
    h = h * F.hardsigmoid(ffn.se.conv_expand(F.relu(ffn.se.conv_reduce(h.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(ffn(x), ffn.ghost2(h))
    assert count_params(MoFFN(160, 960)) == 160_880
    assert count_params(MoFFN(160, 960, se_ratio=0.25)) == 622_880
    assert isinstance(ffn.ghost1.primary_conv.act, nn.ReLU) and isinstance(ffn.ghost2.primary_conv.act, nn.Identity)


def test_mtb_two_residuals_no_layernorm():
    mtb = randomize_(MobileTransformerBlock(16, 48, se_ratio=0.25)).eval()
    x = torch.randn(2, 16, 4, 4)
    x1 = x + mtb.attn(x)
    torch.testing.assert_close(mtb(x), x1 + mtb.ffn(x1))
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    norms = {type(m) for m in mtb.modules() if isinstance(m, norm_types)}
    assert norms == {nn.BatchNorm2d}  # BN inside the Ghost modules, no LayerNorm
    acts = {type(m) for m in mtb.modules() if isinstance(m, (nn.ReLU, nn.GELU, nn.Hardsigmoid, nn.SiLU))}
    assert acts == {nn.ReLU, nn.Hardsigmoid}


def test_mtb_adds_each_residual_once():
    """A zero branch leaves the input unchanged: no residual is added twice."""
    mtb = randomize_(MobileTransformerBlock(16, 48)).eval()
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        for g in (mtb.attn.proj, mtb.ffn.ghost2):  # zero the last BN of both branches
            for m in (g.primary_conv.norm, g.cheap_operation.norm):
                m.weight.zero_()
                m.bias.zero_()
    torch.testing.assert_close(mtb(x), x)


# ---- analytic counts against measurement ------------------------------------------------------------


@pytest.mark.parametrize("dim,hidden", [(160, 960), (24, 72), (40, 120)])
@pytest.mark.parametrize("hw", [(7, 7), (5, 9)])
def test_formulas_match_measurement(dim, hidden, hw):
    shape = (1, dim, *hw)
    with torch.device("meta"):  # counting needs shapes only
        cases = _formula_cases(dim, hidden, hw)
    for cost, module in cases:
        assert cost.params == count_params(module), type(module).__name__
        assert cost.macs == count_flops(module, shape, "macs"), type(module).__name__
        assert cost.linear_macs == count_flops(module, shape, "conv_linear"), type(module).__name__


def _formula_cases(dim, hidden, hw):
    return [
        (mosa_cost(dim, *hw), MoSA(dim)),
        (mosa_cost(dim, *hw, out_proj=False), MoSA(dim, out_proj=False)),
        (moffn_cost(dim, hidden, *hw), MoFFN(dim, hidden)),
        (moffn_cost(dim, hidden, *hw, se_ratio=0.25), MoFFN(dim, hidden, se_ratio=0.25)),
        (mtb_cost(dim, hidden, *hw, se_ratio=0.25), MobileTransformerBlock(dim, hidden, se_ratio=0.25)),
        (mhsa_cost(dim, *hw), MHSA(dim, num_heads=4)),
        (mlp_cost(dim, hidden, *hw), FFN(dim, hidden / dim)),
        (transformer_block_cost(dim, hidden, *hw), TransformerBlock(dim, 4, hidden / dim)),
    ]


def test_mosa_paper_formula_eq4():
    C, N = 160, 49
    assert mosa_cost(C, 7).paper_flops == N * C * C + 2 * N * N * C
    # the attention products are the same 2 N² C in vanilla attention and in MoSA
    assert mosa_cost(C, 7).macs - mosa_cost(C, 7).linear_macs == 2 * N * N * C
    assert mhsa_cost(C, 7).macs - mhsa_cost(C, 7).linear_macs == 2 * N * N * C


@pytest.mark.parametrize("size", [7, 14, 28, 56, 112])
def test_paper_ratios_3_6x_and_1_9x(size):
    """Fig. 3 and 4: 3.6x and 1.9x hold for the projections (no attention products, no SE)."""
    sa, mosa = mhsa_cost(160, size), mosa_cost(160, size)
    assert round((sa.linear_macs / mosa.linear_macs), 1) == 3.6
    assert round(mlp_cost(160, 960, size).macs / moffn_cost(160, 960, size).macs, 1) == 1.9


# Table 1 of the paper: one block, 160 channels, hidden 960 (M multiply-adds)
TABLE1 = {7: (20.1, 9.6), 14: (80.3, 37.3), 28: (321.2, 147.9), 56: (1285, 590.1), 112: (5140, 2361.6)}


@pytest.mark.parametrize("size", sorted(TABLE1))
def test_table1_vanilla_block_vs_mtb(size):
    vanilla_paper, mtb_paper = TABLE1[size]
    shape = (1, 160, size, size)
    vanilla = on_meta(TransformerBlock, 160, 4, 6.0)
    mtb = on_meta(MobileTransformerBlock, 160, 960, se_ratio=0.25)
    # the paper's numbers leave the attention products out: they grow 4x per doubling of the side
    assert abs(count_flops(vanilla, shape, "conv_linear") / 1e6 / vanilla_paper - 1) < 0.005
    assert abs(count_flops(mtb, shape, "conv_linear") / 1e6 / mtb_paper - 1) < 0.007
    assert count_flops(mtb, shape, "macs") - count_flops(mtb, shape, "conv_linear") == 2 * (size * size) ** 2 * 160


# ---- MoCoViT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,width_chs", [("mocovit_050", 80), ("mocovit_100", 160), ("mocovit_130", 208)])
def test_mocovit_counts_table3(name, width_chs):
    model = on_meta(name)
    ref = model.cfg.reference
    params = count_params(model)
    assert abs(params / ref["params"] - 1) < 0.01
    linear = count_flops(model, (1, 3, 224, 224), "conv_linear")
    macs = count_flops(model, (1, 3, 224, 224), "macs")
    assert abs(linear / ref["conv_linear"] - 1) < 0.005  # the paper's convention
    assert macs - linear == 4 * 2 * 49 * 49 * width_chs  # four MoSAs' attention products at 7x7
    assert abs(macs / ref["conv_linear"] - 1) < 0.035


def test_mocovit_100_is_ghostnet_with_four_mtbs():
    ghost, moco = on_meta("ghostnet_100"), on_meta("mocovit_100")
    assert count_params(moco) == 5_300_268
    replaced = sum(count_params(b) for b in ghost.stages[-1][1:])
    assert replaced == 2 * 160_880 + 2 * 622_880
    assert count_params(moco) == count_params(ghost) - replaced + 4 * 29_440 + 2 * 160_880 + 2 * 622_880
    assert abs(count_flops(moco, (1, 3, 224, 224), "macs") / 147e6 - 1) < 0.03


# Table 2 of the paper: (input side, input channels, operator, exp, out, stride)
TABLE2 = [
    (224, 3, "Conv2d 3x3", None, 16, 2), (112, 16, "G-bneck", 16, 16, 1), (112, 16, "G-bneck", 48, 24, 2),
    (56, 24, "G-bneck", 72, 24, 1), (56, 24, "G-bneck", 72, 40, 2), (28, 40, "G-bneck", 120, 40, 1),
    (28, 40, "G-bneck", 240, 80, 2), (14, 80, "G-bneck", 200, 80, 1), (14, 80, "G-bneck", 184, 80, 1),
    (14, 80, "G-bneck", 184, 80, 1), (14, 80, "G-bneck", 480, 112, 1), (14, 112, "G-bneck", 672, 112, 1),
    (14, 112, "G-bneck", 672, 160, 2), (7, 160, "MTB", 960, 160, 1), (7, 160, "MTB", 960, 160, 1),
    (7, 160, "MTB", 960, 160, 1), (7, 160, "MTB", 960, 160, 1), (7, 160, "Conv2d 1x1", None, 960, 1),
    (7, 960, "Avg-Pool", None, 960, None), (1, 960, "Conv2d 1x1", None, 1280, 1), (1, 1280, "FC", None, 1000, None),
]


def test_mocovit_architecture_is_table2():
    rows = architecture_table(mbe.create_model("mocovit_100"))
    got = [(r["input"][0], r["input"][2], r["operator"], r["exp"], r["out"], r["stride"]) for r in rows]
    assert got == TABLE2
    assert [r["se"] for r in rows if r["operator"] == "MTB"] == [False, True, False, True]


# Table 6 of the paper: MTBs in stage s -> (params M, FLOPs M)
TABLE6 = {1: (5.2, 149), 2: (5.2, 145), 3: (5.2, 144), 4: (5.2, 149), 5: (5.3, 147)}


@pytest.mark.parametrize("stage", sorted(TABLE6))
def test_table6_mtb_placement(stage):
    model = on_meta("mocovit_100", mtb_stage=stage)
    n_mtb = sum(isinstance(m, MobileTransformerBlock) for m in model.modules())
    assert n_mtb == {1: 1, 2: 1, 3: 1, 4: 4, 5: 4}[stage]
    params, flops = TABLE6[stage]
    assert abs(count_params(model) / 1e6 - params) < 0.05  # the paper rounds to 0.1M
    assert abs(count_flops(model, (1, 3, 224, 224), "conv_linear") / 1e6 / flops - 1) < 0.01


def test_mtb_stages_errors():
    with pytest.raises(ValueError, match="mtb_stage must be in 1..5"):
        mtb_stages(6)
    with pytest.raises(ValueError, match="num_heads must be a positive number"):
        mbe.create_model("mocovit_050", num_heads=0)


def test_keep_attn_and_fused_path_agree():
    model = randomize_(mbe.create_model("mocovit_100_cifar")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model(x)
        assert model.attention_maps() == [None] * 4
        set_attention(model, keep_attn=True)
        readable = model(x)
    torch.testing.assert_close(readable, fused, atol=1e-3, rtol=1e-4)
    maps = model.attention_maps()
    assert [tuple(a.shape) for a in maps] == [(2, 4, 16, 16)] * 4  # 4x4 = 16 tokens
    set_attention(model, keep_attn=False)
    assert model.attention_maps() == [None] * 4


def test_small_input_variants():
    model = mbe.create_model("mocovit_100_cifar").eval()
    assert model.num_classes == 10 and model.cfg.input_size == (3, 32, 32)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 960, 4, 4)
    ghost_cifar = on_meta("ghostnet_100_cifar")
    cifar = on_meta("mocovit_100_cifar")
    assert count_params(cifar) == count_params(ghost_cifar) + 4 * 29_440 == 4_013_934
    assert abs(count_flops(cifar, (1, 3, 32, 32), "macs") / 26.4e6 - 1) < 0.005  # the docstring's number
    imnette = on_meta("mocovit_100_imagenette")
    assert imnette.num_classes == 10 and imnette.cfg.input_size == (3, 128, 128)
    assert count_params(imnette) == 4_032_078
    assert [r["input"][0] for r in architecture_table(imnette, 128) if r["operator"] == "MTB"] == [4] * 4


def test_norm_ahead_moves_the_norm_out_of_mosa_and_moffn():
    """The paper's Table 8: "BN inside" (MoCoViT) against one pre-norm ahead of each part."""
    from mobileblocks_edu.blocks.layers import LayerNorm2d

    inside = MobileTransformerBlock(32, 64)
    ahead = MobileTransformerBlock(32, 64, norm_position="ahead")
    bn_ahead = MobileTransformerBlock(32, 64, norm_position="ahead", vanilla_norm="bn")
    assert isinstance(inside.norm1, nn.Identity) and isinstance(ahead.norm1, LayerNorm2d)
    assert isinstance(bn_ahead.norm2, nn.BatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ahead.attn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ahead.ffn.modules())
    assert all(m.bias is not None for m in ahead.modules() if isinstance(m, nn.Conv2d))  # no norm: a bias
    assert ahead(torch.randn(2, 32, 4, 4)).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="norm_position"):
        MobileTransformerBlock(32, 64, norm_position="after")

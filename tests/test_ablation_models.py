"""The switches and small models of the training lab's ablations: MoCoViT's Table 7 (vanilla
self-attention and MLP in the MTB) and the 0.5x small-input models."""
import pytest
import torch
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.complexity import count_params
from mobileblocks_edu.blocks.attention import FFN, MHSA, TransformerBlock
from mobileblocks_edu.blocks.layers import LayerNorm2d
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN, MoSA
from mobileblocks_edu.lab import randomize_


def test_vanilla_mtb_is_the_transformer_block():
    """attn_layer="mhsa" + ffn_layer="mlp" is the pre-norm Transformer block of attention.py."""
    mtb = randomize_(MobileTransformerBlock(16, 48, num_heads=4, se_ratio=0.25, attn_layer="mhsa",
                                            ffn_layer="mlp")).eval()
    ref = TransformerBlock(16, num_heads=4, mlp_ratio=3.0).eval()
    ref.load_state_dict({k.replace("ffn.", "mlp."): v for k, v in mtb.state_dict().items()})
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(mtb(x), ref(x))
    assert isinstance(mtb.norm1, LayerNorm2d) and isinstance(mtb.attn, MHSA) and isinstance(mtb.ffn, FFN)
    assert isinstance(mtb.ffn.act, nn.GELU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in mtb.modules())  # no SE, no Ghost BN
    # MHSA: 4(C + 1)C; MLP: 2 C hidden + hidden + C; two LayerNorms: 2 · 2C
    assert count_params(mtb) == 4 * 17 * 16 + (2 * 16 * 48 + 48 + 16) + 4 * 16


@pytest.mark.parametrize("attn_layer,ffn_layer", [("mhsa", "moffn"), ("mosa", "mlp")])
def test_mixed_blocks(attn_layer, ffn_layer):
    mtb = randomize_(MobileTransformerBlock(16, 48, se_ratio=0.25, attn_layer=attn_layer, ffn_layer=ffn_layer)).eval()
    x = torch.randn(2, 16, 4, 4)
    x1 = x + mtb.attn(mtb.norm1(x))
    torch.testing.assert_close(mtb(x), x1 + mtb.ffn(mtb.norm2(x1)))
    assert isinstance(mtb.attn, MHSA if attn_layer == "mhsa" else MoSA)
    assert isinstance(mtb.ffn, FFN if ffn_layer == "mlp" else MoFFN)
    assert isinstance(mtb.norm1, LayerNorm2d if attn_layer == "mhsa" else nn.Identity)  # MoSA: BN inside
    assert isinstance(mtb.norm2, LayerNorm2d if ffn_layer == "mlp" else nn.Identity)


def test_default_mtb_unchanged_and_bn_choice():
    mtb = MobileTransformerBlock(16, 48)
    assert isinstance(mtb.attn, MoSA) and isinstance(mtb.ffn, MoFFN)
    assert isinstance(mtb.norm1, nn.Identity) and isinstance(mtb.norm2, nn.Identity)
    bn = MobileTransformerBlock(16, 48, attn_layer="mhsa", ffn_layer="mlp", vanilla_norm="bn")
    assert isinstance(bn.norm1, nn.BatchNorm2d) and isinstance(bn.norm2, nn.BatchNorm2d)


@pytest.mark.parametrize("kwargs,message", [
    ({"attn_layer": "sa"}, "attn_layer must be one of"),
    ({"ffn_layer": "ffn"}, "ffn_layer must be one of"),
    ({"vanilla_norm": "gn"}, "vanilla_norm must be one of"),
])
def test_bad_switches_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileTransformerBlock(16, 48, **kwargs)
    with pytest.raises(ValueError, match=message):
        mbe.create_model("mocovit_050_cifar", **kwargs)


def _stage5(model):
    return list(model.stages[4])


def test_table7_models_differ_only_in_the_four_last_blocks():
    ghost = mbe.create_model("ghostnet_050_cifar")
    variants = {(a, f): mbe.create_model("mocovit_050_cifar", attn_layer=a, ffn_layer=f)
                for a in ("mhsa", "mosa") for f in ("mlp", "moffn")}
    ghost_rest = count_params(ghost) - sum(count_params(b) for b in _stage5(ghost)[1:])
    for (a, f), m in variants.items():
        mtbs = _stage5(m)[1:]
        assert len(mtbs) == 4 and all(isinstance(b, MobileTransformerBlock) for b in mtbs)
        assert all(b.attn_layer == a and b.ffn_layer == f for b in mtbs)
        assert all(b.dim == 80 for b in mtbs)  # 160 channels at width 0.5
        assert count_params(m) - sum(count_params(b) for b in mtbs) == ghost_rest
    # the default is MoCoViT: MoSA + MoFFN
    assert count_params(mbe.create_model("mocovit_050_cifar")) == count_params(variants["mosa", "moffn"])


def test_half_width_small_input_maps():
    for name in ("ghostnet_050_cifar", "mocovit_050_cifar"):
        m = mbe.create_model(name).eval()
        assert m.cfg.input_size == (3, 32, 32) and m.num_classes == 10
        with torch.no_grad():
            feats = m.forward_features(torch.randn(1, 3, 32, 32))
        assert feats.shape == (1, 480, 4, 4)  # 960 x 0.5 channels on the 4x4 map
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------ EMO Table 5 and operator order
def _emo_blocks(model):
    return [b for stage in model.stages()[1:] for b in stage]  # stages 1-4


def test_emo_dw_stages_remove_the_dw_conv_outside_the_downsampling_blocks():

    full = mbe.create_model("emo_1m_cifar")
    attn_only = mbe.create_model("emo_1m_cifar", dw_stages=[False] * 4)
    for bf, ba in zip(_emo_blocks(full), _emo_blocks(attn_only)):
        first = not bf.has_skip  # the first block of a stage: downsampling, no residual
        assert ba.has_dw == first and ba.has_attn == bf.has_attn
        if not first:
            assert isinstance(ba.conv_local, nn.Identity) and not ba.dw_skip
    # the parameters removed are exactly the DW-convs (+ BN) of the non-first blocks
    removed = sum(count_params(b.conv_local) for b in _emo_blocks(full) if b.has_skip)
    assert count_params(full) - count_params(attn_only) == removed > 0
    assert isinstance(attn_only.stage0[1].conv_local, type(full.stage0[1].conv_local))  # the stem block keeps its DW


def test_emo_identity_operator_is_an_mlp_block():
    ident = randomize_(mbe.create_model("emo_1m_cifar", attn_stages=[False] * 4, dw_stages=[False] * 4,
                                        norm_layers=["bn", "bn", "ln", "ln"],
                                        act_layers=["silu", "silu", "gelu", "gelu"])).eval()
    blk = ident.stage3[1]
    assert not blk.has_attn and not blk.has_dw
    x = torch.randn(2, blk.in_chs, 4, 4)
    torch.testing.assert_close(blk(x), x + blk.proj(blk.v(blk.norm(x))))  # F = identity
    assert ident(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_emo_operator_order_switch():
    kw = dict(attn_before_mlp_e=False, dim_heads=[16, 16, 20, 24])
    ref = randomize_(mbe.create_model("emo_1m_cifar", **kw)).eval()
    swapped = mbe.create_model("emo_1m_cifar", op_order="dw_attn", **kw).eval()
    swapped.load_state_dict(ref.state_dict())  # the same parameters: only the order differs
    attn_blocks = [b for b in _emo_blocks(swapped) if b.has_attn]
    assert attn_blocks and all(b.op_order == "dw_attn" for b in attn_blocks)
    blk_ref, blk = ref.stage3[1], swapped.stage3[1]
    x = torch.randn(2, blk.in_chs, 4, 4)
    xn = blk.norm(x)
    h = blk.local(blk.v(xn))  # DW-conv branch first, then EW-MHSA with it as the values
    torch.testing.assert_close(blk(x), x + blk.proj(blk.ew_mhsa(xn, values=h)))
    assert not torch.allclose(blk(x), blk_ref(x))
    with pytest.raises(ValueError, match="needs attn_before_mlp_e=False"):
        mbe.create_model("emo_1m_cifar", op_order="dw_attn")
    with pytest.raises(ValueError, match="op_order must be one of"):
        mbe.create_model("emo_1m_cifar", op_order="attn_first")
    with pytest.raises(ValueError, match="dw_stages needs one value per stage"):
        mbe.create_model("emo_1m_cifar", dw_stages=[False] * 3)

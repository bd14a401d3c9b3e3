"""Ghost modules, Ghost bottlenecks and GhostNet: equations, analytic counts, reference counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.complexity import (
    count_flops,
    count_params,
    flop_breakdown,
    ghost_module_cost,
    ghost_se_cost,
)
from mobileblocks_edu.blocks.ghost import GhostBottleneck, GhostModule
from mobileblocks_edu.lab import on_meta, randomize_
from mobileblocks_edu.models.ghostnet import architecture_table


def _bn(x, bn):  # eval-mode BatchNorm written out
    return (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps) * bn.weight[
        :, None, None
    ] + bn.bias[:, None, None]


@pytest.mark.parametrize("in_chs,out_chs,ratio", [(16, 32, 2), (24, 21, 2), (8, 30, 3)])
def test_ghost_module_is_primary_plus_cheap_ghosts(in_chs, out_chs, ratio):
    g = randomize_(GhostModule(in_chs, out_chs, ratio=ratio)).eval()
    x = torch.randn(2, in_chs, 7, 9)
    p, c = g.primary_conv, g.cheap_operation
    y1 = F.relu(_bn(F.conv2d(x, p.conv.weight), p.norm))  # m intrinsic maps
    m = y1.shape[1]
    assert m == -(-out_chs // ratio)
    y2 = F.relu(_bn(F.conv2d(y1, c.conv.weight, padding=1, groups=m), c.norm))  # s - 1 ghosts per map
    # ghost j of intrinsic map i depends on map i only (a depthwise filter)
    assert c.conv.weight.shape == (m * (ratio - 1), 1, 3, 3)
    torch.testing.assert_close(g(x), torch.cat([y1, y2], 1)[:, :out_chs])
    assert g(x).shape == (2, out_chs, 7, 9)


@pytest.mark.parametrize("in_chs,out_chs", [(16, 32), (160, 960), (960, 160), (24, 21)])
@pytest.mark.parametrize("hw", [(7, 7), (5, 9)])
def test_ghost_module_cost_matches_measurement(in_chs, out_chs, hw):
    g = GhostModule(in_chs, out_chs)
    c = ghost_module_cost(in_chs, out_chs, *hw)
    assert c.params == count_params(g)
    assert c.macs == c.linear_macs == count_flops(g, (1, in_chs, *hw), "macs")


def test_ghost_module_halves_a_pointwise_convolution():
    # Ghost 160 -> 960 against a 1x1 convolution: (160·480 + 9·480) / (160·960) ≈ 0.53
    g, conv = ghost_module_cost(160, 960, 7), 7 * 7 * 160 * 960
    assert 0.5 < g.macs / conv < 0.55


def test_bottleneck_shapes_and_shortcuts():
    x = torch.randn(2, 24, 14, 14)
    same = GhostBottleneck(24, 72, 24)
    assert isinstance(same.shortcut, nn.Identity) and same.has_skip
    assert same(x).shape == x.shape
    down = GhostBottleneck(24, 72, 40, dw_kernel_size=5, stride=2, se_ratio=0.25)
    assert down(x).shape == (2, 40, 7, 7) and not down.has_skip
    assert down.conv_dw.conv.stride == (2, 2) and down.conv_dw.conv.groups == 72
    assert down.se.conv_reduce.out_channels == 20  # make_divisible(72 / 4, 4)
    assert isinstance(down.se.gate, nn.Hardsigmoid)


def test_bottleneck_equation():
    b = randomize_(GhostBottleneck(24, 72, 40, dw_kernel_size=5, stride=2, se_ratio=0.25)).eval()
    x = torch.randn(2, 24, 14, 14)
    h = b.ghost1(x)
    h = b.conv_dw.norm(b.conv_dw.conv(h))  # no activation after the strided DW
    s = h.mean((2, 3), keepdim=True)
    h = h * F.hardsigmoid(b.se.conv_expand(F.relu(b.se.conv_reduce(s))))
    torch.testing.assert_close(b(x), b.shortcut(x) + b.ghost2(h))


def test_stage5_bottleneck_parameters():
    """The four 7x7x160 bottlenecks MoCoViT replaces: 160,880 parameters, 622,880 with SE."""
    assert count_params(GhostBottleneck(160, 960, 160, 5)) == 160_880
    se = GhostBottleneck(160, 960, 160, 5, se_ratio=0.25)
    assert count_params(se) == 622_880
    assert count_params(se.se) == ghost_se_cost(960).params


def test_bottleneck_errors():
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        GhostBottleneck(16, 32, 16, stride=3)
    with pytest.raises(ValueError, match="ratio must be an int >= 2"):
        GhostModule(16, 16, ratio=1)
    with pytest.raises(ValueError, match="expects 16 input channels, got 8"):
        GhostBottleneck(16, 32, 16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="expects a 4-D input"):
        GhostModule(16, 16)(torch.randn(16, 4, 4))


# ---- GhostNet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnet_100", "ghostnet_130"])
def test_ghostnet_reference_counts(name):
    model = on_meta(name)
    ref = model.cfg.reference
    assert count_params(model) == ref["params"]
    assert abs(count_flops(model, (1, 3, 224, 224), "macs") / ref["macs"] - 1) < 0.005
    # fvcore convention: BN in eval mode and the pooling before the classifier are counted; the
    # SE squeezes with a plain mean, which fvcore does not count (as in the reference model)
    bd = flop_breakdown(model, (1, 3, 224, 224), "fvcore")
    assert not any(op == "AdaptiveAvgPool2d" and mod.endswith(".se") for mod, op in bd)
    assert abs(sum(bd.values()) / ref["fvcore"] - 1) < 0.0005


def test_ghostnet_architecture_is_table1():
    rows = architecture_table(mbe.create_model("ghostnet_100"))
    blocks = [(r["input"][0], r["exp"], r["out"], r["se"], r["stride"]) for r in rows if r["operator"] == "G-bneck"]
    assert blocks == [
        (112, 16, 16, False, 1), (112, 48, 24, False, 2), (56, 72, 24, False, 1), (56, 72, 40, True, 2),
        (28, 120, 40, True, 1), (28, 240, 80, False, 2), (14, 200, 80, False, 1), (14, 184, 80, False, 1),
        (14, 184, 80, False, 1), (14, 480, 112, True, 1), (14, 672, 112, True, 1), (14, 672, 160, True, 2),
        (7, 960, 160, False, 1), (7, 960, 160, True, 1), (7, 960, 160, False, 1), (7, 960, 160, True, 1),
    ]
    assert [r["operator"] for r in rows[-4:]] == ["Conv2d 1x1", "Avg-Pool", "Conv2d 1x1", "FC"]
    assert rows[-4]["out"] == 960 and rows[-2]["out"] == 1280 and rows[-1]["out"] == 1000


def test_ghostnet_refuses_transformer_rows():
    from mobileblocks_edu.models.ghostnet import GhostNet
    from mobileblocks_edu.models.mocovit import MOCOVIT_STAGES

    with pytest.raises(ValueError, match="builds 'ghost' rows only"):
        GhostNet(stages=MOCOVIT_STAGES)


@pytest.mark.parametrize("name,size,final", [("ghostnet_100_cifar", 32, 4), ("ghostnet_100_imagenette", 128, 4)])
def test_small_input_variants(name, size, final):
    model = mbe.create_model(name).eval()
    assert model.num_classes == 10 and model.cfg.input_size == (3, size, size)
    x = torch.randn(1, 3, size, size)
    assert model.forward_features(x).shape == (1, 960, final, final)
    assert model(x).shape == (1, 10)


def test_cifar_variant_counts():
    full, small = on_meta("ghostnet_100", num_classes=10), on_meta("ghostnet_100_cifar")
    # the only change in the blocks: the first block of stage 5 has no strided 5x5 depthwise conv
    assert count_params(full) - count_params(small) == 672 * 25 + 2 * 672
    assert count_params(small) == 3_896_174
    assert [r["input"][0] for r in architecture_table(small, 32)[1:-3]] == [32] * 2 + [16] * 2 + [8] * 2 + [4] * 11
    assert abs(count_flops(small, (1, 3, 32, 32), "macs") / 24.2e6 - 1) < 0.005  # the docstring's number
    assert count_params(small.conv_head) == 960 * 1280 + 1280


def test_drop_path_rises_over_blocks_and_drops_whole_samples():
    model = mbe.create_model("ghostnet_050", num_classes=4, drop_path_rate=0.5)
    rates = [getattr(b.drop_path, "p", 0.0) for st in model.stages for b in st]
    assert rates[0] == 0.0 and rates[-1] == 0.5 and rates == sorted(rates)
    block = GhostBottleneck(8, 16, 8, drop_path_rate=0.5).train()
    x = torch.randn(64, 8, 3, 3)
    same = (block(x) - x).flatten(1).abs().amax(1) == 0  # dropped samples: identity shortcut only
    assert 0 < same.sum() < 64
    block.eval()
    assert not ((block(x) - x).flatten(1).abs().amax(1) == 0).any()


def test_block_fn_builds_the_rows():
    """GhostNet builds every row with its block factory: MoCoViT's factory on MoCoViT's rows is MoCoViT."""
    from functools import partial

    from mobileblocks_edu.models.ghostnet import GhostNet
    from mobileblocks_edu.models.mocovit import MOCOVIT_STAGES, mocovit_block

    with torch.device("meta"):
        net = GhostNet(width=0.5, stages=MOCOVIT_STAGES, block_fn=partial(mocovit_block, num_heads=2))
        moco = mbe.create_model("mocovit_050", num_heads=2)
    assert net.state_dict().keys() == moco.state_dict().keys()
    assert count_params(net) == count_params(moco)
    assert [r["operator"] for r in architecture_table(moco)].count("MTB") == 4

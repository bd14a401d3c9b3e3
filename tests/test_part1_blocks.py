"""Part I: the IRB, MHSA and FFN are instances of the Meta Mobile Block, weight for weight."""
import pytest
import torch

from mobileblocks_edu.analysis.complexity import count_params
from mobileblocks_edu.blocks.attention import (
    FFN,
    MHSA,
    TransformerBlock,
    attention_modules,
    set_attention,
    window_ids,
    window_partition,
    window_reverse,
)
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.layers import LayerNorm2d, make_divisible
from mobileblocks_edu.blocks.mmb import MetaMobileBlock
from mobileblocks_edu.lab import randomize_

ATOL = 1e-6


@pytest.mark.parametrize("exp_ratio,k", [(6, 3), (1, 3), (4, 5)])
def test_mmb_instantiates_irb(exp_ratio, k):
    irb = randomize_(InvertedResidual(24, 24, exp_ratio=exp_ratio, dw_kernel_size=k)).eval()
    mmb = MetaMobileBlock.from_module(irb).eval()
    x = torch.randn(2, 24, 9, 11)
    assert (mmb(x) - irb(x)).abs().max() <= ATOL
    assert count_params(mmb) == count_params(irb)


@pytest.mark.parametrize("mlp_ratio", [4.0, 2.0])
def test_mmb_instantiates_ffn(mlp_ratio):
    ffn, norm = randomize_(FFN(32, mlp_ratio)), randomize_(LayerNorm2d(32))
    mmb = MetaMobileBlock.from_module(ffn, norm)
    x = torch.randn(2, 32, 7, 7)
    assert (mmb(x) - (x + ffn(norm(x)))).abs().max() <= ATOL
    assert count_params(mmb) == count_params(ffn) + count_params(norm)


@pytest.mark.parametrize(
    "window_size,layout,hw",
    [(None, "block", (7, 9)), (4, "block", (8, 8)), (4, "grid", (8, 12)), (5, "grid", (7, 9)), (5, "block", (7, 9))],
)
@pytest.mark.parametrize("fused", [True, False])
def test_mmb_instantiates_mhsa(window_size, layout, hw, fused):
    mhsa = randomize_(MHSA(32, num_heads=4, window_size=window_size, window_layout=layout, fused=fused))
    norm = randomize_(LayerNorm2d(32))
    mmb = MetaMobileBlock.from_module(mhsa, norm)
    x = torch.randn(2, 32, *hw)
    assert (mmb(x) - (x + mhsa(norm(x)))).abs().max() <= ATOL
    assert count_params(mmb) == count_params(mhsa) + count_params(norm)
    assert mmb.exp_ratio == 1.0  # MHSA is MMB(λ = 1, F = attention)


def test_transformer_block_is_two_mmbs():
    blk = randomize_(TransformerBlock(32, num_heads=4, window_size=4))
    mmb_attn = MetaMobileBlock.from_module(blk.attn, blk.norm1)
    mmb_ffn = MetaMobileBlock.from_module(blk.mlp, blk.norm2)
    x = torch.randn(2, 32, 8, 8)
    assert (mmb_ffn(mmb_attn(x)) - blk(x)).abs().max() <= ATOL
    assert count_params(mmb_attn) + count_params(mmb_ffn) == count_params(blk)


def test_fused_and_readable_attention_agree():
    fused = randomize_(MHSA(48, dim_head=16, window_size=7, window_layout="grid"))
    manual = MHSA(48, dim_head=16, window_size=7, window_layout="grid", fused=False)
    manual.load_state_dict(fused.state_dict())
    x = torch.randn(2, 48, 14, 10)
    torch.testing.assert_close(fused(x), manual(x), atol=1e-5, rtol=1e-5)


def test_attention_map_is_kept_on_request():
    mhsa = MHSA(16, num_heads=2, window_size=4, fused=True)
    set_attention(mhsa, keep_attn=True)
    mhsa(torch.randn(1, 16, 8, 8))
    attn = mhsa.attn.last_attn
    assert attn.shape == (4, 2, 16, 16)  # 4 windows, 2 heads, 16 x 16 tokens
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, 2, 16))
    set_attention(mhsa, keep_attn=False)
    assert mhsa.attn.last_attn is None and not mhsa.attn.keep_attn


def test_set_attention_reaches_every_attention_module():
    from mobileblocks_edu.blocks.irmb import iRMB
    from mobileblocks_edu.blocks.mtb import MobileTransformerBlock

    model = torch.nn.Sequential(MHSA(16, 2), iRMB(16, 16, has_attn=True, num_heads=2, exp_ratio=2),
                                MobileTransformerBlock(16, 32, num_heads=2))
    cores = attention_modules(model)
    assert len(cores) == 3 and all(m.fused and not m.keep_attn for m in cores)
    assert set_attention(model, fused=False) is model
    assert all(not m.fused and not m.keep_attn for m in cores)
    set_attention(model, keep_attn=True, reference_order=True)
    assert all(not m.fused and m.keep_attn for m in cores) and model[1].reference_order
    model(torch.randn(1, 16, 8, 8))
    assert all(m.last_attn is not None for m in cores)
    with pytest.raises(ValueError, match="no attention module"):
        set_attention(torch.nn.Conv2d(3, 3, 1), fused=False)


@pytest.mark.parametrize("layout", ["block", "grid"])
def test_window_ids_follow_window_partition(layout):
    ids = window_ids(5, 6, 4, layout)  # padded to 8 x 8: 2 x 2 windows
    assert ids.shape == (8, 8) and (ids[5:] == -1).all() and (ids[:, 6:] == -1).all()
    x = torch.arange(30.0).view(1, 1, 5, 6) + 1  # 0 marks padding after the partition
    wins, _ = window_partition(x, 4, layout)  # (4, 1, 4, 4)
    for k, win in enumerate(wins):
        pixels = win.flatten()[win.flatten() > 0].long() - 1
        assert (ids[:5, :6].flatten()[pixels] == k).all()


@pytest.mark.parametrize("layout", ["block", "grid"])
@pytest.mark.parametrize("hw", [(8, 8), (7, 10)])
def test_window_partition_roundtrip(layout, hw):
    x = torch.randn(2, 3, *hw)
    windows, info = window_partition(x, 4, layout)
    assert windows.shape == (2 * 2 * 3 if hw == (7, 10) else 2 * 2 * 2, 3, 4, 4)
    assert torch.equal(window_reverse(windows, info), x)


def test_window_layouts_group_the_right_pixels():
    # an 8x8 map of pixel indices, windows of 4: block = contiguous tiles, grid = stride-2 lattices
    idx = torch.arange(64.0).view(1, 1, 8, 8)
    block, _ = window_partition(idx, 4, "block")
    grid, _ = window_partition(idx, 4, "grid")
    assert block[0, 0].flatten().tolist() == [r * 8 + c for r in range(4) for c in range(4)]
    assert grid[0, 0].flatten().tolist() == [r * 8 + c for r in range(0, 8, 2) for c in range(0, 8, 2)]
    assert grid[3, 0].flatten().tolist() == [r * 8 + c for r in range(1, 8, 2) for c in range(1, 8, 2)]


def test_make_divisible():
    assert make_divisible(37.5) == 40
    assert make_divisible(20, 8) == 24  # 16 would lose more than 10 %
    assert make_divisible(960 * 0.5, 4) == 480
    assert make_divisible(3, 8) == 8


# ---- clear errors that name the argument --------------------------------------------------------


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: MHSA(30, num_heads=4), r"dim=30 must be divisible by num_heads=4"),
        (lambda: MHSA(32, dim_head=5), r"dim=32 must be divisible by dim_head=5"),
        (lambda: MHSA(32, num_heads=4, window_size=0), r"window_size must be a positive int, got 0"),
        (lambda: MHSA(32, num_heads=4, window_size=3, window_layout="tiles"), r"window_layout must be one of"),
        (lambda: MetaMobileBlock(32, exp_ratio=0), r"exp_ratio must be a positive number, got 0"),
        (lambda: MetaMobileBlock.irb(32, exp_ratio=-1), r"exp_ratio must be a positive number, got -1"),
        (lambda: InvertedResidual(16, 16, exp_ratio=0), r"exp_ratio must be a positive number"),
        (lambda: FFN(16, mlp_ratio=0), r"mlp_ratio must be a positive number"),
        (lambda: InvertedResidual(16, 24, has_skip=True), r"has_skip=True needs stride=1 and in_chs == out_chs"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "module,x,match",
    [
        (MHSA(16, 2), torch.randn(2, 16), r"MHSA expects a 4-D input \(B, C, H, W\), got shape \(2, 16\)"),
        (MHSA(16, 2), torch.randn(1, 8, 4, 4), r"MHSA expects 16 input channels, got 8"),
        (FFN(16), torch.randn(16, 4, 4), r"FFN expects a 4-D input"),
        (InvertedResidual(8, 8), torch.randn(1, 8, 4), r"InvertedResidual expects a 4-D input"),
        (MetaMobileBlock.ffn(8), torch.randn(1, 4, 4, 4), r"MetaMobileBlock expects 8 input channels, got 4"),
    ],
)
def test_bad_inputs_raise_clear_errors(module, x, match):
    with pytest.raises(ValueError, match=match):
        module(x)


def test_from_module_refuses_what_is_not_an_mmb():
    with pytest.raises(ValueError, match="has_skip=True"):
        MetaMobileBlock.from_module(InvertedResidual(8, 16, stride=2))
    with pytest.raises(ValueError, match="pass its pre-norm"):
        MetaMobileBlock.from_module(FFN(8))
    with pytest.raises(TypeError, match="no MMB instantiation"):
        MetaMobileBlock.from_module(torch.nn.Conv2d(3, 3, 1))

"""Block diagrams read from the modules (``viz.trace_block``, ``viz.draw_block``): every block of
the library draws, the boxes stand for exactly the module's leaf layers, and the residual path is
drawn exactly when the block has one."""
import importlib

import matplotlib
import pytest
import torch
from torch import nn

from mobileblocks_edu import viz
from mobileblocks_edu.blocks.attention import FFN, MHSA, SpatialReductionAttention, TransformerBlock
from mobileblocks_edu.blocks.dyrelu import DyReLU
from mobileblocks_edu.blocks.ghost import GhostBottleneck, GhostModule
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.layers import ConvNormAct, LayerNorm2d, SqueezeExcite
from mobileblocks_edu.blocks.mmb import MetaMobileBlock
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN, MoSA

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

C, S = 32, 14
SHAPE = (1, C, S, S)
# Every module class the blocks package exports, with a small instance; the parts that take
# several tensors (Q, K, V) are drawn inside the blocks that call them.
SEVERAL_INPUTS = {"WindowAttention", "AttentionOperator"}
PASS_THROUGH = {"DropPath"}  # the identity in eval mode: nothing to draw
BLOCKS = {
    "ConvNormAct": lambda: ConvNormAct(C, C, 3),
    "LayerNorm2d": lambda: LayerNorm2d(C),
    "SqueezeExcite": lambda: SqueezeExcite(C),
    "DyReLU": lambda: DyReLU(C),
    "MHSA": lambda: MHSA(C, 4, window_size=7),
    "SpatialReductionAttention": lambda: SpatialReductionAttention(C, 2, sr_ratio=2),
    "FFN": lambda: FFN(C),
    "TransformerBlock": lambda: TransformerBlock(C, 4),
    "InvertedResidual": lambda: InvertedResidual(C, C),
    "MetaMobileBlock": lambda: MetaMobileBlock.irb(C),
    "iRMB": lambda: iRMB(C, C, exp_ratio=2, has_attn=True, num_heads=2, window_size=7, se_ratio=0.25),
    "GhostModule": lambda: GhostModule(C, 2 * C),
    "GhostBottleneck": lambda: GhostBottleneck(C, 2 * C, C, se_ratio=0.25),
    "MoSA": lambda: MoSA(C, 4),
    "MoFFN": lambda: MoFFN(C, 2 * C, se_ratio=0.25),
    "MobileTransformerBlock": lambda: MobileTransformerBlock(C, 2 * C),
}


def _exported_modules() -> set:
    names = set()
    for mod in ("layers", "attention", "dyrelu", "irb", "mmb", "irmb", "ghost", "mtb"):
        m = importlib.import_module(f"mobileblocks_edu.blocks.{mod}")
        names |= {n for n, v in vars(m).items() if isinstance(v, type) and issubclass(v, nn.Module)
                  and v.__module__ == m.__name__ and not n.startswith("_")}
    return names


def _leaves(module: nn.Module) -> set:
    passes = (nn.Identity, nn.Dropout)
    return {name for name, m in module.named_modules()
            if not list(m.children()) and not isinstance(m, passes) and type(m).__name__ not in PASS_THROUGH}


def test_every_exported_block_has_a_drawing_case():
    assert _exported_modules() - SEVERAL_INPUTS - PASS_THROUGH == set(BLOCKS)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_block_draws_and_its_boxes_are_its_leaves(name, one_thread):
    module = BLOCKS[name]()
    fig = viz.draw_block(module, SHAPE)
    d = fig.block_diagram
    plt.close(fig)
    assert d.leaves() == _leaves(module) or (not list(module.children()) and d.leaves() == {""})
    assert d.nodes[d.output].shape == tuple(module.eval()(torch.randn(SHAPE)).shape[1:])


@pytest.mark.parametrize("module, skip", [
    (InvertedResidual(C, C), True),
    (InvertedResidual(C, C, stride=2), False),
    (InvertedResidual(C, 2 * C), False),
    (iRMB(C, C, exp_ratio=2, has_attn=True, num_heads=2, window_size=7), True),
    (iRMB(C, 2 * C, exp_ratio=2, stride=2), False),
    (GhostBottleneck(C, 2 * C, C), True),
    (GhostBottleneck(C, 2 * C, 2 * C, stride=2), False),  # a convolution on the shortcut, not the identity
    (MetaMobileBlock.irb(C), True),
    (TransformerBlock(C, 4), True),
    (MobileTransformerBlock(C, 2 * C), True),
    (MHSA(C, 4), False),
    (MoSA(C, 4), False),
    (GhostModule(C, C), False),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v))
def test_the_residual_is_drawn_exactly_when_the_block_has_one(module, skip, one_thread):
    d = viz.trace_block(module, SHAPE)
    assert d.identity_skip is skip
    if hasattr(module, "has_skip"):
        assert module.has_skip is skip


def test_the_irb_reads_as_mobilenetv2_draws_it(one_thread):
    d = viz.trace_block(InvertedResidual(C, C, exp_ratio=6), SHAPE)
    assert d.labels() == ["PW-conv 1×1, BN, ReLU6", "DW-conv 3×3, BN, ReLU6", "PW-conv 1×1, BN"]
    assert [n.shape for n in d.nodes] == [(C, S, S), (6 * C, S, S), (6 * C, S, S), (C, S, S), (C, S, S)]
    assert d.residuals() == [(0, 4)]
    assert "stride 2" in viz.trace_block(InvertedResidual(C, C, stride=2), SHAPE).labels()[1]


def test_attention_shows_its_heads_and_windows(one_thread):
    d = viz.trace_block(MHSA(C, 4, window_size=7), SHAPE)
    attn = next(n for n in d.nodes if n.label.startswith("attention"))
    assert attn.info == {"heads": 4, "grid": (2, 2), "window": "7×7 windows", "map": (S, S)}
    glob = next(n for n in viz.trace_block(MHSA(C, 2), SHAPE).nodes if n.label.startswith("attention"))
    assert glob.info["grid"] == (1, 1) and glob.info["window"] == "global"


def test_the_ghost_module_joins_its_two_halves(one_thread):
    d = viz.trace_block(GhostModule(C, 2 * C), SHAPE)
    primary, cheap, cat = d.nodes[1:]
    assert primary.name == "primary_conv" and cheap.name == "cheap_operation"
    assert cat.kind == "cat" and cat.operands == (frozenset({1}), frozenset({2})) and cat.shape == (2 * C, S, S)


def test_the_irmb_cascade_attention_then_dw_with_its_inner_skip(one_thread):
    block = iRMB(C, C, exp_ratio=2, has_attn=True, num_heads=2, window_size=7)
    d = viz.trace_block(block, SHAPE)
    names = [n.name for n in d.nodes if n.kind == "layer"]
    assert names.index("attn") < names.index("conv_local") < names.index("proj")
    inner = [(s, j) for s, j in d.residuals() if s != 0]
    assert len(inner) == int(block.dw_skip)


def test_collapsed_modules_are_one_box_each(one_thread):
    block = MobileTransformerBlock(C, 2 * C, se_ratio=0.25)
    full, short = viz.trace_block(block, SHAPE), viz.trace_block(block, SHAPE, collapse=(GhostModule,))
    ghosts = [n for n in short.nodes if n.label == "GhostModule"]
    assert [n.name for n in ghosts] == ["attn.v", "attn.proj", "ffn.ghost1", "ffn.ghost2"]
    assert short.leaves() == full.leaves() and len(short.nodes) < len(full.nodes)
    assert short.identity_skip and len(short.residuals()) == 2


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="nn.Module"):
        viz.trace_block("irb", SHAPE)
    with pytest.raises(ValueError, match="input_shape"):
        viz.trace_block(InvertedResidual(C, C), (1, C, 0, S))
    with pytest.raises(ValueError, match="input_shape"):
        viz.trace_block(InvertedResidual(C, C), "1x32x14x14")
    with pytest.raises(TypeError, match="collapse"):
        viz.trace_block(InvertedResidual(C, C), SHAPE, collapse=("GhostModule",))

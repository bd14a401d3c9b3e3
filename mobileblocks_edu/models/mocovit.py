"""MoCoViT (Ma et al., 2022, arXiv:2205.12635): GhostNet with Mobile Transformer Blocks.

The architecture table (the paper's Table 2) is GhostNet 1.0x's with the last four Ghost
bottlenecks (7x7, 160 channels, hidden 960, stride 1) replaced by four Mobile Transformer
Blocks (:class:`~mobileblocks_edu.blocks.mtb.MobileTransformerBlock`). The paper fixes the skeleton and
the block equations; the open choices are made so that the counts match its Table 3:

========================  ==============================================================
choice                    made here, and why
========================  ==============================================================
MoSA output projection    a linear Ghost module 160 -> 160: with it MoSA costs 3.6x less
                          than vanilla self-attention (the paper's Fig. 3) and MoCoViT 1.0x
                          has 5,300,268 parameters (the paper: 5.3M)
activation after V        none (V, the output projection and the refiner are linear)
heads                     4 (every GhostNet width is a multiple of 4; free in the counts)
squeeze-excitation        in MTBs 2 and 4, like the Ghost bottlenecks they replace (SE in all
                          four would give 6.22M parameters)
activations               ReLU everywhere, hard-sigmoid SE gates (GhostNet's)
========================  ==============================================================

The paper's FLOPs are the multiply-adds of convolutions and linear layers: its Table 1 grows
linearly with H·W, so the attention matrix products (``2 N² C``) are not in it. This library's
``"macs"`` convention counts them, which adds 3.07M to MoCoViT 1.0x at 224x224.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import torch
from torch import nn

from ..blocks.mtb import ATTN_LAYERS, FFN_LAYERS, NORM_POSITIONS, VANILLA_NORMS, MobileTransformerBlock, MoSA
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_bool, check_choice, check_positive
from .ghostnet import GHOSTNET_STAGES, STEM_CHS, BlockCfg, GhostNet, ghost_block, small_input_stages
from .registry import register_model


def mtb_stages(
    mtb_stage: int = 5, stages: Sequence[Sequence[BlockCfg]] = GHOSTNET_STAGES
) -> tuple[tuple[BlockCfg, ...], ...]:
    """GhostNet's stages with Mobile Transformer Blocks in stage ``mtb_stage`` (1-5).

    Every block of that stage that keeps its width at stride 1 (the blocks with an identity
    shortcut, i.e. the ones a residual transformer block can replace) becomes an MTB with the
    same width, hidden width and squeeze-excitation. ``mtb_stage=5`` is MoCoViT (Table 2);
    1-4 are the placements of the paper's Table 6.
    """
    if isinstance(mtb_stage, bool) or not isinstance(mtb_stage, int) or mtb_stage not in range(1, len(stages) + 1):
        raise ValueError(f"mtb_stage must be in 1..{len(stages)}, got {mtb_stage!r}")
    out, in_out = [], STEM_CHS
    for s, cfgs in enumerate(stages, start=1):
        row = []
        for cfg in cfgs:
            can_replace = cfg.stride == 1 and cfg.out == in_out
            row.append(cfg._replace(block="mtb") if s == mtb_stage and can_replace else cfg)
            in_out = cfg.out
        out.append(tuple(row))
    return tuple(out)


MOCOVIT_STAGES = mtb_stages(5)


def mocovit_block(cfg: BlockCfg, in_chs: int, hidden: int, out_chs: int, drop_path_rate: float,
                  **mtb_kwargs) -> nn.Module:
    """MoCoViT's block factory: a Mobile Transformer Block for an ``"mtb"`` row (``mtb_kwargs`` go
    to :class:`~mobileblocks_edu.blocks.mtb.MobileTransformerBlock`), GhostNet's block for the others."""
    if cfg.block != "mtb":
        return ghost_block(cfg, in_chs, hidden, out_chs, drop_path_rate)
    if cfg.stride != 1 or in_chs != out_chs:
        raise ValueError(f"an MTB needs stride 1 and equal widths, got {cfg} with in_chs={in_chs}")
    return MobileTransformerBlock(out_chs, hidden, se_ratio=cfg.se_ratio, drop_path_rate=drop_path_rate, **mtb_kwargs)


class MoCoViT(GhostNet):
    """MoCoViT: the GhostNet skeleton with Mobile Transformer Blocks where the stage rows say
    ``block="mtb"``.

    Args:
        num_classes, width, stem_stride, num_features, drop_rate, drop_path_rate: as in
            :class:`~mobileblocks_edu.models.ghostnet.GhostNet`.
        stages: rows of ``BlockCfg``; defaults to the paper's Table 2 (MTBs in stage 5).
        num_heads: MoSA heads (4).
        out_proj: MoSA's output Ghost projection (True).
        fused: MoSA's fused attention kernel (True); ``set_attention(model, keep_attn=True)``
            (:func:`~mobileblocks_edu.blocks.attention.set_attention`) keeps every MoSA's attention map.
        attn_layer, ffn_layer, vanilla_norm: the parts of every MTB, for the paper's Table 7:
            ``"mosa"``/``"mhsa"`` (vanilla self-attention), ``"moffn"``/``"mlp"`` (vanilla MLP),
            and the vanilla parts' pre-norm ``"ln"``/``"bn"`` (see
            :class:`~mobileblocks_edu.blocks.mtb.MobileTransformerBlock`).
        norm_position: ``"inside"`` (BN inside MoSA and MoFFN) or ``"ahead"`` (one ``vanilla_norm``
            pre-norm ahead of each), the paper's Table 8.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        stages: Sequence[Sequence[BlockCfg]] = MOCOVIT_STAGES,
        num_heads: int = 4,
        out_proj: bool = True,
        fused: bool = True,
        attn_layer: str = "mosa",
        ffn_layer: str = "moffn",
        vanilla_norm: str = "ln",
        norm_position: str = "inside",
        **kwargs,
    ):
        check_positive("num_heads", num_heads, int)
        check_bool("out_proj", out_proj)
        check_bool("fused", fused)
        check_choice("attn_layer", attn_layer, ATTN_LAYERS)
        check_choice("ffn_layer", ffn_layer, FFN_LAYERS)
        check_choice("vanilla_norm", vanilla_norm, tuple(VANILLA_NORMS))
        check_choice("norm_position", norm_position, NORM_POSITIONS)
        block_fn = partial(mocovit_block, num_heads=num_heads, out_proj=out_proj, fused=fused, attn_layer=attn_layer,
                           ffn_layer=ffn_layer, vanilla_norm=vanilla_norm, norm_position=norm_position)
        super().__init__(num_classes, width, stages, block_fn=block_fn, **kwargs)

    def mosa_modules(self) -> list[MoSA]:
        """Every MoSA of the network, in order."""
        return [m for m in self.modules() if isinstance(m, MoSA)]

    def attention_maps(self) -> list[Optional[torch.Tensor]]:
        """The attention maps kept by the last forward pass, one per MoSA (kept after
        ``set_attention(model, keep_attn=True)``)."""
        return [m.attn.last_attn for m in self.mosa_modules()]


# The paper's FLOPs are multiply-adds of convolutions and linear layers only (its Table 1 grows
# linearly with H·W): the reference key names that convention (``count_flops(..., "conv_linear")``).
_PAPER_NOTE = ("MoCoViT paper, Table 3 (FLOPs = multiply-adds of convolutions and linear layers, "
               "attention products not included)")


@register_model(
    reference={"params": 2.6e6, "conv_linear": 44e6},
    paper={"params": "2.6M", "flops": "44M", "top1": 67.6},
    source=_PAPER_NOTE,
)
def mocovit_050(num_classes: int = 1000, **kwargs) -> MoCoViT:
    """MoCoViT 0.5x at 224x224: GhostNet 0.5x with four MTBs (80 channels, hidden 480) at 7x7."""
    return MoCoViT(num_classes, width=0.5, **kwargs)


@register_model(
    reference={"params": 5.3e6, "conv_linear": 147e6},
    paper={"params": "5.3M", "flops": "147M", "top1": 74.5},
    source=_PAPER_NOTE,
)
def mocovit_100(num_classes: int = 1000, mtb_stage: int = 5, **kwargs) -> MoCoViT:
    """MoCoViT 1.0x at 224x224: GhostNet 1.0x with four MTBs (160 channels, hidden 960) at 7x7;
    5,300,268 parameters.

    ``mtb_stage`` (1-5) moves the MTBs to another stage, as in the paper's Table 6 (see
    :func:`mtb_stages`); 5 is MoCoViT.
    """
    return MoCoViT(num_classes, width=1.0, stages=mtb_stages(mtb_stage), **kwargs)


@register_model(
    reference={"params": 7.6e6, "conv_linear": 237e6},
    paper={"params": "7.6M", "flops": "237M", "top1": 76.1},
    source=_PAPER_NOTE,
)
def mocovit_130(num_classes: int = 1000, **kwargs) -> MoCoViT:
    """MoCoViT 1.3x at 224x224: GhostNet 1.3x with four MTBs (208 channels, hidden 1248) at 7x7."""
    return MoCoViT(num_classes, width=1.3, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="stem stride 1, first block of stage 5 at stride 1: maps 32, 16, 8, 4, 4; MoSA over 16 tokens")
def mocovit_100_cifar(num_classes: int = 10, **kwargs) -> MoCoViT:
    """MoCoViT 1.0x for 32x32 inputs (CIFAR-10), with the strides of ``ghostnet_100_cifar``.

    The stem and the first block of stage 5 run at stride 1, so the stages produce 32, 16, 8, 4
    and 4 pixels and the four MTBs attend over 4x4 = 16 tokens (49 at 224x224 in the ImageNet
    layout, which would leave a single token here). The two small-input models differ only in
    the last four blocks. 26.4M multiply-adds; 10 classes: 4,013,934 parameters, 1,230,080 of
    them in the 960 -> 1280 ``conv_head`` (``num_features`` shrinks it).
    """
    return MoCoViT(num_classes, width=1.0, stages=small_input_stages(MOCOVIT_STAGES), stem_stride=1, **kwargs)


@register_model(input_size=(3, 128, 128),
                notes="ImageNet layout unchanged: maps 64, 32, 16, 8, 4 at 128x128; MoSA over 16 tokens")
def mocovit_100_imagenette(num_classes: int = 10, **kwargs) -> MoCoViT:
    """MoCoViT 1.0x for the 10-class ImageNet subset (Imagenette) at 128x128.

    The ImageNet layout is kept: the stages produce 64, 32, 16, 8 and 4 pixels, so the MTBs
    attend over 4x4 = 16 tokens, as in ``mocovit_100_cifar``, and the model differs from
    ``ghostnet_100_imagenette`` only in its last four blocks. Same blocks as ``mocovit_100``;
    10 classes: 4,032,078 parameters.
    """
    return MoCoViT(num_classes, width=1.0, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="mocovit_050 with the strides of ghostnet_050_cifar: maps 32, 16, 8, 4, 4; MoSA over 16 tokens")
def mocovit_050_cifar(num_classes: int = 10, **kwargs) -> MoCoViT:
    """MoCoViT 0.5x for 32x32 inputs, the model of the paper's Table 7 (MoSA/MoFFN against
    vanilla self-attention and MLP, ``attn_layer``/``ffn_layer``) in the layout of
    ``mocovit_100_cifar``: stem and first block of stage 5 at stride 1, four MTBs of 80 channels
    (hidden 480) on the 4x4 map. It differs from ``ghostnet_050_cifar`` only in those four blocks.
    """
    return MoCoViT(num_classes, width=0.5, stages=small_input_stages(MOCOVIT_STAGES), stem_stride=1, **kwargs)

"""GhostNet (Han et al., CVPR 2020, arXiv:1911.11907), built from the library's Ghost bottleneck.

Table 1 of the paper: a 3x3 stride-2 stem, sixteen Ghost bottlenecks given as
(kernel, hidden, out, SE, stride), a 1x1 convolution to 960 channels, global average pooling, a
1x1 convolution to 1280 channels (with bias, ReLU), dropout and a linear classifier. Widths scale
with the multiplier and are rounded to multiples of 4.

The blocks are grouped into five *stages* by the resolution they produce (112, 56, 28, 14 and
7 pixels at 224x224), the stages MoCoViT's Table 6 refers to. The parameter counts equal those of
the widely used pytorch-image-models ``ghostnet_050/100/130`` (2,587,292 / 5,182,508 /
7,358,820); only the module names differ.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from ..blocks.ghost import GhostBottleneck
from ..blocks.layers import ConvNormAct, check_kernel, eval_mode, kaiming_init, make_divisible
from ..blocks.mtb import MobileTransformerBlock, MoFFN
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_num_classes, check_number, check_positive, check_rate, check_ratio
from ._base import Classifier
from .registry import register_model

STEM_CHS = 16  # stem output channels at width 1.0


class BlockCfg(NamedTuple):
    """One row of GhostNet's Table 1 (before the width multiplier).

    ``block`` names the block the row asks for: ``"ghost"`` (a Ghost bottleneck, what
    :func:`ghost_block` builds) or a name that another network's block factory reads (MoCoViT's
    builds ``"mtb"`` rows).
    """

    kernel: int
    hidden: int
    out: int
    se_ratio: float
    stride: int
    block: str = "ghost"


# A block factory: (row, input channels, hidden channels, output channels, drop-path rate) -> block
BlockFn = Callable[[BlockCfg, int, int, int, float], nn.Module]


def ghost_block(cfg: BlockCfg, in_chs: int, hidden: int, out_chs: int, drop_path_rate: float) -> GhostBottleneck:
    """GhostNet's block factory: a Ghost bottleneck for a ``"ghost"`` row (widths already scaled)."""
    if cfg.block != "ghost":
        raise ValueError(f"ghost_block builds 'ghost' rows only, got block={cfg.block!r}: "
                         "give the network a block_fn that builds it")
    return GhostBottleneck(in_chs, hidden, out_chs, cfg.kernel, cfg.stride, se_ratio=cfg.se_ratio,
                           drop_path_rate=drop_path_rate)


_B = BlockCfg
# Stages named by their output resolution at 224x224: 112, 56, 28, 14, 7.
GHOSTNET_STAGES: tuple[tuple[BlockCfg, ...], ...] = (
    (_B(3, 16, 16, 0, 1),),
    (_B(3, 48, 24, 0, 2), _B(3, 72, 24, 0, 1)),
    (_B(5, 72, 40, 0.25, 2), _B(5, 120, 40, 0.25, 1)),
    (_B(3, 240, 80, 0, 2), _B(3, 200, 80, 0, 1), _B(3, 184, 80, 0, 1), _B(3, 184, 80, 0, 1),
     _B(3, 480, 112, 0.25, 1), _B(3, 672, 112, 0.25, 1)),
    (_B(5, 672, 160, 0.25, 2), _B(5, 960, 160, 0, 1), _B(5, 960, 160, 0.25, 1), _B(5, 960, 160, 0, 1),
     _B(5, 960, 160, 0.25, 1)),
)


def small_input_stages(stages: Sequence[Sequence[BlockCfg]] = GHOSTNET_STAGES) -> tuple[tuple[BlockCfg, ...], ...]:
    """The stages with the first block of stage 5 at stride 1 (for 32x32 inputs, together with a
    stride-1 stem): the map shrinks 32 -> 16 -> 8 -> 4 and stage 5 keeps stage 4's 4x4 map,
    instead of ending at 1x1."""
    out = [tuple(s) for s in stages]
    out[4] = (out[4][0]._replace(stride=1),) + out[4][1:]
    return tuple(out)


def _check_row(where: str, cfg: BlockCfg) -> None:
    """Check one row of the stages: an odd kernel, positive widths, se_ratio >= 0, stride 1 or 2."""
    check_kernel(f"{where}.kernel", cfg.kernel)
    check_positive(f"{where}.hidden", cfg.hidden, int)
    check_positive(f"{where}.out", cfg.out, int)
    check_number(f"{where}.se_ratio", cfg.se_ratio, 0, why="0: no squeeze-excitation")
    if isinstance(cfg.stride, bool) or cfg.stride not in (1, 2):
        raise ValueError(f"{where}.stride must be 1 or 2, got {cfg.stride!r}")
    if not isinstance(cfg.block, str):
        raise ValueError(f"{where}.block must be a block name such as 'ghost' or 'mtb', got {cfg.block!r}")


class GhostNet(Classifier):
    """GhostNet.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pre-logits).
        width: channel multiplier; every width (except the 1280 of ``conv_head``) is
            ``make_divisible(c · width, 4)``.
        stages: rows of :class:`BlockCfg`, one tuple per stage; defaults to the paper's.
        stem_stride: stride of the 3x3 stem (2 for ImageNet, 1 for 32x32 inputs).
        num_features: channels of ``conv_head`` after pooling (1280).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, rising linearly over the blocks.
        block_fn: the block factory called for every row (:data:`BlockFn`); :func:`ghost_block`
            by default. MoCoViT passes one that builds Mobile Transformer Blocks for its rows.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        stages: Sequence[Sequence[BlockCfg]] = GHOSTNET_STAGES,
        stem_stride: int = 2,
        num_features: int = 1280,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        block_fn: BlockFn = ghost_block,
    ):
        super().__init__()
        check_ratio("width", width, why="the channel multiplier")
        check_num_classes(num_classes)
        check_positive("stem_stride", stem_stride, int)
        check_positive("num_features", num_features, int)
        check_rate("drop_rate", drop_rate)
        check_rate("drop_path_rate", drop_path_rate)
        self.num_classes, self.num_features, self.width = num_classes, num_features, width
        try:
            self.stage_cfgs = tuple(tuple(BlockCfg(*b) for b in s) for s in stages)
        except TypeError:
            raise ValueError("stages must be stages of rows (kernel, hidden, out, se_ratio, stride[, block]), "
                             f"got {stages!r}") from None
        if not self.stage_cfgs or not all(self.stage_cfgs):
            raise ValueError("stages must hold at least one stage, each with at least one block")
        for s, cfgs in enumerate(self.stage_cfgs):
            for b, cfg in enumerate(cfgs):
                _check_row(f"stages[{s}][{b}]", cfg)
        if not callable(block_fn):
            raise ValueError(f"block_fn must be a block factory (see BlockFn), got {block_fn!r}")
        stem_chs = make_divisible(STEM_CHS * width, 4)
        self.stem = ConvNormAct(3, stem_chs, 3, stem_stride)  # (B, 3, H, W) -> (B, 16w, H/2, W/2)
        n_blocks = sum(len(s) for s in self.stage_cfgs)
        stage_list, in_chs, i = [], stem_chs, 0
        for cfgs in self.stage_cfgs:
            blocks = []
            for cfg in cfgs:
                out_chs = make_divisible(cfg.out * width, 4)
                hidden = make_divisible(cfg.hidden * width, 4)
                dpr = drop_path_rate * i / max(1, n_blocks - 1)
                blocks.append(block_fn(cfg, in_chs, hidden, out_chs, dpr))
                in_chs, i = out_chs, i + 1
            stage_list.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_list)
        last_chs = make_divisible(self.stage_cfgs[-1][-1].hidden * width, 4)
        self.final_conv = ConvNormAct(in_chs, last_chs, 1)  # (B, 160w, h, w) -> (B, 960w, h, w)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(last_chs, num_features, 1, bias=True)  # on the pooled 1x1 map
        self.act = nn.ReLU()
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        kaiming_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))  # (B, 960w, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.conv_head(self.pool(x))).flatten(1)  # (B, 1280)
        return x if pre_logits else self.classifier(self.drop(x))

    def reset_classifier(self, num_classes: int) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.final_conv]


@register_model(
    reference={"params": 2_587_292, "macs": 42.33e6, "fvcore": 45.89e6},
    paper={"params": "2.6M", "flops": "42M", "top1": 66.2},
    source="GhostNet paper, Table 7; exact counts of the widely used pytorch-image-models ghostnet_050",
)
def ghostnet_050(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 0.5x at 224x224: 2,587,292 parameters, 42.33M multiply-adds."""
    return GhostNet(num_classes, width=0.5, **kwargs)


@register_model(
    reference={"params": 5_182_508, "macs": 141.15e6, "fvcore": 148.27e6},
    paper={"params": "5.2M", "flops": "141M", "top1": 73.9},
    source="GhostNet paper, Table 7; exact counts of the widely used pytorch-image-models ghostnet_100",
)
def ghostnet_100(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 1.0x at 224x224: 5,182,508 parameters, 141.15M multiply-adds."""
    return GhostNet(num_classes, width=1.0, **kwargs)


@register_model(
    reference={"params": 7_358_820, "macs": 227.00e6, "fvcore": 236.24e6},
    paper={"params": "7.3M", "flops": "226M", "top1": 75.7},
    source="GhostNet paper, Table 7; exact counts of the widely used pytorch-image-models ghostnet_130",
)
def ghostnet_130(num_classes: int = 1000, **kwargs) -> GhostNet:
    """GhostNet 1.3x at 224x224: 7,358,820 parameters, 227.00M multiply-adds."""
    return GhostNet(num_classes, width=1.3, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="stem stride 1, first block of stage 5 at stride 1: maps 32, 16, 8, 4, 4")
def ghostnet_100_cifar(num_classes: int = 10, **kwargs) -> GhostNet:
    """GhostNet 1.0x for 32x32 inputs (CIFAR-10).

    Two of the five stride-2 steps become stride 1: the stem and the first block of stage 5.
    The stages then produce 32, 16, 8, 4 and 4 pixels: the network sees a 32x32 image as the
    ImageNet layout sees a 64x64 one, and the last stage keeps a 4x4 map (the ImageNet layout
    would end at 1x1, where stage 5's 5x5 depthwise convolutions see mostly padding). Keeping
    the first two stride-2 steps instead (stride 1 in stage 5 rather than in stage 2) halves
    the multiply-adds at the same final map, which matters for training on a CPU: 24.2M.
    The blocks are those of ``ghostnet_100``, except that the first block of stage 5 loses its
    strided depthwise convolution (18,144 parameters). With 10 classes the model has 3,896,174
    parameters, 1,230,080 of them in the 960 -> 1280 ``conv_head`` (``num_features`` shrinks it).
    """
    return GhostNet(num_classes, width=1.0, stages=small_input_stages(), stem_stride=1, **kwargs)


@register_model(input_size=(3, 128, 128),
                notes="ImageNet layout unchanged: maps 64, 32, 16, 8, 4 at 128x128")
def ghostnet_100_imagenette(num_classes: int = 10, **kwargs) -> GhostNet:
    """GhostNet 1.0x for the 10-class ImageNet subset (Imagenette) at 128x128.

    The ImageNet layout is kept (five stride-2 steps): at 128 pixels the stages produce 64, 32,
    16, 8 and 4 pixels (47.5M multiply-adds, about a third of the 224x224 count), and the last
    stage works on 4x4 maps like ``ghostnet_100_cifar``'s. 128 pixels is
    also the size of the EMO Imagenette variant, so the training lab compares them at equal
    input. Same blocks as ``ghostnet_100``; 10 classes: 3,914,318 parameters. The network accepts
    other sizes too (multiples of 32 keep every map whole).
    """
    return GhostNet(num_classes, width=1.0, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="ghostnet_050 with the strides of ghostnet_100_cifar: maps 32, 16, 8, 4, 4")
def ghostnet_050_cifar(num_classes: int = 10, **kwargs) -> GhostNet:
    """GhostNet 0.5x for 32x32 inputs, the baseline of MoCoViT's Table 7 at small scale: the
    layout of ``ghostnet_100_cifar`` (stem and first block of stage 5 at stride 1) with every
    width halved (rounded to multiples of 4); ``conv_head`` keeps its 1280 channels."""
    return GhostNet(num_classes, width=0.5, stages=small_input_stages(), stem_stride=1, **kwargs)


# --- Architecture tables read off built models: GhostNet's Table 1 and MoCoViT's Table 2. One row per layer, with
# the shapes a forward pass actually produces, so a table cannot drift from the code; the block type decides the
# row's name and what ``exp`` and ``se`` mean.


def block_row(blk: nn.Module) -> tuple[str, dict]:
    """``(operator, info)`` of one block of the GhostNet skeleton: its name in the papers' tables,
    its hidden channels (``exp``), whether it has squeeze-excitation and its stride."""
    if isinstance(blk, GhostBottleneck):
        return "G-bneck", {"exp": blk.mid_chs, "se": not isinstance(blk.se, nn.Identity), "stride": blk.stride}
    if isinstance(blk, MobileTransformerBlock):
        ffn = blk.ffn
        if isinstance(ffn, MoFFN):
            return "MTB", {"exp": ffn.mid_chs, "se": not isinstance(ffn.se, nn.Identity), "stride": 1}
        return "MTB", {"exp": ffn.fc1.out_channels, "se": False, "stride": 1}  # the vanilla MLP
    raise ValueError(f"no table row for a {type(blk).__name__}")


def _input_output_shapes(model: GhostNet, modules: list[nn.Module], img_size: int) -> list[tuple[tuple, tuple]]:
    """``(input shape, output shape)`` of each module in one eval-mode forward pass of a
    ``(1, 3, img_size, img_size)`` zero image."""
    shapes: list = [None] * len(modules)

    def hook(k):
        return lambda m, inp, out: shapes.__setitem__(k, (tuple(inp[0].shape), tuple(out.shape)))

    handles = [m.register_forward_hook(hook(k)) for k, m in enumerate(modules)]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size, device=model.stem.conv.weight.device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def architecture_table(model: GhostNet, img_size: int = 224) -> list[dict]:
    """The architecture table of a GhostNet or MoCoViT (GhostNet's Table 1, MoCoViT's Table 2),
    read off the built model by one forward pass (eval mode, no gradients) of a
    ``(1, 3, img_size, img_size)`` input: one dict per layer with ``input`` (H, W, C),
    ``operator``, ``exp`` (hidden channels or ``None``), ``out``, ``se`` and ``stride``."""
    layers: list[tuple[str, nn.Module, dict]] = [("Conv2d 3x3", model.stem, {"stride": model.stem.conv.stride[0]})]
    for blk in (b for stage in model.stages for b in stage):
        name, info = block_row(blk)
        layers.append((name, blk, info))
    layers += [("Conv2d 1x1", model.final_conv, {"stride": 1}), ("Avg-Pool", model.pool, {}),
               ("Conv2d 1x1", model.conv_head, {"stride": 1}), ("FC", model.classifier, {})]
    shapes = _input_output_shapes(model, [m for _, m, _ in layers], img_size)
    rows = []
    for (name, _, info), (i_shape, o_shape) in zip(layers, shapes):
        hw = i_shape[2:] if len(i_shape) == 4 else (1, 1)
        rows.append({"input": (*hw, i_shape[1]), "operator": name, "exp": info.get("exp"),
                     "out": o_shape[1], "se": info.get("se", False), "stride": info.get("stride")})
    return rows

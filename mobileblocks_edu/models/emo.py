"""EMO, the Efficient MOdel built only from iRMBs (Zhang et al., ICCV 2023, arXiv:2301.01146,
Sec. 2.4, Table 4), laid out exactly like the reference network behind the published numbers.

A 3x3 stem (stride 2, with bias, BN, no activation) and a stem iRMB (DW-conv + SE, no
residual), then four stages of iRMBs. The first block of every stage downsamples (DW-conv
stride 2) with an expansion of *twice* the stage's ratio applied to its input channels, and has
no residual and no attention; the other blocks carry the residual, the inner DW skip, and, in
the attention stages, EW-MHSA in 7x7 interleaved ("grid") windows. Head: LayerNorm2d, global
mean, linear. Stages 1-2 use BN + SiLU, stages 3-4 LN + GELU; the DW-conv always has BN + SiLU.

The parameter names equal the reference implementation's (``stage0.0.convs.0.0.weight``,
``stage3.1.qk.conv.weight``, ``norm.norm.weight``, ``head.weight``, ...), so the authors'
checkpoints load with :func:`mobileblocks_edu.load_checkpoint`. Counts at 224x224 with 1000
classes (fvcore convention): EMO-1M 1,361,168 / 260.84M, 2M 2,377,472 / 439.36M,
5M 5,108,848 / 902.58M, 6M 6,168,496 / 960.75M.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..blocks.attention import WINDOW_LAYOUTS, TransformerBlock
from ..blocks.irmb import OP_ORDERS, batchnorm2d, iRMB
from ..blocks.layers import LayerFactory, LayerNorm2d, check_factory, check_kernel, trunc_normal_init
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_bool, check_choice, check_divisible, check_num_classes, check_positive, check_rate, check_ratio
from ._base import Classifier
from .registry import register_model

NORM_LAYERS = {"bn": batchnorm2d, "ln": LayerNorm2d}
ACT_LAYERS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}

# Table 4 of the paper plus what the reference network adds (dim_head, drop path; EMO-6M)
EMO_CONFIGS = {
    "emo_1m": dict(depths=(2, 2, 8, 3), embed_dims=(32, 48, 80, 168), exp_ratios=(2.0, 2.5, 3.0, 3.5),
                   dim_heads=(16, 16, 20, 21), drop_path_rate=0.04036),
    "emo_2m": dict(depths=(3, 3, 9, 3), embed_dims=(32, 48, 120, 200), exp_ratios=(2.0, 2.5, 3.0, 3.5),
                   dim_heads=(16, 16, 20, 20), drop_path_rate=0.05),
    "emo_5m": dict(depths=(3, 3, 9, 3), embed_dims=(48, 72, 160, 288), exp_ratios=(2.0, 3.0, 4.0, 4.0),
                   dim_heads=(24, 24, 32, 32), drop_path_rate=0.05),
    "emo_6m": dict(depths=(3, 3, 9, 3), embed_dims=(48, 72, 160, 320), exp_ratios=(2.0, 3.0, 4.0, 5.0),
                   dim_heads=(16, 24, 20, 32), drop_path_rate=0.05),
}

Spec = Union[str, LayerFactory]


def _layer(spec: Spec, table: dict, what: str) -> LayerFactory:
    if isinstance(spec, str):
        if spec not in table:
            raise ValueError(f"{what} must be one of {sorted(table)} or a layer factory, got {spec!r}")
        return table[spec]
    check_factory(what, spec)
    return spec


def _per_stage(name: str, value, n: int = 4) -> tuple:
    value = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
    if len(value) != n:
        raise ValueError(f"{name} needs one value per stage ({n}), got {len(value)}: {value!r}")
    return value


def _check_stages(st: dict) -> None:
    """Check the per-stage settings (four values each) with their names, e.g. ``exp_ratios[2]``."""
    for i in range(4):
        for name in ("depths", "embed_dims", "stage_strides"):
            check_positive(f"{name}[{i}]", st[name][i], int)
        check_ratio(f"exp_ratios[{i}]", st["exp_ratios"][i], 1, "the hidden width is exp_ratio x dim")
        check_kernel(f"dw_kernel_sizes[{i}]", st["dw_kernel_sizes"][i])
        for name in ("attn_stages", "dw_stages"):
            check_bool(f"{name}[{i}]", st[name][i])
        window = st["window_sizes"][i]
        if window is not None:
            check_positive(f"window_sizes[{i}]", window, int)
        if st["attn_stages"][i]:
            check_positive(f"dim_heads[{i}]", st["dim_heads"][i], int)
            check_divisible(f"embed_dims[{i}]", st["embed_dims"][i], f"dim_heads[{i}]", st["dim_heads"][i])


def _stage_blocks(stage: dict, in_chs: int, drop_path_rates: Sequence[float], attn_kwargs: dict,
                  paths: dict) -> list[iRMB]:
    """The iRMBs of one stage. ``stage`` holds one value of every per-stage setting (``depths``,
    ``embed_dims``, ...); ``attn_kwargs`` the attention settings of the stage's attention blocks."""
    blocks = []
    for j, rate in enumerate(drop_path_rates):
        first = j == 0  # downsamples: stride, 2λ on its input channels, no residual, no attention
        attn = stage["attn_stages"] and not first
        block_attn = dict(attn_kwargs) if attn else dict(attn_kwargs, op_order="attn_dw", v_groups=1)
        blocks.append(iRMB(
            in_chs if first else stage["embed_dims"], stage["embed_dims"],
            stride=stage["stage_strides"] if first else 1,
            exp_ratio=stage["exp_ratios"] * (2 if first else 1),
            dw_kernel_size=stage["dw_kernel_sizes"],
            has_attn=attn,
            has_dw=stage["dw_stages"] or first,
            dim_head=stage["dim_heads"],
            window_size=stage["window_sizes"],
            norm_layer=stage["norm_layers"],
            act_layer=stage["act_layers"],
            has_skip=not first,
            drop_path_rate=rate,
            **block_attn, **paths,
        ))
    return blocks


class EMOStem(nn.Module):
    """3x3 convolution with bias (stride 2, padding 1), then BatchNorm; no activation.

    Kept as ``convs[0] = Sequential(conv, norm)``, the reference's multi-scale patch embedding
    with a single branch, so that the keys are ``convs.0.0.*`` and ``convs.0.1.*``.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2, norm_layer: LayerFactory = batchnorm2d):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=True),
                                                  norm_layer(out_chs))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)  # (B, 3, H, W) -> (B, stem_chs, H/s, W/s)


class EMO(Classifier):
    """EMO: stem, stem iRMB, four stages of iRMBs, LayerNorm2d + mean + linear head.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        depths: blocks per stage (the first block of each stage downsamples).
        embed_dims: channels per stage.
        exp_ratios: expansion λ per stage (the first block uses 2λ on its input channels).
        dim_heads: channels per attention head, per stage.
        attn_stages: which stages use EW-MHSA in their non-first blocks (stages 3-4).
        dw_stages: which stages keep the DW-conv in their non-first blocks (all). With
            ``False`` (and no attention) F is the identity there (the paper's Table 5); the
            first block of every stage keeps its DW-conv, which downsamples.
        op_order: order of F in the attention blocks: ``"attn_dw"`` (EW-MHSA, then DW-conv; the
            paper's default) or ``"dw_attn"`` (needs ``attn_before_mlp_e=False``; the paper's
            operator-order study).
        window_sizes: attention window per stage (``None``: global attention).
        window_layout: ``"grid"`` (the reference network) or ``"block"``.
        dw_kernel_sizes: DW-conv kernel per stage ([3, 3, 5, 5]).
        norm_layers: pre-norm per stage, ``"bn"``/``"ln"`` or a factory; the last one is also the
            head's norm. ``None`` (default) follows the paper's rule "LN + GELU are bound to EW-MHSA":
            LN in the stages with attention, BN in the others (BN, BN, LN, LN for the default stages).
        act_layers: MLP_e activation per stage, ``"silu"``/``"gelu"``/``"relu"`` or a factory;
            ``None``: GELU in the stages with attention, SiLU in the others.
        stem_chs: channels of the stem (24).
        stem_stride: stride of the stem convolution (2; 1 for small inputs).
        stage_strides: stride of each stage's first block (2, 2, 2, 2).
        drop_path_rate: stochastic depth, ``linspace(0, rate, sum(depths))`` over the stage blocks.
        attn_before_mlp_e: efficient order (the reference network) or the paper's order.
        v_groups: groups of MLP_e in the attention blocks (1 in the reference network).
        qk_bias: bias of the Q/K projection.
        reference_order: every iRMB in the readable reference-order path (True) or the fast path
            (False, the default); same function and weights (see :class:`~mobileblocks_edu.blocks.irmb.iRMB`).
        fused: the fast path's attention kernel, ``F.scaled_dot_product_attention`` (True) or
            the explicit softmax (False). Both switches can be flipped on a built model with
            :func:`~mobileblocks_edu.blocks.attention.set_attention`.
        channels_last: in the fast path, run the network in the channels-last memory format
            (convolutions, above all the depthwise ones, are much faster on CPUs).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 8, 3),
        embed_dims: Sequence[int] = (32, 48, 80, 168),
        exp_ratios: Sequence[float] = (2.0, 2.5, 3.0, 3.5),
        dim_heads: Sequence[int] = (16, 16, 20, 21),
        attn_stages: Sequence[bool] = (False, False, True, True),
        dw_stages: Sequence[bool] = (True, True, True, True),
        op_order: str = "attn_dw",
        window_sizes: Union[Optional[int], Sequence[Optional[int]]] = 7,
        window_layout: str = "grid",
        dw_kernel_sizes: Sequence[int] = (3, 3, 5, 5),
        norm_layers: Optional[Sequence[Spec]] = None,
        act_layers: Optional[Sequence[Spec]] = None,
        stem_chs: int = 24,
        stem_stride: int = 2,
        stage_strides: Sequence[int] = (2, 2, 2, 2),
        drop_path_rate: float = 0.05,
        attn_before_mlp_e: bool = True,
        v_groups: int = 1,
        qk_bias: bool = True,
        reference_order: bool = False,
        fused: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        if op_order not in OP_ORDERS:
            raise ValueError(f"op_order must be one of {OP_ORDERS}, got {op_order!r}")
        attn_stages = _per_stage("attn_stages", attn_stages)
        if norm_layers is None:  # "LN + GELU are bound to EW-MHSA"
            norm_layers = tuple("ln" if a else "bn" for a in attn_stages)
        if act_layers is None:
            act_layers = tuple("gelu" if a else "silu" for a in attn_stages)
        per_stage = dict(depths=depths, embed_dims=embed_dims, exp_ratios=exp_ratios, dim_heads=dim_heads,
                         attn_stages=attn_stages, dw_stages=dw_stages, window_sizes=window_sizes,
                         dw_kernel_sizes=dw_kernel_sizes, stage_strides=stage_strides,
                         norm_layers=norm_layers, act_layers=act_layers)
        st = {name: _per_stage(name, value) for name, value in per_stage.items()}  # name -> 4 values
        _check_stages(st)
        check_positive("stem_chs", stem_chs, int)
        check_positive("stem_stride", stem_stride, int)
        check_choice("window_layout", window_layout, WINDOW_LAYOUTS)
        check_positive("v_groups", v_groups, int)
        for name, value in (("attn_before_mlp_e", attn_before_mlp_e), ("qk_bias", qk_bias),
                            ("reference_order", reference_order), ("fused", fused), ("channels_last", channels_last)):
            check_bool(name, value)
        check_rate("drop_path_rate", drop_path_rate)
        check_num_classes(num_classes)
        st["norm_layers"] = [_layer(n, NORM_LAYERS, "norm_layers") for n in st["norm_layers"]]
        st["act_layers"] = [_layer(a, ACT_LAYERS, "act_layers") for a in st["act_layers"]]
        embed_dims = st["embed_dims"]
        self.num_classes, self.num_features = num_classes, embed_dims[-1]
        self.reference_order, self.channels_last = reference_order, channels_last
        paths = dict(reference_order=reference_order, fused=fused)

        # stage 0: stem conv (H/2) and a stem iRMB without pre-norm, MLP_e or residual, with SE
        self.stage0 = nn.ModuleList([
            EMOStem(3, stem_chs, stem_stride, st["norm_layers"][0]),
            iRMB(stem_chs, stem_chs, exp_ratio=1, dw_kernel_size=st["dw_kernel_sizes"][0], norm_layer=None,
                 act_layer=st["act_layers"][0], v_proj=False, se_ratio=1.0, has_skip=False, **paths),
        ])
        dprs = torch.linspace(0, drop_path_rate, sum(st["depths"]), device="cpu").tolist()
        attn_kwargs = dict(op_order=op_order, window_layout=window_layout, attn_before_mlp_e=attn_before_mlp_e,
                           v_groups=v_groups, qk_bias=qk_bias)
        in_chs = stem_chs
        for i in range(4):
            rates, dprs = dprs[:st["depths"][i]], dprs[st["depths"][i]:]
            blocks = _stage_blocks({k: v[i] for k, v in st.items()}, in_chs, rates, attn_kwargs, paths)
            setattr(self, f"stage{i + 1}", nn.ModuleList(blocks))
            in_chs = embed_dims[i]
        self.norm = st["norm_layers"][-1](embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_init(self)

    def stages(self) -> list[nn.ModuleList]:
        """``[stage0, stage1, ..., stage4]``."""
        return [getattr(self, f"stage{i}") for i in range(5)]

    def blocks(self) -> list[iRMB]:
        """Every iRMB in order: the stem block, then the blocks of stages 1-4."""
        return [m for m in self.modules() if isinstance(m, iRMB)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reference_order and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.stages():
            for blk in stage:
                x = blk(x)
        x = self.norm(x)  # (B, C_last, H/32, W/32): the map the head pools
        return x.contiguous() if self.reference_order else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # (B, C_last); a mean, as the reference (fvcore does not count it)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_init(self.head)

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.norm]


def _emo(variant: str, num_classes: int, **kwargs) -> EMO:
    cfg = {**EMO_CONFIGS[variant], **kwargs}
    return EMO(num_classes=num_classes, **cfg)


_SOURCE = "EMO paper (ICCV 2023) Table 7; exact counts of the reference implementation, fvcore convention at 224x224"


@register_model(
    reference={"params": 1_361_168, "fvcore": 260.84e6},
    paper={"params": "1.3M", "flops": "261M", "top1": 71.5},
    source=_SOURCE,
)
def emo_1m(num_classes: int = 1000, **kwargs) -> EMO:
    """EMO-1M: depths [2, 2, 8, 3], channels [32, 48, 80, 168], λ [2, 2.5, 3, 3.5]."""
    return _emo("emo_1m", num_classes, **kwargs)


@register_model(
    reference={"params": 2_377_472, "fvcore": 439.36e6},
    paper={"params": "2.3M", "flops": "439M", "top1": 75.1},
    source=_SOURCE,
)
def emo_2m(num_classes: int = 1000, **kwargs) -> EMO:
    """EMO-2M: depths [3, 3, 9, 3], channels [32, 48, 120, 200], λ [2, 2.5, 3, 3.5]."""
    return _emo("emo_2m", num_classes, **kwargs)


@register_model(
    reference={"params": 5_108_848, "fvcore": 902.58e6},
    paper={"params": "5.1M", "flops": "903M", "top1": 78.4},
    source=_SOURCE,
)
def emo_5m(num_classes: int = 1000, **kwargs) -> EMO:
    """EMO-5M: depths [3, 3, 9, 3], channels [48, 72, 160, 288], λ [2, 3, 4, 4]."""
    return _emo("emo_5m", num_classes, **kwargs)


@register_model(
    reference={"params": 6_168_496, "fvcore": 960.75e6},
    paper={"params": "6.1M", "flops": "961M", "top1": 79.0},
    source=_SOURCE,
)
def emo_6m(num_classes: int = 1000, **kwargs) -> EMO:
    """EMO-6M: EMO-5M with 320 channels and λ = 5 in stage 4 (dim_head [16, 24, 20, 32])."""
    return _emo("emo_6m", num_classes, **kwargs)


# ---- small-input variants ---------------------------------------------------------------------------

_CIFAR_LAYOUT = dict(stage_strides=(1, 2, 2, 2), window_sizes=(4, 4, 4, 2), drop_path_rate=0.05)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="EMO-1M for 32x32: stage 1 at stride 1 (maps 16, 16, 8, 4, 2), windows (4, 4, 4, 2), no padding")
def emo_1m_cifar(num_classes: int = 10, **kwargs) -> EMO:
    """EMO-1M for 32x32 inputs (CIFAR-10), 10 classes by default.

    Changes from the ImageNet layout (fvcore counts at 32x32, 10 classes):

    * The ImageNet layout downsamples 32 -> 16 (stem) -> 8 -> 4 -> 2 (stage 3) -> 1 (stage 4).
      Its 7x7 windows then hold 4 and 1 real pixels out of 49: the reference order costs 34.4M,
      six sevenths of it on padded pixels (the library's fast path skips them: 5.1M), and
      attention over 1 real pixel is not the identity: that pixel competes with 48 padded keys,
      so its output is ``α·v + (1 - α)·v_pad`` with ``α = e^z / (e^z + 48)`` (z its score
      relative to the padded keys' score), a data-dependent damping, ``α·v`` when the padded
      values are zero.
    * Here stage 1 keeps the stem's resolution (its first block has stride 1), so the maps are
      16 -> 16 -> 8 -> 4 -> 2: four downsamplings by 2 instead of five. The stem stays at
      stride 2 (a stride-1 stem, 32x32 maps, costs 20.6M and about 1.4x the training time).
    * Windows (4, 4, 4, 2) divide the stage maps (16, 8, 4, 2): no padding at all; stage-3
      attention is global over 4x4 = 16 pixels, stage 4 over 2x2.
    * 17.6M FLOPs; the parameters are EMO-1M's except the 10-class head.
    """
    return _emo("emo_1m", num_classes, **{**_CIFAR_LAYOUT, **kwargs})


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="EMO-5M for 32x32: stage 1 at stride 1 (maps 16, 16, 8, 4, 2), windows (4, 4, 4, 2), no padding")
def emo_5m_cifar(num_classes: int = 10, **kwargs) -> EMO:
    """EMO-5M for 32x32 inputs, with the layout of :func:`emo_1m_cifar` (stage-1 stride 1,
    windows (4, 4, 4, 2)): 69.1M FLOPs at 32x32, no padding (the ImageNet layout: 129.8M in
    the reference order, 17.9M on the fast path, with stages 3-4 at 2x2 and 1x1)."""
    return _emo("emo_5m", num_classes, **{**_CIFAR_LAYOUT, **kwargs})


@register_model(input_size=(3, 128, 128), notes="EMO-1M for 128x128: windows of 4 (maps 64, 32, 16, 8, 4), no padding")
def emo_1m_imagenette(num_classes: int = 10, **kwargs) -> EMO:
    """EMO-1M for 128x128 inputs (Imagenette, 10 ImageNet classes), 10 classes by default.

    The ImageNet layout unchanged except the window: w = 4 instead of 7. At 128x128 the stage
    maps are 32, 16, 8, 4, and w = 4 divides them all, giving exactly the window structure of
    224x224 with w = 7: stage 3 has 2x2 interleaved windows, stage 4 one global window.
    With w = 7, stages 3-4 (8x8 and 4x4) would be padded to 14x14 and 7x7 (133.3M in the
    reference order); with w = 4 the count is 82.4M and nothing is padded. (160x160 with w = 5
    also avoids padding, at 129.9M; 128 keeps the CPU training step cheaper.)
    """
    return _emo("emo_1m", num_classes, **{"window_sizes": 4, **kwargs})


# ---- EMO's Table 3: the iRMB in a columnar ViT ---------------------------------------------------

COLUMNAR_BLOCKS = ("transformer", "irmb")


class ColumnarViT(nn.Module):
    """DeiT-Tiny (Touvron et al., 2021) and the paper's Table 3 variant with iRMBs (λ = 4) in place
    of its Transformer blocks, for counting: a 16x16 patch embedding to ``dim`` channels, ``depth``
    blocks on the 14x14 tokens at 224x224, LayerNorm, a linear classifier.

    * ``block="transformer"``: DeiT's two-residual blocks (global MHSA, MLP ratio 4) on the
      sequence of the class token and the patches, held as a ``(B, C, 1, 1 + H·W)`` map (a 1x1
      convolution on it is DeiT's linear layer), with learned position embeddings; the class
      token feeds the classifier.
    * ``block="irmb"``: the paper's sentence "we set λ to 4 and replace standard Transformer
      structure" read as: one iRMB per Transformer block (global EW-MHSA in the efficient order,
      3x3 DW-conv, LayerNorm), on the 14x14 map (a DW-conv needs the map, so no class token),
      position embeddings kept, mean pooling before the classifier.
    """

    def __init__(self, block: str = "transformer", num_classes: int = 1000, dim: int = 192, depth: int = 12,
                 num_heads: int = 3, img_size: int = 224, patch_size: int = 16):
        super().__init__()
        check_choice("block", block, COLUMNAR_BLOCKS)
        check_num_classes(num_classes)
        for name, v in (("dim", dim), ("depth", depth), ("num_heads", num_heads), ("patch_size", patch_size)):
            check_positive(name, v, int)
        check_divisible("img_size", img_size, "patch_size", patch_size)
        side = img_size // patch_size
        self.block, self.num_classes, self.img_size = block, num_classes, img_size
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)  # (B, 3, H, W) -> (B, C, H/16, W/16)
        if block == "transformer":
            self.cls_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
            self.pos_embed = nn.Parameter(torch.zeros(1, dim, 1, 1 + side * side))
            self.blocks = nn.Sequential(*[TransformerBlock(dim, num_heads) for _ in range(depth)])
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, dim, side, side))
            self.blocks = nn.Sequential(*[iRMB(dim, dim, exp_ratio=4.0, has_attn=True, num_heads=num_heads,
                                               window_size=None, norm_layer=LayerNorm2d) for _ in range(depth)])
        self.norm = LayerNorm2d(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()
        trunc_normal_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[-2:]) != (self.img_size,) * 2:
            raise ValueError(f"ColumnarViT expects images (B, 3, {self.img_size}, {self.img_size}) (its position "
                             f"embeddings have a fixed size), got {getattr(x, 'shape', type(x).__name__)}")
        x = self.patch_embed(x)
        if self.block == "transformer":
            tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1, -1), x.flatten(2).unsqueeze(2)], dim=3)
            x = self.norm(self.blocks(tokens + self.pos_embed))
            return self.head(x[:, :, 0, 0])  # the class token
        x = self.norm(self.blocks(x + self.pos_embed))
        return self.head(x.mean((2, 3)))


# ---- EMO's Table 3: the iRMB in a pyramid ViT ----------------------------------------------------

PVT_IRMB_ATTENTION = ("reduced", "window", "global")


class PyramidViT(nn.Module):
    """PVT-Tiny (Wang et al., ICCV 2021, arXiv:2102.12122) and the paper's Table 3 variant with iRMBs
    (λ = 4) in place of its Transformer blocks, for counting. Four stages, each a patch embedding (a
    convolution of kernel = stride = 4, 2, 2, 2 and a LayerNorm), learned position embeddings and
    ``depths`` blocks; LayerNorm and a linear classifier at the end.

    * ``block="transformer"``: PVT's two-residual blocks with spatial-reduction attention
      (:class:`~mobileblocks_edu.blocks.attention.SpatialReductionAttention`, ratios 8, 4, 2, 1)
      and the MLP ratios of PVT's code (8, 8, 4, 4); the last stage runs on the class token and
      the 7x7 patches held as a ``(B, C, 1, 1 + 49)`` map, and the class token feeds the classifier.
    * ``block="irmb"``: one iRMB per Transformer block, on the maps (no class token, mean
      pooling), position embeddings kept. The paper does not say how the iRMB's attention treats
      PVT's spatial reduction; ``irmb_attention`` chooses: ``"reduced"`` (the default, the reading
      nearest the paper's counts: keys and values from the block's own ``R x R`` stride-R
      reduction, as in SRA), ``"window"`` (EMO's own 7x7 windows) or ``"global"`` (over all pixels).
    """

    def __init__(self, block: str = "transformer", num_classes: int = 1000,
                 embed_dims: Sequence[int] = (64, 128, 320, 512), depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (1, 2, 5, 8), mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 patch_sizes: Sequence[int] = (4, 2, 2, 2), irmb_attention: str = "reduced", img_size: int = 224):
        super().__init__()
        check_choice("block", block, COLUMNAR_BLOCKS)
        check_choice("irmb_attention", irmb_attention, PVT_IRMB_ATTENTION)
        check_num_classes(num_classes)
        st = {n: _per_stage(n, v) for n, v in dict(embed_dims=embed_dims, depths=depths, num_heads=num_heads,
                                                    mlp_ratios=mlp_ratios, sr_ratios=sr_ratios,
                                                    patch_sizes=patch_sizes).items()}
        for i in range(4):
            for n in ("embed_dims", "depths", "num_heads", "sr_ratios", "patch_sizes"):
                check_positive(f"{n}[{i}]", st[n][i], int)
        side = img_size
        for i, p in enumerate(st["patch_sizes"]):
            check_divisible(f"the map side before stage {i + 1}", side, f"patch_sizes[{i}]", p)
            side //= p
        self.block, self.num_classes, self.img_size = block, num_classes, img_size
        self.patch_embeds, self.stages, in_chs, side = nn.ModuleList(), nn.ModuleList(), 3, img_size
        pos = []
        for i in range(4):
            dim, side = st["embed_dims"][i], side // st["patch_sizes"][i]
            self.patch_embeds.append(nn.Sequential(nn.Conv2d(in_chs, dim, st["patch_sizes"][i], st["patch_sizes"][i]),
                                                   LayerNorm2d(dim)))  # (B, C_in, H, W) -> (B, C, H/p, W/p)
            last_seq = block == "transformer" and i == 3
            shape = (1, dim, 1, 1 + side * side) if last_seq else (1, dim, side, side)
            pos.append(nn.Parameter(torch.zeros(shape)))
            heads, sr = st["num_heads"][i], st["sr_ratios"][i]
            if block == "transformer":
                blocks = [TransformerBlock(dim, heads, st["mlp_ratios"][i], sr_ratio=sr)
                          for _ in range(st["depths"][i])]
            else:
                attn = dict(reduced=dict(window_size=None, sr_ratio=sr), window=dict(window_size=7),
                            **{"global": dict(window_size=None)})[irmb_attention]
                blocks = [iRMB(dim, dim, exp_ratio=4.0, has_attn=True, num_heads=heads, norm_layer=LayerNorm2d, **attn)
                          for _ in range(st["depths"][i])]
            self.stages.append(nn.Sequential(*blocks))
            in_chs = dim
        self.pos_embeds = nn.ParameterList(pos)
        if block == "transformer":
            self.cls_token = nn.Parameter(torch.zeros(1, in_chs, 1, 1))
        self.norm = LayerNorm2d(in_chs)
        self.head = nn.Linear(in_chs, num_classes) if num_classes else nn.Identity()
        trunc_normal_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[-2:]) != (self.img_size,) * 2:
            raise ValueError(f"PyramidViT expects images (B, 3, {self.img_size}, {self.img_size}) (its position "
                             f"embeddings have a fixed size), got {getattr(x, 'shape', type(x).__name__)}")
        for i, (embed, pos, stage) in enumerate(zip(self.patch_embeds, self.pos_embeds, self.stages)):
            x = embed(x)
            if i == 3 and self.block == "transformer":
                x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1, -1), x.flatten(2).unsqueeze(2)], dim=3)
                return self.head(self.norm(stage(x + pos))[:, :, 0, 0])  # the class token
            x = stage(x + pos)
        return self.head(self.norm(x).mean((2, 3)))

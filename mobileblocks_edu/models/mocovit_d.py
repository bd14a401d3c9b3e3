"""MoCoViT-D (Ma et al., 2022, arXiv:2205.12635, Sec. 3.3): MoCoViT with dynamic ReLU.

"The overall framework of the network is the same as MoCoViT. But we replace the ReLU activation
functions with dynamic ReLU both in the transformer block and CNN block." The paper says no more:
not the variant of dynamic ReLU, its pieces K or its reduction R, nor which ReLUs count. The
reading taken here (the MoCoViT-D lesson compares it with the other candidates against Table 3):

========================  ==============================================================
choice                    made here, and why
========================  ==============================================================
variant                   DY-ReLU-B (coefficients per channel), the one the dynamic ReLU
                          paper recommends for classification; with DY-ReLU-A (shared
                          coefficients) 0.5x / 1.0x have 3.26M / 6.63M parameters, far
                          below Table 3's 5.8M / 12.1M
pieces, ranges            K = 2, λ_a = 1.0, λ_b = 0.5 (the dynamic ReLU paper's)
reduction                 R = 4 (GhostNet's squeeze-excitation ratio): 5.82M / 11.91M
                          parameters at 0.5x / 1.0x (Table 3: 5.8M / 12.1M); R = 8 gives
                          4.2M / 8.6M
which ReLUs               every one: the stem, both convolutions of every Ghost module with
                          an activation (Ghost bottlenecks and MoFFNs), the reduction of every
                          squeeze-excitation, ``final_conv`` and the 1280-wide ``conv_head``;
                          the hard-sigmoid gates stay
========================  ==============================================================

The hyper-functions run on pooled vectors, so each of their parameters costs about one
multiply-add per image: the ``"conv_linear"`` FLOPs grow by about as much as the parameters
(1.0x: +6.6M of each), as in the paper's Table 3 (MoCoViT 1.0x 5.3M / 147M, MoCoViT-D 1.0x
12.1M / 154M). Applying the K lines (``K`` multiplications per element) is an activation and no
FLOP convention counts it.
"""
from __future__ import annotations

from torch import nn

from ..blocks.dyrelu import DYRELU_MODES, DyReLU
from ..blocks.layers import ConvNormAct, SqueezeExcite
from ..data.constants import CIFAR_MEAN, CIFAR_STD
from ..env import check_choice, check_positive
from .ghostnet import small_input_stages
from .mocovit import MOCOVIT_STAGES, MoCoViT
from .registry import register_model


def _relu_chs(parent: nn.Module, name: str) -> int:
    """Channels seen by the ReLU ``parent.<name>``, read off the layer before it."""
    if isinstance(parent, ConvNormAct):
        return parent.conv.out_channels
    if isinstance(parent, SqueezeExcite):
        return parent.conv_reduce.out_channels
    if isinstance(parent, MoCoViT) and name == "act":
        return parent.conv_head.out_channels
    raise ValueError(f"no rule for the channels of the ReLU {name!r} in {type(parent).__name__}")


def replace_relu(model: nn.Module, **dyrelu_kwargs) -> int:
    """Replace every ``nn.ReLU`` of ``model`` (outside dynamic ReLUs' own hyper-functions) by a
    :class:`~mobileblocks_edu.blocks.dyrelu.DyReLU` over the same channels; returns how many."""
    todo = [(parent, name) for parent in model.modules() if not isinstance(parent, DyReLU)
            for name, child in parent.named_children() if type(child) is nn.ReLU]
    for parent, name in todo:
        setattr(parent, name, DyReLU(_relu_chs(parent, name), **dyrelu_kwargs))
    return len(todo)


class MoCoViTD(MoCoViT):
    """MoCoViT-D: :class:`~mobileblocks_edu.models.mocovit.MoCoViT` with every ReLU replaced by
    dynamic ReLU (see the module docstring for the reading).

    Args:
        dyrelu_k, dyrelu_reduction, dyrelu_mode: K, R and the variant (``"b"``/``"a"``) of every
            :class:`~mobileblocks_edu.blocks.dyrelu.DyReLU`.
        everything else: as :class:`~mobileblocks_edu.models.mocovit.MoCoViT`.
    """

    def __init__(self, *args, dyrelu_k: int = 2, dyrelu_reduction: int = 4, dyrelu_mode: str = "b", **kwargs):
        check_positive("dyrelu_k", dyrelu_k, int)
        check_positive("dyrelu_reduction", dyrelu_reduction, int)
        check_choice("dyrelu_mode", dyrelu_mode, DYRELU_MODES)
        super().__init__(*args, **kwargs)
        self.dyrelu_cfg = {"k": dyrelu_k, "reduction": dyrelu_reduction, "mode": dyrelu_mode}
        self.num_dyrelu = replace_relu(self, **self.dyrelu_cfg)

    def dyrelu_modules(self) -> list[DyReLU]:
        """Every dynamic ReLU of the network, in order."""
        return [m for m in self.modules() if isinstance(m, DyReLU)]


_PAPER_NOTE = ("MoCoViT paper, Table 3 (FLOPs = multiply-adds of convolutions and linear layers, attention products "
               "and activations not included)")


@register_model(
    reference={"params": 4.4e6, "conv_linear": 24e6},
    paper={"params": "4.4M", "flops": "24M", "top1": 64.3},
    source=_PAPER_NOTE,
)
def mocovit_d_030(num_classes: int = 1000, **kwargs) -> MoCoViTD:
    """MoCoViT-D 0.3x at 224x224: MoCoViT 0.3x (MTBs of 48 channels) with dynamic ReLU."""
    return MoCoViTD(num_classes, width=0.3, **kwargs)


@register_model(
    reference={"params": 5.8e6, "conv_linear": 47e6},
    paper={"params": "5.8M", "flops": "47M", "top1": 68.9},
    source=_PAPER_NOTE,
)
def mocovit_d_050(num_classes: int = 1000, **kwargs) -> MoCoViTD:
    """MoCoViT-D 0.5x at 224x224: ``mocovit_050`` with dynamic ReLU."""
    return MoCoViTD(num_classes, width=0.5, **kwargs)


@register_model(
    reference={"params": 12.1e6, "conv_linear": 154e6},
    paper={"params": "12.1M", "flops": "154M", "top1": 75.5},
    source=_PAPER_NOTE,
)
def mocovit_d_100(num_classes: int = 1000, **kwargs) -> MoCoViTD:
    """MoCoViT-D 1.0x at 224x224: ``mocovit_100`` with dynamic ReLU."""
    return MoCoViTD(num_classes, width=1.0, **kwargs)


@register_model(
    reference={"params": 15.6e6, "conv_linear": 215e6},
    paper={"params": "15.6M", "flops": "215M", "top1": 77.0},
    source=_PAPER_NOTE,
)
def mocovit_d_120(num_classes: int = 1000, **kwargs) -> MoCoViTD:
    """MoCoViT-D 1.2x at 224x224: MoCoViT 1.2x (MTBs of 192 channels) with dynamic ReLU."""
    return MoCoViTD(num_classes, width=1.2, **kwargs)


@register_model(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                notes="mocovit_100_cifar with dynamic ReLU: maps 32, 16, 8, 4, 4; MoSA over 16 tokens")
def mocovit_d_100_cifar(num_classes: int = 10, **kwargs) -> MoCoViTD:
    """MoCoViT-D 1.0x for 32x32 inputs (CIFAR-10): ``mocovit_100_cifar`` (stem and first block of
    stage 5 at stride 1) with every ReLU replaced by dynamic ReLU."""
    return MoCoViTD(num_classes, width=1.0, stages=small_input_stages(MOCOVIT_STAGES), stem_stride=1, **kwargs)


__all__ = ["MoCoViTD", "replace_relu"]

"""Segmenters on the library's backbones: DeepLabv3 (torchvision's ``DeepLabV3`` and ``DeepLabHead``)
and PSPNet, for ADE20K's 150 classes at 512x512 (EMO Sec. 3.2, Table 10, through MMSegmentation).

* The head reads the backbone's stride-32 map (EMO's is 16x16 at 512x512): the backbone is not
  dilated. The paper does not print the output stride; with stride 32 the counts land on its
  Table 10, at stride 16 or 8 the head alone would cost 4 or 16 times more (what the competitors
  with ten times the FLOPs pay).
* **DeepLabv3** (:func:`deeplabv3`): torchvision's ``ASPP`` (a 1x1 branch, three atrous 3x3 branches at
  rates 12, 24, 36 and image pooling, 256 channels each). ``head="mmseg"`` (the default, the layout
  of the paper's library) merges the five branches with a 3x3 convolution and classifies; torchvision's
  own ``DeepLabHead`` (``head="torchvision"``) merges them with a 1x1 convolution and adds a 3x3
  convolution before the classifier: 2.6M parameters fewer with EMO, far from Table 10.
* **PSPNet** (:func:`pspnet`): torchvision has no PSP head, so :class:`PSPHead` is MMSegmentation's
  (pooling to 1, 2, 3 and 6 cells, a 1x1 convolution to 256 channels each, upsampling, and a 3x3
  convolution over the map and the four pooled maps), in torchvision's ``DeepLabV3`` wrapper.
* Both train with an auxiliary head on the stride-16 map (MMSegmentation's ``FCNHead``: 3x3 conv to
  256 channels, classifier), which the parameters include and the FLOPs do not
  (:func:`~.backbones.trunk`): it only runs for the training loss in the paper's library, while
  torchvision runs it in every forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.registry import create_model, register_model
from .backbones import FeatureBackbone

ADE20K_CLASSES = 150
HEAD_CHANNELS = 256
HEADS = ("mmseg", "torchvision")


class SegmentationBackbone(nn.Module):
    """The maps at strides 16 and 32 as ``{"aux": ..., "out": ...}`` (the keys torchvision's segmenters read)."""

    def __init__(self, backbone: FeatureBackbone):
        super().__init__()
        self.body = backbone
        self.channels = backbone.channels

    def forward(self, x: torch.Tensor) -> dict:
        f = self.body(x)
        return {"aux": f["0"], "out": f["1"]}


def conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int = 1) -> nn.Sequential:
    """MMSegmentation's ``ConvModule``: convolution without bias, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))


def fcn_head(in_chs: int, num_classes: int, channels: int = HEAD_CHANNELS) -> nn.Sequential:
    """MMSegmentation's auxiliary ``FCNHead`` (one 3x3 ConvModule, dropout 0.1, 1x1 classifier)."""
    return nn.Sequential(conv_bn_relu(in_chs, channels, 3), nn.Dropout(0.1), nn.Conv2d(channels, num_classes, 1))


def deeplab_head(in_chs: int, num_classes: int, head: str = "mmseg") -> nn.Sequential:
    """torchvision's ``DeepLabHead``; with ``head="mmseg"`` its five ASPP branches are merged by a 3x3
    ConvModule and classified at once (MMSegmentation's ``ASPPHead``)."""
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    tv = DeepLabHead(in_chs, num_classes)  # [ASPP, conv3x3, BN, ReLU, conv1x1]
    if head == "torchvision":
        return tv
    aspp = tv[0]
    aspp.project = nn.Sequential(*conv_bn_relu(5 * HEAD_CHANNELS, HEAD_CHANNELS, 3), nn.Dropout(0.1))
    return nn.Sequential(aspp, tv[4])


class PSPHead(nn.Module):
    """The pyramid pooling module (Zhao et al., 2017) as MMSegmentation builds it: average pooling to
    ``scales`` cells, a 1x1 ConvModule each, bilinear upsampling, concatenation with the map, a 3x3
    ConvModule and a 1x1 classifier."""

    def __init__(self, in_chs: int, num_classes: int, channels: int = HEAD_CHANNELS, scales=(1, 2, 3, 6)):
        super().__init__()
        self.pools = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_chs, channels))
                                    for s in scales])
        self.bottleneck = conv_bn_relu(in_chs + len(scales) * channels, channels, 3)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(p(x), size=size, mode="bilinear", align_corners=False) for p in self.pools]
        return self.classifier(self.bottleneck(torch.cat([x, *pooled], dim=1)))


def _segmenter(backbone_name: str, num_classes: int, make_head, aux: bool, pretrained_backbone=False) -> nn.Module:
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not isinstance(aux, bool):
        raise ValueError(f"aux must be True or False, got {aux!r}")
    backbone_model = create_model(backbone_name, num_classes=0, pretrained=pretrained_backbone)
    body = SegmentationBackbone(FeatureBackbone(backbone_model, (16, 32)))
    model = DeepLabV3(body, make_head(body.channels[1], num_classes),
                      fcn_head(body.channels[0], num_classes) if aux else None)
    model.backbone_name = backbone_name
    return model


def deeplabv3(backbone_name: str, num_classes: int = ADE20K_CLASSES, head: str = "mmseg", aux: bool = True,
              pretrained_backbone=False) -> nn.Module:
    """torchvision's ``DeepLabV3`` on the stride-32 map of ``create_model(backbone_name)`` (see the module);
    ``pretrained_backbone`` goes to ``create_model(..., pretrained=)``."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return _segmenter(backbone_name, num_classes, lambda c, n: deeplab_head(c, n, head), aux, pretrained_backbone)


def pspnet(backbone_name: str, num_classes: int = ADE20K_CLASSES, aux: bool = True,
           pretrained_backbone=False) -> nn.Module:
    """PSPNet: :class:`PSPHead` on the stride-32 map of ``create_model(backbone_name)``, in torchvision's
    segmentation wrapper."""
    return _segmenter(backbone_name, num_classes, PSPHead, aux, pretrained_backbone)


_TABLE10 = "EMO paper (ICCV 2023), Table 10: {} on ADE20K at 512x512 (MMSegmentation)"
_SEG = dict(task="segmentation", input_size=(3, 512, 512))


@register_model(**_SEG, reference={"params": 5.6e6, "fvcore": 2.4e9}, paper={"params": "5.6M", "flops": "2.4G",
                "mIoU": 33.5}, source=_TABLE10.format("DeepLabv3"))
def deeplabv3_emo_1m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """DeepLabv3 on EMO-1M (512x512, 150 classes): ASPP on the 168-channel map at stride 32."""
    return deeplabv3("emo_1m", num_classes, **kwargs)


@register_model(**_SEG, reference={"params": 6.9e6, "fvcore": 3.5e9}, paper={"params": "6.9M", "flops": "3.5G",
                "mIoU": 35.3}, source=_TABLE10.format("DeepLabv3"))
def deeplabv3_emo_2m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """DeepLabv3 on EMO-2M (512x512, 150 classes): ASPP on the 200-channel map at stride 32."""
    return deeplabv3("emo_2m", num_classes, **kwargs)


@register_model(**_SEG, reference={"params": 10.3e6, "fvcore": 5.8e9}, paper={"params": "10.3M", "flops": "5.8G",
                "mIoU": 37.8}, source=_TABLE10.format("DeepLabv3"))
def deeplabv3_emo_5m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """DeepLabv3 on EMO-5M (512x512, 150 classes): ASPP on the 288-channel map at stride 32."""
    return deeplabv3("emo_5m", num_classes, **kwargs)


@register_model(**_SEG, reference={"params": 4.3e6, "fvcore": 2.1e9}, paper={"params": "4.3M", "flops": "2.1G",
                "mIoU": 33.2}, source=_TABLE10.format("PSPNet"))
def pspnet_emo_1m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """PSPNet on EMO-1M (512x512, 150 classes)."""
    return pspnet("emo_1m", num_classes, **kwargs)


@register_model(**_SEG, reference={"params": 5.5e6, "fvcore": 3.1e9}, paper={"params": "5.5M", "flops": "3.1G",
                "mIoU": 34.5}, source=_TABLE10.format("PSPNet"))
def pspnet_emo_2m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """PSPNet on EMO-2M (512x512, 150 classes)."""
    return pspnet("emo_2m", num_classes, **kwargs)


@register_model(**_SEG, reference={"params": 8.5e6, "fvcore": 5.3e9}, paper={"params": "8.5M", "flops": "5.3G",
                "mIoU": 38.2}, source=_TABLE10.format("PSPNet"))
def pspnet_emo_5m(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """PSPNet on EMO-5M (512x512, 150 classes)."""
    return pspnet("emo_5m", num_classes, **kwargs)


@register_model(**_SEG, notes="DeepLabv3 on GhostNet 1.0x; no paper reports it")
def deeplabv3_ghostnet_100(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """DeepLabv3 on GhostNet 1.0x (512x512, 150 classes): ASPP on the 960-channel map at stride 32."""
    return deeplabv3("ghostnet_100", num_classes, **kwargs)


@register_model(**_SEG, notes="DeepLabv3 on MoCoViT 1.0x; no paper reports it")
def deeplabv3_mocovit_100(num_classes: int = ADE20K_CLASSES, **kwargs) -> nn.Module:
    """DeepLabv3 on MoCoViT 1.0x (512x512, 150 classes): ASPP on the 960-channel map at stride 32."""
    return deeplabv3("mocovit_100", num_classes, **kwargs)

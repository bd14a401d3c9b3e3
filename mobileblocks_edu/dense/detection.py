"""Detectors on the library's backbones, with torchvision's heads: SSDLite and RetinaNet.

The setups are the papers' (EMO Sec. 3.2, MoCoViT Sec. 4.2, both through MMDetection): COCO's 80
classes, SSDLite at 320x320, RetinaNet at a short side of 800 (long side up to 1333).

* **SSDLite** (:func:`ssdlite`): the backbone's maps at strides 16 and 32, four of SSDLite's extra
  blocks (1x1 conv, depthwise 3x3 at stride 2, 1x1 conv) to 512, 256, 256 and 128 channels (strides
  64 to 320; torchvision's ``_extra_block``), six default boxes per position (aspect ratios 2 and 3,
  torchvision's ``DefaultBoxGenerator``) and torchvision's ``SSDLiteHead`` (a depthwise 3x3 and a 1x1
  convolution per map, for the 81 scores, background included, and the 4 box offsets).
* **Mask R-CNN** (:func:`maskrcnn`, MoCoViT's Table 5): the maps at strides 4 to 32 into the FPN
  with a max-pooled P6, and torchvision's two-stage ``MaskRCNN`` (region proposals, box and mask
  heads). Its heads run on the proposals, so only its backbone is counted (as the paper does).
* **RetinaNet** (:func:`retinanet`): the maps at strides 8, 16 and 32 into torchvision's
  ``FeaturePyramidNetwork`` (256 channels) with P6 and P7 from the stride-32 map
  (``LastLevelP6P7``, MMDetection's ``add_extra_convs="on_input"``), nine anchors per position and
  torchvision's ``RetinaNetHead`` (four 3x3 convolutions per branch, no norm).

Counting: parameters of the whole detector; FLOPs of :func:`~.backbones.trunk` (backbone, neck and
head, up to the head's outputs), without torchvision's resizing transform and box decoding/NMS,
which do no multiply-adds.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..models.registry import create_model, register_model
from .backbones import FeatureBackbone

COCO_CLASSES = 80  # MMDetection's COCO: 80 classes (SSD adds a background score)
SSDLITE_EXTRAS = (512, 256, 256, 128)  # extra maps of SSDLite (MobileNetV2 paper, torchvision, MMDetection)


class SSDLiteFeatures(nn.Module):
    """The backbone's maps at strides 16 and 32 and SSDLite's four extra maps (six in all)."""

    def __init__(self, backbone: FeatureBackbone, extras=SSDLITE_EXTRAS):
        super().__init__()
        from torchvision.models.detection.ssdlite import _extra_block

        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)  # torchvision's SSDLite
        self.backbone = backbone
        chs = [backbone.channels[-1], *extras]
        self.extra = nn.ModuleList([_extra_block(i, o, norm) for i, o in zip(chs[:-1], chs[1:])])
        self.out_channels = list(backbone.channels) + list(extras)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out = self.backbone(x)
        y = out[str(len(out) - 1)]
        for block in self.extra:
            y = block(y)
            out[str(len(out))] = y
        return out


def ssdlite(backbone_name: str, num_classes: int = COCO_CLASSES, size: int = 320, pretrained_backbone=False,
            **kwargs) -> nn.Module:
    """torchvision's ``SSD`` with ``SSDLiteHead`` on the maps of ``create_model(backbone_name)`` at
    strides 16 and 32 and SSDLite's extras; ``num_classes`` objects (a background score is added).
    ``pretrained_backbone`` goes to ``create_model(..., pretrained=)`` (the published ImageNet weights)."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    _check_classes(num_classes)
    _check_kwargs(SSD, kwargs)
    backbone_model = create_model(backbone_name, num_classes=0, pretrained=pretrained_backbone)
    features = SSDLiteFeatures(FeatureBackbone(backbone_model, (16, 32)))
    anchors = DefaultBoxGenerator([[2, 3] for _ in features.out_channels], min_ratio=0.2, max_ratio=0.95)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    head = SSDLiteHead(features.out_channels, anchors.num_anchors_per_location(), num_classes + 1, norm)
    cfg = backbone_model.cfg
    defaults = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)
    model = SSD(features, anchors, (size, size), num_classes + 1, image_mean=list(cfg.mean), image_std=list(cfg.std),
                head=head, **{**defaults, **kwargs})
    model.backbone_name = backbone_name
    return model


class FPNBackbone(nn.Module):
    """The backbone's maps through torchvision's ``FeaturePyramidNetwork`` (``out_channels`` each), with
    ``LastLevelP6P7`` (``extra="p6p7"``: RetinaNet's P6 and P7 from the last map) or ``LastLevelMaxPool``
    (``extra="maxpool"``: Mask R-CNN's P6); torchvision's ``BackboneWithFPN`` on a body that is not a
    chain of named children."""

    def __init__(self, backbone: FeatureBackbone, out_channels: int = 256, extra: str = "p6p7"):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

        if extra not in ("p6p7", "maxpool"):
            raise ValueError(f"extra must be 'p6p7' or 'maxpool', got {extra!r}")
        self.body = backbone
        last = LastLevelP6P7(backbone.channels[-1], out_channels) if extra == "p6p7" else LastLevelMaxPool()
        self.fpn = FeaturePyramidNetwork(backbone.channels, out_channels, extra_blocks=last)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))


def retinanet(backbone_name: str, num_classes: int = COCO_CLASSES, min_size: int = 800, max_size: int = 1333,
              pretrained_backbone=False, **kwargs) -> nn.Module:
    """torchvision's ``RetinaNet`` (FPN P3-P7 with 256 channels, nine anchors per position) on the maps
    of ``create_model(backbone_name)`` at strides 8, 16 and 32."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

    _check_classes(num_classes)
    _check_kwargs(RetinaNet, kwargs)
    backbone_model = create_model(backbone_name, num_classes=0, pretrained=pretrained_backbone)
    fpn = FPNBackbone(FeatureBackbone(backbone_model, (8, 16, 32)))
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    head = RetinaNetHead(fpn.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    cfg = backbone_model.cfg
    model = RetinaNet(fpn, num_classes, min_size=min_size, max_size=max_size, image_mean=list(cfg.mean),
                      image_std=list(cfg.std), anchor_generator=anchors, head=head, **kwargs)
    model.backbone_name = backbone_name
    return model


def maskrcnn(backbone_name: str, num_classes: int = COCO_CLASSES, min_size: int = 800, max_size: int = 1333,
             pretrained_backbone=False, **kwargs) -> nn.Module:
    """torchvision's ``MaskRCNN`` (FPN P2-P6 with 256 channels, its default RPN, box and mask heads) on the
    maps of ``create_model(backbone_name)`` at strides 4, 8, 16 and 32; ``num_classes`` objects (a
    background class is added)."""
    from torchvision.models.detection.mask_rcnn import MaskRCNN

    _check_classes(num_classes)
    _check_kwargs(MaskRCNN, kwargs)
    backbone_model = create_model(backbone_name, num_classes=0, pretrained=pretrained_backbone)
    fpn = FPNBackbone(FeatureBackbone(backbone_model, (4, 8, 16, 32)), extra="maxpool")
    cfg = backbone_model.cfg
    model = MaskRCNN(fpn, num_classes + 1, min_size=min_size, max_size=max_size, image_mean=list(cfg.mean),
                     image_std=list(cfg.std), **kwargs)
    model.backbone_name = backbone_name
    return model


def _check_kwargs(cls, kwargs: dict) -> None:
    """torchvision's detectors pass unknown keyword arguments on to their transform, which ignores
    them: refuse them here (``TypeError``, which ``create_model`` turns into a list of what is taken)."""
    import inspect

    known = {p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unknown[0]!r}")


def _check_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (the object classes), got {num_classes!r}")


# ---- the registered detectors -------------------------------------------------------------------------

_EMO_SSD = "EMO paper (ICCV 2023), Table 8: SSDLite on COCO at 320x320 (MMDetection)"


@register_model(task="detection", input_size=(3, 320, 320), reference={"params": 2.3e6, "fvcore": 0.6e9},
                paper={"params": "2.3M", "flops": "0.6G", "mAP": 22.0}, source=_EMO_SSD)
def ssdlite320_emo_1m(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """SSDLite on EMO-1M at 320x320 (80 classes): maps of 80 and 168 channels at strides 16, 32."""
    return ssdlite("emo_1m", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 320, 320), reference={"params": 3.3e6, "fvcore": 0.9e9},
                paper={"params": "3.3M", "flops": "0.9G", "mAP": 25.2}, source=_EMO_SSD)
def ssdlite320_emo_2m(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """SSDLite on EMO-2M at 320x320 (80 classes): maps of 120 and 200 channels at strides 16, 32."""
    return ssdlite("emo_2m", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 320, 320), reference={"params": 6.0e6, "fvcore": 1.8e9},
                paper={"params": "6.0M", "flops": "1.8G", "mAP": 27.9}, source=_EMO_SSD)
def ssdlite320_emo_5m(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """SSDLite on EMO-5M at 320x320 (80 classes): maps of 160 and 288 channels at strides 16, 32."""
    return ssdlite("emo_5m", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 320, 320), notes="SSDLite on GhostNet 1.0x; no paper reports it")
def ssdlite320_ghostnet_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """SSDLite on GhostNet 1.0x at 320x320: maps of 112 and 960 channels at strides 16, 32."""
    return ssdlite("ghostnet_100", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 320, 320), notes="SSDLite on MoCoViT 1.0x; no paper reports it")
def ssdlite320_mocovit_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """SSDLite on MoCoViT 1.0x at 320x320: maps of 112 and 960 channels at strides 16, 32."""
    return ssdlite("mocovit_100", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 800, 1333), reference={"params": 14.4e6, "fvcore": 178.11e9},
                paper={"params": "14.4M", "flops": "178.11G", "AP": 38.9},
                source="EMO paper (ICCV 2023), Table 9 (parameters) and Sec. 3.2 (178.11 GFLOPs): RetinaNet on COCO")
def retinanet_emo_5m(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """RetinaNet on EMO-5M (short side 800, long side up to 1333; 80 classes): FPN on 72, 160, 288 channels."""
    return retinanet("emo_5m", num_classes, **kwargs)


_MOCO_RETINA = ("MoCoViT paper, Table 4: RetinaNet on COCO (MMDetection); the FLOPs are the backbone's alone, "
                "at 224x224")


@register_model(task="detection", input_size=(3, 800, 1333), reference={"backbone_flops": 148e6},
                paper={"backbone_flops": "148M", "AP": 28.2}, source=_MOCO_RETINA)
def retinanet_ghostnet_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """RetinaNet on GhostNet 1.0x (800 x up to 1333; 80 classes): FPN on 40, 112, 960 channels."""
    return retinanet("ghostnet_100", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 800, 1333), reference={"backbone_flops": 154e6},
                paper={"backbone_flops": "154M", "AP": 30.3}, source=_MOCO_RETINA)
def retinanet_mocovit_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """RetinaNet on MoCoViT 1.0x (800 x up to 1333; 80 classes): FPN on 40, 112, 960 channels."""
    return retinanet("mocovit_100", num_classes, **kwargs)


_MOCO_MASK = ("MoCoViT paper, Table 5: Mask R-CNN on COCO (MMDetection); the FLOPs are the backbone's alone, "
              "at 224x224")


@register_model(task="detection", input_size=(3, 800, 1333), reference={"backbone_flops": 148e6},
                paper={"backbone_flops": "148M", "AP_box": 28.4, "AP_mask": 27.0}, source=_MOCO_MASK)
def maskrcnn_ghostnet_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """Mask R-CNN on GhostNet 1.0x (800 x up to 1333; 80 classes): FPN on 24, 40, 112, 960 channels."""
    return maskrcnn("ghostnet_100", num_classes, **kwargs)


@register_model(task="detection", input_size=(3, 800, 1333), reference={"backbone_flops": 154e6},
                paper={"backbone_flops": "154M", "AP_box": 30.6, "AP_mask": 28.9}, source=_MOCO_MASK)
def maskrcnn_mocovit_100(num_classes: int = COCO_CLASSES, **kwargs) -> nn.Module:
    """Mask R-CNN on MoCoViT 1.0x (800 x up to 1333; 80 classes): FPN on 24, 40, 112, 960 channels."""
    return maskrcnn("mocovit_100", num_classes, **kwargs)

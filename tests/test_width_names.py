"""One name for each width: the width multiplier of a network and the hidden width of a block
(the glossary's "Width multiplier" and "Hidden width")."""
import inspect

from mobileblocks_edu.blocks.ghost import GhostBottleneck
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN
from mobileblocks_edu.models.ghostnet import GhostNet
from mobileblocks_edu.models.mobilenetv2 import MobileNetV2


def test_one_name_for_each_width():
    """The width multiplier is ``width`` in every family; a hidden width given in channels is ``mid_chs``
    (timm's name); ratios stay ratios (``exp_ratio``, ``mlp_ratio``)."""
    for cls in (GhostNet, MobileNetV2):
        assert "width" in inspect.signature(cls).parameters, cls
    for cls in (GhostBottleneck, MoFFN, MobileTransformerBlock):
        assert "mid_chs" in inspect.signature(cls).parameters, cls
    assert MobileNetV2(width=0.5).stem.conv.out_channels == 16  # make_divisible(32 · 0.5, 8)
    assert MoFFN(16, 48).mid_chs == 48 and iRMB(16, 16, exp_ratio=3.0).mid_chs == 48

"""EMO's claim that the Meta Mobile Block describes the efficient modules, beyond its Fig. 2:
MobileNetV3's block (torchvision's own implementation) and MobileNetV4's universal inverted
bottleneck (written directly from the paper's description) as MMB instances, equal with copied
weights."""
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual as TVInvertedResidual
from torchvision.models.mobilenetv3 import InvertedResidualConfig

from mobileblocks_edu.blocks.layers import randomize_
from mobileblocks_edu.blocks.mmb import MetaMobileBlock

TV_BN = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)  # torchvision's MobileNetV3 norm


@torch.no_grad()
def copy_in_order(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy every parameter and buffer of ``src`` into ``dst`` in order; shapes must match."""
    s, d = list(src.state_dict().values()), list(dst.state_dict().values())
    assert len(s) == len(d) and all(a.shape == b.shape for a, b in zip(s, d))
    for a, b in zip(s, d):
        b.copy_(a)
    return dst


def tv_block(c, k, exp, se, act):
    return TVInvertedResidual(InvertedResidualConfig(c, k, exp, c, se, act, 1, 1, 1.0), TV_BN)


@pytest.mark.parametrize("c, k, exp, se, act", [
    (16, 3, 16, True, "RE"),  # MobileNetV3-Small's kind of first block: no expansion
    (24, 3, 72, False, "RE"),
    (40, 5, 120, True, "RE"),
    (80, 3, 184, False, "HS"),
    (112, 3, 672, True, "HS"),
])
def test_mobilenetv3_block_is_an_mmb(c, k, exp, se, act, one_thread):
    tv = randomize_(tv_block(c, k, exp, se, act)).eval()
    assert tv.use_res_connect
    se_chs = tv.block[-2].fc1.out_channels if se else None
    mmb = MetaMobileBlock.mbv3(c, exp, k, nn.Hardswish if act == "HS" else nn.ReLU, se_chs, norm_layer=TV_BN)
    copy_in_order(tv, mmb.eval())
    x = torch.randn(2, c, 9, 11)
    torch.testing.assert_close(mmb(x), tv(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in mmb.parameters()) == sum(p.numel() for p in tv.parameters())


class DirectUIB(nn.Module):
    """MobileNetV4's universal inverted bottleneck as the paper describes it, stride 1: an optional
    DW-conv before the expansion (BN), the 1x1 expansion (BN, ReLU), an optional DW-conv (BN, ReLU),
    the 1x1 projection (BN), a layer scale, the residual."""

    def __init__(self, c, hid, start_k=0, mid_k=0, gamma=1e-5):
        super().__init__()

        def dw(ch, k, act):
            return nn.Sequential(nn.Conv2d(ch, ch, k, padding=k // 2, groups=ch, bias=False), nn.BatchNorm2d(ch),
                                 *([nn.ReLU()] if act else []))

        self.start = dw(c, start_k, False) if start_k else nn.Identity()
        self.expand = nn.Sequential(nn.Conv2d(c, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU())
        self.middle = dw(hid, mid_k, True) if mid_k else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hid, c, 1, bias=False), nn.BatchNorm2d(c))
        self.gamma = nn.Parameter(gamma * torch.ones(c))

    def forward(self, x):
        y = self.project(self.middle(self.expand(self.start(x))))
        return x + self.gamma.view(1, -1, 1, 1) * y


@torch.no_grad()
def uib_to_mmb(uib: DirectUIB, start_k: int, mid_k: int) -> MetaMobileBlock:
    c, hid = uib.expand[0].in_channels, uib.expand[0].out_channels
    mmb = MetaMobileBlock.uib(c, hid, start_k, mid_k)
    gamma = dict(uib.named_parameters()).pop("gamma")
    state = {k: v for k, v in uib.state_dict().items() if k != "gamma"}
    target = mmb.state_dict()
    assert len(state) == len(target)
    for a, b in zip(state.values(), target.values()):
        assert a.shape == b.shape
        b.copy_(a)
    mmb.mlp_s.norm.weight.mul_(gamma)  # the layer scale folds into the last BatchNorm
    mmb.mlp_s.norm.bias.mul_(gamma)
    return mmb


@pytest.mark.parametrize("start_k, mid_k, name", [(0, 3, "IB"), (3, 0, "ConvNext-like"), (3, 5, "ExtraDW"),
                                                  (0, 0, "FFN")])
def test_mobilenetv4_uib_is_an_mmb_with_its_first_dw_in_the_norms_place(start_k, mid_k, name, one_thread):
    uib = randomize_(DirectUIB(32, 128, start_k, mid_k, gamma=0.3)).eval()
    with torch.no_grad():
        uib.gamma.copy_(torch.rand(32) + 0.5)
    mmb = uib_to_mmb(uib, start_k, mid_k).eval()
    x = torch.randn(2, 32, 10, 7)
    torch.testing.assert_close(mmb(x), uib(x), rtol=0, atol=1e-5)
    n_uib, n_mmb = (sum(p.numel() for p in m.parameters()) for m in (uib, mmb))
    assert n_uib - n_mmb == 32  # the layer scale, folded
    assert isinstance(mmb.norm, nn.Identity) == (start_k == 0)
    assert isinstance(mmb.op, nn.Identity) == (mid_k == 0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dw_kernel_size"):
        MetaMobileBlock.mbv3(16, 64, dw_kernel_size=4)
    with pytest.raises(ValueError, match="se_chs"):
        MetaMobileBlock.mbv3(16, 64, se_chs=0)
    with pytest.raises(ValueError, match="start_dw_kernel_size"):
        MetaMobileBlock.uib(16, 64, start_dw_kernel_size=-3)
    with pytest.raises(ValueError, match="mid_chs"):
        MetaMobileBlock.uib(16, 0)

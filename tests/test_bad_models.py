"""Models, blocks and the analysis tools refuse bad input at the boundary with an error that names the
argument and what is allowed, instead of failing inside torch or a dependency (or not at all)."""
import math

import pytest
import torch
from PIL import Image
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis import cam, erf, receptive
from mobileblocks_edu.analysis.calculator import Settings, calculate
from mobileblocks_edu.blocks.attention import FFN, MHSA, WindowAttention, set_attention
from mobileblocks_edu.blocks.dyrelu import DyReLU
from mobileblocks_edu.blocks.ghost import GhostBottleneck, GhostModule
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.layers import ConvNormAct, LayerNorm2d, SqueezeExcite
from mobileblocks_edu.blocks.mmb import MetaMobileBlock
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN, MoSA
from mobileblocks_edu.models.emo import EMO
from mobileblocks_edu.models.ghostnet import GHOSTNET_STAGES, GhostNet
from mobileblocks_edu.models.mobilenetv2 import MobileNetV2
from mobileblocks_edu.models.mocovit import MoCoViT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def emo():
    return mbe.create_model("emo_1m_cifar").eval()


# ---------------------------------------------------------------- a model's input
@pytest.mark.parametrize("x, message", [
    (torch.zeros(1, 3, 32, 32, dtype=torch.float64),
     r"EMO expects torch.float32 images \(the dtype of its weights\), got torch.float64: convert with x.to"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
     r"EMO expects floating-point images \(torch.float32\), got torch.uint8: convert with x.float\(\)"),
    (torch.zeros(3, 32, 32), r"got one image \(3, 32, 32\): add a batch dimension with x.unsqueeze\(0\)"),
    (torch.zeros(2, 32, 32, 3), r"expects images of shape \(B, 3, H, W\).*channels last\? use x.permute"),
    (torch.zeros(1, 3, 32, 32).numpy(), r"EMO expects a torch.Tensor of images .* got ndarray: .*torch.from_numpy"),
    ([[0.0]], r"EMO expects a torch.Tensor of images \(B, 3, H, W\), got list"),
])
def test_model_forward_names_what_it_expects(emo, x, message):
    with pytest.raises(ValueError, match=message):
        emo(x)


def test_every_family_checks_its_input_dtype():
    for name in ("mobilenetv2_100_cifar", "ghostnet_050_cifar", "mocovit_050_cifar", "mocovit_d_100_cifar"):
        model = mbe.create_model(name).eval()
        with pytest.raises(ValueError, match="images .*got torch.float64"):
            model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    model = mbe.create_model("ghostnet_050_cifar").double().eval()  # a float64 model takes float64 images
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- ratios, widths, strides, kernels
@pytest.mark.parametrize("call, message", [
    (lambda: InvertedResidual(8, 8, exp_ratio=0.01),
     r"exp_ratio must be a finite number >= 1 \(the hidden width is exp_ratio x in_chs\), got 0.01"),
    (lambda: InvertedResidual(8, 8, exp_ratio=math.inf), "exp_ratio must be a finite number >= 1"),
    (lambda: iRMB(8, 8, exp_ratio=0.5), "exp_ratio must be a finite number >= 1 .*got 0.5"),
    (lambda: iRMB(8, 8, exp_ratio=math.nan), "exp_ratio must be a finite number >= 1"),
    (lambda: iRMB(8, 8, se_ratio=math.inf), r"se_ratio must be a finite number >= 0 \(0: no squeeze"),
    (lambda: iRMB(8, 8, dw_kernel_size=4), "dw_kernel_size=4 is even"),
    (lambda: iRMB(8, 8, drop_path_rate=2.0), r"drop_path_rate must be a number in \[0, 1\)"),
    (lambda: iRMB(8, 8, window_size=0), "window_size must be a positive int, got 0"),
    (lambda: MetaMobileBlock(8, exp_ratio=math.inf), "exp_ratio must be a finite number"),
    (lambda: MetaMobileBlock(8, exp_ratio=0.01), "exp_ratio=0.01 leaves no hidden channels at dim=8"),
    (lambda: FFN(8, mlp_ratio=math.inf), "mlp_ratio must be a finite number"),
    (lambda: GhostBottleneck(8, 16, 8, se_ratio=math.inf), "se_ratio must be a finite number >= 0"),
    (lambda: GhostBottleneck(8, 0, 8), "mid_chs must be a positive number, got 0"),
    (lambda: GhostModule(8, 8, dw_size=2), "dw_size=2 is even"),
    (lambda: MoFFN(8, 16, se_ratio=math.inf), "se_ratio must be a finite number >= 0"),
    (lambda: MoSA(8, 2, dw_kernel_size=2), "dw_kernel_size=2 is even"),
    (lambda: MobileTransformerBlock(8, 16, 2, drop_path_rate=-0.5), r"drop_path_rate must be a number in \[0, 1\)"),
    (lambda: WindowAttention(0, 8), "num_heads must be a positive number, got 0"),
    (lambda: SqueezeExcite(8, rd_ratio=math.inf), "rd_ratio must be a finite number"),
    (lambda: LayerNorm2d(0), "num_channels must be a positive number, got 0"),
    (lambda: ConvNormAct(8, 6, groups=4), "out_chs=6 must be divisible by groups=4"),
    (lambda: ConvNormAct(8, 8, 3, padding=-1), "padding must be an int >= 0 or None"),
    (lambda: DyReLU(8, lambda_a=math.inf), "lambda_a must be a finite number >= 0"),
    (lambda: DyReLU(8, init_a=[1.0, "0"]), r"init_a\[1\] must be a finite number"),
])
def test_block_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("kwargs, message", [
    (dict(stem_stride=0), "stem_stride must be a positive number, got 0"),
    (dict(stem_chs=0), "stem_chs must be a positive number, got 0"),
    (dict(exp_ratios=(2.0, 0.01, 3.0, 3.5)), r"exp_ratios\[1\] must be a finite number >= 1 .*got 0.01"),
    (dict(exp_ratios=math.inf), r"exp_ratios\[0\] must be a finite number >= 1"),
    (dict(embed_dims=(32, 48, 80, 0)), r"embed_dims\[3\] must be a positive number, got 0"),
    (dict(stage_strides=(2, 2, 0, 2)), r"stage_strides\[2\] must be a positive number, got 0"),
    (dict(dw_kernel_sizes=(3, 3, 4, 5)), r"dw_kernel_sizes\[2\]=4 is even"),
    (dict(window_sizes=(7, 7, 0, 7)), r"window_sizes\[2\] must be a positive number, got 0"),
    (dict(dim_heads=(16, 16, 0, 21)), r"dim_heads\[2\] must be a positive number, got 0"),
    (dict(dim_heads=(16, 16, 7, 21)), r"embed_dims\[2\]=80 must be divisible by dim_heads\[2\]=7"),
    (dict(window_layout="tiles", attn_stages=(False,) * 4), r"window_layout must be one of \('block', 'grid'\)"),
    (dict(norm_layers=("bn", "bn", "ln", nn.LayerNorm(8))), "norm_layers must be a layer factory"),
])
def test_emo_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EMO(10, **kwargs)


def test_width_and_stage_rows_are_checked():
    for cls in (GhostNet, MobileNetV2):
        with pytest.raises(ValueError, match=r"width must be a finite number \(the channel multiplier\), got inf"):
            cls(10, width=math.inf)
    with pytest.raises(ValueError, match=r"stages\[0\] t must be a finite number >= 1"):
        MobileNetV2(10, stages=[(0.5, 16, 1, 1)])
    with pytest.raises(ValueError, match=r"stages\[0\] n must be a positive number, got 1.5"):
        MobileNetV2(10, stages=[(1, 16, 1.5, 1)])
    with pytest.raises(ValueError, match=r"stages\[0\]\[0\].hidden must be a positive number, got -5"):
        GhostNet(10, stages=[[(3, -5, 16, 0, 1)]])  # was silently rounded up to 4 channels
    with pytest.raises(ValueError, match=r"stages\[0\]\[0\].stride must be 1 or 2, got 3"):
        GhostNet(10, stages=[[(3, 16, 16, 0, 3)]])
    with pytest.raises(ValueError, match=r"dyrelu_mode must be one of \('a', 'b'\), got 'c'"):
        mbe.create_model("mocovit_d_100_cifar", dyrelu_mode="c")
    with pytest.raises(ValueError, match=r"vanilla_norm must be one of \('ln', 'bn'\), got 'gn'"):
        MoCoViT(10, stages=GHOSTNET_STAGES, vanilla_norm="gn")  # no MTB row: was accepted silently


# ---------------------------------------------------------------- boolean switches given a string
@pytest.mark.parametrize("call, name", [
    (lambda: iRMB(8, 8, has_attn="False", num_heads=2), "has_attn"),
    (lambda: iRMB(8, 8, has_skip="False"), "has_skip"),
    (lambda: InvertedResidual(8, 8, has_skip="False"), "has_skip"),
    (lambda: ConvNormAct(8, 8, bias="False"), "bias"),
    (lambda: MHSA(8, 2, fused="False"), "fused"),
    (lambda: MoSA(8, 2, out_proj="False"), "out_proj"),
    (lambda: MetaMobileBlock(8, bias="False"), "bias"),
    (lambda: mbe.create_model("emo_1m_cifar", fused="False"), "fused"),
    (lambda: mbe.create_model("emo_1m_cifar", channels_last="False"), "channels_last"),
    (lambda: mbe.create_model("emo_1m_cifar", attn_stages=("False", "False", True, True)), r"attn_stages\[0\]"),
    (lambda: mbe.create_model("mocovit_050_cifar", out_proj="False"), "out_proj"),
    (lambda: set_attention(mbe.create_model("emo_1m_cifar"), fused="False"), "fused"),
])
def test_boolean_switches_refuse_strings(call, name):
    with pytest.raises(ValueError, match=rf"{name} must be True or False, got 'False' \(a string: write False"):
        call()


def test_layer_factories_are_checked():
    with pytest.raises(ValueError, match=r"norm_layer must be a layer factory .*got 'bn' \(names such as 'bn'"):
        iRMB(8, 8, norm_layer="bn")
    with pytest.raises(ValueError, match="act_layer must be a layer factory .*got a module instance"):
        InvertedResidual(8, 8, act_layer=nn.ReLU())


# ---------------------------------------------------------------- Grad-CAM
def test_grad_cam_target_layers_are_checked(emo):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"target_layers must be a list of layers, e.g. \[model.norm\], got a single "
                                         r"LayerNorm2d: put it in a list"):
        cam.grad_cam(emo, x, target_layers=emo.norm)
    with pytest.raises(ValueError, match=r"target layer Linear gives \(1, 10\), not a feature map \(B, C, h, w\)"):
        cam.grad_cam(emo, x, target_layers=[emo.head])
    with pytest.raises(ValueError, match=r"target_layers\[0\] \(Conv2d\) is not a layer of the model"):
        cam.grad_cam(emo, x, target_layers=[nn.Conv2d(3, 3, 1)])
    with pytest.raises(ValueError, match=r"targets must be a list with one class per image, e.g. \[3\], got 3"):
        cam.grad_cam(emo, x, targets=3)
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\): add a batch dimension"):
        cam.grad_cam(emo, x[0])


def test_cam_prepare_takes_an_image_not_a_path(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (40, 30)).save(path)
    for bad in (path, str(path)):
        with pytest.raises(ValueError, match=r"image must be a PIL image, got .*: open it with PIL.Image.open"):
            cam.prepare(bad, 32, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match=r"image must be an RGB image, got mode 'L'"):
        cam.prepare(Image.new("L", (40, 30)), 32, (0.5,) * 3, (0.5,) * 3)
    x, rgb = cam.prepare(Image.open(path).convert("RGB"), 32, (0.5,) * 3, (0.5,) * 3)
    assert x.shape == (3, 32, 32) and rgb.shape == (32, 32, 3)


def test_query_attention_and_block_attention_are_checked(emo):
    attn = torch.rand(2 * 4, 1, 4, 4)  # 2 images, a 4x4 map in 2x2 windows (4 windows each)
    with pytest.raises(ValueError, match=r"batch_index must be in \[0, 1\], got 2"):
        cam.query_attention(attn, (0, 0), (4, 4), window_size=2, batch_index=2)
    with pytest.raises(ValueError, match="size and query must be pairs of integers"):
        cam.query_attention(attn, (0.5, 0), (4, 4), window_size=2)
    assert cam.query_attention(attn, (3, 3), (4, 4), window_size=2, batch_index=1).shape == (1, 4, 4)
    with pytest.raises(ValueError, match=r"block \(iRMB\) has no attention"):
        cam.model_block_attention(emo, emo.stage1[0], torch.randn(1, 3, 32, 32), (0, 0))


# ---------------------------------------------------------------- receptive fields and the calculator
@pytest.mark.parametrize("call, message", [
    (lambda: receptive.reach(receptive.conv_op(3), (5, 5, 5), 1), r"size must be an int or a pair \(height, width\)"),
    (lambda: receptive.reach(receptive.conv_op(3), 5, 1.5), "n_layers must be an integer >= 0, got 1.5"),
    (lambda: receptive.reach(receptive.conv_op(3), 5, 1, source=(1.5, 2)), "source must be a pair of integers"),
    (lambda: receptive.max_path_length(receptive.conv_op(3), 5, separable="False"), "separable must be True or Fa"),
    (lambda: receptive.dependency(InvertedResidual(4, 4), 4, 5, x=torch.zeros(4, 5, 5).numpy()),
     r"x must have shape \(1, 4, 5, 5\)"),
    (lambda: erf.effective_receptive_field(InvertedResidual(4, 4), torch.zeros(4, 5, 5)), "add a batch dimension"),
    (lambda: erf.effective_receptive_field(InvertedResidual(4, 4), torch.zeros(1, 4, 5, 5, dtype=torch.long)),
     "x must be floating-point"),
    (lambda: erf.erf_area(torch.ones(3, 3), mass="0.9"), r"mass must be a number in \(0, 1\]"),
    (lambda: Settings(exp_ratio=0.5), "exp_ratio must be a finite number >= 1 .*got 0.5"),
    (lambda: Settings(exp_ratio=math.inf), "exp_ratio must be a finite number >= 1"),
    (lambda: calculate(Settings(), modules="MHSA"), r"got the single name 'MHSA': write \('MHSA',\)"),
    (lambda: calculate(Settings(), measured="False"), "measured must be True or False"),
])
def test_analysis_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()

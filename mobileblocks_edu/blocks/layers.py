"""Small layers every block in the book is made of.

* :func:`make_divisible`: round a channel count to a hardware-friendly multiple.
* :class:`ConvNormAct`: convolution -> normalisation -> activation, the unit of every CNN here.
* :class:`LayerNorm2d`: LayerNorm over the channels of a ``(B, C, H, W)`` tensor.
* :class:`SqueezeExcite`: channel attention (Hu et al., 2018), ``x * gate(W2 act(W1 mean(x)))``.
* :class:`DropPath`: stochastic depth on the residual branch (torchvision's ``StochasticDepth``).
* :func:`eval_mode`: a model in eval mode for a block of code, every submodule's own mode restored.

Names follow timm (``in_chs``, ``out_chs``, ``act_layer``, ``norm_layer``) and the attribute
names (``conv``, ``norm``, ``act``, ``conv_reduce``, ``conv_expand``) follow the reference
implementations, so that their checkpoints load without renaming.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
import torch.fx
from torch import nn
from torchvision.ops import StochasticDepth

from ..env import check_bool, check_divisible, check_positive, check_ratio

LayerFactory = Optional[Callable[..., nn.Module]]


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below ``round_limit * v``.

    The rule of MobileNetV2 (divisor 8) and GhostNet (divisor 4): ``make_divisible(37.5) == 40``,
    ``make_divisible(20, 8) == 24`` (16 would lose more than 10 %).
    """
    check_positive("divisor", divisor, int)
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def is_symbolic(x) -> bool:
    """True when ``x`` is a ``torch.fx`` proxy, i.e. while ``torch.fx.symbolic_trace`` runs.

    A proxy has no shape to compare: the checks below skip it (they ran in eager mode, the only
    mode that gets a user's tensors), and a block whose fast path depends on the shape takes the
    form that is exact for every shape, so that one traced graph serves every input size.
    ``torch.export`` and the ONNX exporter see real (or fake) tensors and keep the checks.
    """
    return isinstance(x, torch.fx.Proxy)


def check_input(module: nn.Module, x: torch.Tensor, channels: Optional[int] = None) -> None:
    """Check that ``x`` is a ``(B, C, H, W)`` tensor with the channels ``module`` expects
    (skipped for a ``torch.fx`` proxy, see :func:`is_symbolic`)."""
    if is_symbolic(x):
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{type(module).__name__} expects a tensor (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = ": add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else ""
        raise ValueError(
            f"{type(module).__name__} expects a 4-D input (B, C, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{type(module).__name__} expects {channels} input channels, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})"
        )


def check_factory(name: str, layer: LayerFactory) -> None:
    """Raise a ``ValueError`` naming the argument unless ``layer`` is a layer factory (a class such
    as ``nn.BatchNorm2d`` or a function returning a module) or ``None``."""
    if layer is not None and (isinstance(layer, nn.Module) or not callable(layer)):
        hint = (" (names such as 'bn' or 'gelu' are read by the models; a block takes the layer itself, "
                "e.g. nn.BatchNorm2d)" if isinstance(layer, str) else "")
        what = "a module instance" if isinstance(layer, nn.Module) else repr(layer)
        raise ValueError(f"{name} must be a layer factory such as nn.BatchNorm2d or nn.GELU, or None, "
                         f"got {what}{hint}")


def check_kernel(name: str, kernel_size) -> None:
    """Raise a ``ValueError`` naming the argument unless ``kernel_size`` is a positive odd int
    (the default padding ``k // 2`` keeps the map's size only for odd kernels)."""
    check_positive(name, kernel_size, int)
    if kernel_size % 2 == 0:
        raise ValueError(f"{name}={kernel_size} is even: the padding kernel_size // 2 would make the map one "
                         f"pixel larger; use an odd kernel size (1, 3, 5, ...)")


def _make(layer: LayerFactory, *args, **kwargs) -> nn.Module:
    return nn.Identity() if layer is None else layer(*args, **kwargs)


class ConvNormAct(nn.Module):
    """``act(norm(conv(x)))``; ``norm_layer=None`` or ``act_layer=None`` drop that part.

    ``padding`` defaults to ``kernel_size // 2`` ("same" for odd kernels at stride 1; an even
    kernel has no "same" padding, so it needs an explicit ``padding``).
    A depthwise convolution is ``groups=in_chs``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
        padding: Optional[int] = None,
    ):
        super().__init__()
        for name, v in (("in_chs", in_chs), ("out_chs", out_chs), ("kernel_size", kernel_size), ("stride", stride),
                        ("groups", groups)):
            check_positive(name, v, int)
        check_divisible("in_chs", in_chs, "groups", groups)
        check_divisible("out_chs", out_chs, "groups", groups)
        check_bool("bias", bias)
        check_factory("norm_layer", norm_layer)
        check_factory("act_layer", act_layer)
        if padding is not None and (isinstance(padding, bool) or not isinstance(padding, int) or padding < 0):
            raise ValueError(f"padding must be an int >= 0 or None (kernel_size // 2), got {padding!r}")
        if padding is None and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} is even: the default padding kernel_size // 2 would make "
                             f"the map one pixel larger; use an odd kernel_size (1, 3, 5, ...) or pass padding")
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = _make(norm_layer, out_chs)
        self.act = _make(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` tensor.

    Every pixel is normalised over its C channels (what a Transformer's LayerNorm does to each
    token). The wrapped ``nn.LayerNorm`` is kept as ``self.norm`` so that the parameters are
    called ``norm.weight`` and ``norm.bias``, as in the reference EMO checkpoints.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        check_positive("num_channels", num_channels, int)
        check_ratio("eps", eps)
        check_bool("affine", affine)
        self.norm = nn.LayerNorm(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H, W, C) -> normalise over C -> (B, C, H, W)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: ``x * gate(conv_expand(act(conv_reduce(mean_hw(x)))))``.

    The squeeze is a plain ``mean`` over H and W, as in the reference implementations of EMO
    and GhostNet (fvcore's convention does not count it; it counts ``nn.AdaptiveAvgPool2d``).

    Args:
        chs: channels of ``x``.
        rd_chs: channels after the reduction; defaults to ``round(chs * rd_ratio)``.
        rd_ratio: reduction ratio used when ``rd_chs`` is not given.
        act_layer: activation between the two 1x1 convolutions.
        gate_layer: the gate, ``nn.Sigmoid`` (EMO) or ``nn.Hardsigmoid`` (GhostNet).
    """

    def __init__(
        self,
        chs: int,
        rd_chs: Optional[int] = None,
        rd_ratio: float = 0.25,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
    ):
        super().__init__()
        check_positive("chs", chs, int)
        if rd_chs is None:
            check_ratio("rd_ratio", rd_ratio, why="the reduced width is round(chs x rd_ratio)")
        else:
            check_positive("rd_chs", rd_chs, int)
        check_factory("act_layer", act_layer)
        check_factory("gate_layer", gate_layer)
        rd_chs = rd_chs or max(1, round(chs * rd_ratio))
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act = _make(act_layer)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = _make(gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # squeeze: (B, C, 1, 1)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * self.gate(s)


class DropPath(StochasticDepth):
    """Stochastic depth (Huang et al., 2016) on a residual branch: during training, zero the
    whole branch of a sample with probability ``drop_prob`` and scale the survivors by
    ``1 / (1 - drop_prob)``. The identity in eval mode. torchvision's ``StochasticDepth``
    in "row" mode does the work."""

    def __init__(self, drop_prob: float = 0.0):
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
        super().__init__(p=drop_prob, mode="row")

    def extra_repr(self) -> str:
        return f"drop_prob={self.p}"


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal weights (std 0.02) and zero biases for every ``nn.Linear`` in ``module``:
    the ViT/EMO initialisation of classifier heads."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def kaiming_init(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit/zero norms, N(0, 0.01) linear layers: the
    MobileNetV2/GhostNet initialisation (as in torchvision and timm)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

@torch.no_grad()
def randomize_(module: torch.nn.Module, scale: float = 0.5) -> torch.nn.Module:
    """Give every parameter and BatchNorm statistic random values, so that an equivalence check
    cannot pass by accident (a fresh BatchNorm is the identity in eval mode). Convolution and
    linear weights are divided by sqrt(fan-in), so activations stay of order one."""
    for p in module.parameters():
        p.normal_(0, scale)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.normal_(0, scale)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.weight /= m.weight[0].numel() ** 0.5 * scale
    return module


@contextlib.contextmanager
def eval_mode(module) -> Iterator:
    """Put ``module`` (when it is an ``nn.Module``; anything else passes through) and all its
    submodules in eval mode for the block, and give every one of them its *own* mode back
    afterwards: a BatchNorm frozen in eval inside a training model stays frozen, which
    restoring only the top-level mode with ``model.train(...)`` would undo."""
    if not isinstance(module, nn.Module):
        yield module
        return
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


__all__ = [
    "make_divisible",
    "ConvNormAct",
    "LayerNorm2d",
    "SqueezeExcite",
    "DropPath",
    "check_input",
    "check_factory",
    "check_kernel",
    "trunc_normal_init",
    "kaiming_init",
    "randomize_",
    "eval_mode",
]

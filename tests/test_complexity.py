"""The complexity counter against published counts, hand-derived counts and EMO's Table 2."""
import math

import pytest
import torch
from torch import nn
from torch.torch_version import TorchVersion
from torch.utils._python_dispatch import TorchDispatchMode

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis import complexity as cx
from mobileblocks_edu.analysis.complexity import (
    Cost,
    conv_cost,
    count_cost,
    count_flops,
    count_params,
    dwconv_cost,
    flop_breakdown,
    group_counts,
    mhsa_cost,
    wmhsa_cost,
)
from mobileblocks_edu.blocks.attention import FFN, MHSA, TransformerBlock
from mobileblocks_edu.blocks.dyrelu import DyReLU
from mobileblocks_edu.blocks.ghost import GhostModule
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.blocks.mtb import MobileTransformerBlock, MoFFN, MoSA


def test_mobilenetv2_matches_reference_counts():
    model = mbe.create_model("mobilenetv2_100")
    assert count_params(model) == 3_504_872
    macs = count_flops(model, (1, 3, 224, 224), "macs")
    assert abs(macs / 300.77e6 - 1) < 0.005
    # fvcore adds eval-mode BN (2 per element) and the pooling: 314.19M in the reference table
    assert abs(count_flops(model, (1, 3, 224, 224), "fvcore") / 314.19e6 - 1) < 0.005


def test_counter_conventions_on_single_modules():
    x = (2, 8, 10, 10)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    assert count_flops(conv, x, "macs") == 2 * 16 * 10 * 10 * 8 * 9
    assert count_flops(nn.BatchNorm2d(8), x, "macs") == 0
    assert count_flops(nn.BatchNorm2d(8), x, "fvcore") == 2 * 2 * 8 * 100
    assert count_flops(nn.BatchNorm2d(8, affine=False), x, "fvcore") == 2 * 8 * 100
    assert count_flops(mbe.blocks.layers.LayerNorm2d(8), x, "fvcore") == 5 * 2 * 8 * 100
    assert count_flops(nn.AdaptiveAvgPool2d(1), x, "fvcore") == 2 * 8 * 100
    assert count_flops(nn.Linear(8, 4), (3, 8), "macs") == 3 * 8 * 4
    assert count_flops(nn.GELU(), x, "fvcore") == 0  # activations are free in both conventions


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="convention must be one of"):
        count_flops(nn.Conv2d(1, 1, 1), (1, 1, 2, 2), "flops")


class _SDPA(nn.Module):
    def forward(self, q):  # q: (B, heads, N, d), used as query, key and value
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_fused_attention_kernel_is_counted():
    b, h, n, d = 2, 3, 49, 16
    bd = flop_breakdown(_SDPA(), (b, h, n, d), "macs")
    assert any("scaled_dot_product" in op for _, op in bd)  # the fused kernel itself ran
    assert sum(bd.values()) == 2 * b * h * n * n * d  # Q Kᵀ and A V


BACKENDS = ["MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "OVERRIDEABLE"]
DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def _only(backend: str):
    """A context in which scaled_dot_product_attention may use only ``backend``, or None when this
    torch has no such backend. (``torch.nn.attention`` exists from torch 2.3; torch 2.2 has the
    older ``torch.backends.cuda.sdp_kernel`` switches, which the CPU kernels obey too.)"""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        old = {"MATH": "enable_math", "FLASH_ATTENTION": "enable_flash", "EFFICIENT_ATTENTION": "enable_mem_efficient"}
        if backend not in old:
            return None
        return torch.backends.cuda.sdp_kernel(**{flag: flag == old[backend] for flag in old.values()})
    return sdpa_kernel([getattr(SDPBackend, backend)]) if backend in SDPBackend.__members__ else None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_attention_backend_is_counted(backend, device):
    """Whichever kernel runs scaled_dot_product_attention, its products are counted (on this torch,
    whether or not PyTorch's own flop registry knows the kernel)."""
    if _only(backend) is None:
        pytest.skip(f"torch {torch.__version__} has no {backend} backend")
    b, h, n, d = 2, 3, 49, 16
    q = torch.randn(b, h, n, d, device=device, dtype=torch.float16 if device == "cuda" else torch.float32)
    try:
        with _only(backend):
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
            bd = flop_breakdown(_SDPA(), q, "macs")
    except RuntimeError as e:  # this backend cannot run here (no kernel for this device, dtype or build)
        pytest.skip(f"{backend} does not run on {device}: {str(e).splitlines()[0]}")
    assert sum(bd.values()) == 2 * b * h * n * n * d, bd
    assert flop_breakdown(_SDPA(), q, "conv_linear") == {}  # attention products only


@pytest.mark.parametrize("name", ["emo_1m", "mocovit_100"])
def test_fused_models_count_the_same_with_every_backend(name):
    """A fused model's count is the same with the kernel PyTorch picks (the CPU flash kernel where
    the layout allows it) as with the math fallback, and the same as the reference figure (EMO-1M:
    260.84M in fvcore's convention, as the authors' code counts it)."""
    model = mbe.create_model(name)
    counts = {"default": count_flops(model, (1, 3, 224, 224), "fvcore")}
    with _only("MATH"):
        counts["MATH"] = count_flops(model, (1, 3, 224, 224), "fvcore")
    assert len(set(counts.values())) == 1, counts
    if name == "emo_1m":
        assert abs(counts["MATH"] / 260.84e6 - 1) < 5e-4


def test_fused_and_readable_mhsa_count_the_same():
    fused, manual = MHSA(32, 4), MHSA(32, 4, fused=False)
    assert count_flops(fused, (1, 32, 8, 8), "macs") == count_flops(manual, (1, 32, 8, 8), "macs")


# ---- against PyTorch's own counter ------------------------------------------------------------------


class _Ops(TorchDispatchMode):
    """Records the aten ops (overload packets) a forward pass runs."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


@pytest.mark.skipif(TorchVersion(torch.__version__) < (2, 4), reason=f"torch {torch.__version__}: the comparison "
                    "starts at torch 2.4, whose FlopCounterMode tracks modules with ModuleTracker")
@pytest.mark.parametrize("name", mbe.list_models())
def test_macs_are_half_of_pytorchs_flop_counter(name, one_thread):
    """PyTorch counts 2 FLOPs per multiply-add; models whose fused attention kernel PyTorch's registry
    cannot count are skipped (the attention-free ones never are)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    model = mbe.create_model(name).eval()
    size = 32 if model.cfg.input_size[-1] == 32 else 64
    x = torch.randn(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter, _Ops() as ops:
        model(x)
    fused = {op for op in ops.seen if cx._is_fused_attention(str(op).split(".")[-1])}
    if name.startswith(("mobilenetv2", "ghostnet")):
        assert not fused
    uncounted = sorted(str(op) for op in fused if op not in flop_registry)
    if uncounted:
        pytest.skip(f"torch {torch.__version__}'s flop registry has no formula for {', '.join(uncounted)}")
    assert 2 * count_flops(model, x, "macs") == counter.get_total_flops() > 0


def test_counter_restores_training_mode_and_attributes_modules():
    model = mbe.create_model("mobilenetv2_100_cifar").train()
    bd = flop_breakdown(model, (1, 3, 32, 32), "macs")
    assert model.training
    per_child = group_counts(bd, depth=1)
    assert set(per_child) == {"stem", "blocks", "conv_head", "classifier"}
    assert sum(per_child.values()) == count_flops(model, (1, 3, 32, 32), "macs")


# ---- EMO Table 2: formulas equal measurements over a grid of sizes ---------------------------------

SIZES = [(16, 7), (32, 14), (48, 8), (64, 28)]


@pytest.mark.parametrize("dim,size", SIZES)
def test_mhsa_formula(dim, size):
    cost = mhsa_cost(dim, size)
    m = MHSA(dim, num_heads=4)
    assert count_params(m) == cost.params == 4 * (dim + 1) * dim
    assert count_flops(m, (1, dim, size, size), "macs") == cost.macs
    assert count_flops(m, (1, dim, size, size), "fvcore") == cost.macs
    L = size * size
    assert cost.paper_flops == 2 * cost.macs + 3 * L * L  # the paper's extra term is the softmax
    assert cost.mpl == 1


@pytest.mark.parametrize("dim,size", SIZES)
@pytest.mark.parametrize("w", [4, 7])
@pytest.mark.parametrize("layout", ["block", "grid"])
def test_wmhsa_formula(dim, size, w, layout):
    cost = wmhsa_cost(dim, size, w)
    m = MHSA(dim, num_heads=4, window_size=w, window_layout=layout)
    assert count_params(m) == cost.params
    assert count_flops(m, (1, dim, size, size), "macs") == cost.macs
    if size % w == 0:  # the paper's formula assumes no padding
        L, l = size * size, w * w
        assert cost.paper_flops == 2 * cost.macs + 3 * L * l
    assert math.isinf(cost.mpl)


@pytest.mark.parametrize("dim,size", SIZES)
@pytest.mark.parametrize("k,groups", [(3, 1), (5, 1), (3, 4)])
def test_conv_formula(dim, size, k, groups):
    cost = conv_cost(dim, k, size, groups=groups)
    m = nn.Conv2d(dim, dim, k, padding=k // 2, groups=groups)
    assert count_params(m) == cost.params
    assert count_flops(m, (1, dim, size, size), "macs") == cost.macs
    assert cost.paper_flops == 2 * cost.macs
    assert cost.mpl == pytest.approx(2 * size / (k - 1))


@pytest.mark.parametrize("dim,size", SIZES)
@pytest.mark.parametrize("k", [3, 5, 7])
def test_dwconv_formula(dim, size, k):
    cost = dwconv_cost(dim, k, size)
    m = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)
    assert count_params(m) == cost.params == (k * k + 1) * dim
    assert count_flops(m, (1, dim, size, size), "macs") == cost.macs == k * k * size * size * dim


def test_norm_counts_belong_to_the_norm_module():
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), mbe.blocks.layers.LayerNorm2d(4))
    bd = flop_breakdown(block, (1, 4, 3, 3), "fvcore")
    assert bd == {("0", "convolution"): 4 * 4 * 9, ("1", "BatchNorm2d"): 2 * 36, ("2.norm", "LayerNorm"): 5 * 36}


def test_count_flops_accepts_a_tensor():
    m = nn.Conv2d(3, 4, 1, bias=False)
    assert count_flops(m, torch.zeros(1, 3, 5, 5), "macs") == 3 * 4 * 25


# ---- one cost type: every formula equals the measured Cost, in every convention --------------------


def _formula_cases(C, H, W):
    """(formula, module, input channels) on a C x H x W map; H, W need not be multiples of the window."""
    return [
        (mhsa_cost(C, H, W), lambda: MHSA(C, 4), C),
        (wmhsa_cost(C, H, 4, W), lambda: MHSA(C, 4, window_size=4), C),
        (conv_cost(C, 3, H, width=W, bias=False), lambda: nn.Conv2d(C, C, 3, padding=1, bias=False), C),
        (dwconv_cost(C, 5, H, W), lambda: nn.Conv2d(C, C, 5, padding=2, groups=C), C),
        (cx.irb_cost(C, 3.5, H, 5, W), lambda: InvertedResidual(C, C, exp_ratio=3.5, dw_kernel_size=5), C),
        (cx.irb_cost(C, 1, H, 3, W), lambda: InvertedResidual(C, C, exp_ratio=1), C),  # no expansion at λ = 1
        (cx.irmb_cost(C, 2.5, H, 5, 4, W), lambda: iRMB(C, C, exp_ratio=2.5, dw_kernel_size=5, has_attn=True,
                                                        num_heads=4, window_size=4), C),
        (cx.ghost_module_cost(C, 3 * C, H, W), lambda: GhostModule(C, 3 * C), C),
        (cx.mosa_cost(C, H, W), lambda: MoSA(C, 4), C),
        (cx.moffn_cost(C, 3 * C, H, W, se_ratio=0.25), lambda: MoFFN(C, 3 * C, se_ratio=0.25), C),
        (cx.mtb_cost(C, 2 * C, H, W), lambda: MobileTransformerBlock(C, 2 * C, 4), C),
        (cx.mlp_cost(C, 2 * C, H, W), lambda: FFN(C, 2.0), C),
        (cx.transformer_block_cost(C, 2 * C, H, W), lambda: TransformerBlock(C, 4, 2.0), C),
        (cx.dyrelu_cost(C, k=3, mode="a"), lambda: DyReLU(C, k=3, mode="a"), C),
    ]


@pytest.mark.parametrize("C,H,W", [(16, 7, 7), (32, 9, 6)])
def test_every_formula_equals_the_measured_cost(C, H, W):
    for formula, make, in_chs in _formula_cases(C, H, W):
        with torch.device("meta"):
            module = make()
        measured = count_cost(module, (1, in_chs, H, W))
        name = type(module).__name__
        assert (formula.params, formula.macs, formula.linear_macs, formula.norm_flops) == \
            (measured.params, measured.macs, measured.linear_macs, measured.norm_flops), name
        for conv in cx.CONVENTIONS:
            assert formula.flops(conv) == count_flops(module, (1, in_chs, H, W), conv), (name, conv)


def test_costs_add_and_sum():
    a, b = mhsa_cost(8, 4), cx.mlp_cost(8, 16, 4)
    assert a + b == sum([a, b]) == Cost(a.params + b.params, a.macs + b.macs, a.linear_macs + b.linear_macs)
    assert (a + b).paper_flops is None and (a + b).mpl is None  # a sum is no module of a paper
    assert cx.batchnorm_cost(8, 4).flops("fvcore") == 2 * 8 * 16 and cx.batchnorm_cost(8, 4).flops("macs") == 0
    with pytest.raises(ValueError, match="convention"):
        a.flops("flops")
    with pytest.raises(TypeError):
        a + 1


def test_the_blocks_path_lengths_are_the_papers_orders():
    assert cx.irb_cost(32, 6, 28, 5).mpl == conv_cost(32, 5, 28).mpl == 2 * 28 / 4
    assert cx.irmb_cost(32, 4, 28, 5, 7).mpl == cx.irmb_mpl(28, 5, 7) == 2 * 28 / (4 + 14)
    assert cx.mtb_cost(32, 64, 7).mpl == cx.mosa_cost(32, 7).mpl == 1


@pytest.mark.parametrize("name, convention", [("emo_1m", "fvcore"), ("mocovit_100", "conv_linear"),
                                              ("ghostnet_100", "macs"), ("mocovit_d_100", "fvcore")])
def test_large_inputs_are_counted_on_meta_exactly_as_on_real_tensors(name, convention):
    """A shape of 256x256 or more is counted on a storage-less copy of the model; a real tensor
    of that shape is run for real. The two totals and per-module sums are equal, and the model
    itself is left as it was (on the CPU, its weights untouched)."""
    model = mbe.create_model(name).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shape = (1, 3, 256, 288)
    assert 3 * 256 * 288 >= cx.META_FROM_ELEMENTS
    on_meta = cx.flop_breakdown(model, shape, convention)
    real = cx.flop_breakdown(model, torch.zeros(shape), convention)
    assert sum(on_meta.values()) == sum(real.values())
    assert cx.group_counts(on_meta, 2) == cx.group_counts(real, 2)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

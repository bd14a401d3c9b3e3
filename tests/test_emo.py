"""EMO: the published counts, the reference checkpoint layout, the model API, the small variants."""
import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.complexity import (
    count_flops,
    count_params,
    flop_breakdown,
    group_counts,
    params_by_prefix,
)
from mobileblocks_edu.blocks.attention import set_attention
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mobileblocks_edu.lab import on_meta, randomize_
from mobileblocks_edu.models.emo import EMO

REFERENCE_KEYS = Path(__file__).parent / "data" / "emo_1m_reference_keys.txt"
VARIANTS = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
SHAPE_224 = (1, 3, 224, 224)


@lru_cache(maxsize=None)
def _counts(name: str, **kwargs) -> tuple[int, int]:
    model = on_meta(name, **kwargs)
    return count_params(model), count_flops(model, SHAPE_224, "fvcore")


def test_counts_do_not_depend_on_the_device():
    model = mbe.create_model("emo_1m")
    assert (count_params(model), count_flops(model, SHAPE_224, "fvcore")) == _counts("emo_1m")


def _reference_layout() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in REFERENCE_KEYS.read_text().splitlines():
        key, shape = line.split("\t")
        rows.append((key, tuple(int(s) for s in re.findall(r"\d+", shape))))
    return rows


# ---- the published counts -----------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_parameters_and_flops_match_the_reference(name):
    ref = mbe.model_cfg(name).reference
    params, flops = _counts(name)
    assert params == ref["params"]
    assert round(flops / 1e6, 2) == round(ref["fvcore"] / 1e6, 2)  # exact to the printed 0.01M


def test_emo_1m_per_stage_breakdown():
    model = on_meta("emo_1m")
    per_stage = group_counts(flop_breakdown(model, SHAPE_224, "fvcore"), depth=1)
    params = params_by_prefix(model, depth=1)
    # design note: params (K) / FLOPs (M) per stage; the head is the linear layer
    expected = {"stage0": (2.76, 19.27), "stage1": (11.50, 57.70), "stage2": (27.84, 33.80),
                "stage3": (452.70, 107.51), "stage4": (697.02, 42.36), "head": (169.0, 0.17)}
    for stage, (k_params, m_flops) in expected.items():
        assert round(params[stage] / 1e3, 2) == k_params, stage
        assert round(per_stage[stage] / 1e6, 2) == m_flops, stage
    assert per_stage["norm"] == 5 * 168 * 7 * 7  # the head's LayerNorm


@pytest.mark.parametrize(
    "attn_stages,paper",
    [
        ((False, False, False, True), (4.697, 797)),
        ((False, False, True, True), (5.109, 903)),
        ((False, True, True, True), (5.130, 931)),
        ((True, True, True, True), (5.139, 992)),
    ],
)
def test_attention_in_different_stages_fig_6b(attn_stages, paper):
    """Exact when LN + GELU follow the attention (the default: "LN + GeLU are bound to EW-MHSA")."""
    params, flops = _counts("emo_5m", attn_stages=attn_stages)
    assert round(params / 1e6, 3) == paper[0]
    assert round(flops / 1e6) == paper[1]
    model = on_meta("emo_5m", attn_stages=attn_stages)
    assert [type(s[-1].norm).__name__ for s in model.stages()[1:]] == [
        "LayerNorm2d" if a else "BatchNorm2d" for a in attn_stages
    ]


def test_fig_6b_with_batchnorm_kept_differs():
    """Keeping BN in stages 1-2 while adding attention there: the same parameters, fewer FLOPs."""
    params, flops = _counts("emo_5m", attn_stages=(True, True, True, True), norm_layers=("bn", "bn", "ln", "ln"))
    assert round(params / 1e6, 3) == 5.139
    assert round(flops / 1e6, 1) == 988.3  # paper: 992


@pytest.mark.parametrize(
    "depths,paper",
    [((2, 2, 10, 3), (5.3, 901)), ((2, 2, 12, 2), (5.0, 970)), ((4, 4, 8, 3), (4.9, 905)), ((3, 3, 9, 3), (5.1, 903))],
)
def test_depth_configurations_table_12(depths, paper):
    params, flops = _counts("emo_5m", depths=depths)
    assert abs(params / 1e6 - paper[0]) < 0.1  # the paper prints one decimal (truncated or rounded)
    assert abs(flops / 1e6 / paper[1] - 1) < 0.005


# ---- the reference checkpoint layout ------------------------------------------------------------


def test_state_dict_equals_the_reference_layout():
    layout = _reference_layout()
    assert len(layout) == 217
    ours = [(k, tuple(v.shape)) for k, v in mbe.create_model("emo_1m").state_dict().items()]
    assert ours == layout  # same keys, same shapes, same order


@pytest.mark.parametrize("name", ["emo_2m", "emo_5m", "emo_6m"])
def test_larger_variants_follow_the_same_pattern(name):
    pattern = {re.sub(r"^stage(\d)\.\d+\.", r"stage\1.N.", k) for k, _ in _reference_layout()}
    sd = on_meta(name).state_dict()
    assert len(sd) == 258
    assert {re.sub(r"^stage(\d)\.\d+\.", r"stage\1.N.", k) for k in sd} == pattern


@pytest.mark.parametrize(
    "name,key,shape",
    [
        ("emo_2m", "stage4.1.v.conv.weight", (700, 200, 1, 1)),
        ("emo_5m", "stage3.0.v.conv.weight", (576, 72, 1, 1)),
        ("emo_5m", "stage4.2.qk.conv.weight", (576, 288, 1, 1)),
        ("emo_6m", "stage4.0.v.conv.weight", (1600, 160, 1, 1)),
        ("emo_6m", "stage4.1.conv_local.conv.weight", (1600, 1, 5, 5)),
    ],
)
def test_hidden_widths_of_the_design_table(name, key, shape):
    assert tuple(on_meta(name).state_dict()[key].shape) == shape


def _synthetic_reference_checkpoint() -> dict[str, torch.Tensor]:
    """A state dict built only from the reference key/shape list, as the authors' file would be."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in _reference_layout():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    return sd


@pytest.mark.parametrize("wrap", [None, "net", "net_E"])
def test_reference_checkpoint_loads_strictly(tmp_path, wrap):
    sd = _synthetic_reference_checkpoint()
    path = save_checkpoint(sd if wrap is None else {wrap: sd, "epoch": 299}, tmp_path / "emo_1m.pth")
    model = load_checkpoint(mbe.create_model("emo_1m"), path).eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)  # plain logits


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    sd = _synthetic_reference_checkpoint()
    sd.pop("stage3.1.qk.conv.bias")
    sd["head.weight"] = torch.zeros(10, 168)
    path = save_checkpoint({"net": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(mbe.create_model("emo_1m"), path)
    assert "missing (1):\n    stage3.1.qk.conv.bias" in str(err.value)
    assert "head.weight: checkpoint (10, 168) vs model (1000, 168)" in str(err.value)


def test_reference_building_rules():
    model = mbe.create_model("emo_1m")
    first = model.stage3[0]
    assert first.stride == 2 and not first.has_skip and not first.has_attn and first.mid_chs == 48 * 2 * 3
    assert all(b.has_attn and b.has_skip and b.dw_skip for b in model.stage3[1:])
    assert not any(b.has_attn for b in [*model.stage1, *model.stage2])
    stem_block = model.stage0[1]
    assert not stem_block.has_skip and isinstance(stem_block.norm, torch.nn.Identity)
    blocks = model.blocks()
    assert blocks[0] is stem_block and len(blocks) == 1 + 15
    rates = [b.drop_path.p if hasattr(b.drop_path, "p") else 0.0 for b in blocks[1:]]
    expected = torch.linspace(0, 0.04036, 15).tolist()
    assert rates == pytest.approx([r if b.has_skip else 0.0 for r, b in zip(expected, blocks[1:])])
    eps = {m.eps for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))}
    assert eps == {1e-6}
    assert isinstance(model.stage4[1].v.act, torch.nn.GELU) and model.stage4[1].v.act.approximate == "none"


@pytest.mark.parametrize("attn_before_mlp_e", [True, False])
def test_fast_and_readable_models_agree(attn_before_mlp_e):
    fast = randomize_(mbe.create_model("emo_2m", attn_before_mlp_e=attn_before_mlp_e)).eval()
    readable = mbe.create_model("emo_2m", attn_before_mlp_e=attn_before_mlp_e, reference_order=True).eval()
    readable.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 40, 72)  # padding in stages 3-4
    with torch.no_grad():
        a, b = fast(x), readable(x)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    set_attention(fast, fused=False, reference_order=True)
    assert fast.reference_order and fast.stage3[1].reference_order and not fast.stage3[1].attn.fused


def test_reference_orders_differ_on_a_stage_3_block():
    """The reference network (efficient order, one group, GELU) is not its paper-order twin."""
    blk = randomize_(mbe.create_model("emo_1m").stage3[1]).eval()
    assert isinstance(blk, iRMB) and not blk.attn_order_exact
    x = torch.randn(2, 80, 14, 14)
    with torch.no_grad():
        a = blk(x)
        blk.attn_before_mlp_e = False
        assert (a - blk(x)).abs().max() > 1e-2


def test_paper_order_is_impossible_for_emo_1m_stage_4():
    with pytest.raises(ValueError, match=r"mid_chs=588 divisible by num_heads=8"):
        mbe.create_model("emo_1m", attn_before_mlp_e=False)


# ---- small-input variants ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,size", [("emo_1m_cifar", 32), ("emo_5m_cifar", 32), ("emo_1m_imagenette", 128)])
def test_small_variants_have_no_padding(name, size):
    cfg = mbe.model_cfg(name)
    assert cfg.input_size == (3, size, size)
    model = mbe.create_model(name)
    assert model.num_classes == 10
    shape = (1, 3, size, size)
    readable = on_meta(name, reference_order=True)
    # the reference order counts every padded pixel: equal counts mean no padding at all
    assert count_flops(on_meta(name), shape, "fvcore") == count_flops(readable, shape, "fvcore")
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_small_variant_docstring_counts():
    """The counts quoted in the factory docstrings."""
    flops = lambda name, size, **kw: round(count_flops(on_meta(name, **kw), (1, 3, size, size)) / 1e6, 1)  # noqa: E731
    assert flops("emo_1m", 32, num_classes=10, reference_order=True) == 34.4  # ImageNet layout, reference order
    assert flops("emo_1m", 32, num_classes=10) == 5.1  # ImageNet layout, padding skipped
    assert flops("emo_1m_cifar", 32) == 17.6
    assert flops("emo_1m_cifar", 32, stem_stride=1, stage_strides=(2, 2, 2, 2)) == 20.6
    assert flops("emo_5m_cifar", 32) == 69.1
    assert flops("emo_5m", 32, num_classes=10, reference_order=True) == 129.8
    assert flops("emo_5m", 32, num_classes=10) == 17.9
    assert flops("emo_1m", 128, num_classes=10, reference_order=True) == 133.3
    assert flops("emo_1m_imagenette", 128) == 82.4
    assert flops("emo_1m", 160, num_classes=10, window_sizes=5) == 129.9


def test_small_variant_trains_in_channels_last():
    model = mbe.create_model("emo_1m_cifar").train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match=r"depths needs one value per stage \(4\)"):
        EMO(depths=(2, 2, 8))
    with pytest.raises(ValueError, match=r"norm_layers must be one of \['bn', 'ln'\]"):
        EMO(norm_layers=("bn", "bn", "gn", "ln"))
    with pytest.raises(ValueError, match=r"depths\[2\] must be a positive number"):
        EMO(depths=(2, 2, 0, 3))


# ---- the benchmark ------------------------------------------------------------------------------


def test_benchmark_runs_and_reports(tmp_path):
    import json

    from mobileblocks_edu.analysis import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--models", "emo_1m", "--settings", "32:2", "--repeats", "2", "--warmup", "0",
                       "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["checks"]["emo_1m@32"]["max_abs_diff"] < 1e-4
    train, evaluation = report["groups"]
    assert (train["mode"], evaluation["mode"]) == ("train", "eval")
    assert len(train["runs"]["emo_1m/fast"]["seconds"]) == 2 and train["ratios"]["emo_1m"] > 0
    assert report["threads"] == 2 and report["allocator"] == "default"


def test_benchmark_profile_sorts_operators_by_kind():
    from mobileblocks_edu.analysis import bench

    assert bench.op_kind("aten::convolution_backward") == "convolution, backward"
    assert bench.op_kind("aten::mkldnn_convolution") == "convolution, forward"
    assert bench.op_kind("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert bench.op_kind("aten::native_layer_norm") == "normalisation"
    assert bench.op_kind("aten::addmm") == "other"
    pair = bench.build_pair("emo_1m_cifar", num_classes=10)
    steps = {p: bench.Step(pair[p], p, "train", 32, 2, 10) for p in bench.PATHS}
    prof = bench.profile_paths(steps, rounds=1)
    assert set(prof) == set(bench.PATHS)
    assert prof["fast"]["convolution, backward"] > 0
    assert set(prof["fast"]) <= {k for k, _ in bench.OP_GROUPS} | {"other"}


def test_benchmark_refuses_bad_settings():
    from mobileblocks_edu.analysis import bench

    with pytest.raises(SystemExit):
        bench.main(["--settings", "224x32"])


def test_columnar_vit_counts_emo_table3(one_thread):
    """EMO's Table 3 (DeiT-Tiny 5.7M / 1258M; with iRMBs 4.9M / 1102M), counted on meta tensors."""
    from mobileblocks_edu.models.emo import ColumnarViT

    deit, with_irmb = ColumnarViT("transformer").to("meta"), ColumnarViT("irmb").to("meta")
    assert count_params(deit) == 5_717_416 and count_flops(deit, (1, 3, 224, 224), "fvcore") == 1_258_411_200
    assert count_params(with_irmb) == 4_922_152
    assert abs(count_flops(with_irmb, (1, 3, 224, 224), "fvcore") / 1102e6 - 1) < 0.01
    small = ColumnarViT("irmb", num_classes=10, depth=2, img_size=64).eval()
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="64, 64"):
        small(torch.randn(2, 3, 32, 32))
    tiny = ColumnarViT("transformer", num_classes=0, depth=1, img_size=32).eval()
    assert tiny(torch.randn(1, 3, 32, 32)).shape == (1, 192)
    with pytest.raises(ValueError, match="block"):
        ColumnarViT("mlp")
    with pytest.raises(ValueError, match="img_size"):
        ColumnarViT(img_size=100)


def test_pyramid_vit_counts_emo_table3(one_thread):
    """EMO's Table 3 (PVT-Tiny 13.2M / 1943M; with iRMBs 11.7M / 1845M), counted on meta tensors."""
    from mobileblocks_edu.models.emo import PyramidViT

    pvt, with_irmb = PyramidViT("transformer").to("meta"), PyramidViT("irmb").to("meta")
    assert count_params(pvt) == 13_229_288 and count_flops(pvt, (1, 3, 224, 224), "fvcore") == 1_943_022_336
    assert round(count_params(pvt) / 1e6, 1) == 13.2  # the paper's digits, and 1943M to the last one
    # the iRMB variant (K and V from the reduced map): parameters within 3 % of 11.7M, FLOPs a quarter below 1845M
    p1, f1 = count_params(with_irmb), count_flops(with_irmb, (1, 3, 224, 224), "fvcore")
    assert p1 == 11_438_824 and f1 == 1_400_861_440
    assert abs(p1 / 11.7e6 - 1) < 0.03 and abs(f1 / 1845e6 - 1) < 0.25
    small = PyramidViT("irmb", num_classes=10, img_size=64, depths=(1, 1, 1, 1), sr_ratios=(4, 2, 1, 1)).eval()
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    tiny = PyramidViT("transformer", num_classes=0, img_size=64, depths=(1, 1, 1, 1), sr_ratios=(4, 2, 1, 1)).eval()
    assert tiny(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    with pytest.raises(ValueError, match="64, 64"):
        small(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="irmb_attention"):
        PyramidViT("irmb", irmb_attention="local")


def test_spatial_reduction_attention_shapes_and_errors():
    from mobileblocks_edu.blocks.attention import MHSA, SpatialReductionAttention, TransformerBlock
    from mobileblocks_edu.blocks.layers import LayerNorm2d

    sra = SpatialReductionAttention(32, 2, sr_ratio=4).eval()
    x = torch.randn(2, 32, 16, 12)
    assert sra.reduce(x).shape == (2, 32, 4, 3) and sra(x).shape == (2, 32, 16, 12)
    assert count_params(SpatialReductionAttention(32, 2)) == count_params(MHSA(32, 2)) == 4 * 33 * 32
    assert count_params(sra) == 4 * 33 * 32 + 16 * 32 * 32 + 32 + 2 * 32
    with pytest.raises(ValueError, match="divisible by 4"):
        sra(torch.randn(1, 32, 10, 12))
    with pytest.raises(ValueError, match="sr_ratio"):
        SpatialReductionAttention(32, 2, sr_ratio=0)
    assert TransformerBlock(32, 2, sr_ratio=2)(torch.randn(1, 32, 8, 8)).shape == (1, 32, 8, 8)
    with pytest.raises(ValueError, match="window_size"):
        TransformerBlock(32, 2, window_size=7, sr_ratio=2)
    blk = iRMB(32, 32, exp_ratio=4.0, has_attn=True, num_heads=2, window_size=None, norm_layer=LayerNorm2d,
               sr_ratio=2).eval()
    assert blk(torch.randn(1, 32, 8, 8)).shape == (1, 32, 8, 8)
    with pytest.raises(ValueError, match="divisible by 2"):
        blk(torch.randn(1, 32, 7, 8))
    with pytest.raises(ValueError, match="sr_ratio > 1"):
        iRMB(32, 32, has_attn=True, num_heads=2, window_size=7, sr_ratio=2)

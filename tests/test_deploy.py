"""Part VI: BatchNorm folding, torch.fx / torch.export / ONNX export, latency and quantization helpers.

Every registered model is folded, fx-traced, exported with ``torch.export`` and to ONNX, and converted
by PyTorch's FX int8 flow, at a small input size (32 for the CIFAR variants, 64 otherwise); on the
oldest versions, one model of each family (``model_zoo.zoo``).
"""
import json

import pytest
import torch
from model_zoo import zoo
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu import deploy, lab
from mobileblocks_edu.analysis import timing
from mobileblocks_edu.blocks.attention import set_attention
from mobileblocks_edu.blocks.layers import ConvNormAct, check_input
from mobileblocks_edu.deploy import cli, latency, quantize

MODELS = zoo(mbe.list_models())


def small_size(name: str) -> int:
    return 32 if mbe.model_cfg(name).input_size[-1] == 32 else 64


def random_model(name: str, **kwargs) -> nn.Module:
    """Random weights and BatchNorm statistics: a fresh BatchNorm is the identity, and would let a
    wrong fold pass."""
    torch.manual_seed(0)
    return lab.randomize_(mbe.create_model(name, **kwargs)).eval()


# ---- folding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 4])
def test_fold_conv_bn_is_exact(bias, groups, one_thread):
    conv = nn.Conv2d(8, 12, 3, 2, 1, groups=groups, bias=bias)
    bn = lab.randomize_(nn.BatchNorm2d(12)).eval()
    x = torch.randn(2, 8, 9, 9)
    fused = deploy.fold_conv_bn(conv, bn)
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    assert fused.bias is not None and conv.bias is None or bias  # the original is untouched


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("affine", [True, False])
def test_fold_conv_bn_equals_pytorchs_fuse_conv_bn_eval(bias, groups, affine, one_thread):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    conv = lab.randomize_(nn.Conv2d(8, 12, 3, 1, 1, groups=groups, bias=bias)).eval()
    bn = lab.randomize_(nn.BatchNorm2d(12, affine=affine)).eval()  # random statistics: not the identity
    ours, theirs = deploy.fold_conv_bn(conv, bn), fuse_conv_bn_eval(conv, bn)
    torch.testing.assert_close(ours.weight, theirs.weight)
    torch.testing.assert_close(ours.bias, theirs.bias)
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        assert (ours(x) - conv(x)).abs().max() > 0.1  # the BatchNorm did something


def test_bn_before_a_1x1_conv_folds_forward_but_not_into_a_3x3(one_thread):
    bn = lab.randomize_(nn.BatchNorm2d(6)).eval()
    conv = lab.randomize_(nn.Conv2d(6, 10, 1, bias=False))
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(deploy.fold_bn_into_next_conv(bn, conv)(x), conv(bn(x)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="1x1 convolution without padding"):
        deploy.fold_bn_into_next_conv(bn, nn.Conv2d(6, 10, 3, padding=1))


@pytest.mark.parametrize("name", MODELS)
def test_fold_batchnorm_is_exact_and_removes_every_batchnorm(name, one_thread):
    model = random_model(name)
    before = deploy.norm_counts(model)
    folded = deploy.fold_batchnorm(model)
    after = deploy.norm_counts(folded)
    x = torch.randn(2, 3, small_size(name), small_size(name))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    assert before["batchnorm"] > 0 and after["batchnorm"] == 0
    # LayerNorm cannot fold: EMO keeps every one (stages 3-4 and the head), the CNNs have none
    assert after["layernorm"] == before["layernorm"]
    assert (before["layernorm"] > 0) == name.startswith("emo")
    assert deploy.norm_counts(model) == before  # the original model is unchanged
    assert mbe.count_params(folded) < mbe.count_params(model)


def test_folding_keeps_the_pre_norm_of_attention_blocks(one_thread):
    from mobileblocks_edu.blocks.irmb import iRMB

    blk = lab.randomize_(iRMB(16, 16, exp_ratio=2.0, has_attn=True, num_heads=2, window_size=3,
                              norm_layer=nn.BatchNorm2d)).eval()
    folded = deploy.fold_batchnorm(blk)
    assert isinstance(folded.norm, nn.BatchNorm2d)  # padded window pixels are zeros after the norm
    x = torch.randn(1, 16, 7, 7)  # 7 is not a multiple of 3: padded windows
    torch.testing.assert_close(folded(x), blk(x), atol=1e-5, rtol=1e-5)


# ---- torch.fx and torch.export ------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_fx_symbolic_trace_equals_eager(name, one_thread):
    model = random_model(name)
    gm = torch.fx.symbolic_trace(model)
    s = small_size(name)
    for size in (s, s + 24):  # one traced graph serves other sizes (padding included)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["emo_1m_cifar", "mocovit_050_cifar"])
def test_fx_traces_the_readable_attention_path(name, one_thread):
    model = set_attention(random_model(name), fused=False, reference_order=True)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x), atol=1e-5, rtol=1e-5)


# one model of each family, and EMO at 64x64, where every stage's windows are padded
INT8_MODELS = ["emo_1m_cifar", "emo_1m", "ghostnet_050_cifar", "mobilenetv2_100_cifar", "mocovit_050_cifar",
               "mocovit_d_100_cifar"]


@pytest.mark.parametrize("name", INT8_MODELS)
def test_fx_int8_flow_runs_on_every_family(name, one_thread):
    """PyTorch's graph-mode int8 flow (prepare_fx, calibrate, convert_fx) runs on every family: the
    trace reads no parameter that conversion turns into something else, and the int8 logits stay
    near the float ones (random weights, a few random calibration images)."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = random_model(name)
    size = min(mbe.model_cfg(name).input_size[-1], 64)  # 64: padded windows in every EMO stage
    xs = torch.randn(2, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the FX flow is deprecated in favour of torch.export-based flows
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (xs,))
        prepared(xs)
        out, ref = convert_fx(prepared)(xs), model(xs)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.25 * ref.abs().max()


def test_torchvision_feature_extraction_works(one_thread):
    from torchvision.models.feature_extraction import create_feature_extractor

    model = random_model("emo_1m_cifar")
    fx = create_feature_extractor(model, return_nodes={"norm": "features"})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = fx(x)["features"]
        torch.testing.assert_close(feats, model.forward_features(x), atol=1e-5, rtol=1e-5)
    assert feats.shape == (1, model.num_features, 2, 2)


def test_eager_checks_keep_their_messages():
    model = mbe.create_model("emo_1m_cifar").eval()
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\) with B >= 1, got \(1, 4, 32, 32\)"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="expects 8 input channels, got 3"):
        check_input(ConvNormAct(8, 8), torch.randn(1, 3, 4, 4), 8)


OLD_EXPORT = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 3)


@pytest.mark.parametrize("name", MODELS)
def test_torch_export_matches_eager(name, one_thread):
    if OLD_EXPORT and name.startswith("emo"):  # seen on torch 2.2: IndexError inside torch.export's tracer
        pytest.xfail(f"torch {torch.__version__}: torch.export fails inside its tracer on the iRMB "
                     "(torch 2.14 captures it)")
    model = random_model(name)
    x = torch.randn(1, 3, small_size(name), small_size(name))
    ep = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), atol=1e-5, rtol=1e-5)


# ---- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_onnxruntime(name, one_thread):
    pytest.importorskip("onnxruntime")
    model = random_model(name)
    s = small_size(name)
    real, _ = deploy.sample_images(2, s, name)  # real images when the data directory has them
    x = torch.cat([real, torch.randn(1, 3, s, s)])
    r = deploy.check_export(model, x)
    assert r["max_abs_diff"] <= 1e-4, r["max_abs_diff"]
    assert r["max_abs_output"] > 0.1  # the comparison is not between two near-zero outputs
    assert r["ops"]["Conv"] > 10


def test_check_export_runs_the_onnx_checker(monkeypatch, one_thread):
    """A graph onnxruntime might still load is refused by ``onnx.checker`` first: a node reads a
    tensor that nothing defines."""
    onnx = pytest.importorskip("onnx")
    from mobileblocks_edu.deploy import export

    good = export.export_onnx

    def broken(*args, **kwargs):
        m = onnx.load_from_string(good(*args, **kwargs))
        m.graph.node.append(onnx.helper.make_node("Relu", ["no_such_tensor"], ["dangling"]))
        return m.SerializeToString()

    conv = nn.Conv2d(3, 4, 3)
    assert export.check_export(conv, torch.randn(1, 3, 8, 8))["max_abs_diff"] < 1e-5
    monkeypatch.setattr(export, "export_onnx", broken)
    with pytest.raises(onnx.checker.ValidationError, match="no_such_tensor"):
        export.check_export(conv, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("name", ["emo_1m_cifar", "mocovit_050_cifar"])
def test_readable_attention_path_exports_too(name, one_thread):
    pytest.importorskip("onnxruntime")
    model = set_attention(random_model(name), fused=False, reference_order=True)
    r = deploy.check_export(model, torch.randn(1, 3, 32, 32))
    assert r["max_abs_diff"] <= 1e-4
    assert r["ops"]["Softmax"] > 0 and r["ops"]["MatMul"] > 0  # the attention is there, as MatMul + Softmax


@pytest.mark.skipif(not deploy.HAS_DYNAMO_EXPORT,
                    reason=f"torch {torch.__version__}: torch.onnx.export(dynamo=True) exists from 2.5")
def test_dynamo_exporter_matches(one_thread):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    r = deploy.check_export(random_model("mocovit_050_cifar"), torch.randn(1, 3, 32, 32), dynamo=True)
    assert r["max_abs_diff"] <= 1e-4


def test_padding_shows_up_in_the_onnx_graph(one_thread):
    pytest.importorskip("onnx")
    model = mbe.create_model("emo_1m").eval()
    # EMO-1M's windows are 7: at 224 the maps are 14 and 7 (no padding), at 256 they are 16 and 8
    ops_224 = deploy.onnx_op_counts(deploy.export_onnx(model, None, size=224))
    ops_256 = deploy.onnx_op_counts(deploy.export_onnx(model, None, size=256))
    assert ops_224["Pad"] == 0 and ops_256["Pad"] > 0
    assert ops_224["Softmax"] == ops_256["Softmax"] > 0
    assert ops_224["LayerNormalization"] == deploy.norm_counts(model)["layernorm"]


# ---- latency and quantization helpers -----------------------------------------------------------
def test_latency_contenders_agree_and_time(one_thread):
    pytest.importorskip("onnxruntime")
    calls, checks = latency.build_contenders("mobilenetv2_100_cifar", size=32)
    assert set(calls) == set(latency.SETTINGS)
    assert checks["bn_before"] == 52 and checks["bn_after"] == 0
    for s in ("folded_cl", "ort_1t", "ort_2t"):
        assert checks[s] <= 1e-4
    times = timing.time_rounds(calls, rounds=2, inner=1, warmup=1)
    assert all(len(t) == 2 and min(t) > 0 for t in times.values())
    summary = timing.summarize_ms([3.0, 1.0, 2.0, 4.0])
    assert summary["median_ms"] == 2.5 and summary["min_ms"] == 1.0 and summary["max_ms"] == 4.0


def test_latency_command_writes_a_report(tmp_path, one_thread):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "lat.json"
    assert cli.main(["latency", "--models", "ghostnet_050_cifar", "--size", "32", "--rounds", "2", "--inner", "1",
                        "--warmup", "0", "--output", str(out)]) == 0
    rep = json.loads(out.read_text())
    entry = rep["models"]["ghostnet_050_cifar"]
    assert set(entry["latency"]) == set(latency.SETTINGS) and entry["params"] == mbe.count_params(
        mbe.create_model("ghostnet_050_cifar"))
    assert rep["command"].startswith("python -m mobileblocks_edu.deploy latency") and rep["onnxruntime"]
    with pytest.raises(ValueError, match="unknown models"):
        latency.run_latency(["no_such_model"], log=None)


def test_committed_latency_result_covers_every_imagenet_model():
    path = lab.results_dir() / "latency_cpu.json"
    if not path.is_file():
        pytest.skip("no committed latency result")
    rep = json.loads(path.read_text())
    assert sorted(rep["models"]) == sorted(deploy.imagenet_models())
    for entry in rep["models"].values():
        assert set(entry["latency"]) == set(latency.SETTINGS)
        assert all(v["q1_ms"] <= v["median_ms"] <= v["q3_ms"] for v in entry["latency"].values())


def test_int8_quantization_runs_and_stays_close(tmp_path, one_thread):
    pytest.importorskip("onnxruntime")
    model = random_model("mobilenetv2_100_cifar")
    f32, i8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    deploy.export_onnx(model, f32, size=32)
    calib = torch.randn(8, 3, 32, 32)
    quantize.quantize_int8(f32, i8, calib)
    assert i8.stat().st_size < 0.4 * f32.stat().st_size  # int8 weights: about a quarter of the bytes
    ops = deploy.onnx_op_counts(i8)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    x = calib[:2]
    a, b = deploy.run_onnx(deploy.ort_session(f32), x[:1]), deploy.run_onnx(deploy.ort_session(i8), x[:1])
    assert (a - b).abs().max() < 0.5 * a.abs().max()

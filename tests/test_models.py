"""The model contract, swept over every registered model (as timm's ``tests/test_models.py``).

Small inputs (32 px for the CIFAR variants, 64 otherwise), batch 2.
"""
import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu.lab import on_meta
from mobileblocks_edu.models.registry import ModelCfg

MODELS = mbe.list_models()
B = 2

pytestmark = pytest.mark.usefixtures("one_thread")


def _input(name: str) -> torch.Tensor:
    size = 32 if mbe.model_cfg(name).input_size[-1] == 32 else 64
    return torch.randn(B, 3, size, size)


def test_the_sweep_covers_every_family():
    for family in ("emo", "ghostnet", "mobilenetv2", "mocovit", "mocovit_d"):
        assert mbe.list_models(f"{family}_[0-9]*"), family


@pytest.mark.parametrize("name", MODELS)
def test_model_forward(name):
    model = mbe.create_model(name, num_classes=7).eval()
    x = _input(name)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
        assert torch.equal(model.forward_head(feats), out)  # forward = forward_head ∘ forward_features
    assert out.shape == (B, 7) and model.num_classes == 7
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\)"):
        model(x[:, :1])


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_features(name):
    """``forward_features`` gives the spatial map Grad-CAM looks at; ``forward_head(pre_logits=True)``
    gives ``num_features`` channels."""
    model = mbe.create_model(name).eval()
    x = _input(name)
    seen = []
    handles = [m.register_forward_hook(lambda m, a, o: seen.append(o)) for m in model.cam_target_layers()]
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
    for h in handles:
        h.remove()
    assert feats.dim() == 4 and feats.shape[0] == B and min(feats.shape[-2:]) >= 1
    torch.testing.assert_close(seen[-1], feats, rtol=0, atol=0)  # the CAM target layer makes the map
    assert pre.shape == (B, model.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_model_reset_classifier(name):
    model = mbe.create_model(name).eval()
    x = _input(name)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (B, model.num_features) and model.num_classes == 0
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (B, 5) and model.num_classes == 5


@pytest.mark.parametrize("name", MODELS)
def test_model_backward(name):
    """One backward pass in train mode reaches every trainable parameter with a finite gradient."""
    model = mbe.create_model(name).train()
    model(_input(name)).logsumexp(1).mean().backward()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in params.items() if p.grad is None]
    assert params and not missing, f"{len(missing)} parameters without a gradient, e.g. {missing[:3]}"
    bad = [n for n, p in params.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad[:3]}"


@pytest.mark.parametrize("name", MODELS)
def test_model_cfg(name):
    model = on_meta(name)  # shapes only: the configuration does not need weights
    cfg = model.cfg
    assert isinstance(cfg, ModelCfg) and cfg == mbe.model_cfg(name) and cfg.name == name
    assert cfg.input_size[0] == 3 and len(cfg.mean) == len(cfg.std) == 3
    assert model.num_classes == (10 if cfg.input_size[-1] < 224 else 1000)


def test_resnet20_is_the_papers_20_layers_with_parameter_free_shortcuts():
    from mobileblocks_edu.models.resnet import BasicBlock

    model = mbe.create_model("resnet20_cifar")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 20 and all(c.kernel_size == (3, 3) for c in convs)  # 6n + 2, n = 3
    assert mbe.count_params(model) == model.cfg.reference["params"] == 269_722  # 0.27M in the paper's Table 6
    assert round(mbe.count_params(model) / 1e6, 2) == float(model.cfg.paper["params"].rstrip("M"))
    sizes = []
    hooks = [s.register_forward_hook(lambda m, a, o: sizes.append(tuple(o.shape[1:]))) for s in model.stages]
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert sizes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    blk = BasicBlock(16, 32, stride=2)
    x = torch.randn(1, 16, 8, 8)
    short = blk.shortcut(x)
    assert torch.equal(short[:, 8:24], x[:, :, ::2, ::2]) and not short[:, :8].any() and not short[:, 24:].any()
    with pytest.raises(ValueError, match="cannot narrow"):
        BasicBlock(32, 16)


def test_resnet20_takes_the_recipes_stochastic_depth():
    model = mbe.create_model("resnet20_cifar", drop_path_rate=0.1)
    rates = [getattr(b.drop_path, "p", 0.0) for s in model.stages for b in s]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)  # rising over the blocks
    assert mbe.count_params(model) == 269_722
    with pytest.raises(ValueError, match="drop_path_rate"):
        mbe.create_model("resnet20_cifar", drop_path_rate=1.5)

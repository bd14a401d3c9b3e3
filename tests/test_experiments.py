"""The training lab's named experiments: trained models by name, the experiment list."""
import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu import experiments as E
from mobileblocks_edu.checkpoint import CheckpointError, save_checkpoint


@pytest.fixture
def toy_experiment(monkeypatch):
    exp = E.Experiment("toy_cifar", "ghostnet_100_cifar", epochs=1, seeds=(0, 1), group="ablation",
                       model_args=(("num_features", 64),))
    monkeypatch.setitem(E.EXPERIMENTS, exp.name, exp)
    return exp


def test_load_trained_returns_the_saved_weights_in_eval_mode(toy_experiment, tmp_path):
    torch.manual_seed(0)
    trained = mbe.create_model("ghostnet_100_cifar", num_features=64).eval()
    for m in trained.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    half = {k: v.half() if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    save_checkpoint(half, tmp_path / "toy_cifar_seed1.pt")

    assert E.load_trained("toy_cifar", seed=0, checkpoints=tmp_path) is None  # not collected
    model = E.load_trained("toy_cifar", seed=1, checkpoints=tmp_path)
    assert model is not None and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, half[k].to(v.dtype)), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = trained.half().float()(x)
        torch.testing.assert_close(model(x), ref)


def test_load_trained_refuses_weights_of_another_model(toy_experiment, tmp_path):
    other = mbe.create_model("ghostnet_100_cifar")  # 1280 features: other shapes
    save_checkpoint(other.state_dict(), tmp_path / "toy_cifar_seed0.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        E.load_trained("toy_cifar", checkpoints=tmp_path)


def test_names_and_model_aliases():
    assert E.resolve_experiment("emo_1m_cifar").name == "cifar10_emo_1m"  # a model with one main experiment
    assert E.resolve_experiment("cifar10_emo_1m").model == "emo_1m_cifar"
    with pytest.raises(ValueError, match="unknown experiment"):
        E.load_trained("no_such_experiment")
    path = E.checkpoint_path("cifar10_emo_1m", 2)
    assert path.name == "cifar10_emo_1m_seed2.pt" and path.parent.name == "checkpoints"

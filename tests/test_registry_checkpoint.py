"""The model registry and safe checkpoint handling."""
import json

import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint


def test_registry_lists_and_builds():
    names = mbe.list_models()
    assert "mobilenetv2_100" in names and names == sorted(names)
    assert mbe.list_models("mobilenetv2_*") == [n for n in names if n.startswith("mobilenetv2_")]
    model = mbe.create_model("mobilenetv2_100", num_classes=7)
    assert model.cfg.name == "mobilenetv2_100"
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match=r"unknown model 'mobilenetv2_10'.*did you mean 'mobilenetv2_100'"):
        mbe.create_model("mobilenetv2_10")


def test_models_refuse_non_image_input():
    model = mbe.create_model("mobilenetv2_100_cifar")
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("wrap", [None, "net", "net_E", "state_dict"])
def test_checkpoint_roundtrip(tmp_path, wrap):
    src = mbe.create_model("mobilenetv2_100_cifar")
    sd = src.state_dict()
    path = save_checkpoint(sd if wrap is None else {wrap: sd, "epoch": 3}, tmp_path / "ck.pt")
    dst = load_checkpoint(mbe.create_model("mobilenetv2_100_cifar"), path)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_mismatched_checkpoint_lists_keys(tmp_path):
    sd = mbe.create_model("mobilenetv2_100_cifar").state_dict()
    sd.pop("stem.conv.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["classifier.weight"] = torch.zeros(5, 1280)
    path = save_checkpoint(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(mbe.create_model("mobilenetv2_100_cifar"), path)
    msg = str(err.value)
    assert "missing (1):\n    stem.conv.weight" in msg
    assert "unexpected (1):\n    extra.weight" in msg
    assert "classifier.weight: checkpoint (5, 1280) vs model (10, 1280)" in msg


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"net": {"w": torch.zeros(1)}, "obj": torch.nn.Linear(1, 1)}, path)  # a pickled module
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(path)


def test_interrupted_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"a": torch.ones(2)}, tmp_path / "ck.pt")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_interrupted_json_write_leaves_old_file_intact(tmp_path):
    from mobileblocks_edu.train import write_json

    path = write_json({"epoch": 1}, tmp_path / "result.json")
    with pytest.raises(ValueError):  # NaN is refused half-way through the write
        write_json({"epoch": 2, "loss": float("nan")}, path)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]

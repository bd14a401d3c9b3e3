"""``create_model(name, pretrained=...)``: the published ImageNet weights, mapped exactly onto the
library's layout, downloaded from a loopback server (nothing here reaches the network)."""
import os
import re
import time

import pytest
import torch
from weights_mirror import published_layout, random_state_dict, serve, write_file, write_mirror

import mobileblocks_edu as mbe
from mobileblocks_edu.checkpoint import CheckpointError
from mobileblocks_edu.data import weights

FAMILIES = list(weights.PUBLISHED)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty PyTorch hub cache, no mirror, downloads allowed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MBE_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("MBE_OFFLINE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def mirror(tmp_path, hub, monkeypatch):
    """The three families' files on a loopback server, which MBE_WEIGHTS_URL points at."""
    files = write_mirror(tmp_path / "mirror")
    with serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("MBE_WEIGHTS_URL", url)
        yield url, files


def _same(model, sd, name):
    own = model.state_dict()
    mapped = {weights.library_key(name, k): v for k, v in sd.items()}
    assert set(own) == set(mapped)
    for k, v in own.items():
        assert torch.equal(v, mapped[k]), k


# ---- the mapping: every key and every shape -------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_the_published_layout_maps_onto_the_library_one_for_one(name):
    layout = published_layout(name)
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in mbe.create_model(name).state_dict().items()}
    mapped = {weights.library_key(name, k): shape for k, shape in layout}
    assert len(mapped) == len(layout) == len(own)  # no two published keys land on one name
    assert mapped == own  # every key, every shape


@pytest.mark.parametrize("name", ["mobilenetv2_100", "ghostnet_100"])
def test_timm_names_are_renamed_in_order(name):
    """The i-th parameter of timm's model is the i-th of the library's (the same network)."""
    with torch.device("meta"):
        own = list(mbe.create_model(name).state_dict())
    assert [weights.library_key(name, k) for k, _ in published_layout(name)] == own


def test_some_timm_names():
    assert weights.library_key("mobilenetv2_100", "blocks.0.0.conv_pw.weight") == "blocks.0.0.conv_pwl.conv.weight"
    assert weights.library_key("mobilenetv2_100", "blocks.3.2.bn2.running_var") == "blocks.3.2.conv_dw.norm.running_var"
    assert weights.library_key("ghostnet_100", "blocks.6.4.se.conv_reduce.weight") == "stages.3.5.se.conv_reduce.weight"
    assert weights.library_key("ghostnet_100", "blocks.9.0.bn1.weight") == "final_conv.norm.weight"
    assert weights.library_key("emo_1m", "stage3.1.qk.conv.weight") == "stage3.1.qk.conv.weight"


@pytest.mark.parametrize("name,suffix", [
    ("emo_1m", "net.pth"), ("emo_5m", "net.pth"), ("mobilenetv2_100", "model.safetensors"),
    ("mobilenetv2_100", "pytorch_model.bin"), ("ghostnet_100", "model.safetensors"),
    ("ghostnet_100", "pytorch_model.bin"),
])
def test_a_file_path_loads_every_weight(tmp_path, name, suffix):
    path = tmp_path / f"{name}-{suffix}"
    sd = write_file(name, path)
    model = mbe.create_model(name, pretrained=str(path))
    _same(model, sd, name)
    assert model.weights_info["test"] and "test weights" in weights.describe_weights(model)
    assert model.weights_info["file"] == str(path)


def test_the_emo_trainer_checkpoint_gives_net_or_its_ema_copy(tmp_path):
    path = tmp_path / "ckpt.pth"
    sd = write_file("emo_1m", path, kind="checkpoint")
    _same(mbe.create_model("emo_1m", pretrained=path), sd, "emo_1m")
    ema = weights.load_pretrained(mbe.create_model("emo_1m"), "emo_1m", path, ema=True)
    assert torch.equal(ema.state_dict()["head.weight"], sd["head.weight"] + 1)
    bare = tmp_path / "net.pth"
    write_file("emo_1m", bare)
    with pytest.raises(CheckpointError, match="no EMA copy"):
        weights.load_pretrained(mbe.create_model("emo_1m"), "emo_1m", bare, ema=True)


def test_the_safetensors_reader_keeps_dtypes_shapes_and_metadata(tmp_path):
    from weights_mirror import save_safetensors

    t = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(7), "h": torch.ones(2).half()}
    got, meta = weights.read_safetensors(save_safetensors(t, tmp_path / "x.safetensors", {"format": "pt"}))
    assert meta == {"format": "pt"} and set(got) == set(t)
    assert all(torch.equal(got[k], t[k]) and got[k].dtype == t[k].dtype for k in t)


def test_a_new_number_of_classes_keeps_the_backbone_and_a_new_head(tmp_path):
    path = tmp_path / "m.safetensors"
    sd = write_file("mobilenetv2_100", path)
    model = mbe.create_model("mobilenetv2_100", num_classes=10, pretrained=path)
    assert model.state_dict()["classifier.weight"].shape == (10, 1280)
    assert torch.equal(model.state_dict()["conv_head.conv.weight"], sd["conv_head.weight"])
    assert model.weights_info["new_head"] and "a new classifier" in weights.describe_weights(model)


def test_no_classifier_gives_the_pooled_features(tmp_path):
    path = tmp_path / "net.pth"
    sd = write_file("emo_1m", path)
    model = mbe.create_model("emo_1m", num_classes=0, pretrained=path).eval()
    assert "head.weight" not in model.state_dict() and model.weights_info["new_head"]
    assert torch.equal(model.state_dict()["norm.norm.weight"], sd["norm.norm.weight"])
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 168)


# ---- the download: loopback server, hub cache, offline -------------------------------------------


@pytest.mark.parametrize("name", ["emo_1m", "mobilenetv2_100", "ghostnet_100"])
def test_pretrained_true_downloads_into_the_hub_cache_once(mirror, hub, name):
    url, files = mirror
    assert weights.weights_url(name).startswith(url + "/")
    model = mbe.create_model(name, pretrained=True)
    _same(model, files[name], name)
    cached = hub / weights.PUBLISHED[name].filename
    assert cached.is_file() and model.weights_info["file"] == str(cached)
    assert not list(hub.glob(".*part"))  # nothing half-written left
    os.environ["MBE_OFFLINE"] = "1"  # the cached copy needs no network (monkeypatch restores it)
    try:
        _same(mbe.create_model(name, pretrained=True), files[name], name)
    finally:
        del os.environ["MBE_OFFLINE"]


def test_pretrained_url_downloads_that_file(mirror, hub):
    url, files = mirror
    model = mbe.create_model("ghostnet_100", pretrained=f"{url}/timm/ghostnet_100.in1k/resolve/main/model.safetensors")
    _same(model, files["ghostnet_100"], "ghostnet_100")


def test_the_recorded_urls():
    assert weights.PUBLISHED["emo_1m"].url == ("https://raw.githubusercontent.com/zhangzjn/EMO/"
                                               f"{weights.EMO_COMMIT}/resources/EMO_1M/net.pth")
    assert weights.PUBLISHED["mobilenetv2_100"].url == \
        "https://huggingface.co/timm/mobilenetv2_100.ra_in1k/resolve/main/model.safetensors"
    assert weights.PUBLISHED["ghostnet_100"].url == \
        "https://huggingface.co/timm/ghostnet_100.in1k/resolve/main/model.safetensors"
    assert len({w.filename for w in weights.PUBLISHED.values()}) == len(weights.PUBLISHED)


def test_offline_fails_at_once_naming_the_url_and_the_cache(hub, monkeypatch):
    monkeypatch.setenv("MBE_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(weights.WeightsUnavailable) as err:
        mbe.create_model("emo_1m", pretrained=True)
    assert time.monotonic() - start < 5
    assert weights.PUBLISHED["emo_1m"].url in str(err.value)
    assert str(hub / "emo_1m-net.pth") in str(err.value) and "MBE_OFFLINE" in str(err.value)


def test_an_unreachable_host_fails_within_seconds(hub, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("MBE_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(weights.WeightsUnavailable, match=re.escape(f"http://127.0.0.1:{port}/timm/")):
        mbe.create_model("mobilenetv2_100", pretrained=True)
    assert time.monotonic() - start < 10
    start = time.monotonic()  # the next file on that host: no second wait
    with pytest.raises(weights.WeightsUnavailable, match="did not answer earlier in this session"):
        mbe.create_model("ghostnet_100", pretrained=True)
    assert time.monotonic() - start < 1


def test_a_missing_file_on_the_mirror_is_unavailable(mirror, hub):
    with pytest.raises(weights.WeightsUnavailable, match="emo_2m"):
        mbe.create_model("emo_2m", pretrained=True)  # the mirror serves only three files
    assert not list(hub.glob("*"))


def test_a_download_that_is_not_the_recorded_file_is_refused(tmp_path, hub, monkeypatch):
    """Without a mirror the file is compared with the Git SHA-1 the EMO repository records."""
    bad = tmp_path / "net.pth"
    write_file("emo_1m", bad)
    with pytest.raises(CheckpointError, match="Git SHA-1"):
        weights.check_file("emo_1m", bad)
    assert weights.git_blob_sha1(bad) != weights.PUBLISHED["emo_1m"].git_blob


# ---- what does not fit ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mocovit_100", "mocovit_d_100", "emo_1m_cifar", "mobilenetv2_100_cifar"])
def test_models_without_published_weights_say_so(name):
    if name not in mbe.list_models():
        pytest.skip(f"{name} is not registered")
    with pytest.raises(ValueError, match=f"{name} has no published weights"):
        mbe.create_model(name, pretrained=True)


def test_a_mismatch_names_the_file_and_the_first_keys(tmp_path):
    path = tmp_path / "emo.pth"
    sd = random_state_dict("emo_1m")
    sd.pop("stage3.1.qk.conv.bias")
    sd["stage4.0.v.conv.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        mbe.create_model("emo_1m", pretrained=path)
    text = str(err.value)
    assert str(path) in text and "stage3.1.qk.conv.bias" in text and "stage4.0.v.conv.weight" in text


def test_another_models_file_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    write_file("ghostnet_100", path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        mbe.create_model("mobilenetv2_100", pretrained=path)


@pytest.mark.parametrize("suffix,content", [(".safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"),
                                            (".safetensors", b"\xff" * 8), (".pth", b"PK\x03\x04garbage")])
def test_a_corrupt_file_gives_a_clear_error(tmp_path, suffix, content):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape("cannot read") + ".*" + re.escape(str(path))):
        mbe.create_model("mobilenetv2_100", pretrained=path)


def test_a_truncated_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    write_file("mobilenetv2_100", path)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="not a complete safetensors file"):
        mbe.create_model("mobilenetv2_100", pretrained=path)


@pytest.mark.parametrize("bad", [1, 2.0, object()])
def test_pretrained_must_be_a_flag_a_path_or_a_url(bad):
    with pytest.raises(TypeError, match="pretrained must be"):
        mbe.create_model("emo_1m", pretrained=bad)


def test_no_file_at_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no weights file at"):
        mbe.create_model("emo_1m", pretrained=tmp_path / "absent.pth")


def test_without_pretrained_nothing_is_loaded():
    model = mbe.create_model("emo_1m")
    assert not hasattr(model, "weights_info")
    assert weights.describe_weights(model).startswith("random initialisation")


def test_what_is_recorded_of_each_file_is_said(tmp_path):
    emo, timm = tmp_path / "net.pth", tmp_path / "model.safetensors"
    write_file("emo_1m", emo)
    write_file("ghostnet_100", timm)
    assert mbe.create_model("emo_1m", pretrained=emo).weights_info["recorded"] == \
        f"Git SHA-1 {weights.PUBLISHED['emo_1m'].git_blob}"
    assert mbe.create_model("ghostnet_100", pretrained=timm).weights_info["recorded"] == weights.UNRECORDED

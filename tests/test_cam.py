"""Grad-CAM on every registered model, the CAM wiring on a model whose answer is known, overlays,
photos, and the attention maps of EW-MHSA windows and MoSA for one query."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.cam import (
    grad_cam,
    load_photos,
    model_block_attention,
    overlay,
    prepare,
    query_attention,
    to_rgb,
)
from mobileblocks_edu.blocks.irmb import iRMB
from mobileblocks_edu.train.experiments import load_trained_or_fresh

pytestmark = pytest.mark.usefixtures("one_thread")


def _small_input(name: str) -> int:
    return 32 if mbe.model_cfg(name).input_size[-1] == 32 else 64


@pytest.mark.parametrize("name", mbe.list_models())
def test_grad_cam_runs_on_every_model(name):
    model = mbe.create_model(name).eval()
    size = _small_input(name)
    layers = model.cam_target_layers()
    assert layers and all(any(layer is m for m in model.modules()) for layer in layers)
    acts = []
    handles = [layer.register_forward_hook(lambda m, a, o: acts.append(o)) for layer in layers]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    reshape = model.cam_reshape_transform()
    for a in acts:
        a = reshape(a) if reshape is not None else a
        assert a.dim() == 4 and a.shape[0] == 2 and min(a.shape[-2:]) >= 1, (name, tuple(a.shape))
    res = grad_cam(model, x)
    assert res.cams.shape == (2, size, size) and res.cams.dtype == np.float32
    assert np.isfinite(res.cams).all() and res.cams.min() >= 0 and res.cams.max() <= 1 + 1e-6
    n_classes = model.num_classes
    assert all(0 <= p < n_classes for p in res.preds) and res.targets == res.preds
    assert all(0 < c <= 1 for c in res.confidences)


class _Spotlight(nn.Module):
    """Class 1's score is the mean brightness of the feature map, class 0's its negative: Grad-CAM
    for class 1 must light up the bright square of the image, and be empty for class 0."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        nn.init.constant_(self.features.weight, 1.0 / 27)
        self.act = nn.ReLU()

    def forward(self, x):
        f = self.act(self.features(x))  # (B, 4, H, W)
        s = f.mean((1, 2, 3))
        return torch.stack([-s, s], 1)

    def cam_target_layers(self):
        return [self.act]

    def cam_reshape_transform(self):
        return None


def test_grad_cam_lights_up_what_the_class_score_uses():
    x = torch.zeros(1, 3, 24, 24)
    x[:, :, 2:8, 14:20] = 1.0  # a bright square near the top right
    res = grad_cam(_Spotlight(), x)
    assert res.preds == [1]
    cam = res.cams[0]
    i, j = np.unravel_index(cam.argmax(), cam.shape)
    assert 2 <= i < 8 and 14 <= j < 20
    assert cam[16:, :8].max() < 0.05  # far corner: nothing
    other = grad_cam(_Spotlight(), x, targets=[0])
    assert other.targets == [0] and other.cams.max() == 0  # negative evidence: ReLU leaves nothing
    assert other.target_confidences[0] < 0.5 < res.confidences[0]
    with pytest.raises(ValueError, match="one class per image"):
        grad_cam(_Spotlight(), x, targets=[0, 1])


def test_overlay_and_rgb():
    rgb = np.random.rand(8, 8, 3).astype(np.float32)
    img = overlay(rgb, np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="same size"):
        overlay(rgb, np.zeros((4, 4), np.float32))
    x = torch.rand(3, 5, 5)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    norm = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    np.testing.assert_allclose(to_rgb(norm, mean, std), x.permute(1, 2, 0).numpy(), atol=1e-6)


def test_photos_and_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match="photos.json"):
        load_photos(tmp_path)
    Image.new("RGB", (60, 40), (255, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "photos.json").write_text(json.dumps([{"file": "red.png", "cifar10_class": "truck"}]))
    photos = load_photos(tmp_path)
    assert photos[0]["cifar10_class"] == "truck" and photos[0]["image"].size == (60, 40)
    x, rgb = prepare(photos[0]["image"], 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 32, 32) and rgb.shape == (32, 32, 3)
    assert torch.allclose(x[0], torch.ones(32, 32)) and np.allclose(rgb[..., 1], 0)



def test_shipped_photos_need_no_data_directory(monkeypatch, tmp_path):
    """The default photos come with the package: found with no data directory, every one openly
    licensed (no non-commercial terms), under 1 MB in all, each file listed in the licence file."""
    monkeypatch.setenv("MBE_DATA", str(tmp_path / "nonexistent"))
    from mobileblocks_edu.analysis.cam import PHOTOS_DIR

    photos = load_photos()
    assert len(photos) >= 4 and all(p["image"].mode == "RGB" and min(p["image"].size) >= 200 for p in photos)
    licence = (PHOTOS_DIR / "LICENSE.md").read_text()
    for p in photos:
        assert p["license"].startswith(("CC0", "public domain")) and "non-commercial" not in p["license"].lower()
        assert f"`{p['file']}`" in licence
    assert sum(f.stat().st_size for f in PHOTOS_DIR.iterdir()) < 1_000_000
    assert any(p["cifar10_class"] == "cat" for p in photos)

# ---- attention for one query ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["block", "grid"])
@pytest.mark.parametrize("size", [8, 7])  # 7: padded windows
def test_ewmhsa_query_attention_covers_the_query_window(layout, size):
    w, q = 4, (1, 5)
    block = iRMB(16, 16, exp_ratio=2, has_attn=True, dim_head=8, window_size=w, window_layout=layout).eval()
    amap = model_block_attention(block, block, torch.randn(2, 16, size, size), q)  # (heads, H, W)
    assert amap.shape == (2, size, size)
    n = math.ceil(size / w)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    if layout == "block":
        same = (rows // w == q[0] // w) & (cols // w == q[1] // w)
    else:
        same = (rows % n == q[0] % n) & (cols % n == q[1] % n)
    assert torch.equal(amap[0] > 0, same)  # exactly the query's window
    sums = amap.sum((1, 2))
    if size % w == 0:
        torch.testing.assert_close(sums, torch.ones(2))
    else:
        assert (sums < 1).all() and (sums > 0).all()  # padded keys take the rest


def test_global_query_attention_and_mosa_in_a_model():
    attn = torch.softmax(torch.randn(1, 2, 12, 12), -1)
    m = query_attention(attn, (1, 2), (3, 4))
    torch.testing.assert_close(m.flatten(1), attn[0, :, 6])
    with pytest.raises(ValueError, match="outside"):
        query_attention(attn, (3, 0), (3, 4))
    model = mbe.create_model("mocovit_100_cifar").eval()
    mosa = model.mosa_modules()[0]
    amap = model_block_attention(model, mosa, torch.randn(1, 3, 32, 32), (2, 1))
    assert amap.shape == (4, 4, 4)  # 4 heads over the 4x4 map of the last stage
    torch.testing.assert_close(amap.sum((1, 2)), torch.ones(4))
    assert not mosa.attn.keep_attn  # restored


def test_emo_block_attention_in_a_model():
    model = mbe.create_model("emo_1m_imagenette").eval()
    blk = model.stage3[1]
    amap = model_block_attention(model, blk, torch.randn(1, 3, 128, 128), (0, 0))
    assert amap.shape[1:] == (8, 8)  # stage 3 at 128 px: 8x8 map, 2x2 interleaved windows of 4
    assert torch.equal(amap[0] > 0, torch.zeros(8, 8, dtype=torch.bool).index_fill_(0, torch.arange(0, 8, 2), True)
                       & torch.zeros(8, 8, dtype=torch.bool).index_fill_(1, torch.arange(0, 8, 2), True))
    assert not blk.attn.keep_attn


# ---- figure helpers -----------------------------------------------------------------------------------------


def test_load_trained_or_fresh_falls_back_to_fresh_weights():
    model, trained, label = load_trained_or_fresh("no_such_experiment", fallback_model="emo_1m_cifar")
    assert not trained and "untrained" in label and not model.training
    with pytest.raises(ValueError, match="no fallback_model"):
        load_trained_or_fresh("no_such_experiment")


def test_cam_grid_and_kernel_free_slider():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobileblocks_edu.analysis.cam import CamResult
    from mobileblocks_edu.viz import cam_grid, jshtml_slider

    rgb = [np.random.rand(8, 8, 3).astype(np.float32) for _ in range(2)]
    res = CamResult(np.random.rand(2, 8, 8).astype(np.float32), [1, 0], [0.9, 0.6], [1, 0], [0.9, 0.6])
    fig = cam_grid(rgb, {"model A": res, "model B": res}, ["cat", "dog"], labels=[1, 1])
    axes = fig.axes
    assert len(axes) == 6 and axes[1].get_title() == "dog 90%"
    assert axes[4].get_title() == "cat 60%" and axes[4].title.get_color() == "crimson"  # wrong: red
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    out = jshtml_slider(fig, lambda v: ax.set_title(str(v)), [1, 2, 3])
    assert "<img" in out.data and "animation" in out.data
    assert not plt.fignum_exists(fig.number)  # closed, so it is not drawn a second time

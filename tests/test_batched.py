"""The on-device batched loader: the same images and crops as the per-image pipeline, seeded
batches, exact resume through fit, distributed shards and the command line."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TinyNet, _assert_same, _numbers

from mobileblocks_edu import data, train
from mobileblocks_edu.data import batched
from mobileblocks_edu.train import cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inette(tmp_path_factory):
    """An Imagenette layout: 10 classes of 3 training and 2 validation JPEGs of varied sizes."""
    root = tmp_path_factory.mktemp("inette")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for wnid in data.IMAGENETTE_CLASSES:
            d = root / "imagenet_subset" / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(150, 200)), int(rng.integers(150, 240))
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{wnid}_{i}.JPEG")
    return root


def _tensor_loaders(root, name="cifar10", **kw):
    return data.build_loaders(name, root=root, download=False, loader="tensor", device="cpu", **kw)


@pytest.mark.parametrize("name, size", [("cifar10", None), ("imagenette", 64)])
def test_evaluation_batches_equal_the_per_image_pipeline(cifar, inette, name, size):
    root = cifar if name == "cifar10" else inette
    _, tensor_eval = _tensor_loaders(root, name, batch_size=4, img_size=size)
    _, image_eval = data.build_loaders(name, root=root, download=False, batch_size=4, img_size=size)
    a, ya = map(torch.cat, zip(*tensor_eval))
    b, yb = map(torch.cat, zip(*image_eval))
    assert torch.equal(ya, yb)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert tensor_eval.dataset.classes == image_eval.dataset.classes


def test_training_crops_are_padded_crops_of_the_image_mirrored_or_not(cifar):
    tl, _ = _tensor_loaders(cifar, batch_size=8, seed=3)
    ds = tl.dataset
    tl.set_epoch(0, 3)
    order = list(tl.sampler)
    x, y = next(iter(tl))
    pixels = x * ds.std + ds.mean  # back to [0, 255]
    for k in range(len(x)):
        src = torch.nn.functional.pad(ds.images[order[k]].float(), (4, 4, 4, 4))
        crops = [src[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        crops += [c.flip(-1) for c in crops]
        assert min(float((pixels[k] - c).abs().max()) for c in crops) < 1e-3
        assert int(y[k]) == ds.targets[order[k]]


def test_an_epoch_is_a_function_of_seed_and_epoch(cifar):
    tl, _ = _tensor_loaders(cifar, batch_size=8, randaugment=True)

    def epoch(e, seed):
        data.set_epoch(tl, e, seed)
        return [b for b, _ in tl]

    first = epoch(1, 5)
    assert all(torch.equal(p, q) for p, q in zip(first, epoch(1, 5)))
    assert not torch.equal(first[0], epoch(2, 5)[0])
    assert not torch.equal(first[0], epoch(1, 6)[0])
    assert len(first) == len(tl) == 20 // 8


def test_resized_crop_boxes_follow_the_recipe():
    gen = torch.Generator().manual_seed(0)
    boxes = batched.crop_boxes(20000, 100, 160, (0.35, 1.0), gen)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 100).all()
    area = w * h / (100 * 160)
    assert 0.3 < float(area.min()) and float(area.max()) <= 1.0
    unclamped = (w < 160) & (h < 100)
    ratio = (w / h)[unclamped]
    assert 0.7 < float(ratio.min()) and float(ratio.max()) < 1.4


def test_randaugment_groups_apply_torchvision_operations():
    space = batched._augmentation_space(32)
    assert len(space) == 14 and ("Identity", 0.0, False) in space
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = batched.randaugment(x, space, torch.Generator().manual_seed(1))
    b = batched.randaugment(x, space, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    assert (a != x).flatten(1).any(1).float().mean() > 0.5  # most images changed


def test_fit_resumes_a_tensor_loader_run_exactly(cifar, tmp_path):
    def run(out, resume=False, on_epoch=None):
        torch.manual_seed(0)
        tl, vl = _tensor_loaders(cifar, batch_size=4, randaugment=True, seed=1)
        cfg = train.TrainConfig(epochs=2, progress=False, seed=1)
        return train.fit(TinyNet(10), tl, vl, cfg, out, resume=resume, on_epoch=on_epoch)

    straight = run(tmp_path / "straight")

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", on_epoch=stop)
    resumed = run(tmp_path / "cut", resume=True)
    _assert_same(straight.model.state_dict(), resumed.model.state_dict())
    assert _numbers(straight.history) == _numbers(resumed.history)
    result = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert result["train_images"] == 20 and result["val_images"] == 10 and result["status"] == "done"


def test_shards_split_one_order(cifar):
    tl, _ = _tensor_loaders(cifar, batch_size=4)
    tl.set_epoch(2, 0)
    shards = [tl.shard(r, 2) for r in range(2)]
    for s in shards:
        s.set_epoch(2, 0)
    whole = list(tl.sampler)
    assert sorted(i for s in shards for i in s.sampler) == sorted(whole)
    assert list(shards[0].sampler) == whole[0::2] and shards[0].batch_size == 2


def test_the_command_line_records_the_loader(cifar, tmp_path):
    out = tmp_path / "run"
    rc = cli.main(["--model", "mobilenetv2_100_cifar", "--data", "cifar10", "--data-dir", str(cifar), "--offline",
                   "--epochs", "1", "--batch-size", "10", "--loader", "tensor", "--no-progress", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["data"]["loader"] == "tensor" and result["args"]["loader"] == "tensor"


def test_bad_loader_settings_are_named(cifar):
    with pytest.raises(ValueError, match="loader must be one of"):
        data.build_loaders("cifar10", root=cifar, download=False, loader="gpu")
    with pytest.raises(TypeError, match="TensorSet"):
        batched.TensorBatches([1, 2, 3], 2, True)
    with pytest.raises(ValueError, match="uint8"):
        batched.TensorSet(torch.zeros(2, 3, 8, 8), [0, 1], data.dataset_info("cifar10"), 8, ["a"], ["a"])


def test_the_throughput_command_writes_every_path_and_its_share(cifar, tmp_path, monkeypatch, capsys):
    from mobileblocks_edu.analysis import throughput

    monkeypatch.setenv("MBE_DATA", str(cifar))
    out = tmp_path / "t.json"
    assert throughput.main(["--model", "ghostnet_050_cifar", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                            "--repeats", "2", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"model", "tensor", "images"} and res["runs"]["model"]["share_of_model"] == 1.0
    assert all(len(r["seconds"]) == 2 and r["img_per_s"] > 0 for r in res["runs"].values())
    assert res["device"] == "cpu" and res["dtype"] == "float32" and res["command"].endswith(f"--out {out}")

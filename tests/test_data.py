"""The data module: offline layouts, clear errors, corrupt files, reproducible augmentation."""
import dataclasses
import http.server
import json
import pickle
import shutil
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from mobileblocks_edu import data, lab
from mobileblocks_edu.data import download, images
from mobileblocks_edu.models import registry

CLASSES4 = data.CIFAR10_CLASSES[:4]


def _png_folder(root, split, classes=CLASSES4, n=6, size=32, seed=0):
    """An ImageFolder of random RGB PNGs; returns {path: pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(a).save(d / f"{i:05d}.png")
            pixels[str(d / f"{i:05d}.png")] = a
    return pixels


@pytest.fixture
def cifar_root(tmp_path):
    pixels = _png_folder(tmp_path / "cifar10", "train")
    pixels.update(_png_folder(tmp_path / "cifar10", "test", n=2, seed=1))
    return tmp_path, pixels


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ------------------------------------------------------------------ missing data: clear, clean, no download tried
@pytest.fixture
def no_network(monkeypatch):
    """Records what load_dataset asks of the network: ``attempts["probe"]`` the URLs (and
    timeouts) probed, ``attempts["download"]`` the downloads started; the probe answers
    ``attempts["reachable"]``, a download writes nothing."""
    attempts = {"probe": [], "download": [], "reachable": False}

    def probe(url, timeout):
        attempts["probe"].append((url, timeout))
        return attempts["reachable"]

    monkeypatch.setattr(data.datasets, "url_reachable", probe)
    monkeypatch.setattr(data.datasets, "download_dataset", lambda *args: attempts["download"].append(args))
    monkeypatch.delenv("MBE_OFFLINE", raising=False)
    return attempts


def test_missing_dataset_error_explains_and_tries_no_download(tmp_path, no_network):
    root = tmp_path / "nowhere"
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("cifar10", "train", root=root, download=False)
    assert no_network["probe"] == [] and no_network["download"] == []  # download=False: not even a probe
    msg = str(err.value)
    assert "CIFAR-10 ('train' split) was not found" in msg
    assert f"{root / 'cifar10' / 'train'}/<class>/*.png (ImageFolder layout): not there" in msg
    assert f"{root / 'cifar-10-batches-py'}/data_batch_*" in msg
    assert "download=False" in msg and "MBE_DATA" in msg and "ln -s" in msg and "--download" in msg
    assert not root.exists() and _tree(tmp_path) == []  # nothing created


def test_missing_imagenette_lists_every_layout(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("imagenette", "val", root=tmp_path, download=False, size="320px")
    msg = str(err.value)
    for folder in ("imagenet_subset", "imagenette2-320", "imagenette2-160", "imagenette2"):
        assert f"{tmp_path / folder / 'val'}/<wnid>/*.JPEG" in msg
    # the requested size is looked for first among torchvision's folders
    assert msg.index("imagenette2-320") < msg.index("imagenette2-160")


def test_default_respects_offline_flag_and_data_dir(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("MBE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MBE_OFFLINE", "1")
    with pytest.raises(data.DatasetNotFoundError, match=r"MBE_OFFLINE is set") as err:
        data.load_dataset("cifar10")  # download=None: would try, but offline mode says no
    assert no_network["probe"] == [] and no_network["download"] == []
    assert f"{tmp_path / 'data'} (from MBE_DATA)" in str(err.value)
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("download, offline, reachable, downloads", [
    (None, False, True, True),  # the default downloads when the host answers ...
    (None, False, False, False),  # ... and not when it does not
    (True, True, True, True),  # download=True overrides MBE_OFFLINE
    (True, False, False, False),  # but cannot reach a host that does not answer
])
def test_download_is_tried_only_when_allowed_and_reachable(tmp_path, monkeypatch, no_network,
                                                           download, offline, reachable, downloads):
    if offline:
        monkeypatch.setenv("MBE_OFFLINE", "1")
    no_network["reachable"] = reachable
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("imagenette", "val", root=tmp_path, download=download, size="320px", timeout=2.5)
    # the archive of the requested size is probed, with the caller's timeout
    assert no_network["probe"] == [("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz", 2.5)]
    assert no_network["download"] == ([("imagenette", tmp_path, "320px")] if downloads else [])
    why = "the download did not produce it" if downloads else "no network (https://s3.amazonaws.com/"
    assert why in str(err.value)


def test_a_completed_download_is_read(tmp_path, monkeypatch, no_network):
    wnids = list(data.IMAGENETTE_CLASSES)[:2]
    no_network["reachable"] = True
    monkeypatch.setattr(data.datasets, "download_dataset",
                        lambda name, root, size: _png_folder(root / "imagenette2-160", "train", wnids, n=1))
    ds = data.load_dataset("imagenette", root=tmp_path)
    assert ds.source == str(tmp_path / "imagenette2-160" / "train") and ds.class_ids == wnids


def test_try_load_dataset_prints_one_line_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MBE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("MBE_OFFLINE", "1")
    monkeypatch.setattr(data.datasets, "_REPORTED", set())
    assert data.try_load_dataset("cifar10", "test", skipping="the figure") is None
    assert data.try_load_dataset("cifar10", "train") is None  # the same dataset: reported once
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("No data: CIFAR-10 is not in the data directory")
    assert "MBE_DATA" in lines[0] and "run online" in lines[0] and "163 MB" in lines[0] and "the figure" in lines[0]
    assert _tree(tmp_path) == []


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200 if self.path.endswith("/there.tgz") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_url_reachable_asks_the_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _StatusHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections (backlog) but never answers: a stalled server
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert download.url_reachable(f"{base}/there.tgz", timeout=5.0)
        assert not download.url_reachable(f"{base}/missing.tgz", timeout=5.0)  # a 404 is no archive
        assert not download.url_reachable("http://127.0.0.1:9/cifar-10-python.tar.gz", timeout=1.0)  # refused
        assert not download.url_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/x.tgz", timeout=0.5)
    finally:
        server.shutdown()
        silent.close()


def test_url_reachable_does_not_wait_for_a_hanging_resolver(monkeypatch):
    """The probe gives up after ``timeout`` even where urlopen's own timeout does not hold (a
    resolver that hangs): url_reachable returns while the request is still pending."""
    calls, release, finished = [], threading.Event(), threading.Event()

    def hanging_urlopen(request, timeout):
        calls.append((request.full_url, request.get_method(), timeout))
        release.wait(30)
        finished.set()
        raise TimeoutError

    monkeypatch.setattr(urllib.request, "urlopen", hanging_urlopen)
    try:
        assert not download.url_reachable("http://archive.example/x.tgz", timeout=0.05)
        assert calls == [("http://archive.example/x.tgz", "HEAD", 0.05)]
        assert not finished.is_set()  # it did not wait for the request to end
    finally:
        release.set()


class _GarbageHandler(http.server.BaseHTTPRequestHandler):
    body = b"this is not the CIFAR archive" * 100

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_GET(self):
        self.do_HEAD()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    """A real download through torchvision from a local server that sends a wrong file: the
    checksum fails, the error says so, and neither the data folder nor a partial file remains."""
    from torchvision import datasets

    server = http.server.HTTPServer(("127.0.0.1", 0), _GarbageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(datasets.CIFAR10, "url", url)
    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(data.DATASETS["cifar10"], url=url))
    root = tmp_path / "data" / "new"
    try:
        with pytest.raises(data.DatasetNotFoundError,
                           match=r"the download failed \(RuntimeError: File not found or corrupted"):
            data.load_dataset("cifar10", root=root, download=True)
    finally:
        server.shutdown()
    assert _tree(tmp_path) == []  # no archive, no temporary folder, not even the folders it made


# ------------------------------------------------------------------ reading the layouts
def test_imagefolder_reads_pixels_labels_and_official_class_order(cifar_root):
    root, pixels = cifar_root
    # classes.json gives the label order; folder names sorted differently must not change it
    (root / "cifar10" / "classes.json").write_text(json.dumps({"0": "cat", "1": "airplane", "2": "bird",
                                                               "3": "automobile"}))
    ds = data.load_dataset("cifar10", "train", root=root, download=False)
    assert ds.classes == ["cat", "airplane", "bird", "automobile"]
    assert len(ds) == 24 and ds.class_counts() == [6, 6, 6, 6]
    for i in (0, 7, 23):
        path = ds.items[i]
        assert ds.classes[ds.targets[i]] == path.split("/")[-2]
        np.testing.assert_array_equal(np.asarray(ds.image(i)), pixels[path])
    test = data.load_dataset("cifar10", "val", root=root, download=False)  # "val" names the test split
    assert test.split == "test" and len(test) == 8
    mem = ds.in_memory()
    assert isinstance(mem.items, np.ndarray) and mem.items.shape == (24, 32, 32, 3)
    np.testing.assert_array_equal(np.asarray(mem.image(5)), np.asarray(ds.image(5)))


def _write_batch(path, images, labels, protocol=2):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R plane, G plane, B plane
    with open(path, "wb") as f:
        pickle.dump({"batch_label": "x", "labels": list(labels), "data": rows,
                     "filenames": [f"{i}.png" for i in range(len(labels))]}, f, protocol=protocol)


def test_cifar_batch_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    imgs = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    _write_batch(folder / "data_batch_1", imgs[:4], [3, 1, 0, 9])
    _write_batch(folder / "data_batch_2", imgs[4:6], [2, 2], protocol=5)
    _write_batch(folder / "test_batch", imgs[6:], [8])
    ds = data.load_dataset("cifar10", "train", root=tmp_path, download=False)
    assert ds.source == str(folder) and len(ds) == 6 and ds.targets == [3, 1, 0, 9, 2, 2]
    assert ds.classes == list(data.CIFAR10_CLASSES)
    for i in range(6):
        np.testing.assert_array_equal(np.asarray(ds.image(i)), imgs[i])
    test = data.load_dataset("cifar10", "test", root=tmp_path, download=False)
    np.testing.assert_array_equal(np.asarray(test.image(0)), imgs[6])
    # the ImageFolder layout, when present, comes first
    _png_folder(tmp_path / "cifar10", "train", n=1)
    assert data.load_dataset("cifar10", root=tmp_path, download=False).source == str(tmp_path / "cifar10" / "train")


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_cifar_batch_with_code_or_truncated_is_refused(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Evil(), "labels": [0]}, f, protocol=2)
    with pytest.raises(data.CorruptImageError,
                       match=r"data_batch_1: UnpicklingError: refusing to load (__builtin__|builtins).print"):
        data.load_dataset("cifar10", root=tmp_path, download=False)
    assert "code ran" not in capsys.readouterr().out
    _write_batch(folder / "data_batch_1", np.zeros((3, 32, 32, 3), np.uint8), [0, 1, 2])
    raw = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(data.CorruptImageError, match=r"cannot read CIFAR batch file .*data_batch_1"):
        data.load_dataset("cifar10", root=tmp_path, download=False)


def test_imagenette_layouts_give_names(tmp_path):
    wnids = list(data.IMAGENETTE_CLASSES)[:3]
    _png_folder(tmp_path / "imagenette2-160", "train", classes=wnids, n=2, size=40)
    ds = data.load_dataset("imagenette", root=tmp_path, download=False)
    assert ds.class_ids == wnids and ds.classes == ["tench", "English springer", "cassette player"]
    _png_folder(tmp_path / "imagenet_subset", "train", classes=wnids[:2], n=2, size=40)
    (tmp_path / "imagenet_subset" / "classes.json").write_text(json.dumps({wnids[0]: "fish", wnids[1]: "dog"}))
    ds = data.load_dataset("imagenet_subset", root=tmp_path, download=False)
    assert ds.classes == ["fish", "dog"] and ds.source.endswith("imagenet_subset/train")


def test_corrupt_image_names_the_file(cifar_root):
    root, _ = cifar_root
    bad = root / "cifar10" / "train" / "bird" / "00003.png"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # truncated PNG
    ds = data.load_dataset("cifar10", root=root, download=False, transform=data.build_transforms("cifar10", True))
    i = ds.items.index(str(bad))
    with pytest.raises(data.CorruptImageError, match=rf"cannot read image file {bad}"):
        ds[i]
    with pytest.raises(data.CorruptImageError, match=rf"{bad}"):
        ds.in_memory()
    bad.write_bytes(b"not an image")
    with pytest.raises(data.CorruptImageError, match=rf"{bad}: UnidentifiedImageError"):
        next(iter(DataLoader(torch.utils.data.Subset(ds, [i]), batch_size=1)))


# ------------------------------------------------------------------ any ImageFolder tree (full ImageNet, ...)
def _imagefolder(root, splits=("train", "val"), classes=("n02", "n01", "n03"), n=2):
    """A small ImageNet-like tree of real JPEGs (and one PNG) of several sizes, ``root/<split>/<class>/``."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(40, 90, 2)
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                name = f"{c}_{i}.png" if i == 1 and c == "n03" else f"{c}_{i}.JPEG"
                Image.fromarray(pixels).save(root / split / c / name)
    return root


def test_imagefolder_reads_classes_and_labels_from_the_folders(tmp_path, no_network):
    root = _imagefolder(tmp_path / "imagenet")
    train = data.load_dataset("imagefolder", "train", root=root)
    assert train.classes == train.class_ids == ["n01", "n02", "n03"]  # sorted folders, as torchvision
    assert len(train) == 6 and train.class_counts() == [2, 2, 2] and train.source == str(root / "train")
    for path, label in zip(train.items, train.targets):
        assert Path(path).parent.name == train.classes[label]
    assert train.image(5).size == Image.open(train.items[5]).size
    assert data.dataset_info("imagefolder", root=root).num_classes == 3
    assert data.dataset_info("imagefolder").num_classes is None  # no tree, no count
    (root / "classes.json").write_text(json.dumps({"n01": "tench", "n03": "church"}))
    assert data.load_dataset("imagefolder", "val", root=root).classes == ["tench", "n02", "church"]
    assert no_network["probe"] == []  # a tree is never downloaded


def test_imagefolder_evaluation_split_may_be_called_test(tmp_path):
    root = _imagefolder(tmp_path, splits=("train", "test"))
    for split in ("val", "test"):
        assert data.load_dataset("imagefolder", split, root=root).source == str(root / "test")
    with pytest.raises(ValueError, match=r"split must be 'train' or 'val' for ImageFolder \('test', 'val'"):
        data.load_dataset("imagefolder", "validation", root=root)


def test_imagefolder_loaders_use_imagenet_recipe(tmp_path):
    root = _imagefolder(tmp_path)
    train = data.build_transforms("imagefolder", True).transforms
    assert isinstance(train[0], T.RandomResizedCrop) and train[0].size == (224, 224) and train[0].scale == (0.08, 1.0)
    assert isinstance(train[1], T.RandomHorizontalFlip)
    evaluate = data.build_transforms("imagefolder", False).transforms
    assert isinstance(evaluate[0], T.Resize) and evaluate[0].size == 256
    assert isinstance(evaluate[1], T.CenterCrop) and evaluate[1].size == (224, 224)
    assert (evaluate[-1].mean, evaluate[-1].std) == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)
    train_loader, eval_loader = data.build_loaders("imagefolder", root=root, batch_size=4)
    x, y = next(iter(train_loader))
    assert x.shape == (4, 3, 224, 224) and y.dtype == torch.int64
    x, y = next(iter(eval_loader))
    assert x.shape == (6, 3, 224, 224) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_imagefolder_errors_name_the_problem(tmp_path, no_network):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("imagefolder", "val", root=tmp_path / "none")
    msg = str(err.value)
    assert "ImageFolder ('val' split) was not found in the folder passed as root" in msg
    assert f"{tmp_path / 'none' / 'val'}/<class>/<image>" in msg and f"{tmp_path / 'none' / 'test'}/<class>" in msg
    assert "may be called val or test" in msg and "--data-dir" in msg and "image folders are not downloaded" in msg
    assert no_network["probe"] == [] and no_network["download"] == []
    with pytest.raises(data.DatasetNotFoundError, match="ImageFolder .*was not found"):
        data.dataset_info("imagefolder", root=tmp_path / "none")
    root = _imagefolder(tmp_path / "tree")
    for f in (root / "train" / "n02").iterdir():
        f.unlink()
    with pytest.raises(data.DatasetNotFoundError, match=r"Found no valid file for the classes n02"):
        data.load_dataset("imagefolder", root=root)
    shutil.rmtree(root / "train" / "n02")  # now train has n01, n03 and val n01, n02, n03
    with pytest.raises(ValueError, match=r"only in the evaluation split .*: \['n02'\]"):
        data.build_loaders("imagefolder", root=root, batch_size=2)


# ------------------------------------------------------------------ subsets, transforms, seeds
def test_subset_is_deterministic_and_per_class():
    targets = [0] * 10 + [1] * 3 + [2] * 7
    a = images.subset_indices(targets, 4, seed=0)
    assert a == images.subset_indices(targets, 4, seed=0) == sorted(a)
    assert [sum(targets[i] == c for i in a) for c in range(3)] == [4, 3, 4]  # class 1 has only 3
    assert a != images.subset_indices(targets, 4, seed=1)
    with pytest.raises(ValueError, match="per_class must be a positive number"):
        images.subset_indices(targets, 0)


def test_transforms_shapes_and_normalisation():
    img = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    x = data.build_transforms("cifar10", False)(img)
    info = data.dataset_info("cifar10")
    torch.testing.assert_close(x[:, 0, 0], (128 / 255 - torch.tensor(info.mean)) / torch.tensor(info.std))
    torch.testing.assert_close(data.denormalize(x, "cifar10"), torch.full((3, 32, 32), 128 / 255))
    assert data.build_transforms("cifar10", True, randaugment=True)(img).shape == (3, 32, 32)
    big = Image.fromarray(np.zeros((224, 224, 3), np.uint8))
    assert data.build_transforms("imagenette", True, 64)(big).shape == (3, 64, 64)
    assert data.build_transforms("imagenette", False, 64)(big).shape == (3, 64, 64)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.dataset_info("mnist")
    with pytest.raises(ValueError, match="img_size must be a positive number"):
        data.build_transforms("cifar10", True, img_size=-1)


def test_augmentation_is_a_function_of_seed_epoch_index(cifar_root):
    root, _ = cifar_root
    ds = data.load_dataset("cifar10", root=root, download=False,
                           transform=data.build_transforms("cifar10", True, randaugment=True))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = ds[3][0]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    torch.manual_seed(999)
    assert torch.equal(ds[3][0], a)
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], a)
    ds.set_epoch(0, seed=1)
    assert not torch.equal(ds[3][0], a)


def test_epoch_batches_do_not_depend_on_workers(cifar_root):
    root, _ = cifar_root
    batches = {}
    for workers in (0, 2):
        train, _ = data.build_loaders("cifar10", root=root, download=False, batch_size=5, workers=workers,
                                      randaugment=True, seed=3)
        assert len(train) == 4  # 24 images, last incomplete batch dropped
        data.set_epoch(train, 2, seed=3)
        batches[workers] = list(train)
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_epoch_sampler():
    s = data.EpochSampler(10, seed=0)
    e0 = list(s)
    assert sorted(e0) == list(range(10)) and list(s) == e0
    s.set_epoch(1)
    assert list(s) != e0
    s.set_epoch(0, seed=5)
    assert list(s) != e0
    assert list(data.EpochSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_loader_arguments_are_checked(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ValueError, match="batch_size=64 is larger than the training set"):
        data.build_loaders("cifar10", root=root, download=False, batch_size=64)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_dataset("cifar10", "validation", root=root, download=False)


def test_offline_copy_when_present():
    """The offline subsets the book ships with (see the datasets' README), when linked."""
    root = lab.data_dir()
    if not (root / "cifar10" / "train").is_dir():
        pytest.skip(f"no offline CIFAR-10 copy in {root}")
    train = data.load_dataset("cifar10", "train", download=False)
    test = data.load_dataset("cifar10", "test", download=False)
    assert (len(train), len(test)) == (5438, 1017)
    assert train.classes == list(data.CIFAR10_CLASSES)
    assert train.class_counts() == [541, 564, 524, 529, 563, 523, 540, 548, 572, 534]
    if (root / "imagenet_subset" / "train").is_dir():
        inet = data.load_dataset("imagenette", "val", download=False)
        assert len(inet) == 500 and inet.classes == list(data.IMAGENETTE_CLASSES.values())

"""Bad data gives a clear error before any training time is spent, naming the folder, file or
argument and saying what is allowed: odd ImageFolder trees, broken index and batch files, images
that do not decode, switches of the wrong type."""
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from mobileblocks_edu import data, train
from mobileblocks_edu.train import loop

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = ["--model", "ghostnet_050_cifar", "--batch-size", "2", "--img-size", "16", "--offline", "--no-progress",
       "--threads", "1", "--epochs", "1"]


def _tree(root, classes=("a", "b"), splits=("train", "val"), n=2, ext="png"):
    """``root/<split>/<class>/<i>.<ext>``: small real images."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / split / c / f"{i}.{ext}")
    return root


def _no_training(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(loop, "train_one_epoch", boom)


# ---------------------------------------------------------------- the classes of a tree
def test_one_class_folder_is_refused(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path / "tree", classes=("cats",))
    with pytest.raises(ValueError, match=rf"{root / 'train'} has 1 class folder \(cats\); a classifier needs at "
                                         "least two classes"):
        data.dataset_info("imagefolder", root=root)
    with pytest.raises(ValueError, match="has 1 class folder"):
        data.load_dataset("imagefolder", "val", root=root)
    _no_training(monkeypatch)
    out = tmp_path / "R"
    assert train.main(RUN + ["--data", "imagefolder", "--data-dir", str(root), "--out", str(out)]) == 2
    assert f"{root / 'train'} has 1 class folder (cats)" in capsys.readouterr().err
    assert not (out / "last.pt").exists()


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    root = _tree(tmp_path, classes=("a", "b", ".ipynb_checkpoints"))
    (root / "train" / "a" / "._0.png").write_bytes(b"macOS resource fork")  # an image name, not an image
    assert data.dataset_info("imagefolder", root=root).num_classes == 2
    ds = data.load_dataset("imagefolder", root=root)
    assert ds.class_ids == ["a", "b"] and len(ds) == 4 and all("/." not in p for p in ds.items)
    data.build_loaders("imagefolder", root=root, batch_size=2)  # the hidden file is not checked either
    root2 = _tree(tmp_path / "t2", classes=(".ipynb_checkpoints",))  # only a hidden folder: no class at all
    with pytest.raises(ValueError, match=rf"{root2 / 'train'} has 0 class folders; .*hidden folders are not"):
        data.load_dataset("imagefolder", root=root2)


def test_class_folders_differing_only_in_case_are_refused(tmp_path):
    root = _tree(tmp_path, classes=("Cat", "cat", "dog"))
    with pytest.raises(ValueError, match=rf"the class folders 'Cat' and 'cat' of {root / 'train'} differ only in case"):
        data.load_dataset("imagefolder", root=root)


def test_classes_without_images_are_all_named(tmp_path):
    root = _tree(tmp_path, classes=("a", "b", "c"))
    for c in ("a", "c"):
        for f in (root / "train" / c).iterdir():
            f.rename(f.with_suffix(".txt"))
    with pytest.raises(data.DatasetNotFoundError, match=r"Found no valid file for the classes a, c\. .*\.png"):
        data.load_dataset("imagefolder", root=root)


def test_symlink_loop_is_refused(tmp_path):
    root = _tree(tmp_path)
    os.symlink("..", root / "train" / "a" / "loop")  # a/loop/a/loop/... would repeat a's images 40 times
    with pytest.raises(ValueError, match=r"loop.* again: a symbolic link under .*train/a loops back"):
        data.load_dataset("imagefolder", root=root)
    with pytest.raises(ValueError, match="loops back"):
        data.build_loaders("imagefolder", root=root, batch_size=2)


def test_sample_order_is_torchvisions(tmp_path):
    """Exact resume draws per sample index: the files must come in torchvision's order, nested
    folders included (a folder "b-x" sorts before "b/c" as a path)."""
    root = _tree(tmp_path, classes=("n2", "n1"), n=3)
    for sub in ("b", "b/c", "b-x"):
        (root / "train" / "n1" / sub).mkdir()
        Image.new("RGB", (8, 8)).save(root / "train" / "n1" / sub / "z.JPEG")
    ds = data.load_dataset("imagefolder", root=root)
    ref = make_dataset(str(root / "train"), {"n1": 0, "n2": 1}, extensions=IMG_EXTENSIONS)
    assert list(zip(ds.items, ds.targets)) == ref and len(ds) == 9


# ---------------------------------------------------------------- files the data code reads back
@pytest.mark.parametrize("text", ["", "{bad", '["tench", "church"]', '{"a": 1}', "\xff\xfe"])
def test_bad_classes_json_names_itself(tmp_path, text):
    root = _tree(tmp_path)
    (root / "classes.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{root / 'classes.json'}.* must hold a JSON object of class folder names"):
        data.load_dataset("imagefolder", root=root)


@pytest.mark.parametrize("names", [{"1": "cat", "2": "dog"}, ["cat", "dog"], {"0": "cat", "1": "cat"}])
def test_bad_cifar_classes_json_names_itself(tmp_path, names):
    _tree(tmp_path / "cifar10", classes=("cat", "dog"), splits=("train", "test"))
    (tmp_path / "cifar10" / "classes.json").write_text(json.dumps(names))
    with pytest.raises(ValueError, match=r"cifar10/classes.json must hold a JSON object of label ids \"0\", \"1\""):
        data.load_dataset("cifar10", root=tmp_path, download=False)


def _batch(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("content", [
    b"",  # empty
    {"data": np.zeros((2, 3072), np.uint8)},  # no labels
    [1, 2],  # not a dict
    {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]},  # a label out of range
    {"data": np.full((1, 3072), 300), "labels": [0]},  # pixels out of range
    {"data": np.zeros((0, 3072), np.uint8), "labels": []},  # no images
])
def test_bad_cifar_batch_names_itself(tmp_path, content):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    if isinstance(content, bytes):
        (folder / "data_batch_1").write_bytes(content)
    else:
        _batch(folder / "data_batch_1", content)
    with pytest.raises(data.CorruptImageError, match=r"cannot read CIFAR batch file .*data_batch_1: .*it must be "
                                                     "a pickled dict of 'data'"):
        data.load_dataset("cifar10", root=tmp_path, download=False)


# ---------------------------------------------------------------- images that do not decode
def _break(root):
    """Three bad files of the training split: a truncated JPEG, text named .jpg, a broken link."""
    jpg = root / "train" / "a" / "0.jpg"
    raw = jpg.read_bytes()
    jpg.write_bytes(raw[: len(raw) - 40])  # the header is intact, the end of the pixels is missing
    (root / "train" / "b" / "notes.jpg").write_text("not an image")
    (root / "train" / "b" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    return [jpg, root / "train" / "b" / "gone.jpg", root / "train" / "b" / "notes.jpg"]


def test_bad_images_are_named_before_training(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path / "tree", n=3, ext="jpg")
    bad = _break(root)
    with pytest.raises(data.CorruptImageError) as e:
        data.build_loaders("imagefolder", root=root, batch_size=2)
    msg = str(e.value)
    assert msg.startswith(f"3 of the 8 image files of {root / 'train'} cannot be read")
    assert all(str(p) in msg for p in bad) and "UnidentifiedImageError" in msg and "truncated" in msg
    data.build_loaders("imagefolder", root=root, batch_size=2, check_images=False)  # the caller may skip it
    _no_training(monkeypatch)
    out = tmp_path / "R"
    assert train.main(RUN + ["--data", "imagefolder", "--data-dir", str(root), "--out", str(out)]) == 2
    assert "3 of the 8 image files" in capsys.readouterr().err
    assert not (out / "last.pt").exists()


def test_many_bad_images_are_counted_and_in_memory_names_them_all(tmp_path):
    root = _tree(tmp_path, n=4)
    for f in sorted((root / "val").rglob("*.png"))[:7]:
        f.write_bytes(b"")
    with pytest.raises(data.CorruptImageError, match=r"7 of the 8 image files of .*val cannot be read(.|\n)*"
                                                     r"\.\.\. and 2 more"):
        data.build_loaders("imagefolder", root=root, batch_size=2)
    ds = data.load_dataset("imagefolder", "val", root=root)
    with pytest.raises(data.CorruptImageError, match=r"7 of the 8 image files .*\n(  .*\n){4}  .*\n  \.\.\. and 2"):
        ds.in_memory()


# ---------------------------------------------------------------- arguments of the wrong type
@pytest.mark.parametrize("kwargs, needle", [
    (dict(subset=2.0), "subset (images per class) must be a positive number, got 2.0"),
    (dict(subset="2"), "subset (images per class) must be a positive number, got '2'"),
    (dict(subset=True), "subset (images per class) must be a positive number, got True"),
    (dict(download=1), "download must be True, False or None"),
    (dict(download="no"), "download must be True, False or None"),
    (dict(transform="train"), "transform must be a function of a PIL image"),
    (dict(subset_seed=0.5), "subset_seed must be an integer, got 0.5"),
    (dict(timeout="3"), "timeout (seconds) must be a positive number"),
    (dict(root=3), "root must be a folder (a str or Path), got 3"),
])
def test_load_dataset_arguments_of_the_wrong_type(tmp_path, kwargs, needle):
    root = _tree(tmp_path)
    with pytest.raises(ValueError) as e:
        data.load_dataset("imagefolder", **({"root": root} | kwargs))
    assert needle in str(e.value)


def test_root_that_is_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path / "tree.zip"
    f.write_bytes(b"PK")
    with pytest.raises(ValueError, match=rf"root \(--data-dir\) must be a folder, but {f} is a file"):
        data.load_dataset("cifar10", root=f, download=False)
    with pytest.raises(ValueError, match="must be a folder"):
        data.dataset_info("imagefolder", root=f)
    with pytest.raises(ValueError, match="must be a folder"):  # an error, not "no data"
        data.try_load_dataset("imagefolder", root=f)
    monkeypatch.setenv("MBE_DATA", str(f))
    with pytest.raises(ValueError, match=rf"the data directory \(MBE_DATA\) must be a folder, but {f} is a file"):
        data.load_dataset("cifar10", download=False)
    _no_training(monkeypatch)
    assert train.main(RUN + ["--data", "cifar10", "--data-dir", str(f), "--out", str(tmp_path / "R")]) == 2
    assert f"must be a folder, but {f} is a file" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, needle", [
    (dict(randaugment="no"), "randaugment must be True or False, got 'no'"),
    (dict(in_memory="False"), "in_memory must be True or False or None, got 'False'"),
    (dict(check_images=0), "check_images must be True or False, got 0"),
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(download=0), "download must be True, False or None"),
    (dict(subset=0.5), "subset (images per class) must be a positive number"),
    (dict(eval_subset="1"), "eval_subset (images per class) must be a positive number"),
])
def test_build_loaders_arguments_of_the_wrong_type(tmp_path, kwargs, needle):
    root = _tree(tmp_path)
    with pytest.raises(ValueError) as e:
        data.build_loaders("imagefolder", root=root, batch_size=2, **kwargs)
    assert needle in str(e.value)


def test_build_transforms_switches_are_booleans():
    with pytest.raises(ValueError, match="train must be True or False, got 'False'"):
        data.build_transforms("cifar10", "False")  # a true string: the training transforms for evaluation
    with pytest.raises(ValueError, match="randaugment must be True or False, got 1"):
        data.build_transforms("cifar10", True, randaugment=1)

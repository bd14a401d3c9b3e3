"""The book's subset (``subset="book"``, ``--subset book``): exactly the listed images, out of a
download or the offline copy, in the offline copy's order."""
import gzip
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobileblocks_edu import data, env, train
from mobileblocks_edu.data import subsets
from mobileblocks_edu.train import results

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
WNIDS = list(data.IMAGENETTE_CLASSES)

# A small description in the committed file's format: range borders fall inside the fake batches
SMALL = {
    "cifar10": {"train": [[2, 5], [10003, 10006]], "test": [[0, 3]]},
    "imagenette": {
        "train": {WNIDS[0]: ["ILSVRC2012_val_00000293.JPEG", "n01440764_1.JPEG"], WNIDS[3]: ["n03000684_7.JPEG"]},
        "val": {WNIDS[0]: ["n01440764_9.JPEG"], WNIDS[3]: ["ILSVRC2012_val_00000017.JPEG"]},
    },
}
ROWS = 8  # rows of every fake CIFAR batch file


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(subsets, "book_subset", lambda: SMALL)
    return SMALL


def _label(index: int) -> int:
    return (7 * index + 3) % 4 * 2  # labels 0, 2, 4, 6 out of index order, so that sorting by class shows


def _pixels(index: int) -> np.ndarray:
    """A 32x32 image that encodes its original index."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = index // 256, index % 256, np.arange(32, dtype=np.uint8)
    return img


def _batches(root: Path, rows: int = ROWS) -> Path:
    """CIFAR-10's batch files as torchvision unpacks them, ``rows`` images each (of 10,000)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, first in [(f"data_batch_{b}", (b - 1) * 10_000) for b in range(1, 6)] + [("test_batch", 0)]:
        idx = range(first, first + rows)
        raw = np.stack([_pixels(i).transpose(2, 0, 1).reshape(-1) for i in idx])  # 1024 R, 1024 G, 1024 B
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": [_label(i) for i in idx], "data": raw}, f, protocol=2)
    return root


def _index(ds) -> list[int]:
    items = np.asarray(ds.items)
    return (items[:, 0, 0, 0].astype(int) * 256 + items[:, 0, 0, 1]).tolist()


def _book_order(indices) -> list[int]:
    return sorted(indices, key=lambda i: (data.CIFAR10_CLASSES[_label(i)], i))


# ------------------------------------------------------------------ the committed description
def test_committed_description_is_the_documented_subset():
    d = subsets.book_subset()
    assert d["cifar10"] == {"train": [[0, 1101], [10000, 11016], [20000, 21016], [30000, 31284], [40000, 41016]],
                            "test": [[0, 1016]]}
    assert (len(subsets.book_cifar_indices("train")), len(subsets.book_cifar_indices("test"))) == (5438, 1017)
    for split, n in (("train", 200), ("val", 50)):
        per_class = d["imagenette"][split]
        assert list(per_class) == WNIDS and all(len(v) == n and v == sorted(v) for v in per_class.values())
        assert all(f.endswith(".JPEG") and "/" not in f for v in per_class.values() for f in v)
    assert subsets.BOOK_SUBSET_FILE.stat().st_size < 20_000


def test_committed_description_is_the_tools_output():
    """tools/book_subset.py writes the same bytes from the offline copy's index files, when present."""
    folder = env.data_dir()
    if not ((folder / "cifar10" / "index.csv").is_file() and (folder / "imagenet_subset" / "index.csv").is_file()):
        pytest.skip(f"no offline copy with index.csv files in {folder}")
    spec = importlib.util.spec_from_file_location("book_subset_tool", ROOT / "tools" / "book_subset.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.encode(tool.describe(folder)) == subsets.BOOK_SUBSET_FILE.read_bytes()
    assert json.loads(gzip.decompress(subsets.BOOK_SUBSET_FILE.read_bytes())) == tool.describe(folder)


def test_offline_copy_is_the_book_subset():
    """On the book's offline copy, subset="book" keeps every image, in the same order."""
    if not (env.data_dir() / "cifar10" / "train").is_dir():
        pytest.skip(f"no offline CIFAR-10 copy in {env.data_dir()}")
    for name, split in (("cifar10", "train"), ("cifar10", "test"), ("imagenette", "train"), ("imagenette", "val")):
        if name == "imagenette" and not (env.data_dir() / "imagenet_subset" / split).is_dir():
            continue
        every = data.load_dataset(name, split, download=False)
        book = data.load_dataset(name, split, download=False, subset="book")
        assert (book.items, book.targets) == (every.items, every.targets)


# ------------------------------------------------------------------ CIFAR-10: a fake download
def test_cifar_download_gives_exactly_the_listed_images(small, tmp_path):
    root = _batches(tmp_path)
    for split in ("train", "test"):
        every = data.load_dataset("cifar10", split, root=root, download=False)
        book = data.load_dataset("cifar10", split, root=root, download=False, subset="book")
        listed = subsets.book_cifar_indices(split)
        assert listed == ([2, 3, 4, 5, 10003, 10004, 10005, 10006] if split == "train" else [0, 1, 2, 3])
        assert len(every) == (5 if split == "train" else 1) * ROWS  # subset=None: everything, in batch order
        assert _index(every)[:ROWS] == list(range(ROWS))
        assert _index(book) == _book_order(listed) != listed  # by class, then by original index
        assert book.targets == [_label(i) for i in _index(book)]
        assert np.array_equal(book.items, np.stack([_pixels(i) for i in _index(book)]))
        assert _index(data.load_dataset("cifar10", split, root=root, download=False, subset="book")) == _index(book)


def test_cifar_offline_layout_matches_the_download(small, tmp_path):
    """The offline copy's layout (one PNG per image, named by original index) holding just the
    listed images: all of it is kept, in the same order and with the same pixels as from the download."""
    root = _batches(tmp_path / "download")
    copy = tmp_path / "copy"
    for split in ("train", "test"):
        for i in subsets.book_cifar_indices(split):
            d = copy / "cifar10" / split / data.CIFAR10_CLASSES[_label(i)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_pixels(i)).save(d / f"{i:05d}.png")
        folder = data.load_dataset("cifar10", split, root=copy, download=False)
        book = data.load_dataset("cifar10", split, root=copy, download=False, subset="book")
        assert book.items == folder.items and book.targets == folder.targets
        batches = data.load_dataset("cifar10", split, root=root, download=False, subset="book")
        assert np.array_equal(book.in_memory().items, batches.items)
        assert [book.classes[t] for t in book.targets] == [batches.classes[t] for t in batches.targets]


def test_cifar_missing_or_doubled_images(small, tmp_path):
    root = _batches(tmp_path / "short", rows=6)  # data_batch_2 stops before 10006
    with pytest.raises(data.DatasetNotFoundError, match=r"lacks 1 of the 8 images of the book's subset "
                                                        r"\('train' split\), e.g\. 10006\..*torchvision's download"):
        data.load_dataset("cifar10", root=root, download=False, subset="book")
    assert len(data.load_dataset("cifar10", "test", root=root, download=False, subset="book")) == 4

    copy = tmp_path / "copy" / "cifar10" / "test"
    for i, cls in ((0, "cat"), (1, "cat"), (2, "dog"), (3, "dog"), (3, "ship")):
        (copy / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels(i)).save(copy / cls / f"{i:05d}.png")
    with pytest.raises(ValueError, match="holds images of the book's subset more than once .*: 3"):
        data.load_dataset("cifar10", "test", root=tmp_path / "copy", download=False, subset="book")

    other = _batches(tmp_path / "repacked")  # a batch file that is not one of CIFAR-10's
    (other / "cifar-10-batches-py" / "data_batch_5").rename(other / "cifar-10-batches-py" / "data_batch_all")
    with pytest.raises(ValueError, match="needs CIFAR-10's own batch files"):
        data.load_dataset("cifar10", root=other, download=False, subset="book")


# ------------------------------------------------------------------ Imagenette: a fake download
def _jpegs(folder: Path, split: str, names: dict) -> None:
    for wnid, files in names.items():
        (folder / split / wnid).mkdir(parents=True, exist_ok=True)
        for f in files:
            Image.new("RGB", (20, 16), (len(f), 0, 0)).save(folder / split / wnid / f)


def test_imagenette_download_gives_exactly_the_listed_files(small, tmp_path):
    download = tmp_path / "imagenette2-160"  # torchvision's unpacked archive
    for split, per_class in SMALL["imagenette"].items():
        extra = {w: [f"{w}_{k}.JPEG" for k in (0, 5, 99)] for w in WNIDS[:5]}
        _jpegs(download, split, {w: per_class.get(w, []) + extra[w] for w in extra})
        every = data.load_dataset("imagenette", split, root=tmp_path, download=False)
        book = data.load_dataset("imagenette", split, root=tmp_path, download=False, subset="book")
        names = [(Path(p).parent.name, Path(p).name) for p in book.items]
        assert names == subsets.book_imagenette_files(split)  # by wnid, then by file name
        assert [book.class_ids[t] for t in book.targets] == [w for w, _ in names]
        assert book.class_ids == every.class_ids and len(every) == 15 + sum(map(len, per_class.values()))

    (download / "train" / WNIDS[3] / "n03000684_7.JPEG").unlink()
    with pytest.raises(data.DatasetNotFoundError, match=r"lacks 1 of the 3 .*\('n03000684', 'n03000684_7.JPEG'\)"):
        data.load_dataset("imagenette", "train", root=tmp_path, download=False, subset="book")


def test_imagenette_offline_layout_keeps_all(small, tmp_path):
    for split, per_class in SMALL["imagenette"].items():
        _jpegs(tmp_path / "imagenet_subset", split, per_class)
        every = data.load_dataset("imagenet_subset", split, root=tmp_path, download=False)
        book = data.load_dataset("imagenet_subset", split, root=tmp_path, download=False, subset="book")
        assert (book.items, book.targets) == (every.items, every.targets) and len(book) == 3 - (split == "val")


# ------------------------------------------------------------------ arguments, loaders, the command line
def test_unknown_subsets_and_datasets(tmp_path):
    root = _batches(tmp_path)
    for bad in ("books", "Book", "", 0, 1.5, True):
        with pytest.raises(ValueError, match=r"subset \(images per class\) must be a positive number, got .*; "
                                             "or 'book'"):
            data.load_dataset("cifar10", root=root, download=False, subset=bad)
    with pytest.raises(ValueError, match="subset='book' is defined for 'cifar10' and 'imagenette', not 'imagefolder'"):
        data.load_dataset("imagefolder", root=tmp_path, subset="book")
    with pytest.raises(ValueError, match="subset='book' is defined"):
        data.build_loaders("imagefolder", root=tmp_path, subset="book")
    with pytest.raises(SystemExit):
        train.options(["--model", "emo_1m_cifar", "--subset", "books"])
    assert train.options(["--model", "emo_1m_cifar", "--subset", "book"])["subset"] == "book"
    assert train.options(["--model", "emo_1m_cifar", "--subset", "3"])["subset"] == 3
    assert train.options(["--model", "emo_1m_cifar"])["subset"] is None  # the default: every image found


def test_build_loaders_book_subset_of_both_splits(small, tmp_path):
    root = _batches(tmp_path)
    tl, vl = data.build_loaders("cifar10", root=root, download=False, batch_size=4, subset="book")
    assert _index(tl.dataset) == _book_order(subsets.book_cifar_indices("train"))
    assert _index(vl.dataset) == _book_order(subsets.book_cifar_indices("test"))
    _, vl = data.build_loaders("cifar10", root=root, download=False, batch_size=4, subset="book", eval_subset=1)
    _, vl2 = data.build_loaders("cifar10", root=root, download=False, batch_size=4, subset="book", eval_subset=2)
    book = data.load_dataset("cifar10", "test", root=root, download=False, subset="book")
    for loader, n in ((vl, 1), (vl2, 2)):  # eval_subset: that many per class of the book's evaluation images
        assert _index(loader.dataset) == _index(book.subset(n)) and max(loader.dataset.class_counts()) <= n


def test_cli_run_records_the_book_subset(small, tmp_path):
    root = _batches(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["--model", "mobilenetv2_100_cifar", "--data", "cifar10", "--subset", "book", "--batch-size", "4",
            "--epochs", "1", "--img-size", "16", "--data-dir", str(root), "--offline", "--no-progress",
            "--out", str(out)]
    assert train.main(argv) == 0
    r = json.loads((out / "result.json").read_text())
    assert "--subset book" in r["command"] and r["args"]["subset"] == "book" and r["data"]["subset"] == "book"
    assert (r["train_images"], r["val_images"]) == (8, 4)
    assert "8 of CIFAR-10's 50,000 training images (folder cifar-10-batches-py), the book's subset and 4 of " \
        "CIFAR-10's 10,000 test images" in results.describe_run_data(r)


# ------------------------------------------------------------------ subset="full": the whole dataset
def test_full_reads_only_whole_layouts_and_checks_their_size(small, tmp_path, monkeypatch):
    # the book's subset folders are here too: full must not take them
    _jpegs(tmp_path / "imagenet_subset", "train", SMALL["imagenette"]["train"])
    (tmp_path / "cifar10" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "cifar10" / "train" / "cat" / "00001.png")
    _batches(tmp_path)
    _jpegs(tmp_path / "imagenette", "train", {WNIDS[0]: ["a.JPEG", "b.JPEG"], WNIDS[1]: ["c.JPEG"]})
    monkeypatch.setitem(subsets.FULL_IMAGES, "cifar10", {"train": 5 * ROWS, "test": ROWS})
    monkeypatch.setitem(subsets.FULL_IMAGES, "imagenette", {"train": 3, "val": 1})
    cifar = data.load_dataset("cifar10", "train", root=tmp_path, download=False, subset="full")
    assert len(cifar) == 5 * ROWS and cifar.source.endswith("cifar-10-batches-py")
    inette = data.load_dataset("imagenette", "train", root=tmp_path, download=False, subset="full")
    assert len(inette) == 3 and inette.source.endswith("imagenette/train")
    assert len(data.load_dataset("imagenette", "train", root=tmp_path, download=False)) == 3  # default: the book's
    monkeypatch.setitem(subsets.FULL_IMAGES, "imagenette", {"train": 9_469, "val": 3_925})
    with pytest.raises(data.DatasetNotFoundError, match=r"needs the whole imagenette 'train' split \(9,469 images\), "
                                                         r"but .*imagenette/train holds 3"):
        data.load_dataset("imagenette", "train", root=tmp_path, download=False, subset="full")
    monkeypatch.setitem(subsets.FULL_IMAGES, "cifar10", {"train": 50_000, "test": 10_000})
    with pytest.raises(data.DatasetNotFoundError, match="needs the whole cifar10 'train' split"):
        data.load_dataset("cifar10", "train", root=tmp_path, download=False, subset="full")

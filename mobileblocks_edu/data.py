"""Datasets of the training lab: CIFAR-10 and Imagenette, read offline first, downloaded only when allowed.

Where the images come from, in this order:

1. The data directory (:func:`mobileblocks_edu.lab.data_dir`: ``$MBE_DATA``, else ``data/`` of the
   repository), in one of these layouts:

   * CIFAR-10: ``cifar10/{train,test}/<class>/*.png`` (ImageFolder; ``cifar10/classes.json`` maps
     label id -> class name) or ``cifar-10-batches-py/`` (CIFAR's original batch files, as
     torchvision downloads them; a shortened or re-packed set of batches is fine too).
   * Imagenette: ``imagenet_subset/{train,val}/<wnid>/*.JPEG`` (ImageFolder; ``classes.json`` maps
     wnid -> name) or torchvision's ``imagenette2-160/``, ``imagenette2-320/``, ``imagenette2/``.

2. torchvision's downloaders (``CIFAR10``, ``Imagenette``), only when allowed: ``download=True``
   always tries, ``download=None`` (the default) tries when the host answers within a few
   seconds and ``MBE_OFFLINE`` is not set, ``download=False`` never. A download goes to a
   temporary folder inside the data directory and is moved into place only when complete, so
   an interrupted or failed download leaves nothing behind.

When nothing is found, :class:`DatasetNotFoundError` says where it looked and how to fix it.
A file that cannot be decoded raises :class:`CorruptImageError` naming the file.

Augmentation is reproducible per sample: the random transform of sample ``i`` in epoch ``e``
runs under the seed ``derive_seed(seed, e, i)``, and :class:`EpochSampler` shuffles with
``derive_seed(seed, e)``. An epoch's batches are thus a pure function of ``(seed, epoch)``,
whatever the number of DataLoader workers, which is what makes resuming a run exact
(:mod:`mobileblocks_edu.train`).
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import socket
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision import transforms as T

from . import lab
from .layers import check_positive
from .registry import CIFAR_MEAN, CIFAR_STD

PathLike = Union[str, os.PathLike]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGENETTE_CLASSES = {  # wnid -> name, in torchvision's (sorted wnid) label order
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is neither in the data directory nor downloadable right now."""


class CorruptImageError(OSError):
    """An image file that cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the lab needs to know about a dataset.

    ``mean``/``std`` normalise the images (per channel, on [0, 1] pixels); ``img_size`` is the
    default training resolution; ``splits`` are (training split, evaluation split).
    """

    name: str
    title: str
    num_classes: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    splits: tuple[str, str]
    url: str
    download_size: str


DATASETS = {
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 10, 32, CIFAR_MEAN, CIFAR_STD,
        ("train", "test"), "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "163 MB",
    ),
    "imagenette": DatasetInfo(
        "imagenette", "Imagenette", 10, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        ("train", "val"), "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        "95 MB (160px) / 326 MB (320px)",
    ),
}
_ALIASES = {"cifar-10": "cifar10", "imagenet_subset": "imagenette", "imagenette2": "imagenette"}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``"cifar10"`` or ``"imagenette"`` (``"imagenet_subset"`` too)."""
    key = _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if not isinstance(key, str) or key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[key]


def _split(info: DatasetInfo, split: str) -> str:
    """``"train"``, or the evaluation split under either of its usual names (``"test"``/``"val"``)."""
    if split == info.splits[0]:
        return split
    if split in ("test", "val", "eval"):
        return info.splits[1]
    raise ValueError(f"split must be 'train' or {info.splits[1]!r} for {info.title}, got {split!r}")


# ---------------------------------------------------------------------------------------------
# Seeds: one integer from several (splitmix64), so that (seed, epoch, index) name a random stream.
# ---------------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key: ``derive_seed(seed, epoch, index)``.

    Each key is mixed in with the splitmix64 finaliser, z <- (z ^ z >> 30) * c1, (z ^ z >> 27) * c2,
    z ^ z >> 31, so nearby keys give unrelated seeds.
    """
    z = 0x9E3779B97F4A7C15
    for k in keys:
        z = (z + (int(k) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z >> 1


# ---------------------------------------------------------------------------------------------
# Reading images
# ---------------------------------------------------------------------------------------------
def load_image(path: PathLike) -> Image.Image:
    """Open an image file as RGB, decoding it fully; :class:`CorruptImageError` names a bad file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() decodes the whole file
    except FileNotFoundError:
        raise
    except Exception as e:  # UnidentifiedImageError, truncated data, broken zlib stream ...
        raise CorruptImageError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e


class ImageDataset(Dataset):
    """Labelled images, from files or from an in-memory ``(N, H, W, 3)`` uint8 array.

    ``dataset[i]`` returns ``(transform(image), label)``; the transform's random draws use the
    seed ``derive_seed(seed, epoch, i)`` (set ``seed`` and call :meth:`set_epoch`), so an
    epoch's augmentations do not depend on the order or the process the samples are loaded in.

    Attributes:
        classes: human-readable class names, by label (for plots).
        class_ids: the folder names (CIFAR class names, ImageNet wnids).
        targets: the label of every sample.
        source: where the images were read from.
    """

    def __init__(
        self,
        items: Union[Sequence[str], np.ndarray],
        targets: Sequence[int],
        classes: Sequence[str],
        *,
        class_ids: Optional[Sequence[str]] = None,
        transform: Optional[Callable] = None,
        name: str = "",
        split: str = "",
        source: str = "",
        seed: int = 0,
    ):
        if len(items) != len(targets):
            raise ValueError(f"items ({len(items)}) and targets ({len(targets)}) differ in length")
        bad = [int(t) for t in targets if not 0 <= int(t) < len(classes)]
        if bad:
            raise ValueError(f"targets must be labels in [0, {len(classes) - 1}] ({len(classes)} classes), "
                             f"got {sorted(set(bad))[:5]}")
        if class_ids is not None and len(class_ids) != len(classes):
            raise ValueError(f"class_ids ({len(class_ids)}) and classes ({len(classes)}) differ in length")
        self.items = items
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.class_ids = list(class_ids) if class_ids is not None else list(classes)
        self.transform = transform
        self.name, self.split, self.source = name, split, source
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.targets)

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        """Choose the epoch (and optionally the seed) the augmentations are drawn for."""
        self.epoch = int(epoch)
        if seed is not None:
            self.seed = int(seed)

    def image(self, index: int) -> Image.Image:
        """Sample ``index`` as an RGB PIL image, before any transform."""
        item = self.items[index]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)
        return load_image(item)

    def __getitem__(self, index: int):
        img = self.image(index)
        if self.transform is not None:
            # torchvision's random transforms draw from torch's default CPU generator: seed it for
            # this sample, and give the caller its own stream back afterwards
            gen = torch.default_generator
            state = gen.get_state()
            gen.manual_seed(derive_seed(self.seed, self.epoch, index))
            try:
                img = self.transform(img)
            finally:
                gen.set_state(state)
        return img, self.targets[index]

    def subset(self, per_class: int, seed: int = 0) -> "ImageDataset":
        """A copy holding ``per_class`` images of every class (all of a smaller class), chosen at
        random with ``seed`` (the same images for the same arguments), in the original order."""
        keep = subset_indices(self.targets, per_class, seed)
        out = copy.copy(self)
        out.items = self.items[keep] if isinstance(self.items, np.ndarray) else [self.items[i] for i in keep]
        out.targets = [self.targets[i] for i in keep]
        return out

    def in_memory(self) -> "ImageDataset":
        """A copy with every image decoded once into an ``(N, H, W, 3)`` uint8 array (all images
        must have one size); a corrupt file fails here, with its name."""
        if isinstance(self.items, np.ndarray):
            return self
        arrays = [np.asarray(load_image(p)) for p in self.items]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"in_memory needs images of one size; {self.source} has sizes {sorted(shapes)[:5]}")
        out = copy.copy(self)
        out.items = np.stack(arrays)
        return out

    def class_counts(self) -> list[int]:
        """Number of images of each class."""
        return np.bincount(self.targets, minlength=len(self.classes)).tolist()

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, {len(self)} images, "
                f"{len(self.classes)} classes, source={self.source!r})")


def check_same_classes(train: Optional[Sequence[str]], other: Optional[Sequence[str]],
                       train_name: str = "training data", other_name: str = "evaluation data") -> None:
    """Raise ``ValueError`` unless two class lists (label order included) are the same: a class
    missing or renamed in one split would shift every label after it."""
    if train is None or other is None or list(train) == list(other):
        return
    a, b = list(train), list(other)
    only_a, only_b = [c for c in a if c not in b], [c for c in b if c not in a]
    detail = []
    if only_a:
        detail.append(f"only in the {train_name}: {only_a}")
    if only_b:
        detail.append(f"only in the {other_name}: {only_b}")
    if not detail:
        first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        detail.append(f"label {first} is {a[first]!r} in the {train_name} but {b[first]!r} in the {other_name}")
    raise ValueError(f"the class lists of the {train_name} ({len(a)} classes) and the {other_name} ({len(b)}) "
                     f"differ, so their labels would not mean the same classes: {'; '.join(detail)}")


def subset_indices(targets: Sequence[int], per_class: int, seed: int = 0) -> list[int]:
    """Indices of ``per_class`` samples of every class, drawn with ``seed``, sorted."""
    check_positive("per_class", per_class, int)
    targets_t = torch.as_tensor(list(targets))
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(targets_t).tolist():
        idx = torch.nonzero(targets_t == c).flatten()
        keep += idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
    return sorted(keep)


# ---------------------------------------------------------------------------------------------
# CIFAR's batch files, read without running code from the pickle
# ---------------------------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes (latin-1 text)
            import codecs

            return codecs.encode
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                      "numpy._core.numeric") and name in ("ndarray", "dtype", "_reconstruct", "_frombuffer"):
            if name in ("ndarray", "dtype"):
                return getattr(np, name)
            try:
                from numpy._core import multiarray, numeric  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core import multiarray, numeric
            return getattr(multiarray if name == "_reconstruct" else numeric, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, list[int]]:
    """One CIFAR-10 python batch file -> ``(images (N, 32, 32, 3) uint8, labels)``."""
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="latin1").load()
        data, labels = np.asarray(d["data"], dtype=np.uint8), list(d["labels"])
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(f"expected data (N, 3072) and N labels, got data {data.shape} and {len(labels)} labels")
    except Exception as e:
        raise CorruptImageError(f"cannot read CIFAR batch file {path}: {type(e).__name__}: {e}") from e
    # each row: 1024 R, 1024 G, 1024 B values, row-major 32x32 planes
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3)


# ---------------------------------------------------------------------------------------------
# Finding a dataset on disk
# ---------------------------------------------------------------------------------------------
def _has_class_dirs(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def _layouts(info: DatasetInfo, split: str, root: Path, size: str) -> list[tuple[str, Path, str]]:
    """Candidate (kind, path, description) in the order they are tried."""
    if info.name == "cifar10":
        return [
            ("folder", root / "cifar10" / split, f"{root / 'cifar10' / split}/<class>/*.png (ImageFolder layout)"),
            ("cifar-batches", root / "cifar-10-batches-py",
             f"{root / 'cifar-10-batches-py'}/{'data_batch_*' if split == 'train' else 'test_batch'} "
             "(CIFAR's original batch files)"),
        ]
    folders = ["imagenette2-160", "imagenette2-320", "imagenette2"]
    preferred = {"160px": "imagenette2-160", "320px": "imagenette2-320", "full": "imagenette2"}[size]
    folders.sort(key=lambda f: f != preferred)
    out = [("folder", root / "imagenet_subset" / split,
            f"{root / 'imagenet_subset' / split}/<wnid>/*.JPEG (ImageFolder layout)")]
    out += [("folder", root / f / split, f"{root / f / split}/<wnid>/*.JPEG (torchvision's Imagenette)")
            for f in folders]
    return out


def _found(kind: str, path: Path, split: str) -> bool:
    if kind == "folder":
        return _has_class_dirs(path)
    names = ["test_batch"] if split == "test" else sorted(p.name for p in path.glob("data_batch_*"))
    return path.is_dir() and bool(names) and all((path / n).is_file() for n in names)


def _read_folder(info: DatasetInfo, path: Path) -> tuple[list[str], list[int], list[str], list[str]]:
    ids, _ = find_classes(str(path))
    names_file = path.parent / "classes.json"
    names = json.loads(names_file.read_text()) if names_file.is_file() else {}
    if info.name == "cifar10":
        # classes.json maps label id -> name: keep the official label order
        order = [names[k] for k in sorted(names, key=int)] if names else list(CIFAR10_CLASSES)
        ids = sorted(ids, key=lambda c: (order.index(c), c) if c in order else (len(order), c))
        class_names = list(ids)
    else:
        names = names or IMAGENETTE_CLASSES
        class_names = [names.get(w, w) for w in ids]
    try:
        samples = make_dataset(str(path), {c: i for i, c in enumerate(ids)}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{info.title} in {path}: {e}") from e
    return [s for s, _ in samples], [t for _, t in samples], class_names, ids


def _read_batches(path: Path, split: str) -> tuple[np.ndarray, list[int]]:
    files = [path / "test_batch"] if split == "test" else sorted(path.glob("data_batch_*"))
    parts = [read_cifar_batch(f) for f in files]
    return np.concatenate([p[0] for p in parts]), [t for p in parts for t in p[1]]


# ---------------------------------------------------------------------------------------------
# Downloading, only when allowed and only complete
# ---------------------------------------------------------------------------------------------
def url_reachable(url: str, timeout: float = 3.0) -> bool:
    """True when an HTTP ``HEAD`` request for ``url`` succeeds (status < 400) within ``timeout`` s.

    Runs in a daemon thread, so neither a resolver nor a server that never answers can hold the
    caller longer than ``timeout``. (A plain TCP connect is not enough: a proxy may accept every
    connection and then answer 404.)
    """
    ok = []

    def probe():
        try:
            req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "mobileblocks-edu"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                ok.append(r.status < 400)
        except (OSError, ValueError):  # URLError, HTTPError, timeouts, refused connections
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok and ok[0])


def _url(info: DatasetInfo, size: str) -> str:
    if info.name == "imagenette":  # the archive of the requested size
        return info.url.replace("-160", {"160px": "-160", "320px": "-320", "full": ""}[size])
    return info.url


def _offline_env() -> bool:
    return os.environ.get("MBE_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


DOWNLOAD_STALL_TIMEOUT = 60.0  # seconds without data before a download is given up


def _download(info: DatasetInfo, root: Path, size: str) -> None:
    """Download with torchvision into a temporary folder inside ``root``; move the result into
    place only when complete. On any failure (Ctrl-C included) nothing new is left in ``root``."""
    made = [p for p in [root, *root.parents] if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_STALL_TIMEOUT)  # torchvision's urlopen has none: a stalled transfer fails
    try:
        from torchvision import datasets

        if info.name == "cifar10":
            datasets.CIFAR10(str(tmp), train=True, download=True)
            folder = "cifar-10-batches-py"
        else:
            ds = datasets.Imagenette(str(tmp), split="train", size=size, download=True)
            folder = ds._size_root.name  # imagenette2-160, imagenette2-320 or imagenette2
        if not (root / folder).exists():
            os.replace(tmp / folder, root / folder)
    finally:
        socket.setdefaulttimeout(old_timeout)
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # the folders this call created, innermost first, if they stayed empty
            try:
                p.rmdir()
            except OSError:
                break


def _where(root: Path, explicit: bool) -> str:
    if explicit:
        return f"the folder passed as root, {root}"
    if os.environ.get("MBE_DATA"):
        return f"the data directory {root} (from MBE_DATA)"
    return f"the data directory {root} (MBE_DATA is not set)"


def _not_found(info: DatasetInfo, split: str, root: Path, explicit: bool, layouts, why: str) -> DatasetNotFoundError:
    looked = "\n".join(f"  {desc}: not there" for _, _, desc in layouts)
    err = DatasetNotFoundError(
        f"{info.title} ({split!r} split) was not found in {_where(root, explicit)}, and {why}.\n"
        f"Looked for:\n{looked}\n"
        "To fix it, do one of:\n"
        "  * set MBE_DATA to a folder that holds one of these layouts (export MBE_DATA=/path/to/datasets);\n"
        "  * link an offline copy into the repository (ln -s /path/to/datasets data);\n"
        f"  * download it when online ({info.download_size}): "
        f"load_dataset({info.name!r}, download=True), or --download on the command line."
    )
    err.summary = (f"{info.title} is not in {_where(root, explicit)} and {why}. To get it, set MBE_DATA "
                   f"to a folder that holds it, or run online so that torchvision downloads it ({info.download_size}).")
    return err


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: Optional[PathLike] = None,
    download: Optional[bool] = None,
    transform: Optional[Callable] = None,
    subset: Optional[int] = None,
    subset_seed: int = 0,
    size: str = "160px",
    timeout: float = 3.0,
) -> ImageDataset:
    """Load ``"cifar10"`` or ``"imagenette"`` as an :class:`ImageDataset`.

    Args:
        name: ``"cifar10"`` or ``"imagenette"``.
        split: ``"train"``, or the evaluation split (``"test"`` for CIFAR-10, ``"val"`` for
            Imagenette; either name is accepted for both).
        root: the data directory; default :func:`mobileblocks_edu.lab.data_dir`.
        download: ``True``: download when not found; ``False``: never; ``None``: only when the
            host answers within ``timeout`` seconds and ``MBE_OFFLINE`` is not set.
        transform: applied to each PIL image (see :func:`build_transforms`).
        subset: keep this many images per class (deterministic, see :meth:`ImageDataset.subset`).
        size: Imagenette's download size, ``"160px"``, ``"320px"`` or ``"full"`` (also the
            folder preferred when several are present).
        timeout: seconds to wait for the download host before giving up.
    """
    info = dataset_info(name)
    split = _split(info, split)
    if subset is not None:
        check_positive("subset (images per class)", subset, int)
    if download not in (None, True, False):
        raise ValueError(f"download must be True, False or None (only when the host answers), got {download!r}")
    if size not in ("160px", "320px", "full"):
        raise ValueError(f"size must be '160px', '320px' or 'full', got {size!r}")
    explicit = root is not None
    root = Path(root).expanduser() if root is not None else lab.data_dir()
    layouts = _layouts(info, split, root, size)
    hit = next(((k, p) for k, p, _ in layouts if _found(k, p, split)), None)
    if hit is None:
        url = _url(info, size)
        if download is False:
            raise _not_found(info, split, root, explicit, layouts, "downloading is off (download=False)")
        if download is None and _offline_env():
            raise _not_found(info, split, root, explicit, layouts, "downloading is off (MBE_OFFLINE is set)")
        if not url_reachable(url, timeout):
            raise _not_found(info, split, root, explicit, layouts,
                             f"it cannot be downloaded: no network ({url} could not be reached; waited at most {timeout:g} s)")
        try:
            _download(info, root, size)
        except Exception as e:
            raise _not_found(info, split, root, explicit, layouts,
                             f"the download failed ({type(e).__name__}: {e})") from e
        hit = next(((k, p) for k, p, _ in layouts if _found(k, p, split)), None)
        if hit is None:
            raise _not_found(info, split, root, explicit, layouts, "the download did not produce it")
    kind, path = hit
    if kind == "folder":
        items, targets, classes, ids = _read_folder(info, path)
    else:
        items, targets = _read_batches(path, split)
        classes = ids = list(CIFAR10_CLASSES)
    ds = ImageDataset(items, targets, classes, class_ids=ids, transform=transform,
                      name=info.name, split=split, source=str(path))
    return ds.subset(subset, subset_seed) if subset is not None else ds


_REPORTED: set = set()  # (dataset, data directory) pairs whose absence has been reported once


def try_load_dataset(name: str, split: str = "train", *, skipping: str = "", **kwargs) -> Optional[ImageDataset]:
    """:func:`load_dataset`, or ``None`` with one printed line when the dataset is neither in the
    data directory nor downloadable now: what is missing, why, and how to get it (``MBE_DATA``, or
    run online). A lesson calls it where live images are optional and goes on with its committed
    results; ``skipping`` names what is left out (``"the live training demo"``). The line is
    printed once per dataset and data directory, however often it is asked for."""
    try:
        return load_dataset(name, split, **kwargs)
    except DatasetNotFoundError as e:
        key = (dataset_info(name).name, str(kwargs.get("root") or lab.data_dir()))
        if key not in _REPORTED:
            _REPORTED.add(key)
            print(f"No data: {getattr(e, 'summary', str(e).splitlines()[0])}"
                  + (f" Skipped without it: {skipping}." if skipping else ""))
        elif skipping:
            print(f"No data ({dataset_info(name).title}, see above): skipped {skipping}.")
        return None


# ---------------------------------------------------------------------------------------------
# Transforms and loaders
# ---------------------------------------------------------------------------------------------
def build_transforms(name: str, train: bool, img_size: Optional[int] = None, randaugment: bool = False) -> T.Compose:
    """torchvision transforms for training (random crop + flip, optional RandAugment) or evaluation,
    ending with normalisation by the dataset's mean and std.

    * CIFAR-10: ``RandomCrop(size, padding=size/8)`` + horizontal flip (the standard CIFAR recipe;
      images are resized first when ``img_size`` is not 32).
    * Imagenette: ``RandomResizedCrop(size, scale=(0.35, 1))`` + flip for training (a milder
      scale range than ImageNet's 0.08, as in fast.ai's Imagenette baselines), and
      ``Resize(size / 0.875)`` + ``CenterCrop(size)`` for evaluation.
    * ``randaugment``: ``RandAugment(num_ops=2, magnitude=9)``, EMO's "rand-m9" (timm's extra
      magnitude noise, "mstd0.5", has no torchvision equivalent).

    The classic ``torchvision.transforms`` on PIL images: on 32x32 images they cost about 60 %
    of the time of the ``transforms.v2`` pipeline, and augmentation runs once per image per epoch.
    """
    info = dataset_info(name)
    size = img_size or info.img_size
    check_positive("img_size", size, int)
    ops: list = []
    if info.name == "cifar10":
        if size != 32:
            ops.append(T.Resize(size, antialias=True))
        if train:
            ops += [T.RandomCrop(size, padding=max(1, size // 8)), T.RandomHorizontalFlip()]
    elif train:
        ops += [T.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True), T.RandomHorizontalFlip()]
    else:
        ops += [T.Resize(int(round(size / 0.875)), antialias=True), T.CenterCrop(size)]
    if train and randaugment:
        ops.append(T.RandAugment(num_ops=2, magnitude=9))
    ops += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    return T.Compose(ops)


def denormalize(x: torch.Tensor, name: str) -> torch.Tensor:
    """Undo the normalisation of :func:`build_transforms`: pixels back in [0, 1], for plotting."""
    info = dataset_info(name)
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"x must be images (..., 3, H, W), got shape {tuple(x.shape)}")
    mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


class EpochSampler(Sampler[int]):
    """Shuffles ``range(n)`` with the seed ``derive_seed(seed, epoch)``: the order of epoch ``e``
    is the same in every run and after every resume. Call :meth:`set_epoch` before each epoch."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0 (the dataset's length), got {n!r}")
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        self.epoch = int(epoch)
        if seed is not None:
            self.seed = int(seed)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def set_epoch(loader: DataLoader, epoch: int, seed: Optional[int] = None) -> None:
    """Prepare ``loader`` for epoch ``epoch``: the sampler's shuffle, the dataset's augmentations
    and the loader's own generator (which seeds its workers) all follow ``(seed, epoch)``.

    Workers must not be persistent: a persistent worker keeps its own copy of the dataset and
    would not see the new epoch.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0 (counting from 0), got {epoch!r}")
    if getattr(loader, "persistent_workers", False):
        raise ValueError("set_epoch needs persistent_workers=False (workers keep a stale copy of the dataset)")
    for obj in (loader.sampler, getattr(loader.batch_sampler, "sampler", None), loader.dataset):
        if obj is not None and hasattr(obj, "set_epoch"):
            try:
                obj.set_epoch(epoch, seed=seed)
            except TypeError:  # a set_epoch(epoch) without a seed, e.g. DistributedSampler
                obj.set_epoch(epoch)
    if loader.generator is not None and seed is not None:
        loader.generator.manual_seed(derive_seed(seed, epoch, 2))


def build_loaders(
    name: str = "cifar10",
    *,
    root: Optional[PathLike] = None,
    download: Optional[bool] = None,
    img_size: Optional[int] = None,
    batch_size: int = 128,
    eval_batch_size: Optional[int] = None,
    subset: Optional[int] = None,
    eval_subset: Optional[int] = None,
    randaugment: bool = False,
    workers: int = 0,
    seed: int = 0,
    in_memory: Optional[bool] = None,
) -> tuple[DataLoader, DataLoader]:
    """The training and evaluation loaders of a dataset.

    The training loader shuffles with :class:`EpochSampler` and drops the last incomplete batch
    (a batch of one would break BatchNorm); the evaluation loader keeps every image in order.
    ``subset``/``eval_subset`` keep that many images per class. ``in_memory`` decodes every
    image once (:meth:`ImageDataset.in_memory`); by default on for CIFAR-10 (16 MB for the
    offline subset, 150 MB for the full training set). Class names: ``train_loader.dataset.classes``.
    """
    check_positive("batch_size", batch_size, int)
    if eval_batch_size is not None:
        check_positive("eval_batch_size", eval_batch_size, int)
    if img_size is not None:
        check_positive("img_size", img_size, int)
    for arg, v in (("subset", subset), ("eval_subset", eval_subset)):
        if v is not None:
            check_positive(f"{arg} (images per class)", v, int)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    info = dataset_info(name)
    common = dict(root=root, download=download)
    train_set = load_dataset(name, "train", transform=build_transforms(name, True, img_size, randaugment),
                             subset=subset, **common)
    eval_set = load_dataset(name, info.splits[1], transform=build_transforms(name, False, img_size),
                            subset=eval_subset, **common)
    check_same_classes(train_set.class_ids, eval_set.class_ids, f"training split ({train_set.source})",
                       f"evaluation split ({eval_set.source})")
    if in_memory if in_memory is not None else info.name == "cifar10":
        train_set, eval_set = train_set.in_memory(), eval_set.in_memory()
    if len(train_set) < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(train_set)} images)")
    train_set.seed = seed
    pin = torch.cuda.is_available()  # page-locked batches copy to the GPU asynchronously
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=EpochSampler(len(train_set), seed), drop_last=True,
        num_workers=workers, generator=torch.Generator().manual_seed(seed), persistent_workers=False, pin_memory=pin,
    )
    eval_loader = DataLoader(eval_set, batch_size=eval_batch_size or 2 * batch_size, shuffle=False,
                             num_workers=workers, generator=torch.Generator().manual_seed(seed), pin_memory=pin)
    return train_loader, eval_loader


__all__ = [
    "CIFAR10_CLASSES",
    "IMAGENETTE_CLASSES",
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "try_load_dataset",
    "CorruptImageError",
    "dataset_info",
    "derive_seed",
    "load_image",
    "ImageDataset",
    "subset_indices",
    "check_same_classes",
    "read_cifar_batch",
    "url_reachable",
    "load_dataset",
    "build_transforms",
    "denormalize",
    "EpochSampler",
    "set_epoch",
    "build_loaders",
]

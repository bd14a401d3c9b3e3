"""Datasets of the training lab: CIFAR-10, Imagenette and any ImageFolder tree, read offline first.

Where the images come from, in this order:

1. The data directory (:func:`mobileblocks_edu.env.data_dir`: ``$MBE_DATA``, else ``data/`` of the
   repository), in one of these layouts:

   * CIFAR-10: ``cifar10/{train,test}/<class>/*.png`` (ImageFolder; ``cifar10/classes.json`` maps
     label id -> class name) or ``cifar-10-batches-py/`` (CIFAR's original batch files, as
     torchvision downloads them; a shortened or re-packed set of batches is fine too).
   * Imagenette: ``imagenet_subset/{train,val}/<wnid>/*.JPEG`` (ImageFolder; ``classes.json`` maps
     wnid -> name) or torchvision's ``imagenette2-160/``, ``imagenette2-320/``, ``imagenette2/``.

   ``"imagefolder"`` reads any tree ``root/{train,val}/<class>/<image>`` instead (full ImageNet,
   for one): the classes are its folders, the evaluation split may also be called ``test``, and
   an optional ``root/classes.json`` maps folder -> class name.

2. torchvision's downloaders (``CIFAR10``, ``Imagenette``; :mod:`mobileblocks_edu.data.download`), only
   when allowed: ``download=True`` always tries, ``download=None`` (the default) tries when the
   host answers within a few seconds and ``MBE_OFFLINE`` is not set, ``download=False`` never.

``subset="book"`` keeps exactly the images of the book's committed runs, from a full download too
(:mod:`.subsets`). When nothing is found, :class:`DatasetNotFoundError` says where it looked and how to fix it.
A file that cannot be decoded raises :class:`CorruptImageError` naming the file; :func:`build_loaders`
checks every image file before training.

Batches are a pure function of ``(seed, epoch)``: :class:`EpochSampler` shuffles with
``derive_seed(seed, e)`` and :class:`ImageDataset` augments sample ``i`` with
``derive_seed(seed, e, i)``, whatever the number of DataLoader workers, which is what makes
resuming a run exact (:mod:`mobileblocks_edu.train`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from .. import env
from ..env import PathLike, check_positive
from .batched import TensorBatches, tensor_set
from .constants import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from .download import download_dataset, offline, url_reachable
from .images import (
    CorruptImageError,
    DatasetNotFoundError,
    ImageDataset,
    check_same_classes,
    derive_seed,
    find_class_folders,
    find_image_files,
    read_cifar_batch,
    read_class_names,
)
from .sampling import EpochSampler, set_epoch
from .subsets import BOOK, FULL, SUBSETS, book_batches, book_folder, check_full, check_subset

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


@dataclass(frozen=True)
class DatasetInfo:
    """What the lab needs to know about a dataset.

    ``mean``/``std`` normalise the images (per channel, on [0, 1] pixels); ``img_size`` is the
    default training resolution; ``splits`` are (training split, evaluation split);
    ``crop_scale`` is the smallest area fraction a training ``RandomResizedCrop`` keeps.
    ``num_classes`` is ``None`` for an ImageFolder tree (its folders decide, see
    :func:`dataset_info`), ``url`` empty for a dataset that is not downloaded.
    """

    name: str
    title: str
    num_classes: Optional[int]
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    splits: tuple[str, str]
    url: str
    download_size: str
    crop_scale: float = 0.08


DATASETS = {
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 10, 32, CIFAR_MEAN, CIFAR_STD,
        ("train", "test"), "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "163 MB",
    ),
    "imagenette": DatasetInfo(  # a milder crop than ImageNet's, as in fast.ai's Imagenette baselines
        "imagenette", "Imagenette", 10, 160, IMAGENET_MEAN, IMAGENET_STD, ("train", "val"),
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz", "95 MB (160px) / 326 MB (320px)", 0.35,
    ),
    "imagefolder": DatasetInfo(  # ImageNet's statistics and its 224-pixel recipe
        "imagefolder", "ImageFolder", None, 224, IMAGENET_MEAN, IMAGENET_STD, ("train", "val"), "", "",
    ),
}
_ALIASES = {"imagenet_subset": "imagenette"}  # the folder name the lab's data directory uses


def dataset_info(name: str, root: Optional[PathLike] = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``"cifar10"``, ``"imagenette"`` (``"imagenet_subset"`` too) or
    ``"imagefolder"``; for ``"imagefolder"`` with ``root``, ``num_classes`` counts the class folders
    of ``root/train``."""
    key = _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if not isinstance(key, str) or key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    info = DATASETS[key]
    if info.num_classes is None and root is not None:  # an ImageFolder tree: one class per folder
        search = _Search.start(info, "train", root)
        found = search.first_found()
        if found is None:
            raise search.error("image folders are not downloaded")
        info = dataclasses.replace(info, num_classes=len(find_class_folders(found[1])))
    return info


def _split(info: DatasetInfo, split: str) -> str:
    """``"train"``, or the evaluation split under any of its usual names (``"test"``/``"val"``)."""
    if split == info.splits[0]:
        return split
    if split in ("test", "val", "eval"):
        return info.splits[1]
    raise ValueError(f"split must be 'train' or {info.splits[1]!r} for {info.title} ('test', 'val' and "
                     f"'eval' all name the evaluation split), got {split!r}")


# ---------------------------------------------------------------------------------------------
# Finding a dataset on disk
# ---------------------------------------------------------------------------------------------
def _layouts(info: DatasetInfo, split: str, root: Path, size: str, full: bool = False) -> list[tuple[str, Path, str]]:
    """Candidate (kind, path, description) in the order they are tried; ``full``: only the layouts that
    hold a whole dataset (CIFAR's batch files; Imagenette's ``imagenette/`` copy and torchvision's folders)."""
    if info.name == "cifar10":
        batches = "data_batch_*" if split == "train" else "test_batch"
        where = root / "cifar10" / split
        folder = [("folder", where, f"{where}/<class>/*.png (ImageFolder layout)")]
        return folder * (not full) + [("cifar-batches", root / "cifar-10-batches-py",
                                       f"{root / 'cifar-10-batches-py'}/{batches} (CIFAR's original batch files)")]
    if info.name == "imagefolder":
        names = ["train"] if split == "train" else ["val", "test"]
        return [("folder", root / s, f"{root / s}/<class>/<image> (ImageFolder layout)") for s in names]
    preferred = {"160px": "imagenette2-160", "320px": "imagenette2-320", "full": "imagenette2"}[size]
    folders = sorted(["imagenette2-160", "imagenette2-320", "imagenette2"], key=lambda f: f != preferred)
    def folder(name, what):
        return ("folder", root / name / split, f"{root / name / split}/<wnid>/*.JPEG ({what})")

    book, whole = [folder("imagenet_subset", "the book's subset")], [folder("imagenette", "all of Imagenette v2")]
    tv = [folder(f, "torchvision's Imagenette") for f in folders]
    return whole + tv if full else book + tv + whole


def _found(kind: str, path: Path, split: str) -> bool:
    if kind == "folder":  # a folder with at least one class folder
        return path.is_dir() and any(p.is_dir() for p in path.iterdir())
    names = ["test_batch"] if split == "test" else sorted(p.name for p in path.glob("data_batch_*"))
    return path.is_dir() and bool(names) and all((path / n).is_file() for n in names)


def _read_folder(info: DatasetInfo, path: Path) -> tuple[list[str], list[int], list[str], list[str]]:
    """``(files, labels, class names, folder names)`` of an ImageFolder split; labels follow the
    sorted folder names, except CIFAR-10's, which follow its official class order."""
    ids = find_class_folders(path)
    names = read_class_names(path.parent / "classes.json", cifar=info.name == "cifar10")
    if info.name == "cifar10":  # classes.json maps label id -> name
        order = [names[k] for k in sorted(names, key=int)] if names else list(CIFAR10_CLASSES)
        ids = sorted(ids, key=lambda c: (order.index(c), c) if c in order else (len(order), c))
        names = {}
    elif info.name == "imagenette":  # classes.json maps wnid -> name
        names = names or IMAGENETTE_CLASSES
    files = {c: find_image_files(os.path.join(str(path), c)) for c in ids}
    empty = [c for c in ids if not files[c]]
    if empty:
        raise DatasetNotFoundError(f"{info.title} in {path}: Found no valid file for the classes {', '.join(empty)}. "
                                   f"Supported extensions are: {', '.join(IMG_EXTENSIONS)} (hidden files are not read)")
    label = {c: i for i, c in enumerate(ids)}
    samples = [(f, label[c]) for c in sorted(ids) for f in files[c]]  # torchvision's order: by folder name
    return [s for s, _ in samples], [t for _, t in samples], [names.get(c, c) for c in ids], ids


def _read_batches(path: Path, split: str, book: bool = False) -> tuple[np.ndarray, list[int]]:
    files = [path / "test_batch"] if split == "test" else sorted(path.glob("data_batch_*"))
    parts = [read_cifar_batch(f) for f in files]
    images, targets = np.concatenate([p[0] for p in parts]), [t for p in parts for t in p[1]]
    rows = [len(p[1]) for p in parts]
    return book_batches(split, files, rows, images, targets, CIFAR10_CLASSES) if book else (images, targets)


@dataclass
class _Search:
    """Where one split of a dataset is looked for: ``layouts`` under ``root``, in order."""

    info: DatasetInfo
    split: str
    root: Path
    explicit: bool  # root was passed by the caller, rather than the data directory
    layouts: list[tuple[str, Path, str]]

    @classmethod
    def start(cls, info: DatasetInfo, split: str, root: Optional[PathLike], size: str = "160px",
              full: bool = False) -> "_Search":
        """The search under ``root``, or under the data directory when ``root`` is ``None``."""
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"root must be a folder (a str or Path), got {root!r}")
        path = Path(root).expanduser() if root is not None else env.data_dir()
        if path.exists() and not path.is_dir():
            what = "root (--data-dir)" if root is not None else "the data directory (MBE_DATA)"
            raise ValueError(f"{what} must be a folder, but {path} is a file")
        return cls(info, split, path, root is not None, _layouts(info, split, path, size, full))

    def first_found(self) -> Optional[tuple[str, Path]]:
        return next(((kind, p) for kind, p, _ in self.layouts if _found(kind, p, self.split)), None)

    def where(self) -> str:
        if self.explicit:
            return f"the folder passed as root, {self.root}"
        source = "from MBE_DATA" if os.environ.get("MBE_DATA") else "MBE_DATA is not set"
        return f"the data directory {self.root} ({source})"

    def error(self, why: str) -> DatasetNotFoundError:
        """Not found, and ``why`` not downloaded: where it looked and how to fix it."""
        info = self.info
        looked = "\n".join(f"  {desc}: not there" for _, _, desc in self.layouts)
        head = (f"{info.title} ({self.split!r} split) was not found in {self.where()}, and {why}.\n"
                f"Looked for:\n{looked}\n")
        if not info.url:
            err = DatasetNotFoundError(
                head + "An ImageFolder tree is root/train/<class>/<image> and root/val/<class>/<image> (the evaluation "
                "split may be called val or test); pass its folder as root (--data-dir on the command line).")
            err.summary = f"no ImageFolder tree in {self.where()} ({why})."
            return err
        err = DatasetNotFoundError(
            head + "To fix it, do one of:\n"
            "  * set MBE_DATA to a folder that holds one of these layouts (export MBE_DATA=/path/to/datasets);\n"
            "  * link an offline copy into the repository (ln -s /path/to/datasets data);\n"
            f"  * download it when online ({info.download_size}): "
            f"load_dataset({info.name!r}, download=True), or --download on the command line.")
        err.summary = (f"{info.title} is not in {self.where()} and {why}. To get it, set MBE_DATA to a folder that "
                       f"holds it, or run online so that torchvision downloads it ({info.download_size}).")
        return err


def _download_and_find(search: _Search, download: Optional[bool], size: str, timeout: float) -> tuple[str, Path]:
    """Download the dataset when allowed and possible, and find it; else raise ``search.error``
    saying why not."""
    info = search.info
    url = info.url.replace("-160", {"160px": "-160", "320px": "-320", "full": ""}[size])  # Imagenette's size
    if not url:
        raise search.error("image folders are not downloaded")
    if download is False:
        raise search.error("downloading is off (download=False)")
    if download is None and offline():
        raise search.error("downloading is off (MBE_OFFLINE is set)")
    if not url_reachable(url, timeout):
        raise search.error(f"it cannot be downloaded: no network ({url} could not be reached; "
                           f"waited at most {timeout:g} s)")
    try:
        download_dataset(info.name, search.root, size)
    except Exception as e:
        raise search.error(f"the download failed ({type(e).__name__}: {e})") from e
    found = search.first_found()
    if found is None:
        raise search.error("the download did not produce it")
    return found


def _check_download(download) -> None:
    if download is not None and not isinstance(download, bool):  # 1, 0 and "no" are not switches
        raise ValueError(f"download must be True, False or None (only when the host answers), got {download!r}")


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: Optional[PathLike] = None,
    download: Optional[bool] = None,
    transform: Optional[Callable] = None,
    subset: Optional[Union[int, str]] = None,
    subset_seed: int = 0,
    size: str = "160px",
    timeout: float = 3.0,
) -> ImageDataset:
    """Load ``"cifar10"``, ``"imagenette"`` or an ``"imagefolder"`` tree as an :class:`ImageDataset`.

    Args:
        name: ``"cifar10"``, ``"imagenette"`` or ``"imagefolder"`` (``root/{train,val}/<class>/``).
        split: ``"train"``, or the evaluation split (``"test"`` for CIFAR-10, ``"val"`` for the
            others; either name is accepted for all).
        root: the data directory (for ``"imagefolder"``, the tree); default
            :func:`mobileblocks_edu.env.data_dir`.
        download: ``True``: download when not found; ``False``: never; ``None``: only when the
            host answers within ``timeout`` seconds and ``MBE_OFFLINE`` is not set.
        transform: applied to each PIL image (see :func:`build_transforms`).
        subset: keep this many images per class (deterministic, see :meth:`ImageDataset.subset`),
            or ``"book"``: exactly the images of the book's committed runs, out of a download
            too, in the offline copy's order (:mod:`mobileblocks_edu.data.subsets`).
        size: Imagenette's download size, ``"160px"``, ``"320px"`` or ``"full"`` (also the
            folder preferred when several are present).
        timeout: seconds to wait for the download host before giving up.
    """
    info = dataset_info(name)
    split = _split(info, split)
    check_subset(subset, info.name)
    _check_download(download)
    if transform is not None and not callable(transform):
        raise ValueError(f"transform must be a function of a PIL image (see build_transforms), got {transform!r}")
    if isinstance(subset_seed, bool) or not isinstance(subset_seed, int):
        raise ValueError(f"subset_seed must be an integer, got {subset_seed!r}")
    check_positive("timeout (seconds)", timeout)
    if size not in ("160px", "320px", "full"):
        raise ValueError(f"size must be '160px', '320px' or 'full', got {size!r}")

    search = _Search.start(info, split, root, size, full=subset == FULL)
    kind, path = search.first_found() or _download_and_find(search, download, size, timeout)
    book = subset == BOOK
    if kind == "folder":
        items, targets, classes, ids = _read_folder(info, path)
        items, targets = book_folder(info.name, split, items, targets, path) if book else (items, targets)
    else:
        items, targets = _read_batches(path, split, book)
        classes = ids = list(CIFAR10_CLASSES)
    if subset == FULL:
        check_full(info.name, split, len(items), str(path))
    ds = ImageDataset(items, targets, classes, class_ids=ids, transform=transform,
                      name=info.name, split=split, source=str(path))
    return ds.subset(subset, subset_seed) if isinstance(subset, int) else ds


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
        key = (dataset_info(name).name, str(kwargs.get("root") or env.data_dir()))
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
    * Imagenette and ImageFolder trees: ``RandomResizedCrop(size, scale=(crop_scale, 1))`` + flip
      for training (ImageNet's 0.08, Imagenette's milder 0.35), and ``Resize(size / 0.875)`` +
      ``CenterCrop(size)`` for evaluation (256 and 224 at ImageNet's 224 pixels).
    * ``randaugment``: ``RandAugment(num_ops=2, magnitude=9)``, EMO's "rand-m9" (timm's extra
      magnitude noise, "mstd0.5", has no torchvision equivalent).

    The classic ``torchvision.transforms`` on PIL images: on 32x32 images they cost about 60 %
    of the time of the ``transforms.v2`` pipeline, and augmentation runs once per image per epoch.
    """
    info = dataset_info(name)
    for arg, v in (("train", train), ("randaugment", randaugment)):
        if not isinstance(v, bool):
            raise ValueError(f"{arg} must be True or False, got {v!r}")
    size = img_size or info.img_size
    check_positive("img_size", size, int)
    ops: list = []
    if info.name == "cifar10":
        if size != 32:
            ops.append(T.Resize(size, antialias=True))
        if train:
            ops += [T.RandomCrop(size, padding=max(1, size // 8)), T.RandomHorizontalFlip()]
    elif train:
        ops += [T.RandomResizedCrop(size, scale=(info.crop_scale, 1.0), antialias=True), T.RandomHorizontalFlip()]
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


def build_loaders(
    name: str = "cifar10",
    *,
    root: Optional[PathLike] = None,
    download: Optional[bool] = None,
    img_size: Optional[int] = None,
    batch_size: int = 128,
    eval_batch_size: Optional[int] = None,
    subset: Optional[Union[int, str]] = None,
    eval_subset: Optional[int] = None,
    randaugment: bool = False,
    workers: int = 0,
    seed: int = 0,
    in_memory: Optional[bool] = None,
    check_images: bool = True,
    loader: str = "images",
    device: Optional[Union[str, torch.device]] = None,
) -> tuple[DataLoader, DataLoader]:
    """The training and evaluation loaders of a dataset.

    ``loader="images"`` (the default): torch ``DataLoader``s over per-image transforms.
    ``loader="tensor"``: :class:`~mobileblocks_edu.data.batched.TensorBatches`, the whole split as
    one uint8 tensor on ``device`` (default: CUDA when there is one), each training batch cropped,
    flipped and augmented there at once (for datasets that fit in the device's memory; ``workers``
    and ``in_memory`` do not apply).

    The training loader shuffles with :class:`EpochSampler` and drops the last incomplete batch
    (a batch of one would break BatchNorm); the evaluation loader keeps every image in order.
    ``subset``/``eval_subset`` keep that many images per class; ``subset="book"`` keeps the book's
    subset of both splits (:func:`load_dataset`), of which ``eval_subset`` may keep fewer. ``in_memory`` decodes every
    image once (:meth:`ImageDataset.in_memory`); by default on for CIFAR-10 (16 MB for the
    offline subset, 150 MB for the full training set). Class names: ``train_loader.dataset.classes``.
    ``check_images`` first checks that every image file of both splits decodes, so that a bad file
    is named before training rather than found mid-epoch (0.3 to 0.7 ms a JPEG, so 5 to 10 s for
    Imagenette's 13,400 files on one core; decoding in memory checks them anyway).
    """
    _check_loader_args(batch_size, eval_batch_size, img_size, eval_subset, workers, seed, randaugment, check_images,
                       in_memory, download, loader)
    info = dataset_info(name)
    check_subset(subset, info.name)
    common = dict(root=root, download=download)
    if loader == "tensor":
        return _tensor_loaders(name, info, common, img_size, batch_size, eval_batch_size, subset, eval_subset,
                               randaugment, seed, device)
    train_set = load_dataset(name, "train", transform=build_transforms(name, True, img_size, randaugment),
                             subset=subset, **common)
    eval_set = load_dataset(name, info.splits[1], transform=build_transforms(name, False, img_size),
                            subset=subset if subset in SUBSETS else eval_subset, **common)
    if subset in SUBSETS and eval_subset is not None:
        eval_set = eval_set.subset(eval_subset)
    check_same_classes(train_set.class_ids, eval_set.class_ids, f"training split ({train_set.source})",
                       f"evaluation split ({eval_set.source})")
    if in_memory if in_memory is not None else info.name == "cifar10":
        train_set, eval_set = train_set.in_memory(), eval_set.in_memory()
    if len(train_set) < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(train_set)} images)")
    if check_images:  # every file decodes, before any training time is spent
        train_set.check_images()
        eval_set.check_images()
    train_set.seed = seed
    pin = torch.cuda.is_available()  # page-locked batches copy to the GPU asynchronously
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=EpochSampler(len(train_set), seed), drop_last=True,
        num_workers=workers, generator=torch.Generator().manual_seed(seed), persistent_workers=False, pin_memory=pin,
    )
    eval_loader = DataLoader(eval_set, batch_size=eval_batch_size or 2 * batch_size, shuffle=False,
                             num_workers=workers, generator=torch.Generator().manual_seed(seed), pin_memory=pin)
    return train_loader, eval_loader


def _check_loader_args(batch_size, eval_batch_size, img_size, eval_subset, workers, seed, randaugment, check_images,
                       in_memory, download, loader) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`build_loaders` it cannot take."""
    check_positive("batch_size", batch_size, int)
    if eval_batch_size is not None:
        check_positive("eval_batch_size", eval_batch_size, int)
    if img_size is not None:
        check_positive("img_size", img_size, int)
    if eval_subset is not None:
        check_positive("eval_subset (images per class)", eval_subset, int)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for arg, v in (("randaugment", randaugment), ("check_images", check_images), ("in_memory", in_memory)):
        if not isinstance(v, bool) and not (arg == "in_memory" and v is None):
            raise ValueError(f"{arg} must be True or False{' or None' if arg == 'in_memory' else ''}, got {v!r}")
    _check_download(download)
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")


def _tensor_loaders(name, info, common, img_size, batch_size, eval_batch_size, subset, eval_subset, randaugment,
                    seed, device):
    """:func:`build_loaders` with ``loader="tensor"``: both splits on ``device`` as uint8 tensors."""
    from ..env import check_device

    device = check_device(device if device is not None else "auto")
    size = img_size or info.img_size
    train_set = load_dataset(name, "train", subset=subset, **common)
    eval_set = load_dataset(name, info.splits[1], subset=subset if subset in SUBSETS else eval_subset, **common)
    if subset in SUBSETS and eval_subset is not None:
        eval_set = eval_set.subset(eval_subset)
    check_same_classes(train_set.class_ids, eval_set.class_ids, f"training split ({train_set.source})",
                       f"evaluation split ({eval_set.source})")
    if len(train_set) < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(train_set)} images)")
    train = TensorBatches(tensor_set(train_set, info, size, True, device), batch_size, True, randaugment, seed)
    evaluation = TensorBatches(tensor_set(eval_set, info, size, False, device), eval_batch_size or 2 * batch_size,
                               False, seed=seed)
    return train, evaluation


LOADERS = ("images", "tensor")

__all__ = [
    "LOADERS",
    "CIFAR10_CLASSES", "IMAGENETTE_CLASSES", "DATASETS", "DatasetInfo", "DatasetNotFoundError", "dataset_info",
    "load_dataset", "try_load_dataset", "build_transforms", "denormalize", "EpochSampler", "set_epoch",
    "build_loaders",
    # defined in mobileblocks_edu.data.images, part of what load_dataset returns or raises
    "ImageDataset", "CorruptImageError", "check_same_classes", "derive_seed",
]

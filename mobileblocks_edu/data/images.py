"""Labelled images as a PyTorch dataset, and reading image files safely.

* :class:`ImageDataset` holds images as files or as an in-memory ``(N, H, W, 3)`` uint8 array.
  Its augmentation is reproducible per sample: the random transform of sample ``i`` in epoch
  ``e`` runs under the seed ``derive_seed(seed, e, i)``, whatever process or order loads it.
* :func:`load_image` decodes one file as RGB, :func:`check_images` checks many before training;
  :func:`read_cifar_batch` reads one of CIFAR's pickled batch files without running code from it.
  A file that cannot be read raises :class:`CorruptImageError`, naming the file.
* :func:`find_class_folders`, :func:`find_image_files` and :func:`read_class_names` read an
  ImageFolder tree: hidden files and folders are skipped; one class, classes that differ only
  in case, a symbolic-link loop and a malformed ``classes.json`` are refused.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import reprlib
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..env import PathLike, check_positive


class CorruptImageError(OSError, ValueError):
    """An image or data file that cannot be decoded; the message names the file (a ``ValueError``
    too: bad input, reported like the other bad values)."""


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


def _check_image(path: PathLike) -> None:
    """Decode ``path`` cheaply: a JPEG at 1/8 scale (every byte is still read, so a truncated file
    fails), other formats fully; raises what :func:`load_image` would."""
    try:
        with Image.open(path) as img:
            img.draft(img.mode, (1, 1))  # JPEG only; other formats ignore it
            img.load()
    except Exception as e:  # FileNotFoundError included: a broken link is a bad file too
        raise CorruptImageError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e


def _report_bad(bad: list[CorruptImageError], total: int, source: str) -> None:
    """Raise one :class:`CorruptImageError` naming the first bad files and how many there are."""
    if bad:
        shown = "\n".join(f"  {e}" for e in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CorruptImageError(f"{len(bad)} of the {total} image files of {source} cannot be read (fix or remove "
                                f"them):\n{shown}{more}")


def check_images(paths: Sequence[PathLike], source: str = "the dataset") -> None:
    """Check that every file of ``paths`` decodes as an image, before any training time is spent;
    :class:`CorruptImageError` names the first five bad files and counts them all. A JPEG is decoded
    at 1/8 scale, 0.3 to 0.7 ms for Imagenette's (half the time of a full decode)."""
    bad = []
    for p in paths:
        try:
            _check_image(p)
        except CorruptImageError as e:
            bad.append(e)
    _report_bad(bad, len(paths), source)


# ---------------------------------------------------------------------------------------------
# ImageFolder trees: class folders, image files, class names
# ---------------------------------------------------------------------------------------------
def find_class_folders(path: PathLike) -> list[str]:
    """The class folders of an ImageFolder split, sorted; hidden ones (``.ipynb_checkpoints``) are
    not classes. Refuses fewer than two, and two names that differ only in case."""
    names = sorted(e.name for e in os.scandir(path) if not e.name.startswith(".") and e.is_dir())
    if len(names) < 2:
        raise ValueError(f"{path} has {len(names)} class folder{'' if len(names) == 1 else 's'}"
                         f"{' (' + names[0] + ')' if names else ''}; a classifier needs at least two classes, "
                         "one folder of images each (hidden folders are not classes)")
    seen: dict[str, str] = {}
    for n in names:
        if n.casefold() in seen:
            raise ValueError(f"the class folders {seen[n.casefold()]!r} and {n!r} of {path} differ only in case; "
                             "merge or rename them")
        seen[n.casefold()] = n
    return names


def find_image_files(folder: str) -> list[str]:
    """The image files under one class folder, sub-folders included, in torchvision's order
    (folders by path, files by name); hidden files and folders are left out. A symbolic link
    that loops back to a folder above it is refused: the images would be read over and over."""
    found: list[tuple[str, list[str]]] = []

    def walk(d: str, above: frozenset) -> None:
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in above:
            raise ValueError(f"{d} is {os.path.realpath(d)} again: a symbolic link under {folder} loops back to a "
                             "folder above it; remove the link")
        entries = sorted((e for e in os.scandir(d) if not e.name.startswith(".")), key=lambda e: e.name)
        found.append((d, [e.name for e in entries if not e.is_dir() and e.name.lower().endswith(IMG_EXTENSIONS)]))
        for e in entries:
            if e.is_dir():
                walk(e.path, above | {(st.st_dev, st.st_ino)})

    walk(folder, frozenset())
    return [os.path.join(d, f) for d, files in sorted(found) for f in files]


def read_class_names(file: Path, cifar: bool = False) -> dict:
    """A ``classes.json`` (``{}`` when there is none), checked: CIFAR-10's maps label ids
    ``"0", "1", ...`` to class folder names, the others' map class folders to names."""
    if not file.exists():
        return {}
    holds = ('a JSON object of label ids "0", "1", ... -> class folder names' if cifar
             else "a JSON object of class folder names -> class names (strings)")
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"cannot read {file} ({type(e).__name__}: {e}); it must hold {holds}") from e
    ok = isinstance(names, dict) and all(isinstance(v, str) for v in names.values())
    if ok and cifar:
        ok = set(names) == {str(i) for i in range(len(names))} and len(set(names.values())) == len(names)
    if not ok:
        raise ValueError(f"{file} must hold {holds}, got {reprlib.repr(names)}")
    return names


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is neither in the data directory nor downloadable right now."""


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
        arrays, bad = [], []
        for p in self.items:
            try:
                arrays.append(np.asarray(load_image(p)))
            except (CorruptImageError, FileNotFoundError) as e:
                bad.append(e if isinstance(e, CorruptImageError) else CorruptImageError(f"{p}: {e}"))
        _report_bad(bad, len(self.items), self.source or "the dataset")
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"in_memory needs images of one size; {self.source} has sizes {sorted(shapes)[:5]}")
        out = copy.copy(self)
        out.items = np.stack(arrays)
        return out

    def check_images(self) -> None:
        """Check that every image file decodes (:func:`check_images`); nothing to do in memory."""
        if not isinstance(self.items, np.ndarray):
            check_images(self.items, self.source or "the dataset")

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
        if not isinstance(d, dict) or "data" not in d or "labels" not in d:
            raise ValueError(f"expected a dict with 'data' and 'labels', got {type(d).__name__}"
                             + (f" with keys {sorted(map(str, d))[:5]}" if isinstance(d, dict) else ""))
        raw, labels = np.asarray(d["data"]), list(d["labels"])
        if raw.ndim != 2 or raw.shape[1] != 3072 or len(labels) != len(raw) or not len(raw):
            raise ValueError(f"expected data (N, 3072) and N labels, N > 0, got data {raw.shape} "
                             f"and {len(labels)} labels")
        if raw.dtype.kind not in "ui" or raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"expected pixel values 0 ... 255, got {raw.dtype} data")
        wrong = [t for t in labels if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < 10]
        if wrong:
            raise ValueError(f"expected labels 0 ... 9, got {wrong[:5]}")
        data, labels = raw.astype(np.uint8), [int(t) for t in labels]
    except Exception as e:
        raise CorruptImageError(f"cannot read CIFAR batch file {path}: {type(e).__name__}: {e} (it must be a pickled "
                                "dict of 'data', N rows of 3072 uint8 pixels, and 'labels', N labels 0 ... 9)") from e
    # each row: 1024 R, 1024 G, 1024 B values, row-major 32x32 planes
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3)


__all__ = [
    "CorruptImageError", "DatasetNotFoundError",
    "derive_seed", "load_image", "check_images", "find_class_folders", "find_image_files",
    "read_class_names", "ImageDataset", "check_same_classes", "subset_indices", "read_cifar_batch",
]

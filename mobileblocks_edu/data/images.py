"""Labelled images as a PyTorch dataset, and reading image files safely.

* :class:`ImageDataset` holds images as files or as an in-memory ``(N, H, W, 3)`` uint8 array.
  Its augmentation is reproducible per sample: the random transform of sample ``i`` in epoch
  ``e`` runs under the seed ``derive_seed(seed, e, i)``, whatever process or order loads it.
* :func:`load_image` decodes one file as RGB; :func:`read_cifar_batch` reads one of CIFAR's
  pickled batch files without running code from it. A file that cannot be read raises
  :class:`CorruptImageError`, naming the file.
"""
from __future__ import annotations

import copy
import pickle
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..env import PathLike, check_positive


class CorruptImageError(OSError):
    """An image file that cannot be decoded; the message names the file."""


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


__all__ = [
    "CorruptImageError", "derive_seed", "load_image", "ImageDataset", "check_same_classes",
    "subset_indices", "read_cifar_batch",
]

"""The book's subset: exactly the images the committed runs trained and were tested on.

The book's runs read an offline copy of part of CIFAR-10 and of Imagenette (the data directory's
``cifar10/`` and ``imagenet_subset/``). ``book_subset.json.gz``, next to this module, says which
images those are, in terms that name the same images in torchvision's downloads
(``tools/book_subset.py`` writes it from the copy's ``index.csv`` files):

* CIFAR-10: the original indices (``torchvision.datasets.CIFAR10``'s order: training image
  ``(b - 1) * 10000 + i`` is row ``i`` of ``data_batch_b``, test image ``i`` row ``i`` of
  ``test_batch``), as inclusive ranges: training 0-1101, 10000-11016, 20000-21016, 30000-31284,
  40000-41016 (5,438 images); test 0-1016 (1,017 images). The offline copy names each PNG by
  that index.
* Imagenette: the file names of Imagenette v2 (the archive torchvision's ``Imagenette``
  unpacks), per split and class folder (wnid): the first 200 training and 50 validation file
  names of every class in Python string order (2,000 and 500 images).

``load_dataset(name, split, subset="book")`` keeps exactly those images, in the order the offline
copy is read in (by class folder name, then by file name; for CIFAR-10 that is by class, then by
original index), so that a seeded run sees the same batches whichever source the images come
from. On the offline copy, which holds just these images, it keeps all of them. A source that
lacks any of them raises :class:`~mobileblocks_edu.data.DatasetNotFoundError` saying how many
and which.

Imagenette's pixels still depend on the source: torchvision's archives keep the aspect ratio at
160 or 320 pixels on the shorter side (or the original size), while the offline copy's images
were resized to 224x224 before they were copied. The files are the same photographs.

The named experiments (``python -m mobileblocks_edu.experiments``) read whatever the data
directory holds, and their commands, as the committed results record them, carry no ``--subset``:
the committed runs read the offline copy, which is this subset. Where the data directory holds a
full download instead, the same images are those of the printed command with ``--subset book``
added; on the offline copy that flag changes nothing.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import DatasetNotFoundError

BOOK, FULL = "book", "full"
SUBSETS = (BOOK, FULL)  # the named subsets load_dataset(subset=...) knows
# the whole datasets (full): CIFAR-10 (Krizhevsky, 2009) and Imagenette v2 (fast.ai), images per split
FULL_IMAGES = {"cifar10": {"train": 50_000, "test": 10_000}, "imagenette": {"train": 9_469, "val": 3_925}}
BOOK_SUBSET_FILE = Path(__file__).with_name("book_subset.json.gz")
CIFAR_BATCH_SIZE = 10_000  # images per CIFAR-10 batch file; training image (b - 1) * 10000 + i is row i of batch b


@functools.lru_cache(maxsize=None)
def _read(path: str) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def book_subset() -> dict:
    """The description of the book's subset (``book_subset.json.gz``): ``{"cifar10": {split:
    [[first, last], ...]}, "imagenette": {split: {wnid: [file name, ...]}}}``."""
    return _read(str(BOOK_SUBSET_FILE))


def book_cifar_indices(split: str) -> list[int]:
    """The original CIFAR-10 indices of the book's ``split`` (``"train"`` or ``"test"``), ascending."""
    return [i for first, last in book_subset()["cifar10"][split] for i in range(first, last + 1)]


def book_imagenette_files(split: str) -> list[tuple[str, str]]:
    """``(wnid, file name)`` of the book's Imagenette ``split`` (``"train"`` or ``"val"``), sorted."""
    return sorted((w, f) for w, names in book_subset()["imagenette"][split].items() for f in names)


def check_subset(subset, dataset: str) -> None:
    """``subset`` must be ``None``, a number of images per class (an integer >= 1) or a named
    subset (``"book"``, for ``"cifar10"`` and ``"imagenette"`` only)."""
    if subset is None:
        return
    if isinstance(subset, str) and subset in SUBSETS:
        if dataset not in ("cifar10", "imagenette"):
            raise ValueError(f"subset={subset!r} is defined for 'cifar10' and 'imagenette', not {dataset!r}")
        return
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
        raise ValueError(f"subset (images per class) must be a positive number, got {subset!r}; or 'book', the "
                         "images of the book's committed runs; or 'full', the whole dataset")


def check_full(dataset: str, split: str, n: int, source: str) -> None:
    """Raise :class:`DatasetNotFoundError` unless ``n`` is the size of the whole ``split`` (``subset="full"``)."""
    want = FULL_IMAGES[dataset][split]
    if n != want:
        raise DatasetNotFoundError(
            f"subset='full' needs the whole {dataset} {split!r} split ({want:,} images), but {source} holds {n:,}: "
            "download it (download=True, --download) or point MBE_DATA at a complete copy")


def _missing(title: str, split: str, source: str, missing: list, total: int) -> Exception:
    shown = ", ".join(str(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return DatasetNotFoundError(
        f"{title} in {source} lacks {len(missing):,} of the {total:,} images of the book's subset ({split!r} split), "
        f"e.g. {shown}. subset='book' (--subset book) selects images of the original dataset: torchvision's "
        "download, or the book's offline copy.")


def _select(keys: Sequence, wanted: list, title: str, split: str, source: str) -> list[int]:
    """Positions of ``keys`` that are in ``wanted``, in their order; every wanted key exactly once."""
    want = set(wanted)
    keep = [i for i, k in enumerate(keys) if k in want]
    found = [keys[i] for i in keep]
    if len(set(found)) != len(found):
        twice = sorted(k for k, n in Counter(found).items() if n > 1)
        raise ValueError(f"{title} in {source} holds images of the book's subset more than once ({split!r} split): "
                         f"{', '.join(map(str, twice[:5]))}")
    if len(found) != len(want):
        have = set(found)
        raise _missing(title, split, source, [k for k in wanted if k not in have], len(want))
    return keep


def book_folder(dataset: str, split: str, files: Sequence[str], targets: Sequence[int],
                folder: Path) -> tuple[list[str], list[int]]:
    """The book's images among the image ``files`` (labels ``targets``) of an ImageFolder ``split``
    under ``folder``, in the folder's order. CIFAR-10's files are named by original index
    (``00042.png``), Imagenette's by their Imagenette v2 file name, in their wnid's folder."""
    if dataset == "cifar10":
        keys = [int(Path(f).stem) if Path(f).stem.isdigit() else None for f in files]
        keep = _select(keys, book_cifar_indices(split), "CIFAR-10", split, str(folder))
    else:
        keys = [(Path(f).relative_to(folder).parts[0], Path(f).name) for f in files]
        keep = _select(keys, book_imagenette_files(split), "Imagenette", split, str(folder))
    return [files[i] for i in keep], [targets[i] for i in keep]


def cifar_batch_indices(batch_file: Path, rows: int) -> np.ndarray:
    """The original indices of the ``rows`` rows of a CIFAR-10 batch file (``data_batch_1`` ...
    ``data_batch_5``, ``test_batch``)."""
    m = re.fullmatch(r"data_batch_([1-5])", batch_file.name)
    if batch_file.name != "test_batch" and m is None:
        raise ValueError(f"subset='book' needs CIFAR-10's own batch files (data_batch_1 ... data_batch_5, test_batch), "
                         f"whose rows are the images in their original order; got {batch_file}")
    if rows > CIFAR_BATCH_SIZE:
        raise ValueError(f"{batch_file} holds {rows:,} images, more than a CIFAR-10 batch file's {CIFAR_BATCH_SIZE:,}: "
                         "it is not one of CIFAR-10's own batch files, so subset='book' cannot tell its images apart")
    first = (int(m.group(1)) - 1) * CIFAR_BATCH_SIZE if m else 0
    return np.arange(first, first + rows)


def book_batches(split: str, files: Sequence[Path], rows: Sequence[int], images: np.ndarray,
                 targets: Sequence[int], classes: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """The book's images among ``images`` (labels ``targets``), the rows of CIFAR-10's batch
    ``files`` (``rows`` in each) in that order; in the offline copy's order: by class folder name
    (``classes``, by label), then by original index."""
    index = np.concatenate([cifar_batch_indices(Path(f), n) for f, n in zip(files, rows)])
    source = str(Path(files[0]).parent) if files else ""
    keep = _select([int(i) for i in index], book_cifar_indices(split), "CIFAR-10", split, source)
    keep = sorted(keep, key=lambda i: (classes[targets[i]], int(index[i])))
    return images[keep], [targets[i] for i in keep]


__all__ = ["BOOK", "FULL", "FULL_IMAGES", "check_full", "SUBSETS",
           "BOOK_SUBSET_FILE", "book_subset", "book_cifar_indices", "book_imagenette_files",
           "check_subset", "book_folder", "book_batches", "cifar_batch_indices"]

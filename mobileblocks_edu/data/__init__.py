"""Data: the datasets the book trains on, read from the data directory, and their loaders.

* :mod:`.datasets`: CIFAR-10, Imagenette and any ImageFolder tree; transforms; seeded loaders.
* :mod:`.images`: ``ImageDataset`` (files or an in-memory array, augmentation seeded per sample)
  and the safe reading of image and CIFAR batch files.
* :mod:`.subsets`: the book's subset (``load_dataset(..., subset="book")``): which images of
  CIFAR-10 and Imagenette the committed runs used, so that a download gives exactly those.
* :mod:`.download`: torchvision's downloaders, only when allowed and the host answers.
* :mod:`.weights`: the published ImageNet weights (EMO, MobileNetV2, GhostNet): where they are,
  the hub cache, and their mapping onto the library's layout (``create_model(name, pretrained=True)``).
* :mod:`.constants`: the normalisation constants.

``from mobileblocks_edu.data import load_dataset`` and the other names below work as before.
"""
from .constants import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from .datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    IMAGENETTE_CLASSES,
    DatasetInfo,
    DatasetNotFoundError,
    EpochSampler,
    build_loaders,
    build_transforms,
    dataset_info,
    denormalize,
    load_dataset,
    set_epoch,
    try_load_dataset,
)
from .images import CorruptImageError, ImageDataset, check_same_classes, derive_seed

__all__ = [
    "CIFAR10_CLASSES", "IMAGENETTE_CLASSES", "DATASETS", "DatasetInfo", "DatasetNotFoundError", "dataset_info",
    "load_dataset", "try_load_dataset", "build_transforms", "denormalize", "EpochSampler", "set_epoch",
    "build_loaders", "ImageDataset", "CorruptImageError", "check_same_classes", "derive_seed", "CIFAR_MEAN",
    "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD",
]

"""A dataset held as one uint8 tensor on the training device, augmented a whole batch at a time.

The per-image loader (:func:`~mobileblocks_edu.data.build_loaders`) decodes, crops and flips every
image in Python and copies each batch to the device. On a CPU that costs little beside the model
(lesson 11 measures it); on a GPU it is what the GPU waits for. :class:`TensorBatches` keeps the
images on the device as ``(N, 3, S, S)`` uint8 (CIFAR-10's 50,000 training images: 147 MiB) and
makes each training batch there with a few batched tensor operations:

* **CIFAR-10**: ``RandomCrop(size, padding=size/8)`` and a horizontal flip, both one gather
  ``x[b, c, oy_b + i, ox_b ± j]`` from the zero-padded batch (the same crops, with zeros outside
  the image, as torchvision's per-image transforms);
* **Imagenette** and ImageFolder trees: ``RandomResizedCrop(size, scale=(crop_scale, 1),
  ratio=(3/4, 4/3))`` and a flip, as one :func:`torchvision.ops.roi_align` over the batch's boxes
  (bilinear, 2x2 samples per output pixel). The images are stored as the central square of side
  ``size / 0.875``, so the crops are drawn from that square rather than the whole photograph, and
  a box that does not fit is clamped to the square where torchvision would try again;
* **RandAugment** (``num_ops=2, magnitude=9``, EMO's "rand-m9"): torchvision's own operations,
  applied once to each group of images that drew the same operation and sign, so a batch costs at
  most 2 x 28 calls whatever its size;
* normalisation by the dataset's mean and std, in float32 on the device.

Every random number comes from a CPU generator seeded with ``derive_seed(seed, epoch, 3 + rank)``
and the order from :class:`~mobileblocks_edu.data.EpochSampler`, so an epoch's batches are a pure
function of ``(seed, epoch)`` on every device and resuming a run stays exact. Evaluation batches
are the stored images, normalised (CIFAR-10: the images themselves; Imagenette: ``Resize(size /
0.875)`` and ``CenterCrop(size)`` done once when the tensor is built).

Use it through ``build_loaders(..., loader="tensor", device=...)`` or ``--loader tensor`` on the
command line; :func:`~mobileblocks_edu.train.fit` takes it wherever it takes a ``DataLoader``.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.ops import roi_align
from torchvision.transforms import autoaugment as _autoaugment

from ..env import check_positive
from .images import ImageDataset, derive_seed, load_image
from .sampling import EpochSampler

RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE, RANDAUGMENT_BINS = 2, 9, 31  # EMO's rand-m9, torchvision's defaults


class TensorSet:
    """The images of one split as a ``(N, 3, S, S)`` uint8 tensor, with the dataset's labels,
    its :class:`~mobileblocks_edu.data.DatasetInfo` (``info``: mean, std, crop scale) and class
    names (what :func:`~mobileblocks_edu.train.fit` reads of ``loader.dataset``).
    ``set[i]`` is ``(image, label)`` as the model sees it in evaluation: normalised float32,
    centre-cropped to ``size``."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int], info, size: int,
                 classes: Sequence[str], class_ids: Sequence[str], name: str = "", split: str = "", source: str = ""):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a uint8 tensor (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images, self.info, self.size = images, info, size
        self.targets = [int(t) for t in targets]
        self.labels = torch.as_tensor(self.targets, dtype=torch.long, device=images.device)
        self.classes, self.class_ids = list(classes), list(class_ids)
        self.name, self.split, self.source = name, split, source
        self.mean = torch.tensor(info.mean, device=images.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(info.std, device=images.device).view(1, 3, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.targets)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float pixels in [0, 255] -> the normalised float32 the model takes."""
        return (x.float() - self.mean) / self.std

    def center(self, x: torch.Tensor) -> torch.Tensor:
        """The central ``size x size`` crop of ``(B, 3, S, S)`` images (nothing to do when S == size)."""
        s = x.shape[-1]
        if s == self.size:
            return x
        o = (s - self.size) // 2
        return x[..., o:o + self.size, o:o + self.size]

    def __getitem__(self, index: int):
        return self.normalize(self.center(self.images[index:index + 1]))[0], self.targets[index]

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def __repr__(self) -> str:
        return (f"TensorSet({self.name!r}, split={self.split!r}, {len(self)} images stored at "
                f"{self.images.shape[-1]}x{self.images.shape[-1]} on {self.images.device}, "
                f"{self.nbytes / 2**20:.0f} MiB)")


def tensor_set(ds: ImageDataset, info, size: int, train: bool,
               device: Union[str, torch.device] = "cpu") -> TensorSet:
    """``ds`` decoded once into a :class:`TensorSet` on ``device``.

    CIFAR-10 keeps its pixels (resized to ``size`` when that is not 32). Other datasets store, for
    training, the central square of side ``round(size / 0.875)`` (the crops are drawn from it) and
    for evaluation the ``Resize(size / 0.875)`` + ``CenterCrop(size)`` view of the evaluation
    transform. A corrupt file fails here, with its name."""
    check_positive("size", size, int)
    if info.name == "cifar10":
        arrays = ds.in_memory().items
        images = torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).contiguous()
        if size != images.shape[-1]:
            images = T.Resize(size, antialias=True)(images)
    else:
        side = int(round(size / 0.875))
        geometry = T.Compose([T.Resize(side, antialias=True), T.CenterCrop(side if train else size)])
        if isinstance(ds.items, np.ndarray):
            pil = [T.functional.to_pil_image(a) for a in ds.items]
        else:
            pil = [load_image(p) for p in ds.items]
        images = torch.stack([torch.from_numpy(np.array(geometry(im))).permute(2, 0, 1) for im in pil])
    return TensorSet(images.to(device), ds.targets, info, size, ds.classes, ds.class_ids, ds.name, ds.split,
                     ds.source)


class TensorBatches:
    """Batches of a :class:`TensorSet`, made on its device (see the module's text).

    Args:
        dataset: the images, on the device the model trains on.
        batch_size: images per batch (in a distributed run, per process).
        train: augment and shuffle (by :class:`EpochSampler`), dropping the last incomplete batch;
            otherwise every image once, in order.
        randaugment: add RandAugment (``num_ops=2, magnitude=9``) to the training crops.
        seed: the run's seed (:meth:`set_epoch` may change it).
        sampler: the order; default a new :class:`EpochSampler` (a shard of one in a distributed run).

    Iterating yields ``(x, y)``: ``x`` normalised float32 ``(B, 3, size, size)``, ``y`` int64, both
    on the dataset's device. ``len()`` is the number of batches, as for a ``DataLoader``.
    """

    def __init__(self, dataset: TensorSet, batch_size: int, train: bool, randaugment: bool = False, seed: int = 0,
                 sampler: Optional[EpochSampler] = None):
        check_positive("batch_size", batch_size, int)
        if not isinstance(dataset, TensorSet):
            raise TypeError(f"dataset must be a TensorSet (tensor_set), got {type(dataset).__name__}")
        self.dataset, self.batch_size, self.train, self.randaugment = dataset, batch_size, train, randaugment
        self.drop_last = train
        self.sampler = sampler if sampler is not None else EpochSampler(len(dataset), seed, shuffle=train, even=train)
        self.epoch = 0
        self._space = _augmentation_space(dataset.size) if randaugment else None

    @property
    def device(self) -> torch.device:
        return self.dataset.images.device

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        """Epoch ``epoch`` (from 0) of the run with ``seed``: its order and its augmentations."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch, seed)

    def shard(self, rank: int, num_replicas: int) -> "TensorBatches":
        """Process ``rank``'s part (distributed runs): every ``num_replicas``-th position of the same
        order; training batches of ``batch_size / num_replicas``."""
        s = self.sampler
        sampler = EpochSampler(len(self.dataset), s.seed, s.shuffle, rank=rank, num_replicas=num_replicas,
                               even=self.train)
        batch = self.batch_size // num_replicas if self.train else self.batch_size
        return TensorBatches(self.dataset, batch, self.train, self.randaugment, s.seed, sampler)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds, order = self.dataset, torch.tensor(list(self.sampler), dtype=torch.long)
        gen = torch.Generator().manual_seed(derive_seed(self.sampler.seed, self.epoch, 3 + self.sampler.rank))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].to(ds.images.device)
            x = ds.images[idx]
            if self.train:
                x = self._augment(x, gen)
            else:
                x = ds.center(x)
            yield ds.normalize(x), ds.labels[idx]

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random crop and flip of a uint8 batch (then RandAugment), on its device."""
        ds = self.dataset
        flip = torch.rand(len(x), generator=gen) < 0.5
        if ds.info.name == "cifar10":
            x = random_crop_flip(x, ds.size, max(1, ds.size // 8), flip, gen)
        else:
            x = random_resized_crop_flip(x, ds.size, (ds.info.crop_scale, 1.0), flip, gen)
        if self._space is not None:
            x = randaugment(x, self._space, gen)
        return x

    def __repr__(self) -> str:
        kind = ("training, random crop + flip" + (" + RandAugment" if self.randaugment else "")) if self.train \
            else "evaluation, in order"
        return f"TensorBatches({len(self)} batches of {self.batch_size}, {kind}, {self.dataset!r})"


def random_crop_flip(x: torch.Tensor, size: int, padding: int, flip: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
    """``RandomCrop(size, padding)`` + horizontal flip of every image of a ``(B, C, H, W)`` batch,
    as one gather: output pixel ``(i, j)`` of image ``b`` is padded pixel
    ``(oy_b + i, ox_b + j)``, or ``(oy_b + i, ox_b + size - 1 - j)`` when ``flip[b]``."""
    b, c, h, w = x.shape
    oy = torch.randint(0, h + 2 * padding - size + 1, (b,), generator=gen)
    ox = torch.randint(0, w + 2 * padding - size + 1, (b,), generator=gen)
    j = torch.arange(size)
    rows = oy[:, None] + j                                                 # (B, size)
    cols = ox[:, None] + torch.where(flip[:, None], size - 1 - j, j)       # (B, size)
    dev = x.device
    padded = F.pad(x, (padding,) * 4)
    return padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator,
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """``(n, 4)`` boxes ``x1, y1, x2, y2`` of ``RandomResizedCrop``: area ``U(scale) * H * W``, aspect
    ratio log-uniform in ``ratio``, position uniform; a box larger than the image is clamped to it."""
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen, dtype=torch.float64))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, generator=gen,
                                                                                          dtype=torch.float64)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).round().clamp(1, width)
    h = torch.sqrt(area / r).round().clamp(1, height)
    x1 = torch.floor(torch.rand(n, generator=gen, dtype=torch.float64) * (width - w + 1))
    y1 = torch.floor(torch.rand(n, generator=gen, dtype=torch.float64) * (height - h + 1))
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def random_resized_crop_flip(x: torch.Tensor, size: int, scale: tuple[float, float], flip: torch.Tensor,
                             gen: torch.Generator) -> torch.Tensor:
    """``RandomResizedCrop(size, scale)`` + flip of a uint8 batch, as one ``roi_align`` over the
    batch's boxes (bilinear, 2x2 samples per output pixel); returns float pixels in [0, 255]."""
    b, _, h, w = x.shape
    boxes = crop_boxes(b, h, w, scale, gen)
    rois = torch.cat([torch.arange(b, dtype=torch.float64)[:, None], boxes], 1).to(x.device, torch.float32)
    out = roi_align(x.float(), rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return torch.where(flip.to(x.device)[:, None, None, None], out.flip(-1), out)


def _augmentation_space(size: int) -> list[tuple[str, float, bool]]:
    """RandAugment's operations at magnitude 9: ``(name, magnitude, signed)``, from torchvision's own table."""
    space = T.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE,
                          num_magnitude_bins=RANDAUGMENT_BINS)._augmentation_space(RANDAUGMENT_BINS, (size, size))
    return [(name, float(mags[RANDAUGMENT_MAGNITUDE]) if mags.ndim > 0 else 0.0, signed)
            for name, (mags, signed) in space.items()]


def randaugment(x: torch.Tensor, space: list[tuple[str, float, bool]], gen: torch.Generator) -> torch.Tensor:
    """RandAugment on a batch: each image draws ``RANDAUGMENT_OPS`` operations (and signs); the
    images that drew the same one are transformed together by torchvision's ``_apply_op``."""
    as_uint8 = x.dtype == torch.uint8
    x = x if as_uint8 else x.round().clamp(0, 255).to(torch.uint8)
    for _ in range(RANDAUGMENT_OPS):
        op = torch.randint(len(space), (len(x),), generator=gen)
        negative = torch.rand(len(x), generator=gen) < 0.5
        out = x.clone()
        for k, (name, magnitude, signed) in enumerate(space):
            for neg in ((False, True) if signed else (False,)):
                chosen = (op == k) & (negative == neg) if signed else op == k
                if not bool(chosen.any()):
                    continue
                where = chosen.nonzero()[:, 0].to(x.device)
                out[where] = _autoaugment._apply_op(x[where], name, -magnitude if neg else magnitude,
                                                    interpolation=T.InterpolationMode.NEAREST, fill=None)
        x = out
    return x if as_uint8 else x.float()


__all__ = ["TensorSet", "tensor_set", "TensorBatches", "random_crop_flip", "crop_boxes", "random_resized_crop_flip",
           "randaugment", "RANDAUGMENT_OPS", "RANDAUGMENT_MAGNITUDE"]

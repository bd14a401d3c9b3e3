"""Data for the dense models: generated shapes, and the Penn-Fudan pedestrians.

Both datasets give ``(image, target)``: a float image ``(3, S, S)`` in [0, 1] and a target with
``boxes`` (N, 4; x1, y1, x2, y2 in pixels), ``labels`` (N,), instance ``masks`` (N, S, S) and the
``semantic`` map (S, S; 0 is background), the form torchvision's detectors train on.

* :class:`ShapesDataset` is **generated**: rectangles (class 1) and ellipses (class 2) on a noisy
  background, from a seed; nothing is read or downloaded.
* :class:`PennFudan` reads the Penn-Fudan pedestrian database (170 street photos, 345 pedestrians
  with masks; the data of torchvision's detection tutorial) from ``$MBE_DATA/PennFudanPed``;
  :func:`download_pennfudan` fetches it from :func:`pennfudan_url` (``MBE_PENNFUDAN_URL`` names another
  address, e.g. a local copy) with torchvision's download utilities.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.download import offline, url_reachable
from ..env import PathLike, check_positive, data_dir

PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
PENNFUDAN_FOLDER = "PennFudanPed"
PENNFUDAN_SIZE = "size not yet recorded"  # of the zip archive at PENNFUDAN_URL (170 PNG photos and their masks)
SHAPE_CLASSES = ("background", "rectangle", "ellipse")


def _target(masks: list[np.ndarray], labels: list[int], size: int) -> dict:
    """Boxes, labels, instance masks and the semantic map of the instances (later ones on top)."""
    m = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, size, size, dtype=torch.uint8)
    boxes = []
    for inst in m:
        ys, xs = torch.nonzero(inst, as_tuple=True)
        boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
    semantic = torch.zeros(size, size, dtype=torch.int64)
    for inst, label in zip(m, labels):
        semantic[inst.bool()] = label
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": m.to(torch.uint8), "semantic": semantic}


class ShapesDataset(Dataset):
    """``n`` generated images of ``size x size`` with 1 to ``max_shapes`` rectangles and ellipses each
    (classes 1 and 2), the same for the same ``seed``."""

    classes = SHAPE_CLASSES

    def __init__(self, n: int = 64, size: int = 128, seed: int = 0, max_shapes: int = 3):
        check_positive("n", n, int)
        check_positive("max_shapes", max_shapes, int)
        if not isinstance(size, int) or isinstance(size, bool) or size < 32:
            raise ValueError(f"size must be an integer >= 32, got {size!r}")
        self.n, self.size, self.seed, self.max_shapes = n, size, seed, max_shapes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        rng = np.random.default_rng([self.seed, i])
        s = self.size
        img = rng.uniform(0.0, 0.25, (3, s, s)).astype(np.float32)
        yy, xx = np.mgrid[0:s, 0:s]
        masks, labels = [], []
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            w, h = rng.integers(s // 6, s // 2, size=2)
            x0, y0 = rng.integers(0, s - w), rng.integers(0, s - h)
            label = int(rng.integers(1, 3))
            if label == 1:
                mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
            else:
                mask = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 <= 1
            img[:, mask] = rng.uniform(0.4, 1.0, (3, 1)).astype(np.float32)
            for m in masks:  # a later shape covers the earlier ones
                m &= ~mask
            masks.append(mask.copy())
            labels.append(label)
        keep = [k for k, m in enumerate(masks) if m.sum() >= 16]
        return torch.from_numpy(img), _target([masks[k].astype(np.uint8) for k in keep], [labels[k] for k in keep], s)


def pennfudan_url() -> str:
    """Where Penn-Fudan is downloaded from: ``$MBE_PENNFUDAN_URL``, else the authors' page."""
    return os.environ.get("MBE_PENNFUDAN_URL", "").strip() or PENNFUDAN_URL


def download_pennfudan(root: Optional[PathLike] = None, url: Optional[str] = None) -> Path:
    """Download and unpack Penn-Fudan into ``root`` (default ``$MBE_DATA``) with torchvision's
    ``download_and_extract_archive``, in a temporary folder moved into place only when complete."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root) if root is not None else data_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        download_and_extract_archive(url or pennfudan_url(), str(tmp), filename="PennFudanPed.zip")
        if not (tmp / PENNFUDAN_FOLDER / "PNGImages").is_dir():
            raise ValueError(f"the archive at {url or pennfudan_url()} has no {PENNFUDAN_FOLDER}/PNGImages folder")
        if not (root / PENNFUDAN_FOLDER).exists():
            os.replace(tmp / PENNFUDAN_FOLDER, root / PENNFUDAN_FOLDER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / PENNFUDAN_FOLDER


class PennFudan(Dataset):
    """Penn-Fudan pedestrians (class 1) from ``folder`` (``PNGImages/*.png`` and ``PedMasks/*_mask.png``,
    where pixel value k marks pedestrian k), each image resized to ``size x size``."""

    classes = ("background", "pedestrian")

    def __init__(self, folder: PathLike, size: int = 320):
        from PIL import Image  # noqa: F401  (Pillow comes with torchvision)

        self.folder, self.size = Path(folder), size
        self.images = sorted((self.folder / "PNGImages").glob("*.png"))
        if not self.images:
            raise FileNotFoundError(f"no Penn-Fudan images in {self.folder / 'PNGImages'}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        path = self.images[i]
        img = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        ids = torch.from_numpy(np.asarray(Image.open(self.folder / "PedMasks" / f"{path.stem}_mask.png"),
                                          dtype=np.int64).copy())
        img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        ids = F.interpolate(ids[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        masks = [(ids == k).numpy().astype(np.uint8) for k in ids.unique().tolist() if k > 0]
        masks = [m for m in masks if m.sum() >= 16]
        return img.clamp(0, 1), _target(masks, [1] * len(masks), self.size)


def load_pedestrians(root: Optional[PathLike] = None, size: int = 320, download: Optional[bool] = None,
                     timeout: float = 5.0) -> Optional[PennFudan]:
    """Penn-Fudan from ``root`` (default ``$MBE_DATA``), downloaded when missing and allowed
    (``download=None``: unless ``MBE_OFFLINE`` is set) and the address answers; ``None`` otherwise."""
    root = Path(root) if root is not None else data_dir()
    folder = root / PENNFUDAN_FOLDER
    if not (folder / "PNGImages").is_dir():
        allowed = (not offline()) if download is None else bool(download)
        if not allowed or not url_reachable(pennfudan_url(), timeout):
            return None
        download_pennfudan(root)
    return PennFudan(folder, size)


def collate(batch):
    """A list of images and a list of targets (torchvision's detectors take lists)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def lesson_data(fast: bool, size: int = 256, n_shapes: int = 96, held_out: int = 8, seed: int = 0):
    """The lesson's data: ``(train, test, classes, line)``. Penn-Fudan when not ``fast`` and it is here
    or can be downloaded (:func:`load_pedestrians`); else :class:`ShapesDataset`, generated. ``line``
    says in one sentence which it is."""
    from torch.utils.data import Subset

    peds = None if fast else load_pedestrians(size=size)
    if peds is not None:
        n = len(peds)
        k = min(held_out, max(1, n // 5))
        line = (f"Penn-Fudan pedestrians: {n - k} photos to train on and {k} held out, resized to {size}x{size} "
                "(real data)")
        return Subset(peds, range(n - k)), Subset(peds, range(n - k, n)), peds.classes, line
    why = "fast mode" if fast else "Penn-Fudan is not here and cannot be downloaded"
    line = (f"Generated data ({why}): {n_shapes} images of rectangles and ellipses at {size}x{size} with their "
            f"boxes and masks, and {held_out} more held out; not photographs")
    return (ShapesDataset(n_shapes, size, seed), ShapesDataset(held_out, size, seed + 1), ShapesDataset.classes, line)

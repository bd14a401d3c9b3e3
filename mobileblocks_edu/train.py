"""The trainer of the lab: the papers' recipes scaled down, exact resume, and a command line.

Two recipes (:data:`RECIPES`), both with a per-step learning rate

.. math::

    \\eta_t = \\eta \\cdot \\begin{cases} (t + 1) / T_w & t < T_w \\\\
    r + (1 - r)\\,\\tfrac12\\left(1 + \\cos\\left(\\pi \\tfrac{t - T_w}{T - T_w}\\right)\\right) & t \\ge T_w \\end{cases}

(linear warm-up over :math:`T_w` steps, then cosine decay to :math:`r\\eta` at step :math:`T`):

* ``"emo"``: EMO (Zhang et al., ICCV 2023, Sec. 5.1): AdamW, betas (0.9, 0.999), weight decay
  0.05, lr 6e-3 at batch 2048, 20 of 300 epochs warm-up, label smoothing 0.1, RandAugment,
  drop path 0.05 (their Fig. 6C).
* ``"mocovit"`` (alias ``"ghostnet"``): MoCoViT's basic setting, GhostNet's recipe with lr 0.5 at
  batch 1024: SGD with momentum 0.9, weight decay 4e-5, 5 of 360 epochs warm-up, no label
  smoothing, no extra augmentation.

Scaled down: the learning rate follows the linear rule ``lr * batch_size / reference_batch`` and
the warm-up keeps its fraction of the epochs. Weight decay skips biases and normalisation
weights (every parameter with one dimension), as timm does for both papers.

Around the loop: optional EMA of weights and buffers (``torch.optim.swa_utils.AveragedModel``),
mixed precision on CUDA (bf16, else fp16 with a gradient scaler), gradient clipping, ``tqdm``
progress bars, and a checkpoint after every epoch (``last.pt``, ``best.pt``; atomic, loadable
with ``weights_only=True``).

**Exact resume.** Every epoch starts from a state that is a pure function of ``(seed, epoch)``
plus what the checkpoint holds: the data order and each sample's augmentation come from
``derive_seed(seed, epoch[, index])`` (:mod:`mobileblocks_edu.data`), and torch's global random
stream (dropout, drop path) is re-seeded with ``derive_seed(seed, epoch, 1)``. A checkpoint
holds model, optimizer, scheduler, EMA, gradient scaler, random states and history at the end
of an epoch, so a run interrupted anywhere and resumed from ``last.pt`` repeats the unfinished
epoch exactly and ends with the same weights, bit for bit on the CPU (with the same number of
threads: a different number splits floating-point sums differently).

Command line::

    python -m mobileblocks_edu.train --model emo_1m_cifar --data cifar10 --epochs 30 --out runs/NAME
    python -m mobileblocks_edu.train --out runs/NAME --resume
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import __version__, env
from .checkpoint import CheckpointError, WriteError, atomic_write, read_checkpoint, save_checkpoint, temporary_files
from .complexity import count_flops, count_params
from .data import check_same_classes, derive_seed, set_epoch
from .env import check_positive

PathLike = Union[str, os.PathLike]
CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Recipes and configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe; ``lr`` is given at ``lr_batch`` and scaled linearly."""

    opt: str
    lr: float
    lr_batch: int
    weight_decay: float
    warmup_fraction: float
    label_smoothing: float
    randaugment: bool
    drop_path: float
    source: str


RECIPES = {
    "emo": Recipe("adamw", 6e-3, 2048, 0.05, 20 / 300, 0.1, True, 0.05,
                  "EMO, ICCV 2023, Sec. 5.1 and Fig. 6C"),
    "mocovit": Recipe("sgd", 0.5, 1024, 4e-5, 5 / 360, 0.0, False, 0.0,
                      "MoCoViT, Sec. 4.1 (basic setting), GhostNet's recipe with lr 0.5 at batch 1024"),
}
_RECIPE_ALIASES = {"ghostnet": "mocovit"}


def get_recipe(name: str) -> Recipe:
    """``"emo"`` or ``"mocovit"`` (``"ghostnet"`` is the same recipe)."""
    key = _RECIPE_ALIASES.get(name, name)
    if key not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES) + sorted(_RECIPE_ALIASES)}, got {name!r}")
    return RECIPES[key]


@dataclass
class TrainConfig:
    """Everything :func:`fit` needs besides the model and the data.

    ``None`` fields take the recipe's value (:meth:`resolved`); the learning rate is then the
    recipe's, scaled to the loader's batch size.
    """

    epochs: int = 30
    recipe: str = "emo"                       # "emo" (AdamW) or "mocovit"/"ghostnet" (SGD)
    opt: Optional[str] = None                 # "adamw" or "sgd"
    lr: Optional[float] = None                # peak learning rate
    weight_decay: Optional[float] = None
    momentum: float = 0.9                     # SGD momentum; AdamW uses betas (momentum, 0.999)
    warmup_epochs: Optional[float] = None     # linear warm-up (may be fractional)
    min_lr_ratio: float = 0.0                 # r: the cosine ends at r * lr
    label_smoothing: Optional[float] = None
    ema: bool = False                         # evaluate an EMA of weights and buffers
    ema_decay: float = 0.995                  # per step: a horizon of ~1 / (1 - decay) = 200 steps
    clip_grad: Optional[float] = None         # max gradient norm (None: no clipping)
    amp: str = "auto"                         # "auto" (CUDA: bf16, else fp16; CPU: off), "off", "bf16", "fp16"
    channels_last: bool = False               # NHWC memory format (faster convolutions on some CPUs)
    seed: int = 0
    device: str = "auto"
    progress: bool = True                     # tqdm progress bars

    def resolved(self, batch_size: int) -> "TrainConfig":
        """A copy with the recipe's values filled in; the learning rate scaled to ``batch_size``."""
        r = get_recipe(self.recipe)
        out = replace(
            self,
            opt=self.opt or r.opt,
            lr=self.lr if self.lr is not None else r.lr * batch_size / r.lr_batch,
            weight_decay=self.weight_decay if self.weight_decay is not None else r.weight_decay,
            warmup_epochs=self.warmup_epochs if self.warmup_epochs is not None else r.warmup_fraction * self.epochs,
            label_smoothing=self.label_smoothing if self.label_smoothing is not None else r.label_smoothing,
        )
        out.check()
        return out

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what it may be."""
        from .env import check_positive

        check_positive("epochs", self.epochs, int)
        get_recipe(self.recipe)
        if self.opt is not None and self.opt not in ("adamw", "sgd"):
            raise ValueError(f"opt must be 'adamw' or 'sgd', got {self.opt!r}")
        for name in ("lr", "weight_decay", "momentum", "warmup_epochs", "min_lr_ratio", "label_smoothing",
                     "ema_decay", "clip_grad"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.lr is not None:
            check_positive("lr", self.lr)
        for name in ("weight_decay", "warmup_epochs", "label_smoothing"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs!r} is longer than the run (epochs={self.epochs}); "
                             f"use a value in [0, {self.epochs}]")
        if self.label_smoothing is not None and self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1 (allowed: [0, 1)), got {self.label_smoothing!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if self.clip_grad is not None:
            check_positive("clip_grad", self.clip_grad)
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_device(self.device)


# settings that may change when a run is resumed (they do not change the numbers on the CPU)
_RESUME_MAY_CHANGE = {"progress", "device"}
AMP_MODES = ("auto", "off", "bf16", "fp16")


def check_device(device: Union[str, torch.device]) -> torch.device:
    """The device ``device`` names (``"auto"``: CUDA when available, else the CPU), or a
    ``ValueError`` saying what is allowed and what this machine has."""
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', got {device!r}")
    elif device == "auto":
        return env.get_device("auto")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"device {device!r}: this machine has no CUDA device (use 'cpu' or 'auto')")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available here (use 'cpu' or 'auto')")
    return dev


class WarmupCosine:
    """The learning-rate factor of step ``t``: linear warm-up, then cosine to ``min_ratio``.

    A callable object (not a closure), so that ``LambdaLR.state_dict()`` stores its numbers.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
        check_positive("total_steps", total_steps, int)
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps!r}")
        if not 0 <= min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio!r}")
        self.warmup_steps, self.total_steps, self.min_ratio = int(warmup_steps), int(total_steps), float(min_ratio)

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            return (t + 1) / self.warmup_steps
        progress = min(1.0, (t - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on weight matrices and kernels, none on biases and norm weights."""
    if not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < math.inf:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum) over :func:`param_groups`, from a resolved config."""
    _check_resolved(cfg, "make_optimizer")
    groups = param_groups(model, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError(f"{type(model).__name__} has no trainable parameter (requires_grad=True)")
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """Per-step :class:`WarmupCosine` over ``cfg.epochs * steps_per_epoch`` steps."""
    _check_resolved(cfg, "make_scheduler")
    check_positive("steps_per_epoch", steps_per_epoch, int)
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    return LambdaLR(optimizer, WarmupCosine(warmup, total, cfg.min_lr_ratio))


def _check_resolved(cfg: "TrainConfig", who: str) -> None:
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"{who} needs a TrainConfig, got {type(cfg).__name__}")
    if None in (cfg.opt, cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.label_smoothing):
        raise ValueError(f"{who} needs a resolved config: cfg.resolved(batch_size) fills in the recipe's values")


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``amp`` on ``device``, or ``None`` (full precision).

    Mixed precision is used on CUDA only: ``"auto"`` means bf16 where supported, else fp16.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            raise ValueError(f"amp={amp!r} needs a CUDA device; this run uses {device} (use amp='auto' or 'off')")
        return None
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Accuracy of a classifier on a dataset; accuracies in percent.

    ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j``; ``per_class[i]`` is
    the recall of class ``i`` (``None`` when the data holds no image of it).
    """

    loss: float
    top1: float
    top5: float
    per_class: list
    confusion: torch.Tensor
    n: int
    classes: Optional[list] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = self.confusion.tolist()
        return d


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = prediction."""
    check_positive("num_classes", num_classes, int)
    for name, t in (("targets", targets), ("preds", preds)):
        if t.numel() and not 0 <= int(t.min()) <= int(t.max()) < num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes - 1}], "
                             f"got values from {int(t.min())} to {int(t.max())}")
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """How many targets are among the ``k`` highest logits (``k`` capped at the number of classes)."""
    check_positive("k", k, int)
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: Optional[Union[str, torch.device]] = None,
    amp: str = "auto",
    num_classes: Optional[int] = None,
    channels_last: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Top-1, top-5, per-class accuracy and confusion matrix of ``model`` on ``loader``
    (the loss is plain cross-entropy, without label smoothing)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = check_device(device)
    dtype = amp_dtype(amp, device)
    classes = getattr(loader.dataset, "classes", None)
    num_classes = num_classes or (len(classes) if classes else None)
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    all_t, all_p = [], []
    try:
        for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
            x = x.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            y = y.to(device)
            with _autocast(device, dtype):
                logits = model(x)
            logits = logits.float()
            if len(y) and int(y.max()) >= logits.shape[1]:
                raise ValueError(f"the data has label {int(y.max())} but the model has {logits.shape[1]} outputs")
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            top1 += topk_correct(logits, y, 1)
            top5 += topk_correct(logits, y, 5)
            n += len(y)
            all_t.append(y.cpu())
            all_p.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate got an empty loader")
    num_classes = max(num_classes or 0, int(logits.shape[1]))  # a model may have more outputs than the data classes
    cm = confusion_matrix(torch.cat(all_t), torch.cat(all_p), num_classes)
    support = cm.sum(1)
    per_class = [100.0 * float(cm[i, i]) / float(s) if s > 0 else None for i, s in enumerate(support.tolist())]
    return EvalResult(loss_sum / n, 100.0 * top1 / n, 100.0 * top5 / n, per_class, cm, n,
                      list(classes) if classes else None)


# ---------------------------------------------------------------------------------------------
# JSON written atomically, random states, code version
# ---------------------------------------------------------------------------------------------
def write_json(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically (temporary file + rename); NaN and infinite
    numbers are refused (``ValueError``), as strict JSON has none."""

    def write(f):
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")

    return atomic_write(path, write, binary=False)


def rng_state() -> dict:
    """Every random state as tensors and plain containers (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed torch, Python and NumPy for epoch ``epoch`` (0-based) of a run with ``seed``."""
    s = derive_seed(seed, epoch, 1)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)


def code_version() -> dict:
    """The package version, and the git commit and dirty flag when run from a checkout."""
    out: dict = {"package": __version__, "git_commit": None, "git_dirty": None}
    root = env.repo_root()
    if root is None:
        return out
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True, timeout=10)
        head = run("rev-parse", "HEAD")
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            status = run("status", "--porcelain", "--untracked-files=no")
            out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def environment() -> dict:
    """Hardware and software of this run."""
    import torchvision

    return {
        "hardware": env.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
class StepInfo(NamedTuple):
    """What ``on_step`` receives after every optimizer step (``epoch`` counts from 1)."""

    epoch: int
    step: int
    global_step: int
    loss: float
    lr: float


@dataclass
class FitResult:
    """What :func:`fit` returns. ``eval_model`` is the EMA model when EMA is on, else ``model``."""

    model: nn.Module
    ema: Optional[AveragedModel]
    history: list
    best: dict
    final: Optional[EvalResult]
    out_dir: Optional[Path]
    result: dict = field(default_factory=dict)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


class RunInUseError(RuntimeError):
    """Another process is training in the same output folder."""


class RunLock:
    """An exclusive lock on a run folder (``<out>/.lock``), so that two runs, or a run and its
    ``--resume``, never write into one folder at the same time.

    The lock is ``fcntl.flock`` on the lock file: the operating system drops it when its process
    ends, however it ends, so a killed run leaves no stale lock (at most an unlocked file, which the
    next run takes). (Where ``fcntl`` is missing, the file is created with ``O_EXCL`` and a lock left
    by a process that no longer runs is taken over.) The file holds the owner's process id for the
    error message and is removed when the lock is released.
    """

    def __init__(self, folder: PathLike):
        self.path = Path(folder) / ".lock"
        self._fd: Optional[int] = None

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        if fcntl is not None:
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise RunInUseError(f"{self.path.parent} is in use by another run (process {self._owner()}): "
                                        "wait for it to end, or choose another output folder") from None
                try:  # the holder before us may have removed the file between our open and our flock
                    if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        else:  # pragma: no cover
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    break
                except FileExistsError:
                    owner = self._owner()
                    if owner.isdigit() and _pid_alive(int(owner)):
                        raise RunInUseError(f"{self.path.parent} is in use by another run (process {owner}): "
                                            "wait for it to end, or choose another output folder") from None
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
            else:
                raise RunInUseError(f"cannot lock {self.path.parent}")
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
        os.close(self._fd)  # closing the file drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:  # pragma: no cover - used where fcntl is missing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


RUN_FILES = ("last.pt", "best.pt", "history.json", "result.json")


def prepare_out_dir(out_dir: PathLike) -> Path:
    """Check that ``out_dir`` can hold a run, before any training: it is a folder (made if
    missing) in which files can be written. Removes the temporary files a killed save left there.
    Raises :class:`~mobileblocks_edu.checkpoint.WriteError` naming the folder otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise WriteError(f"out_dir {out} is a file, not a folder: choose a folder for the run's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"out_dir {out} cannot be created ({type(e).__name__}: {e.strerror or e}); "
                         "choose a folder you can write to") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise WriteError(f"out_dir {out} is not writable: choose a folder you can write to")
    for name in RUN_FILES:
        if (out / name).is_dir():
            raise WriteError(f"{out / name} is a folder; the run writes a file there")
    return out


def check_free_space(out: Path, model: nn.Module, cfg: "TrainConfig") -> None:
    """Raise :class:`~mobileblocks_edu.checkpoint.WriteError` when ``out`` cannot hold the run's
    checkpoints: ``best.pt``, ``last.pt`` and the temporary file of a save, each holding the
    weights, the optimizer's state (AdamW: two tensors per weight, SGD: one) and the EMA copy."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    copies = 1 + (2 if cfg.opt == "adamw" else 1) + (1 if cfg.ema else 0)
    per_checkpoint = weights * copies + 2**20
    existing = sum((out / n).stat().st_size for n in ("best.pt", "last.pt") if (out / n).is_file())
    need = 3 * per_checkpoint - existing
    free = shutil.disk_usage(out).free
    if free < need:
        raise WriteError(f"out_dir {out} has {free / 2**20:.1f} MiB free, but the run's checkpoints need about "
                         f"{need / 2**20:.1f} MiB (best.pt, last.pt and the temporary file of a save, "
                         f"{per_checkpoint / 2**20:.1f} MiB each): free some space or choose another folder")


def _clean_temporary_files(out: Path) -> None:
    for name in RUN_FILES:
        for tmp in temporary_files(out / name):
            tmp.unlink(missing_ok=True)


def _classes(loader: Optional[DataLoader]) -> Optional[list]:
    if loader is None:
        return None
    ds = loader.dataset
    ids = getattr(ds, "class_ids", None) or getattr(ds, "classes", None)
    return list(ids) if ids is not None else None


def _check_fit_args(model, train_loader, val_loader, config) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if loader is not None and not isinstance(loader, DataLoader):
            raise TypeError(f"{name} must be a torch DataLoader, got {type(loader).__name__}")
    if train_loader is None:
        raise TypeError("train_loader must be a torch DataLoader, got None")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_same_classes(_classes(train_loader), _classes(val_loader))
    n_out = getattr(model, "num_classes", None)
    classes = _classes(train_loader)
    n_data = len(classes) if classes is not None else None
    targets = getattr(train_loader.dataset, "targets", None)
    if n_data is None and targets is not None and len(targets):
        n_data = int(max(targets)) + 1
    if isinstance(n_out, int) and n_out > 0 and n_data is not None and n_data > n_out:
        raise ValueError(f"the data has {n_data} classes but the model has {n_out} outputs: "
                         f"build the model with num_classes={n_data}")


def _config_diff(saved: dict, now: dict) -> list[str]:
    keys = (set(saved) | set(now)) - _RESUME_MAY_CHANGE
    return [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(keys) if saved.get(k) != now.get(k)]


def _input_shape(loader: Optional[DataLoader]) -> Optional[tuple]:
    if loader is None:
        return None
    x, _ = loader.dataset[0]
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: Optional[DataLoader] = None,
    config: Optional[TrainConfig] = None,
    out_dir: Optional[PathLike] = None,
    *,
    resume: bool = False,
    on_step: Optional[Callable[[StepInfo], None]] = None,
    on_epoch: Optional[Callable[[dict], None]] = None,
    meta: Optional[dict] = None,
) -> FitResult:
    """Train ``model`` and return a :class:`FitResult`.

    Args:
        model: any classifier; trained in place.
        train_loader: training batches (:func:`mobileblocks_edu.data.build_loaders`). Before each
            epoch :func:`mobileblocks_edu.data.set_epoch` gives its sampler and dataset the
            epoch and ``config.seed``.
        val_loader: evaluated after every epoch (top-1 picks ``best.pt``); optional.
        config: a :class:`TrainConfig` (default: EMO's recipe, 30 epochs).
        out_dir: where ``last.pt``, ``best.pt``, ``history.json`` and ``result.json`` go
            (nothing is written when ``None``). An existing ``last.pt`` is never overwritten
            by a new run: resume it or choose another folder.
        resume: continue the run in ``out_dir`` from ``last.pt``; the config must be the same
            (except ``progress`` and ``device``) and so must the number of steps per epoch.
            Bit-identical to the uninterrupted run on the CPU with the same number of threads
            (a different number gives a warning: sums are split differently).
        on_step: called after every optimizer step with a :class:`StepInfo`.
        on_epoch: called after every epoch with its history record.
        meta: extra facts for ``result.json`` (the command line, model and data settings).

    Ctrl-C (``KeyboardInterrupt``) stops the run: ``last.pt`` then holds the last completed
    epoch, ``result.json`` says ``"interrupted"``, and the exception propagates.
    """
    t_start = time.perf_counter()
    _check_fit_args(model, train_loader, val_loader, config)
    cfg = (config or TrainConfig()).resolved(train_loader.batch_size or 1)
    device = check_device(cfg.device)
    dtype = amp_dtype(cfg.amp, device)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("train_loader yields no batch (fewer images than batch_size with drop_last?)")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    if out_dir is None:
        return _fit(model, train_loader, val_loader, cfg, None, device, dtype, steps_per_epoch, t_start,
                    resume, on_step, on_epoch, meta)
    out = prepare_out_dir(out_dir)
    with RunLock(out):  # held until the run ends: no second run (or --resume) in this folder meanwhile
        _clean_temporary_files(out)
        if (out / "last.pt").exists() and not resume:
            raise FileExistsError(f"{out / 'last.pt'} exists: resume that run (resume=True, --resume) "
                                  "or choose another out_dir")
        if resume and not (out / "last.pt").is_file():
            raise CheckpointError(f"cannot resume: no checkpoint at {out / 'last.pt'}")
        return _fit(model, train_loader, val_loader, cfg, out, device, dtype, steps_per_epoch, t_start,
                    resume, on_step, on_epoch, meta)


def _fit(model, train_loader, val_loader, cfg, out, device, dtype, steps_per_epoch, t_start, resume,
         on_step, on_epoch, meta) -> FitResult:
    """The body of :func:`fit`, after its checks (and, with an output folder, under its lock)."""

    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=fmt)
    input_shape = _input_shape(val_loader) or _input_shape(train_loader)
    complexity = {"params": count_params(model)}
    if input_shape is not None:
        complexity.update(input_size=list(input_shape),
                          macs=count_flops(model, (1, *input_shape), "macs"),
                          fvcore_flops=count_flops(model, (1, *input_shape), "fvcore"))
    if out is not None:
        check_free_space(out, model, cfg)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = (torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=dtype == torch.float16))  # torch 2.2: CUDA's only
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) if cfg.ema else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    classes = getattr(val_loader.dataset if val_loader is not None else train_loader.dataset, "classes", None)

    version = code_version()
    start_epoch, history, best, elapsed, commands = 0, [], {}, 0.0, []
    if resume:
        ck = read_checkpoint(out / "last.pt")
        check_same_classes(ck.get("classes"), _classes(train_loader), f"checkpoint {out / 'last.pt'}",
                           "training data now")
        diff = _config_diff(ck["config"], asdict(cfg))
        if ck["steps_per_epoch"] != steps_per_epoch or ck["batch_size"] != train_loader.batch_size:
            diff.append(f"steps per epoch x batch size: checkpoint {ck['steps_per_epoch']} x {ck['batch_size']}, "
                        f"now {steps_per_epoch} x {train_loader.batch_size}")
        if diff:
            raise ValueError("cannot resume: the run differs from the checkpoint's\n  " + "\n  ".join(diff))
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if ck["scaler"]:
            scaler.load_state_dict(ck["scaler"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        set_rng_state(ck["rng"])
        if ck.get("threads") not in (None, torch.get_num_threads()):
            warnings.warn(f"the run used {ck['threads']} CPU threads, this process {torch.get_num_threads()}: "
                          "floating-point sums split differently, so the weights will not be bit-identical to "
                          "an uninterrupted run (set the same number of threads for that)", stacklevel=2)
        start_epoch, history, best = ck["epoch"], list(ck["history"]), dict(ck["best"])
        elapsed, commands = float(ck["elapsed_s"]), list(ck.get("commands", []))
    if meta and meta.get("command"):
        commands.append(meta["command"])

    def checkpoint(epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": train_loader.batch_size,
            "classes": _classes(train_loader),
            "threads": torch.get_num_threads(),
            "history": history,
            "best": best,
            "rng": rng_state(),
            "config": asdict(cfg),
            "meta": dict(meta or {}),
            "commands": commands,
            "elapsed_s": elapsed + time.perf_counter() - t_start,
        }

    def result(status: str, final: Optional[EvalResult] = None) -> dict:
        train_speed = [h["train_img_per_s"] for h in history]
        res = {
            "name": out.name if out is not None else None,
            "status": status,
            **dict(meta or {}),
            "command": commands[0] if commands else None,  # the command that started the run
            "commands": commands,  # ... and every command that continued it
            "seed": cfg.seed,
            "config": asdict(cfg),
            "code_version": version,
            **environment(),
            "device": str(device),
            "amp": str(dtype).replace("torch.", "") if dtype else "off",
            "wall_time_s": round(elapsed + time.perf_counter() - t_start, 3),
            "epochs_done": len(history),
            "steps_per_epoch": steps_per_epoch,
            "batch_size": train_loader.batch_size,
            "train_images": len(train_loader.dataset),
            "val_images": len(val_loader.dataset) if val_loader is not None else None,
            "classes": list(classes) if classes else None,
            **complexity,
            "train_img_per_s": round(float(np.median(train_speed)), 2) if train_speed else None,
            "best": best,
            "last": history[-1] if history else None,
            "history": history,
        }
        if final is not None:
            res["final"] = final.to_dict()
        return res

    eval_model = ema.module if ema is not None else model
    final = None
    status = "running"
    saved_epoch, saved_best = start_epoch, dict(best)  # what last.pt holds
    try:
        with tqdm(total=cfg.epochs, initial=start_epoch, desc="epochs", disable=not cfg.progress,
                  dynamic_ncols=True) as epoch_bar:
            for epoch in range(start_epoch, cfg.epochs):
                set_epoch(train_loader, epoch, cfg.seed)
                seed_epoch(cfg.seed, epoch)
                record = train_one_epoch(model, train_loader, optimizer, scheduler, scaler, ema, criterion, cfg,
                                      device, dtype, epoch, on_step)
                if val_loader is not None:
                    t_eval = time.perf_counter()
                    ev = final = evaluate(eval_model, val_loader, device, cfg.amp, channels_last=cfg.channels_last)
                    record.update(val_loss=ev.loss, val_top1=ev.top1, val_top5=ev.top5,
                                  eval_time_s=time.perf_counter() - t_eval)
                    if ema is not None:
                        record["model_val_top1"] = evaluate(model, val_loader, device, cfg.amp,
                                                            channels_last=cfg.channels_last).top1
                    improved = not best or ev.top1 > best["val_top1"]
                else:
                    ev, improved = None, True
                history.append(record)
                if improved:
                    best = {"epoch": epoch + 1, **{k: v for k, v in record.items() if k != "epoch"}}
                    if ev is not None:
                        best["eval"] = ev.to_dict()
                if out is not None:
                    ck = checkpoint(epoch + 1)
                    if improved:  # best.pt first: an interruption in between leaves last.pt one epoch behind
                        save_checkpoint(ck, out / "best.pt")
                    save_checkpoint(ck, out / "last.pt")
                    saved_epoch, saved_best = epoch + 1, dict(best)
                    write_json(history, out / "history.json")
                    write_json(result("running"), out / "result.json")
                epoch_bar.update(1)
                epoch_bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                                      val=f"{record.get('val_top1', float('nan')):.1f}%",
                                      best=f"{best.get('val_top1', float('nan')):.1f}%")
                if on_epoch is not None:
                    on_epoch(record)
        if val_loader is not None and final is None:  # resumed after the last epoch: evaluate once more
            final = evaluate(eval_model, val_loader, device, cfg.amp, channels_last=cfg.channels_last)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        if out is not None and saved_epoch > 0:
            print(f"\ninterrupted: {out / 'last.pt'} holds epoch {saved_epoch} of {cfg.epochs}; continue with "
                  f"fit(..., resume=True) or python -m mobileblocks_edu.train --out {out} --resume", file=sys.stderr)
        elif out is not None:
            print("\ninterrupted before the first epoch ended: no checkpoint to resume", file=sys.stderr)
        raise
    except Exception:
        status = "failed"
        raise
    finally:
        if out is not None and status != "running":
            if status != "done":  # result.json describes what last.pt holds, not an epoch whose save was cut
                history[:] = history[:saved_epoch]
                best = saved_best
            try:
                write_json(result(status, final if status == "done" else None), out / "result.json")
            except Exception as e:
                if status == "done":
                    raise
                warnings.warn(f"could not write {out / 'result.json'}: {e}", stacklevel=2)
    res = result(status, final)
    return FitResult(model, ema, history, best, final, out, res)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, ema, criterion, cfg, device, dtype, epoch, on_step):
    """One epoch of training; returns its history record (epoch counts from 1)."""
    model.train()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    loss_sum, correct, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    steps = len(loader)
    with tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not cfg.progress,
              dynamic_ncols=True) as bar:
        for step, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True, memory_format=fmt)
            y = y.to(device, non_blocking=True)
            with _autocast(device, dtype):
                logits = model(x)
                loss = criterion(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: "
                                         "lower the learning rate or clip gradients (clip_grad)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            b = len(y)
            loss_val = loss.item()
            loss_sum += loss_val * b
            correct += topk_correct(logits.detach().float(), y, 1)
            seen += b
            bar.update(1)
            if step % 5 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            if on_step is not None:
                on_step(StepInfo(epoch + 1, step + 1, epoch * steps + step + 1, loss_val, lr))
    dt = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": loss_sum / seen,
        "train_top1": 100.0 * correct / seen,
        "epoch_time_s": dt,
        "train_img_per_s": seen / dt,
    }


def export_weights(checkpoint_path: PathLike, path: PathLike, ema: Optional[bool] = None, half: bool = False) -> Path:
    """Write only the weights of a training checkpoint (a plain state dict): the EMA weights when
    the run had EMA (``ema=None``) or when ``ema=True``, else the model's; ``half`` stores
    floating-point tensors as float16 (half the size, for committed checkpoints)."""
    ck = read_checkpoint(checkpoint_path)
    if not isinstance(ck, dict) or "model" not in ck or "optimizer" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f"{checkpoint_path} is not a training checkpoint of fit (last.pt, best.pt); "
                              f"its top-level keys: {keys}")
    use_ema = ck.get("ema") is not None if ema is None else ema
    if use_ema and ck.get("ema") is None:
        raise ValueError(f"{checkpoint_path} has no EMA weights")
    if use_ema:
        sd = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    else:
        sd = dict(ck["model"])
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    sd = {k: v.contiguous() for k, v in sd.items()}
    return save_checkpoint(sd, path)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
DEFAULTS = {
    "data": "cifar10", "epochs": 30, "batch_size": 128, "recipe": "emo", "seed": 0, "subset": None,
    "eval_subset": None, "opt": None, "lr": None, "wd": None, "momentum": 0.9, "warmup_epochs": None,
    "min_lr_ratio": 0.0, "label_smoothing": None, "randaugment": None, "drop_path": None, "ema": False,
    "ema_decay": 0.995, "clip_grad": None, "amp": "auto", "img_size": None, "channels_last": True,
    "model_arg": [], "workers": 0, "threads": None, "device": "auto", "download": None, "data_dir": None,
    "progress": True,
}
# options that may differ when resuming (a different thread count or device gives a warning in
# fit: the weights are then no longer bit-identical to an uninterrupted run)
_CLI_MAY_CHANGE = {"threads", "workers", "progress", "download", "data_dir", "device", "resume", "out"}


def _int_arg(low: int):
    """An argparse type: an integer ``>= low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_arg(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True):
    """An argparse type: a finite number in the interval from ``low`` to ``high``."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text!r}") from None
        ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text!r}")
        return v

    parse.__name__ = f"number in {interval}"
    return parse


def _device_arg(text: str) -> str:
    try:
        check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    D = DEFAULTS
    pos_int, nonneg_int, pos_float = _int_arg(1), _int_arg(0), _float_arg(0, low_open=True)
    unit, fraction = _float_arg(0, 1, high_open=True), _float_arg(0, 1, high_open=False)
    p = argparse.ArgumentParser(
        prog="python -m mobileblocks_edu.train",
        description="Train a model of the library on CIFAR-10 or Imagenette. Writes last.pt, best.pt "
                    "(checkpoints after every epoch), history.json (one record per epoch) and result.json "
                    "(command, code version, seed, hardware, wall time, metrics, params/FLOPs) to --out.",
        epilog="Resume an interrupted run with: python -m mobileblocks_edu.train --out runs/NAME --resume\n"
               "On a CPU shared with other work, set OMP_WAIT_POLICY=PASSIVE in the environment: OpenMP threads\n"
               "that spin while waiting for a busy core can make two threads slower than one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--model", help="registered model name, e.g. mobilenetv2_100_cifar (required for a new run)")
    a("--data", choices=["cifar10", "imagenette"], help=f"dataset (default: {D['data']})")
    a("--out", type=Path, help="output folder (default: runs/<model>_<data>_seed<seed>)")
    a("--resume", action="store_true", help="continue the run in --out from its last.pt, with its settings")
    a("--epochs", type=pos_int, help=f"training epochs (default: {D['epochs']})")
    a("--batch-size", type=pos_int, help=f"training batch size (default: {D['batch_size']})")
    a("--seed", type=nonneg_int, help=f"seed of the model init, data order, augmentation and dropout (default: {D['seed']})")
    a("--subset", type=pos_int, help="use only this many training images per class (fast runs)")
    a("--eval-subset", type=pos_int, help="use only this many evaluation images per class")
    g = p.add_argument_group("recipe (defaults come from --recipe; the lr is scaled linearly to the batch size)")
    g.add_argument("--recipe", choices=sorted(RECIPES) + sorted(_RECIPE_ALIASES),
                   help=f"emo: AdamW + warm-up + cosine + label smoothing + RandAugment; mocovit/ghostnet: SGD + cosine (default: {D['recipe']})")
    g.add_argument("--opt", choices=["adamw", "sgd"], help="optimizer")
    g.add_argument("--lr", type=pos_float, help="peak learning rate")
    g.add_argument("--wd", type=_float_arg(0), help="weight decay (not applied to biases and norm weights)")
    g.add_argument("--momentum", type=unit, help=f"SGD momentum / AdamW beta1 (default: {D['momentum']})")
    g.add_argument("--warmup-epochs", type=_float_arg(0), help="linear warm-up epochs (may be fractional)")
    g.add_argument("--min-lr-ratio", type=fraction, help=f"final lr as a fraction of the peak (default: {D['min_lr_ratio']})")
    g.add_argument("--label-smoothing", type=unit, help="label smoothing of the loss")
    g.add_argument("--randaugment", action=argparse.BooleanOptionalAction, help="RandAugment(2, 9) on training images")
    g.add_argument("--drop-path", type=unit, help="stochastic depth rate given to the model (drop_path_rate)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, help="evaluate an EMA of the weights and buffers")
    g.add_argument("--ema-decay", type=_float_arg(0, 1, low_open=True), help=f"EMA decay per step (default: {D['ema_decay']})")
    g.add_argument("--clip-grad", type=pos_float, help="clip the gradient norm to this value")
    g.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], help="mixed precision, CUDA only (default: auto)")
    h = p.add_argument_group("model, data and machine")
    h.add_argument("--img-size", type=_int_arg(8), help="training/evaluation resolution (default: the model's input size)")
    h.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="extra keyword argument for the model factory (VALUE read as JSON if it parses), repeatable")
    h.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory format (default: on; faster convolutions on CPUs)")
    h.add_argument("--workers", type=nonneg_int, help=f"DataLoader worker processes (default: {D['workers']})")
    h.add_argument("--threads", type=pos_int, help="torch CPU threads (default: torch's choice)")
    h.add_argument("--device", type=_device_arg, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    h.add_argument("--data-dir", type=Path, help="data directory (default: $MBE_DATA, else data/ of the repository)")
    dl = h.add_mutually_exclusive_group()
    dl.add_argument("--download", dest="download", action="store_const", const=True,
                    help="download the dataset if it is not in the data directory")
    dl.add_argument("--offline", dest="download", action="store_const", const=False,
                    help="never download (default: try only when it is missing and the host answers)")
    h.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bars (default: on)")
    return p


def _parse_model_args(items: Sequence[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.isidentifier():
            raise ValueError(f"--model-arg needs KEY=VALUE with KEY an argument name, got {item!r}")
        if key == "num_classes":
            raise ValueError("--model-arg num_classes=...: the number of classes comes from --data")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _resolve_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Command-line values over (the resumed run's settings or) the defaults."""
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("resume",)}
    if args.resume:
        if args.out is None:
            p.error("--resume needs --out (the folder of the run to continue)")
        last = Path(args.out) / "last.pt"
        if not last.is_file():
            p.error(f"--resume: no checkpoint at {last}")
        saved = dict(read_checkpoint(last)["meta"].get("args", {}))
        bad = [f"--{k.replace('_', '-')} {given[k]!r} (the run used {saved.get(k)!r})"
               for k in given if k not in _CLI_MAY_CHANGE and _norm(given[k]) != _norm(saved.get(k))]
        if bad:
            p.error("--resume continues a run with its own settings; these differ: " + "; ".join(bad))
        base = {**DEFAULTS, **saved}
    else:
        base = dict(DEFAULTS)
    opts = {**base, **{k: (str(v) if isinstance(v, Path) else v) for k, v in given.items()}, "resume": args.resume}
    if not opts.get("model"):
        p.error("--model is required for a new run")
    if opts.get("out") is None:
        opts["out"] = f"runs/{opts['model']}_{opts['data']}_seed{opts['seed']}"
    return opts


def _norm(v):
    return str(v) if isinstance(v, Path) else v


def options(argv: Sequence[str]) -> dict:
    """The resolved options of a command line (defaults filled in; with ``--resume``, the run's
    own settings), as :func:`run` takes them: ``run(options(["--model", ..., "--out", ...]))``."""
    p = build_parser()
    return _resolve_args(p, p.parse_args(list(argv)))


def run(opts: dict, command: Optional[str] = None, resume: Optional[bool] = None, **fit_kwargs) -> FitResult:
    """Train from resolved command-line options (:func:`options`); ``fit_kwargs`` go to :func:`fit`
    (``on_step``, ``on_epoch``). ``resume`` defaults to the options' ``--resume``."""
    from . import registry
    from .data import build_loaders, dataset_info

    if opts.get("threads") is not None:
        check_positive("threads", opts["threads"], int)
        torch.set_num_threads(int(opts["threads"]))
    info = dataset_info(opts["data"])
    mcfg = registry.model_cfg(opts["model"])
    recipe = get_recipe(opts["recipe"])
    randaugment = recipe.randaugment if opts["randaugment"] is None else opts["randaugment"]
    drop_path = recipe.drop_path if opts["drop_path"] is None else opts["drop_path"]
    img_size = mcfg.input_size[-1] if opts["img_size"] is None else opts["img_size"]
    check_positive("img_size", img_size, int)
    model_kwargs = _parse_model_args(opts["model_arg"])
    if drop_path:
        model_kwargs.setdefault("drop_path_rate", drop_path)
    if opts["out"] is not None and not resume_flag(opts, resume):
        prepare_out_dir(opts["out"])  # a file or a read-only place fails here, before the data is read

    env.seed_everything(opts["seed"])
    # the model first: a bad --model-arg fails before the data is read (building the loaders
    # draws no random number, so the weights are the same in either order)
    model = registry.create_model(opts["model"], num_classes=info.num_classes, **model_kwargs)
    train_loader, val_loader = build_loaders(
        info.name, root=opts["data_dir"], download=opts["download"], img_size=img_size,
        batch_size=opts["batch_size"], subset=opts["subset"], eval_subset=opts["eval_subset"],
        randaugment=randaugment, workers=opts["workers"], seed=opts["seed"],
    )
    cfg = TrainConfig(
        epochs=opts["epochs"], recipe=opts["recipe"], opt=opts["opt"], lr=opts["lr"], weight_decay=opts["wd"],
        momentum=opts["momentum"], warmup_epochs=opts["warmup_epochs"], min_lr_ratio=opts["min_lr_ratio"],
        label_smoothing=opts["label_smoothing"], ema=bool(opts["ema"]), ema_decay=opts["ema_decay"],
        clip_grad=opts["clip_grad"], amp=opts["amp"], channels_last=bool(opts["channels_last"]),
        seed=opts["seed"], device=opts["device"], progress=bool(opts["progress"]),
    )
    saved_args = {k: opts[k] for k in DEFAULTS} | {"model": opts["model"], "out": str(opts["out"])}
    meta = {
        "command": command,
        "model": opts["model"],
        "model_kwargs": model_kwargs,
        "data": {"name": info.name, "img_size": img_size, "subset": opts["subset"],
                 "eval_subset": opts["eval_subset"], "randaugment": randaugment,
                 "source": train_loader.dataset.source, "workers": opts["workers"]},
        "threads": torch.get_num_threads(),
        "args": saved_args,
    }
    root = Path(opts["data_dir"]) if opts["data_dir"] else env.data_dir()
    try:  # where the images came from, relative to the data directory (no machine-specific path)
        meta["data"]["source"] = str(Path(train_loader.dataset.source).relative_to(root))
    except ValueError:
        meta["data"]["source"] = Path(train_loader.dataset.source).name
    resume = resume_flag(opts, resume)
    return fit(model, train_loader, val_loader, cfg, opts["out"], resume=resume, meta=meta, **fit_kwargs)


def resume_flag(opts: dict, resume: Optional[bool]) -> bool:
    return bool(opts.get("resume")) if resume is None else bool(resume)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (130 after Ctrl-C, 2 for a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    args = p.parse_args(argv)
    opts = _resolve_args(p, args)
    try:
        from .registry import model_cfg

        model_cfg(opts["model"])
        get_recipe(opts["recipe"])
    except ValueError as e:
        p.error(str(e))
    command = "python -m mobileblocks_edu.train " + shlex.join(argv)
    try:
        res = run(opts, command, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileExistsError, FileNotFoundError, CheckpointError, RunInUseError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    best = res.best.get("val_top1")
    print(f"done: {len(res.history)} epochs in {res.result['wall_time_s']:.1f} s"
          + (f", best top-1 {best:.2f}% (epoch {res.best['epoch']})" if best is not None else "")
          + f"; results in {res.out_dir}")
    return 0


__all__ = [
    "Recipe",
    "RECIPES",
    "get_recipe",
    "TrainConfig",
    "WarmupCosine",
    "param_groups",
    "make_optimizer",
    "make_scheduler",
    "amp_dtype",
    "EvalResult",
    "evaluate",
    "confusion_matrix",
    "topk_correct",
    "write_json",
    "rng_state",
    "set_rng_state",
    "seed_epoch",
    "code_version",
    "environment",
    "StepInfo",
    "FitResult",
    "RunInUseError",
    "RunLock",
    "prepare_out_dir",
    "check_free_space",
    "check_device",
    "fit",
    "train_one_epoch",
    "export_weights",
    "build_parser",
    "options",
    "run",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())

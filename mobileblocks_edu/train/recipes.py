"""The papers' training recipes and the one configuration of a run.

Two recipes (:data:`RECIPES`), both with a per-step learning rate

.. math::

    \\eta_t = \\eta \\cdot \\begin{cases} (t + 1) / T_w & t < T_w \\\\
    r + (1 - r)\\,\\tfrac12\\left(1 + \\cos\\left(\\pi \\tfrac{t - T_w}{T - T_w}\\right)\\right)
    & t \\ge T_w \\end{cases}

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

:class:`TrainConfig` is the only place a setting of the trainer is defined: its fields hold the
defaults, and :data:`LIMITS` and :data:`CHOICES` the values they may take; the command line
(:mod:`mobileblocks_edu.train.cli`) takes its defaults and checks from them.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..env import check_bool, check_device, check_positive  # check_device: re-exported, the one device resolver


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
RECIPE_ALIASES = {"ghostnet": "mocovit"}
AMP_MODES = ("auto", "off", "bf16", "fp16")
OPTIMIZERS = ("adamw", "sgd")


def get_recipe(name: str) -> Recipe:
    """``"emo"`` or ``"mocovit"`` (``"ghostnet"`` is the same recipe)."""
    key = RECIPE_ALIASES.get(name, name)
    if key not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES) + sorted(RECIPE_ALIASES)}, got {name!r}")
    return RECIPES[key]


class Interval(NamedTuple):
    """The numbers from ``low`` to ``high``; ``low_open``/``high_open`` leave an end out."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, v) -> bool:
        return (math.isfinite(v) and (v > self.low if self.low_open else v >= self.low)
                and (v < self.high if self.high_open else v <= self.high))

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE, NON_NEGATIVE, UNIT = Interval(0, low_open=True), Interval(0), Interval(0, 1)
# the values the fields of TrainConfig may take (None, where allowed, is the recipe's value)
LIMITS = {"epochs": Interval(1), "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "momentum": UNIT,
          "warmup_epochs": NON_NEGATIVE, "min_lr_ratio": Interval(0, 1, high_open=False), "label_smoothing": UNIT,
          "ema_decay": Interval(0, 1, low_open=True), "clip_grad": POSITIVE, "seed": Interval(0)}
CHOICES = {"recipe": tuple(sorted(RECIPES) + sorted(RECIPE_ALIASES)), "opt": OPTIMIZERS, "amp": AMP_MODES}


@dataclass
class TrainConfig:
    """Everything :func:`~mobileblocks_edu.train.fit` needs besides the model and the data.

    ``None`` fields take the recipe's value (:meth:`resolved`); the learning rate is then the
    recipe's, scaled to the (global) batch size.
    """

    epochs: int = 30
    recipe: str = "emo"                      # emo, or mocovit (alias ghostnet): RECIPES
    opt: Optional[str] = None                # adamw or sgd
    lr: Optional[float] = None               # peak learning rate, at the run's (global) batch size
    weight_decay: Optional[float] = None     # not applied to biases and norm weights
    momentum: float = 0.9                    # SGD momentum / AdamW beta1 (betas (momentum, 0.999))
    warmup_epochs: Optional[float] = None    # linear warm-up (may be fractional)
    min_lr_ratio: float = 0.0                # the cosine ends at min_lr_ratio * lr
    label_smoothing: Optional[float] = None
    ema: bool = False                        # evaluate an EMA of the weights and buffers
    ema_decay: float = 0.995                 # per step: a horizon of ~1 / (1 - decay) steps
    clip_grad: Optional[float] = None        # clip the gradient norm to this value
    amp: str = "auto"                        # CUDA only: auto is bf16 where supported, else fp16
    # channels-last (NHWC) is the memory format the library's fast paths are written for (lesson 7);
    # measured on a 2-core CPU, one thread, batch 32 at 32x32, it trains MobileNetV2 1.3x and EMO-1M
    # 1.1x faster than NCHW and EMO-1M at 128x128 as fast, and every committed run used it
    channels_last: bool = True
    seed: int = 0                            # of the model init, data order, augmentation and dropout
    device: str = "auto"                     # cpu, cuda, cuda:1 ... (auto: cuda if available)
    progress: bool = True                    # progress bars

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
        """Raise ``ValueError`` naming the first bad field and what it may be (:data:`CHOICES`,
        :data:`LIMITS`; the command line checks its values with them too)."""
        check_positive("epochs", self.epochs, int)
        get_recipe(self.recipe)
        for name, choices in CHOICES.items():
            check_setting(name, getattr(self, name), choices=choices)
        for name, interval in LIMITS.items():
            check_setting(name, getattr(self, name), interval=interval)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs!r} is longer than the run (epochs={self.epochs}); "
                             f"use a value in [0, {self.epochs}]")
        for name in ("ema", "channels_last", "progress"):
            check_bool(name, getattr(self, name))
        check_device(self.device)


def check_setting(name: str, value, choices: Optional[tuple] = None, interval: Optional[Interval] = None) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None``, one of ``choices`` or in ``interval``."""
    if value is None:
        return
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    if interval is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if value not in interval:
            raise ValueError(f"{name} must be in {interval}, got {value!r}")


# settings that may change when a run is resumed, as TrainConfig fields and as command-line
# options: how a run is executed, not what it computes (a different thread count or device gives
# a warning in fit: the weights are then no longer bit-identical to an uninterrupted run)
RESUME_MAY_CHANGE = frozenset({"progress", "device", "threads", "workers", "download", "data_dir", "resume", "out"})


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
    check_resolved(cfg, "make_optimizer")
    groups = param_groups(model, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError(f"{type(model).__name__} has no trainable parameter (requires_grad=True)")
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """Per-step :class:`WarmupCosine` over ``cfg.epochs * steps_per_epoch`` steps."""
    check_resolved(cfg, "make_scheduler")
    check_positive("steps_per_epoch", steps_per_epoch, int)
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    return LambdaLR(optimizer, WarmupCosine(warmup, total, cfg.min_lr_ratio))


def check_resolved(cfg: TrainConfig, who: str) -> None:
    """Raise unless ``cfg`` is a :class:`TrainConfig` with the recipe's values filled in."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"{who} needs a TrainConfig, got {type(cfg).__name__}")
    if None in (cfg.opt, cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.label_smoothing):
        raise ValueError(f"{who} needs a resolved config: cfg.resolved(batch_size) fills in the recipe's values")


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``amp`` (one of :data:`AMP_MODES`) on ``device``, or ``None``
    (full precision). Mixed precision is used on CUDA only: ``"auto"`` means bf16 where
    supported, else fp16."""
    check_setting("amp", amp, choices=AMP_MODES)
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            raise ValueError(f"amp={amp!r} needs a CUDA device; this run uses {device} (use amp='auto' or 'off')")
        return None
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is ``None``."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


__all__ = ["Recipe", "RECIPES", "RECIPE_ALIASES", "AMP_MODES", "OPTIMIZERS", "get_recipe", "Interval", "LIMITS",
           "CHOICES", "TrainConfig", "check_setting", "RESUME_MAY_CHANGE", "check_device", "WarmupCosine",
           "param_groups", "make_optimizer", "make_scheduler", "check_resolved", "amp_dtype", "autocast"]

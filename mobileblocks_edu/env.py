"""The library's bottom layer: where things are, which device, seeds, the machine, argument checks.

It imports nothing of the library, so every other module may import it. Lessons reach these
names through :mod:`mobileblocks_edu.lab`, which re-exports them next to its notebook helpers.

* Paths: ``MBE_DATA`` if set, else ``data/`` in the repository checkout (``make`` links it to
  the offline copy when there is one), else ``./data``; the committed results and checkpoints
  live under ``lessons/`` of the checkout.
* Argument checks raise a ``ValueError`` that names the argument and what is allowed.
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

# --- paths -------------------------------------------------------------------------------------

def repo_root() -> Optional[Path]:
    """The repository checkout the library is imported from (the folder holding ``_config.yml``
    and ``pyproject.toml``), or ``None`` for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "_config.yml").is_file() and (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Where datasets are read from and downloaded to: ``$MBE_DATA``, else ``<repo>/data``, else ``./data``."""
    env = os.environ.get("MBE_DATA")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return (root / "data") if root is not None else Path("data")


def results_dir() -> Optional[Path]:
    """``lessons/results`` of the checkout (committed training results), or ``None``."""
    root = repo_root()
    return root / "lessons" / "results" if root is not None else None


def checkpoints_dir() -> Optional[Path]:
    """``lessons/checkpoints`` of the checkout (committed small checkpoints), or ``None``."""
    root = repo_root()
    return root / "lessons" / "checkpoints" if root is not None else None


# --- device, seeds, machine --------------------------------------------------------------------

def get_device(prefer: str = "auto") -> torch.device:
    """``cuda`` when available (or asked for), else ``cpu``."""
    if prefer == "auto":
        prefer = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(prefer)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def machine() -> str:
    """One line describing the machine: processor, cores, torch threads, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}{gpu}"


# --- argument checks ---------------------------------------------------------------------------

def check_positive(name: str, value, kind=(int, float)) -> None:
    """Raise a ``ValueError`` that names the argument when ``value`` is not a positive number."""
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_rate(name: str, value) -> None:
    """Raise a ``ValueError`` naming the argument unless ``value`` is a probability in [0, 1)
    (a dropout or drop-path rate: 1 would drop everything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_num_classes(num_classes) -> None:
    """Raise a ``ValueError`` unless ``num_classes`` is an integer >= 0 (0: no classifier)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0 (0: no classifier), got {num_classes!r}")


def check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    """Raise a ``ValueError`` naming both arguments when ``value % by != 0``."""
    if value % by != 0:
        raise ValueError(f"{name}={value} must be divisible by {by_name}={by}")


__all__ = [
    "repo_root", "data_dir", "results_dir", "checkpoints_dir",
    "get_device", "seed_everything", "machine",
    "check_positive", "check_rate", "check_num_classes", "check_divisible",
]

"""The library's bottom layer: where things are, which device, seeds, the machine, argument checks.

It imports nothing of the library, so every other module may import it. Lessons reach these
names through :mod:`mobileblocks_edu.lab`, which re-exports them next to its notebook helpers.

* Paths: ``MBE_DATA`` if set, else ``data/`` in the repository checkout (``make`` links it to
  the offline copy when there is one), else ``./data``; the committed results and checkpoints
  live under ``lessons/`` of the checkout.
* The machine: :func:`environment` is the one record of machine and software that runs,
  benchmarks and latency reports carry; :func:`torch_threads` sets torch's thread count for a
  block of code only.
* Argument checks raise a ``ValueError`` that names the argument and what is allowed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import math
import os
import platform
import random
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np
import torch

PathLike = Union[str, os.PathLike]

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

def check_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """The device ``device`` names (``"auto"``: CUDA when available, else the CPU), or a
    ``ValueError`` saying what is allowed and what this machine has."""
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', got {device!r}")
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def _version(module: str) -> Optional[str]:
    """The version of an installed package (``None`` where absent), read without importing it
    when it is not imported yet (onnx takes seconds to import)."""
    if module in sys.modules:
        return getattr(sys.modules[module], "__version__", None)
    for dist in (module, f"{module}-gpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def environment() -> dict:
    """The machine and software a result must be read with, one record for training runs,
    benchmarks and latency reports: ``machine`` (:func:`machine`), ``threads`` (torch's, now),
    the versions (``onnx`` and ``onnxruntime`` only where installed), ``omp_wait_policy``,
    ``load_average_start`` (1, 5, 15 min; ``None`` where unknown) and the UTC ``date``."""
    record = {
        "machine": machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
    }
    record.update({m: v for m in ("onnx", "onnxruntime") if (v := _version(m)) is not None})
    record.update({
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "load_average_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    return record


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: as it is) and give the
    caller its own thread count back afterwards."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine_of(record: dict) -> Optional[str]:
    """The machine a result record names: ``machine``, or ``hardware`` in the run records written
    before the two were one key."""
    return record.get("machine") or record.get("hardware")


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


def check_number(name: str, value, minimum=None, maximum=None, why: str = "") -> None:
    """Raise a ``ValueError`` naming the argument unless ``value`` is a finite number in
    ``[minimum, maximum]`` (``None``: no bound); ``why`` says what the number means."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"<= {maximum:g}" if maximum is not None else ""]
        bound = " and ".join(b for b in bounds if b)
        raise ValueError(f"{name} must be a finite number{' ' + bound if bound else ''}"
                         f"{f' ({why})' if why else ''}, got {value!r}")


def check_ratio(name: str, value, minimum=None, why: str = "") -> None:
    """Raise a ``ValueError`` naming the argument unless ``value`` is a positive finite number
    (and ``>= minimum`` when given): an expansion ratio, a width multiplier."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        check_positive(name, value)  # 0 or less: "must be a positive number"
    check_number(name, value, minimum, why=why)


def check_bool(name: str, value) -> None:
    """Raise a ``ValueError`` naming the argument unless ``value`` is ``True`` or ``False`` (the
    string ``"False"`` would count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        word = value.strip().capitalize() if isinstance(value, str) else ""
        hint = f" (a string: write {word} without quotes)" if word in ("True", "False") else ""
        raise ValueError(f"{name} must be True or False, got {value!r}{hint}")


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming the argument and the allowed values unless ``value`` is one
    of ``choices``."""
    try:
        ok = value in choices
    except TypeError:  # an unhashable value and a dict of choices
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


# --- the same checks as argparse types (the command lines name the option in the error) ------------

def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    return parse


def argument_type(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse ``type`` from a check that raises ``ValueError`` (e.g. :func:`check_device`)."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return parse


__all__ = [
    "repo_root", "data_dir", "results_dir", "checkpoints_dir",
    "PathLike", "check_device", "seed_everything", "machine", "environment", "torch_threads",
    "machine_of",
    "check_positive", "check_rate", "check_num_classes", "check_divisible",
    "check_number", "check_ratio", "check_bool", "check_choice", "int_at_least", "argument_type",
]

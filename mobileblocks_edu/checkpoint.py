"""Saving and loading weights safely.

* :func:`save_checkpoint` writes atomically (:func:`atomic_write`): to a temporary file in the same folder, flushed to
  disk, then renamed over the target. An interrupted write never leaves a half-written file; a failed one (a full
  disk, a read-only folder) raises :class:`WriteError` naming the file and the free space. Files get the usual
  permissions of the process's umask (``0644`` under the common umask ``022``), not ``mkstemp``'s ``0600``.
  :func:`write_json` writes a report or run record the same way, refusing NaN.
* :func:`load_checkpoint` reads with ``torch.load(weights_only=True)`` (no arbitrary code runs),
  unwraps the usual containers (``{'net': ...}``, ``{'net_E': ...}`` of the EMO releases,
  ``{'state_dict': ...}``, ``{'model': ...}``), and loads strictly. Anything that does not fit
  raises :class:`CheckpointError` listing the missing, unexpected and mis-shaped keys. ``strict=False`` loads the
  matching keys but refuses a checkpoint of which no key fits (and says how many matched).
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

from .env import PathLike

WRAPPER_KEYS = ("net_E", "net", "state_dict", "model", "model_state")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


class WriteError(OSError):
    """A file that could not be written (full disk, read-only folder, a folder in the way); the
    message names the file and, for a full disk, the free space."""


def temporary_files(path: PathLike) -> list[Path]:
    """The temporary files :func:`atomic_write` leaves next to ``path`` when its process is killed
    in the middle of a write (``.<name>.<random>.tmp``)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []


def _write_error(path: Path, e: BaseException) -> WriteError:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    text = str(e)
    full = getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or (
        "inline_container" in text and free is not None and free < 64 * 2**20)  # torch's zip writer hides errno
    if full:
        why = f"the disk is full ({free / 2**20:.1f} MiB free in {path.parent})"
    elif isinstance(e, IsADirectoryError):
        why = "it is a folder"
    elif isinstance(e, NotADirectoryError) or isinstance(e, FileExistsError):
        why = f"a file is in the way of its folder {path.parent}"
    elif isinstance(e, PermissionError) or getattr(e, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"no permission to write in {path.parent}"
    else:
        why = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
        if free is not None:
            why += f" ({free / 2**20:.1f} MiB free in {path.parent})"
    err = WriteError(f"cannot write {path}: {why}")
    err.errno = getattr(e, "errno", None) or (errno.ENOSPC if full else errno.EIO)
    return err


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file ``.<name>.<random>.tmp`` next to ``path``, opened for writing, with mode ``0666``
    less the umask (the kernel applies the umask: nothing process-wide is changed)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    for _ in range(10):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def atomic_write(path: PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush it to disk, then rename
    it over ``path``: readers see the old file or the new one, never half of one. Returns the path.

    The file gets the permissions of a plain ``open`` (``0666`` less the umask). A failure raises
    :class:`WriteError` naming ``path`` (and the free space when the disk is full); the temporary
    file is removed.
    """
    path = Path(path)
    if path.is_dir():
        raise _write_error(path, IsADirectoryError(errno.EISDIR, "it is a folder"))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        interrupt = _interrupt_in(e)
        if interrupt is not None and interrupt is not e:  # torch's writer turns a Ctrl-C into a RuntimeError
            raise interrupt from None
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "inline_container" in str(e)):
            raise _write_error(path, e) from e
        raise
    return path


def _interrupt_in(e: BaseException) -> Optional[BaseException]:
    """The ``KeyboardInterrupt`` (or ``SystemExit``) that ``e`` is, or that caused it, else ``None``."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def write_json(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically (:func:`atomic_write`); NaN and infinite numbers
    are refused (``ValueError``), as strict JSON has none."""

    def write(f):
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")

    return atomic_write(path, write, binary=False)


def save_checkpoint(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)``, atomically. Returns the path."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for missing or corrupt files."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code refused by weights_only ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "weights only load failed" in first.lower() and zipfile.is_zipfile(path):
            why = ("it holds objects other than tensors and plain containers (a whole pickled model?), which "
                   "weights_only=True refuses because loading them can run code; save model.state_dict() instead")
        elif not zipfile.is_zipfile(path):
            why = "it is not a complete file written by torch.save (truncated, or another kind of file)"
        else:
            why = f"{type(e).__name__}: {first}"
        raise CheckpointError(f"cannot read checkpoint {path}: {why}") from e


def is_training_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` is a training checkpoint of ``fit`` (``last.pt``, ``best.pt``), not plain weights."""
    return isinstance(obj, Mapping) and {"model", "optimizer", "ema"} <= set(obj)


def training_weights(ck: Mapping, ema: Optional[bool] = None, source: Optional[PathLike] = None) -> dict:
    """The weights of a training checkpoint of ``fit``: the EMA's when the run had EMA (``ema=None``,
    the weights its evaluations and ``result.json`` report) or when ``ema=True``, else the model's.
    ``source`` names the file in errors."""
    name = source if source is not None else "the checkpoint"
    if ema not in (None, True, False):
        raise ValueError(f"ema must be True, False or None, got {ema!r}")
    if not is_training_checkpoint(ck):
        keys = sorted(ck)[:8] if isinstance(ck, Mapping) else type(ck).__name__
        raise CheckpointError(f"{name} is not a training checkpoint of fit (last.pt, best.pt); "
                              f"its top-level keys: {keys}")
    if ema and ck["ema"] is None:
        raise CheckpointError(f"{name} has no EMA weights (the run trained without EMA): use ema=None or False")
    if ck["ema"] is not None if ema is None else ema:
        return {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    return dict(ck["model"])


def unwrap_state_dict(obj: Any, key: Optional[str] = None, ema: Optional[bool] = None,
                      source: Optional[PathLike] = None) -> Mapping[str, torch.Tensor]:
    """The state dict inside a checkpoint: ``obj[key]``, else the first of
    ``net_E, net, state_dict, model, model_state`` present, else ``obj`` itself. A training
    checkpoint of ``fit`` gives the weights the run evaluated (:func:`training_weights`: the EMA's
    when it had EMA; ``ema=False`` or ``key="model"`` for the raw ones, ``ema=True`` or ``key="ema"``
    for the EMA's). ``source`` names the file in errors."""
    where = f"{source}: " if source is not None else ""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}expected a dict of tensors, got {type(obj).__name__}")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"key must be a string or None, got {key!r}")
    if ema is not None and key is not None:
        raise ValueError(f"give key={key!r} or ema={ema!r}, not both")
    if is_training_checkpoint(obj) and key in (None, "model", "ema"):
        return training_weights(obj, ema if key is None else key == "ema", source)
    if ema is not None:
        raise CheckpointError(f"{where}ema={ema!r} applies to training checkpoints of fit; this one has the top-level "
                              f"keys {sorted(obj)[:8]}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{where}checkpoint has no key {key!r}; top-level keys: {sorted(obj)[:10]}")
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}  # DataParallel prefix
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{where}not a state dict: entries {bad[:5]} are not tensors")
    return sd


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     source: Optional[PathLike] = None) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly the model's keys and shapes
    (``source``: the file it came from, named in the error)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {source or ''} does not fit {type(model).__name__}:".replace("  ", " ")]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = "\n    ".join(items[:20]) + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else "")
                lines.append(f"  {title} ({len(items)}):\n    {shown}")
        raise CheckpointError("\n".join(lines))


def load_checkpoint(model: nn.Module, path: PathLike, key: Optional[str] = None, strict: bool = True,
                    ema: Optional[bool] = None) -> nn.Module:
    """Load weights from ``path`` into ``model`` and return the model.

    Accepts a bare state dict or the wrappers of :func:`unwrap_state_dict`; ``key`` picks one
    explicitly (``key="net"`` for the non-EMA weights of an EMO release that has both).
    A training checkpoint of ``fit`` (``last.pt``, ``best.pt``) gives the weights the run evaluated,
    with the rule of ``export_weights``: the EMA's when the run had EMA (``ema=None``), else the
    model's; ``ema=False`` loads the raw weights, ``ema=True`` insists on the EMA's.
    With ``strict=True`` every key and shape must match, else :class:`CheckpointError` says
    which did not. With ``strict=False`` the keys the model and the checkpoint share are loaded
    (their shapes must match) and a warning says how many of the model's keys were matched; a
    checkpoint that shares no key with the model is refused (loading it would leave every weight
    random), with a hint when a prefix such as ``model.`` is in the way.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if strict not in (True, False):
        raise ValueError(f"strict must be True or False, got {strict!r}")
    if ema not in (None, True, False):
        raise ValueError(f"ema must be True, False or None, got {ema!r}")
    sd = unwrap_state_dict(read_checkpoint(path), key, ema, source=path)
    if strict:
        check_state_dict(model, sd, source=path)
    else:
        own = model.state_dict()
        matched = [k for k in own if k in sd]
        mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                      for k in matched if sd[k].shape != own[k].shape]
        if not matched:
            raise CheckpointError(f"{path} shares no key with {type(model).__name__} (strict=False would load "
                                  f"nothing and leave every weight random){_prefix_hint(own, sd)}")
        if mismatched:
            raise CheckpointError(f"{path}: shape mismatch in {len(mismatched)} of the matched keys:\n    "
                                  + "\n    ".join(mismatched[:20]))
        if len(matched) < len(own) or len(matched) < len(sd):
            missing = [k for k in own if k not in sd]
            warnings.warn(f"load_checkpoint(strict=False): matched {len(matched)} of the model's {len(own)} keys "
                          f"({len(sd) - len(matched)} checkpoint keys unused); not loaded, e.g. {missing[:3]}",
                          stacklevel=2)
    model.load_state_dict(sd, strict=strict)
    return model


def _prefix_hint(own: Mapping[str, Any], sd: Mapping[str, Any]) -> str:
    """A hint when the checkpoint's keys are the model's with a prefix added or removed."""
    first = next(iter(sd), "")
    prefix = first.split(".")[0] + "." if "." in first else ""
    if prefix and all(k.startswith(prefix) for k in sd) and any(k[len(prefix):] in own for k in sd):
        return (f"; its keys start with {prefix!r}: strip it first, e.g. "
                f"{{k[{len(prefix)}:]: v for k, v in state_dict.items()}}, or pick a wrapper with key=")
    return f"; first checkpoint keys {list(sd)[:3]}, first model keys {list(own)[:3]}"


def output_problem(path: PathLike) -> Optional[str]:
    """Why a report cannot be written at ``path``, or ``None`` when it can: the path is a folder,
    a file stands where its folder would be made, or the folder cannot be written to."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; name a JSON file"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, so the folder of {path} cannot be made"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder}"
    return None


__all__ = [
    "CheckpointError",
    "output_problem",
    "WriteError",
    "atomic_write",
    "write_json",
    "temporary_files",
    "save_checkpoint",
    "read_checkpoint",
    "is_training_checkpoint",
    "training_weights",
    "unwrap_state_dict",
    "check_state_dict",
    "load_checkpoint",
]

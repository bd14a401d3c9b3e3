"""Saving and loading weights safely.

* :func:`save_checkpoint` writes atomically (:func:`atomic_write`): to a temporary file in the same folder, flushed to
  disk, then renamed over the target. An interrupted write never leaves a half-written file.
* :func:`load_checkpoint` reads with ``torch.load(weights_only=True)`` (no arbitrary code runs),
  unwraps the usual containers (``{'net': ...}``, ``{'net_E': ...}`` of the EMO releases,
  ``{'state_dict': ...}``, ``{'model': ...}``), and loads strictly. Anything that does not fit
  raises :class:`CheckpointError` listing the missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

PathLike = Union[str, os.PathLike]
WRAPPER_KEYS = ("net_E", "net", "state_dict", "model", "model_state")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def atomic_write(path: PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush it to disk, then rename
    it over ``path``: readers see the old file or the new one, never half of one. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)``, atomically. Returns the path."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code refused by weights_only ...
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e


def unwrap_state_dict(obj: Any, key: Optional[str] = None) -> Mapping[str, torch.Tensor]:
    """The state dict inside a checkpoint: ``obj[key]``, else the first of
    ``net_E, net, state_dict, model, model_state`` present, else ``obj`` itself."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict of tensors, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"checkpoint has no key {key!r}; top-level keys: {sorted(obj)[:10]}")
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}  # DataParallel prefix
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"not a state dict: entries {bad[:5]} are not tensors")
    return sd


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly the model's keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"checkpoint does not fit {type(model).__name__}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = "\n    ".join(items[:20]) + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else "")
                lines.append(f"  {title} ({len(items)}):\n    {shown}")
        raise CheckpointError("\n".join(lines))


def load_checkpoint(model: nn.Module, path: PathLike, key: Optional[str] = None, strict: bool = True) -> nn.Module:
    """Load weights from ``path`` into ``model`` and return the model.

    Accepts a bare state dict or the wrappers of :func:`unwrap_state_dict`; ``key`` picks one
    explicitly (``key="net"`` for the non-EMA weights of an EMO release that has both).
    With ``strict=True`` every key and shape must match, else :class:`CheckpointError` says
    which did not.
    """
    sd = unwrap_state_dict(read_checkpoint(path), key)
    if strict:
        check_state_dict(model, sd)
    model.load_state_dict(sd, strict=strict)
    return model


__all__ = [
    "CheckpointError",
    "atomic_write",
    "save_checkpoint",
    "read_checkpoint",
    "unwrap_state_dict",
    "check_state_dict",
    "load_checkpoint",
]

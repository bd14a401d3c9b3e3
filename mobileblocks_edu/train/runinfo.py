"""What a run leaves behind besides its weights: files written atomically, random states, the
code version and machine, the lock on the run folder and the checks that it can hold the run.

:func:`write_json` and :func:`environment` (the one record of machine and software, also in the
benchmark and latency reports) live in the bottom layer and are re-exported here."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import env
from ..checkpoint import WriteError, temporary_files, write_json
from ..data.images import derive_seed
from ..env import PathLike, environment, machine_of
from ..version import __version__


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


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch, Python and NumPy for epoch ``epoch`` (0-based) of a run with ``seed``; process
    ``rank`` of a distributed run gets a stream of its own (dropout masks differ between processes)."""
    s = derive_seed(seed, epoch, 1) if rank == 0 else derive_seed(seed, epoch, 1, rank)
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
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            status = git("status", "--porcelain", "--untracked-files=no")
            out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


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


def check_free_space(out: Path, model: nn.Module, cfg) -> None:
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


@contextlib.contextmanager
def removed_if_left_empty(out_dir: Optional[PathLike], enabled: bool = True):
    """On an exception in the block, remove ``out_dir`` (and the parents made with it) if it did not
    exist before the block and is still empty: a run that fails before writing anything leaves no
    empty folder behind. A folder that existed before, or holds anything, is never removed."""
    made = []  # the folders missing now, deepest first
    if out_dir is not None and enabled:
        p = Path(out_dir).absolute()
        while not os.path.lexists(p) and p != p.parent:
            made.append(p)
            p = p.parent
    try:
        yield
    except BaseException:
        for folder in made:
            try:
                os.rmdir(folder)  # refuses a folder that is not empty
            except OSError:
                break
        raise


def clean_temporary_files(out: Path) -> None:
    """Remove the temporary files a killed save left in the run folder ``out``."""
    for name in RUN_FILES:
        for tmp in temporary_files(out / name):
            tmp.unlink(missing_ok=True)


__all__ = ["write_json", "rng_state", "set_rng_state", "seed_epoch", "code_version", "environment", "machine_of",
           "RunInUseError", "RunLock", "RUN_FILES", "prepare_out_dir", "check_free_space", "clean_temporary_files",
           "removed_if_left_empty"]

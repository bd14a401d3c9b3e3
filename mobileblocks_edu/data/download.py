"""Downloading a dataset with torchvision: only when allowed, and only complete.

:func:`mobileblocks_edu.data.load_dataset` downloads a missing dataset when the caller allows it
(``download=True``, or ``download=None`` while :func:`offline` is false) and the host answers
(:func:`url_reachable`). :func:`download_dataset` then runs torchvision's downloader in a temporary
folder and moves the result into place only when it is complete, so an interrupted or failed
download leaves nothing behind; a transfer that stalls for :data:`STALL_TIMEOUT` seconds fails.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path

STALL_TIMEOUT = 60.0  # seconds without data before a download is given up


def offline() -> bool:
    """True when ``MBE_OFFLINE`` is set (``1``, ``true``, ``yes`` or ``on``): download nothing."""
    return os.environ.get("MBE_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def url_reachable(url: str, timeout: float = 3.0) -> bool:
    """True when an HTTP ``HEAD`` request for ``url`` succeeds (status < 400) within ``timeout`` s.

    Runs in a daemon thread, so neither a resolver nor a server that never answers can hold the
    caller longer than ``timeout``. (A plain TCP connect is not enough: a proxy may accept every
    connection and then answer 404.)
    """
    ok = []

    def probe():
        try:
            req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "mobileblocks-edu"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                ok.append(r.status < 400)
        except (OSError, ValueError):  # URLError, HTTPError, timeouts, refused connections
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok and ok[0])


def _torchvision_download(name: str, folder: Path, size: str) -> str:
    """Download ``name`` into ``folder`` with torchvision; the name of the folder it made."""
    from torchvision import datasets

    if name == "cifar10":
        datasets.CIFAR10(str(folder), train=True, download=True)
        return "cifar-10-batches-py"
    if name == "imagenette":
        datasets.Imagenette(str(folder), split="train", size=size, download=True)
        return {"160px": "imagenette2-160", "320px": "imagenette2-320", "full": "imagenette2"}[size]
    raise ValueError(f"torchvision has no downloader for {name!r}; choose 'cifar10' or 'imagenette'")


def download_dataset(name: str, root: Path, size: str = "160px") -> None:
    """Download ``"cifar10"`` (``root/cifar-10-batches-py``) or ``"imagenette"`` of ``size``
    (``root/imagenette2-160`` ...) into a temporary folder inside ``root``, and move it into place
    only when complete. On any failure (Ctrl-C included) nothing new is left in ``root``, not even
    the folders this call created."""
    root = Path(root)
    made = [p for p in [root, *root.parents] if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(STALL_TIMEOUT)  # torchvision's urlopen has none: a stalled transfer fails
    try:
        folder = _torchvision_download(name, tmp, size)
        if not (root / folder).exists():
            os.replace(tmp / folder, root / folder)
    finally:
        socket.setdefaulttimeout(old_timeout)
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # innermost first, as long as they stayed empty
            try:
                p.rmdir()
            except OSError:
                break


__all__ = ["STALL_TIMEOUT", "offline", "url_reachable", "download_dataset"]

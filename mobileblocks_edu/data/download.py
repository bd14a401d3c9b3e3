"""Downloading a dataset with torchvision: only when allowed, and only complete.

:func:`mobileblocks_edu.data.load_dataset` downloads a missing dataset when the caller allows it
(``download=True``, or ``download=None`` while :func:`offline` is false) and the host answers
(:func:`url_reachable`). :func:`download_dataset` then fetches the archive (:func:`fetch`: a
transfer that stalls for :data:`STALL_TIMEOUT` seconds fails) into a temporary folder, lets
torchvision check its MD5 and unpack it, and moves the result into place only when it is
complete, so an interrupted or failed download leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
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


def fetch(url: str, dest: Path, timeout: float = STALL_TIMEOUT) -> Path:
    """Download ``url`` to the file ``dest``, with a progress bar. ``timeout`` bounds every wait
    for data of this connection only (no process-wide socket setting): a transfer that stalls
    that long raises ``TimeoutError`` (an ``OSError``)."""
    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "mobileblocks-edu"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, "wb") as f, \
            tqdm(total=r.length, unit="B", unit_scale=True, desc=Path(dest).name, leave=False) as bar:
        while chunk := r.read(2**20):
            f.write(chunk)
            bar.update(len(chunk))
    return Path(dest)


def _torchvision_download(name: str, folder: Path, size: str) -> str:
    """Download ``name``'s archive into ``folder`` (:func:`fetch`), then let torchvision check its
    MD5 and unpack it there; the name of the folder it made."""
    from torchvision import datasets

    if name == "cifar10":
        fetch(datasets.CIFAR10.url, folder / datasets.CIFAR10.filename)
        datasets.CIFAR10(str(folder), train=True, download=True)
        return "cifar-10-batches-py"
    if name == "imagenette":
        url = datasets.Imagenette._ARCHIVES.get(size, ("",))[0]
        if url:  # else torchvision names the sizes it has
            fetch(url, folder / url.rsplit("/", 1)[-1])
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
    try:
        folder = _torchvision_download(name, tmp, size)
        if not (root / folder).exists():
            os.replace(tmp / folder, root / folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # innermost first, as long as they stayed empty
            try:
                p.rmdir()
            except OSError:
                break


__all__ = ["STALL_TIMEOUT", "offline", "url_reachable", "fetch", "download_dataset"]

"""Test files in the published layouts of the ImageNet weights, served from a loopback HTTP server.

* EMO: a state dict with exactly the reference implementation's keys and shapes
  (``data/emo_1m_reference_keys.txt`` for EMO-1M), random numbers, written the way the authors'
  trainer writes ``net.pth``: ``torch.save`` of the bare state dict.
* MobileNetV2 and GhostNet: exactly timm's keys and shapes (``data/timm_<model>_keys.txt``, dumped
  from timm's own models), random numbers, as a ``.safetensors`` file the way the hub serves
  ``model.safetensors`` (``{"format": "pt"}`` metadata), and as ``pytorch_model.bin``.

Every file carries the test marker, so that whatever loads it says "test weights". The server
serves the recorded URLs' paths under ``http://127.0.0.1:<port>``: ``MBE_WEIGHTS_URL`` pointed at it
makes ``create_model(name, pretrained=True)`` download from it.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlparse

import torch

from mobileblocks_edu.data import weights

DATA = Path(__file__).parent / "data"
KEY_FILES = {"emo_1m": "emo_1m_reference_keys.txt", "mobilenetv2_100": "timm_mobilenetv2_100_keys.txt",
             "ghostnet_100": "timm_ghostnet_100_keys.txt"}


def published_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of the published file of ``name``, in the file's order."""
    if name in KEY_FILES:
        lines = (DATA / KEY_FILES[name]).read_text().splitlines()
        return [(k, tuple(int(d) for d in s.strip("()").split(",") if d.strip())) for k, s in
                (line.split("\t") for line in lines if line.strip())]
    import mobileblocks_edu as mbe  # the larger EMOs: the reference names are the library's

    with torch.device("meta"):
        return [(k, tuple(v.shape)) for k, v in mbe.create_model(name).state_dict().items()]


def random_state_dict(name: str, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random numbers in the published layout: small weights, positive variances, integer counters."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for key, shape in published_layout(name):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(100, dtype=torch.long)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.05
    return sd


def save_safetensors(tensors: dict, path: Path, metadata: dict) -> Path:
    """A ``.safetensors`` file written by the ``safetensors`` package, as the hub serves them."""
    from safetensors.torch import save_file

    save_file({k: t.contiguous() for k, t in tensors.items()}, str(path), metadata=metadata)
    return path


def write_file(name: str, path: Path, kind: str = "published", seed: int = 0) -> dict:
    """Write ``name``'s file at ``path`` in its published layout (``kind="bin"``: timm's
    ``pytorch_model.bin``; ``"checkpoint"``: the EMO trainer's ``{'net', 'net_E', ...}``); returns
    the state dict it holds (without the marker)."""
    sd = random_state_dict(name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    marked = OrderedDict(sd)
    marked[weights.TEST_MARKER] = torch.tensor(1)
    if path.suffix == ".safetensors":
        save_safetensors(sd, path, {"format": "pt", weights.TEST_MARKER: "random"})
    elif kind == "checkpoint":
        ema = OrderedDict((k, v + 1 if v.is_floating_point() else v) for k, v in sd.items())
        torch.save({"net": sd, "net_E": ema, "epoch": 300, weights.TEST_MARKER: torch.tensor(1)}, path)
    else:
        torch.save(marked, path)
    return sd


def write_mirror(root: Path, names=("emo_1m", "mobilenetv2_100", "ghostnet_100")) -> dict:
    """The files of ``names`` under ``root`` at their recorded URLs' paths; ``{name: state dict}``."""
    return {name: write_file(name, root / urlparse(weights.PUBLISHED[name].url).path.lstrip("/")) for name in names}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(root: Path):
    """Serve ``root`` on ``http://127.0.0.1:<free port>`` in a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

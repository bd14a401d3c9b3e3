"""The published ImageNet weights: where each file is, fetching it into PyTorch's hub cache, and
reading it into the library's layout.

Three of the book's families have trained ImageNet-1k weights that anyone can download:

* **EMO-1M/2M/5M/6M**: the authors' release, ``resources/EMO_<size>/net.pth`` in their repository
  (``zhangzjn/EMO``). Their trainer writes ``net.pth`` as ``torch.save(state['net'])``: the bare
  state dict of the (non-EMA) network, with the reference implementation's key names, which the
  library's EMO uses one for one. A full training checkpoint ``{'net': ..., 'net_E': ...}`` is read
  too: ``net`` (what the authors' test command evaluates), or ``net_E`` (the EMA copy) with ``ema=True``.
* **MobileNetV2 1.0** and **GhostNet 1.0**: timm's files on the Hugging Face hub
  (``timm/mobilenetv2_100.ra_in1k``, ``timm/ghostnet_100.in1k``), as ``model.safetensors`` or
  ``pytorch_model.bin``. Their key names are timm's (``conv_stem``, ``bn1``, ``blocks.i.j.conv_pw``);
  :func:`to_library_layout` renames them onto the library's, parameter for parameter.

``create_model(name, pretrained=True)`` downloads the recorded file once (:func:`fetch_weights`,
with a progress bar) into ``torch.hub.get_dir()/checkpoints`` and loads it (:func:`load_pretrained`);
``pretrained="<path or URL>"`` loads another copy of the same file. Offline (``MBE_OFFLINE=1``, or
the host does not answer within seconds) :class:`WeightsUnavailable` says which URL to fetch and
where to put the file. ``MBE_WEIGHTS_URL`` replaces the recorded hosts by a mirror that serves the
same paths (the tests serve files from a loopback server this way).

A file that holds the entry :data:`TEST_MARKER` (a ``.pth``/``.bin`` key, or a safetensors
metadata key) has random weights written by the project's own tests; the model loaded from it is
marked so (``model.weights_info["test"]``), and the lessons say "test weights" instead of ImageNet.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union
from urllib.parse import urlparse

import torch

from ..checkpoint import CheckpointError, check_state_dict, read_checkpoint, unwrap_state_dict
from .download import fetch, offline, url_reachable

TEST_MARKER = "mbe_test_weights"
UNRECORDED = "not yet recorded (no download with network has been checked yet); the structure is checked instead"
EMO_COMMIT = "703e0b711679f7c19a79ee62b413688655d76802"  # the commit that added the four net.pth files


@dataclass(frozen=True)
class WeightFile:
    """One published weight file. ``git_blob``: the SHA-1 Git records for the file in its repository
    (checked after each download); ``size``/``sha256``: ``None`` while :data:`UNRECORDED`."""

    model: str
    url: str
    publisher: str
    layout: str  # "emo" (the reference key names) or "timm"
    head: tuple[str, ...]  # the classifier's keys in the library's layout
    top1: Optional[float]  # ImageNet-1k top-1 (%) its publisher reports with this file (None: not quoted here)
    git_blob: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None

    @property
    def filename(self) -> str:
        """The name in the hub cache: the model's name and the file's (the four EMO files are all ``net.pth``)."""
        return f"{self.model}-{self.url.rsplit('/', 1)[-1]}"


def _emo(size: str, blob: str, top1: float) -> WeightFile:
    return WeightFile(f"emo_{size.lower()}",
                      f"https://raw.githubusercontent.com/zhangzjn/EMO/{EMO_COMMIT}/resources/EMO_{size}/net.pth",
                      "the EMO authors (zhangzjn/EMO)", "emo", ("head.weight", "head.bias"), top1, git_blob=blob)


def _timm(name: str, tag: str) -> WeightFile:
    return WeightFile(name, f"https://huggingface.co/timm/{name}.{tag}/resolve/main/model.safetensors",
                      f"timm (timm/{name}.{tag})", "timm", ("classifier.weight", "classifier.bias"), None)


# top-1: the test results in the EMO authors' README (71.498, 75.134, 78.422, 78.988), rounded.
# Size and SHA-256 of every file: UNRECORDED until a download with network has been checked; the EMO
# files are checked against the Git SHA-1 of their repository's tree meanwhile, timm's by their structure.
PUBLISHED: dict[str, WeightFile] = {w.model: w for w in (
    _emo("1M", "76c4282de548fa76eca6011720b29d8f80ffa784", 71.5),
    _emo("2M", "9ec7138d292ca9b2d07923aec05762f547db8cf2", 75.1),
    _emo("5M", "3ea7450fa9c290c3c46f372c1f5cebe1198d1ce1", 78.4),
    _emo("6M", "10a248725247cf18b51e449dbd1a220354457c99", 79.0),
    _timm("mobilenetv2_100", "ra_in1k"),
    _timm("ghostnet_100", "in1k"),
)}

NO_WEIGHTS = {  # shell patterns of registered names -> why there is nothing to download
    "mocovit*": "MoCoViT's authors published no trained weights",
    "*_cifar": "the CIFAR-10 variants exist only in this library (python -m mobileblocks_edu.train trains one)",
    "*_imagenette": "the Imagenette variants exist only in this library (python -m mobileblocks_edu.train trains one)",
}


_SILENT_HOSTS: set[str] = set()  # hosts that did not answer in this process


class WeightsUnavailable(RuntimeError):
    """The published file cannot be had here (offline, host unreachable, download failed); the
    message names the URL and where to put a copy by hand."""


def weight_file(name: str) -> WeightFile:
    """The :class:`WeightFile` of ``name``; ``ValueError`` saying why for a model without one."""
    if name in PUBLISHED:
        return PUBLISHED[name]
    why = next((w for p, w in NO_WEIGHTS.items() if fnmatch.fnmatch(name, p)), "no weights are published for it")
    raise ValueError(f"{name} has no published weights: {why}. Models with ImageNet weights: "
                     f"{', '.join(PUBLISHED)}")


def weights_url(name: str) -> str:
    """The URL ``pretrained=True`` fetches: the recorded one, or the same path under ``MBE_WEIGHTS_URL``."""
    url = weight_file(name).url
    mirror = os.environ.get("MBE_WEIGHTS_URL", "").strip().rstrip("/")
    return mirror + urlparse(url).path if mirror else url


def cache_path(name: str) -> Path:
    """Where the file of ``name`` is kept: ``torch.hub.get_dir()/checkpoints/<model>-<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weight_file(name).filename


def _unavailable(name: str, url: str, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(f"cannot download the weights of {name} ({why}): fetch {url} by hand and put it at "
                              f"{cache_path(name)}, or pass pretrained='<path of the file>'")


def git_blob_sha1(path: Union[str, Path]) -> str:
    """The SHA-1 Git gives the file's content (``git hash-object``), as a repository's tree records it."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            h.update(chunk)
    return h.hexdigest()


def check_file(name: str, path: Path) -> None:
    """Compare a downloaded file with what is recorded for it (size, SHA-256, Git's SHA-1); a file of a
    mirror (``MBE_WEIGHTS_URL``) is not the recorded one and is checked by its structure only."""
    w = weight_file(name)
    if os.environ.get("MBE_WEIGHTS_URL", "").strip():
        return
    if w.size is not None and path.stat().st_size != w.size:
        raise CheckpointError(f"{path} has {path.stat().st_size} bytes, the published file {w.size}")
    if w.sha256 is not None and hashlib.sha256(path.read_bytes()).hexdigest() != w.sha256:
        raise CheckpointError(f"{path}: SHA-256 differs from the published file's {w.sha256}")
    if w.git_blob is not None and git_blob_sha1(path) != w.git_blob:
        raise CheckpointError(f"{path} is not the file the repository records (Git SHA-1 {w.git_blob})")


def fetch_weights(name: str, url: Optional[str] = None) -> Path:
    """The local file of ``name``'s weights: the hub cache's copy, else downloaded there (atomically,
    with a progress bar, then checked). ``url`` overrides where from (the cache name stays)."""
    dest = cache_path(name)
    if url is None and dest.is_file():
        return dest
    url = url or weights_url(name)
    if url.startswith("file://"):
        return Path(urlparse(url).path)
    if offline():
        raise _unavailable(name, url, "MBE_OFFLINE is set")
    host = urlparse(url).netloc
    if host in _SILENT_HOSTS:
        raise _unavailable(name, url, f"{host} did not answer earlier in this session: offline?")
    if not url_reachable(url, timeout=5.0):
        _SILENT_HOSTS.add(host)  # the next model on this host fails at once (a new session tries again)
        raise _unavailable(name, url, "no answer from the host within 5 s: offline?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        fetch(url, tmp)
        check_file(name, tmp)
        os.replace(tmp, dest)
    except OSError as e:
        raise _unavailable(name, url, f"{type(e).__name__}: {e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


# ---- reading the files -----------------------------------------------------------------------------

def read_safetensors(path: Union[str, Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a ``.safetensors`` file, read with the ``safetensors`` package."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read weights file {path}: not a complete safetensors file ({e})") from e


def read_weights(path: Union[str, Path], ema: bool = False) -> tuple[dict[str, torch.Tensor], bool]:
    """``(state_dict, test)`` of a weight file: ``.safetensors``, or a file of ``torch.save`` (a bare
    state dict, or the EMO trainer's ``{'net': ..., 'net_E': ...}``: ``net``, or ``net_E`` with
    ``ema=True``). ``test``: the file carries :data:`TEST_MARKER` (random weights of the tests)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    if path.suffix == ".safetensors":
        sd, meta = read_safetensors(path)
        return sd, TEST_MARKER in meta
    obj = read_checkpoint(path)
    test = isinstance(obj, Mapping) and TEST_MARKER in obj
    key = None
    if isinstance(obj, Mapping) and "net" in obj and "net_E" in obj:
        key = "net_E" if ema else "net"
        if obj[key] is None:
            raise CheckpointError(f"{path} has no {key!r} weights (its run had {'no EMA' if ema else 'only EMA'})")
    elif ema:
        raise CheckpointError(f"{path} holds one set of weights, no EMA copy ('net_E'): use ema=False")
    sd = dict(unwrap_state_dict(obj, key, source=path))
    if TEST_MARKER in sd:
        test = True
        del sd[TEST_MARKER]
    return sd, test


_GHOST_STAGES = {0: (0, 0), 1: (1, 0), 2: (1, 1), 3: (2, 0), 4: (2, 1), 5: (3, 0), 6: (3, 1), 7: (4, 0), 8: (4, 1)}


def _ghost_block(m: re.Match) -> str:
    """timm's ``blocks.<s>.<j>.`` (nine stages, one per row group of GhostNet's table) as the library's
    ``stages.<s'>.<j'>.`` (five stages, one per resolution)."""
    stage, offset = _GHOST_STAGES[int(m.group(1))]
    return f"stages.{stage}.{offset + int(m.group(2))}."

# timm -> library: applied in order to every key (the tail .weight/.bias/.running_* is kept)
_TIMM_RULES = {
    "mobilenetv2_100": [
        (r"^conv_stem\.", "stem.conv."), (r"^bn1\.", "stem.norm."),
        (r"^conv_head\.", "conv_head.conv."), (r"^bn2\.", "conv_head.norm."),
        # the first block is depthwise-separable: conv_dw + bn1, then conv_pw + bn2 (the library's conv_pwl)
        (r"^blocks\.0\.0\.bn1\.", "blocks.0.0.conv_dw.norm."), (r"^blocks\.0\.0\.conv_pw\.", "blocks.0.0.conv_pwl."),
        (r"^blocks\.0\.0\.bn2\.", "blocks.0.0.conv_pwl.norm."),
        (r"^(blocks\.\d+\.\d+)\.bn1\.", r"\1.conv_pw.norm."), (r"^(blocks\.\d+\.\d+)\.bn2\.", r"\1.conv_dw.norm."),
        (r"^(blocks\.\d+\.\d+)\.bn3\.", r"\1.conv_pwl.norm."),
        (r"^(blocks\.\d+\.\d+)\.(conv_pw|conv_dw|conv_pwl)\.(weight|bias)$", r"\1.\2.conv.\3"),
    ],
    "ghostnet_100": [
        (r"^conv_stem\.", "stem.conv."), (r"^bn1\.", "stem.norm."),
        (r"^blocks\.9\.0\.conv\.", "final_conv.conv."), (r"^blocks\.9\.0\.bn1\.", "final_conv.norm."),
        # timm's nine stages of GhostNet's table are the library's five stages of one resolution each
        (r"^blocks\.(\d)\.(\d+)\.", _ghost_block),
        (r"\.(primary_conv|cheap_operation)\.0\.", r".\1.conv."),
        (r"\.(primary_conv|cheap_operation)\.1\.", r".\1.norm."),
        (r"\.conv_dw\.", ".conv_dw.conv."), (r"\.bn_dw\.", ".conv_dw.norm."),
        (r"\.shortcut\.0\.", ".shortcut.0.conv."), (r"\.shortcut\.1\.", ".shortcut.0.norm."),
        (r"\.shortcut\.2\.", ".shortcut.1.conv."), (r"\.shortcut\.3\.", ".shortcut.1.norm."),
    ],
}


def library_key(name: str, key: str) -> str:
    """The library's name for the key ``key`` of ``name``'s published file."""
    if weight_file(name).layout == "emo":
        return key  # the library's EMO uses the reference implementation's names
    for pattern, repl in _TIMM_RULES[name]:
        key = re.sub(pattern, repl, key)
    return key


def to_library_layout(name: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published state dict of ``name`` with the library's key names. BatchNorm's
    ``num_batches_tracked`` counters, which some files leave out, are not needed for inference."""
    return {library_key(name, k): v for k, v in state_dict.items()}


def _fill_counters(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(v)


def load_pretrained(model: torch.nn.Module, name: str, pretrained: Union[bool, str, Path] = True,
                    ema: bool = False) -> torch.nn.Module:
    """Load ``name``'s published ImageNet weights into ``model`` (built by ``create_model(name)``).

    ``pretrained=True``: the recorded file (:func:`fetch_weights`); a path or an ``http(s)://`` URL:
    that copy instead. Every key and shape must fit (:class:`CheckpointError` names the file and the
    first keys that differ); a model built with another number of classes keeps its new classifier.
    Sets ``model.weights_info`` (:func:`describe_weights` turns it into one line).
    """
    w = weight_file(name)
    if isinstance(pretrained, (str, Path)) and re.match(r"^https?://", str(pretrained)):
        path = fetch_weights(name, str(pretrained))
    elif isinstance(pretrained, (str, Path)):
        path = Path(pretrained).expanduser()
    elif pretrained is True:
        path = fetch_weights(name)
    else:
        raise TypeError(f"pretrained must be True, False, a path or a URL, got {pretrained!r}")
    sd, test = read_weights(path, ema=ema)
    sd = to_library_layout(name, sd)
    _fill_counters(model, sd)
    own = model.state_dict()
    new_head = [k for k in w.head if k in sd and (k not in own or own[k].shape != sd[k].shape)]
    for k in new_head:  # another number of classes (0: none): the model keeps its own classifier
        del sd[k]
        if k in own:
            sd[k] = own[k]
    check_state_dict(model, sd, source=path)
    model.load_state_dict(sd)
    checked = [f"{k} {v}" for k, v in (("size", w.size), ("SHA-256", w.sha256), ("Git SHA-1", w.git_blob)) if v]
    model.weights_info = {"model": name, "publisher": w.publisher, "file": str(path), "test": test,
                          "top1": w.top1, "new_head": bool(new_head), "ema": ema,
                          "recorded": ", ".join(checked) if checked else UNRECORDED}
    return model


def describe_weights(model: torch.nn.Module) -> str:
    """One line saying which weights ``model`` holds."""
    info = getattr(model, "weights_info", None)
    if info is None:
        return "random initialisation (no weights loaded)"
    head = ", a new classifier" if info["new_head"] else ""
    if info["test"]:
        return f"test weights (random numbers in the published layout of {info['publisher']}){head}"
    top1 = f" (published top-1 {info['top1']:.1f} %)" if info["top1"] is not None else ""
    return f"ImageNet-1k weights of {info['publisher']}{top1}{head}"


__all__ = ["TEST_MARKER", "UNRECORDED", "WeightFile", "PUBLISHED", "NO_WEIGHTS", "WeightsUnavailable",
           "weight_file", "weights_url", "cache_path", "git_blob_sha1", "check_file", "fetch_weights",
           "read_safetensors", "read_weights", "library_key", "to_library_layout", "load_pretrained",
           "describe_weights"]

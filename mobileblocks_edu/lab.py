"""What every lesson needs first: fast mode, the data directory, a device, seeds, and a way to show
library code and computed numbers in the page.

This is the notebooks' module: the library itself never imports it. The paths, the device, the
seeds and the machine description come from :mod:`mobileblocks_edu.env` and are re-exported here,
so that a lesson needs one import.

* Fast mode: ``MBE_FAST=1`` shrinks every notebook (fewer steps, smaller inputs) so that CI runs
  them all in minutes. :func:`pick` chooses between the normal and the fast value.
* Data directory: ``MBE_DATA`` if set, else ``data/`` in the repository checkout (``make`` links
  it to the offline copy when there is one), else ``./data``.
"""
from __future__ import annotations

import inspect
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar, Union

import torch

from .blocks.layers import randomize_
from .env import check_device, checkpoints_dir, data_dir, machine, repo_root, results_dir, seed_everything

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_STARTED: Optional[float] = None  # when setup() last ran: the start of the lesson


def is_fast() -> bool:
    """True when the environment variable ``MBE_FAST`` is set to 1/true/yes/on."""
    return os.environ.get("MBE_FAST", "").strip().lower() in _TRUE


def pick(normal: T, fast: T) -> T:
    """``fast`` in fast mode, else ``normal``: ``epochs = pick(30, fast=1)``."""
    return fast if is_fast() else normal


@dataclass(frozen=True)
class Lab:
    """The settings a lesson runs with (returned by :func:`setup`)."""

    device: torch.device
    fast: bool
    data_dir: Path
    seed: int

    def __str__(self) -> str:
        from .version import __version__

        data = f"{self.data_dir} ({'found' if self.data_dir.exists() else 'not there yet'})"
        return (
            f"mobileblocks_edu {__version__} | torch {torch.__version__} | device {self.device} | "
            f"fast mode {'ON' if self.fast else 'off'} | data {data}"
        )


def setup(seed: int = 0, device: str = "auto", quiet: bool = False) -> Lab:
    """Seed everything, pick the device, read fast mode and the data directory; print a summary.

    Also sets a plain, readable matplotlib style for the book's figures.
    """
    global _STARTED
    _STARTED = time.perf_counter()
    seed_everything(seed)
    lab = Lab(check_device(device), is_fast(), data_dir(), seed)
    try:
        import matplotlib as mpl

        mpl.rcParams.update({
            "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
            "axes.spines.top": False, "axes.spines.right": False, "figure.figsize": (6.4, 3.6),
        })
    except ImportError:  # matplotlib is optional for the library itself
        pass
    if not quiet:
        print(lab)
    return lab


def show_source(obj, lines: Optional[tuple[int, int]] = None, folded: bool = True):
    """Display the source code of a library object in the page (so prose and library never drift).

    ``lines=(a, b)`` shows only lines a..b (1-based, inclusive) of the object's source. The listing
    is folded by default (an HTML ``<details>`` block, "Source of X (n lines)", that opens on a
    click, in Jupyter, Colab and the book alike); ``folded=False`` shows it open. ``.data`` holds
    the source text.
    """
    from IPython.display import Code

    src = inspect.getsource(obj)
    if lines is not None:
        src = "\n".join(src.splitlines()[lines[0] - 1 : lines[1]])
    if not folded:
        return Code(src, language="python")
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__

    class FoldedCode(Code):
        def _repr_html_(self):
            from html import escape

            n = len(self.data.strip("\n").splitlines())
            return (f"<details><summary>Source of <code>{escape(name)}</code> ({n} lines): click to show"
                    f"</summary>\n{super()._repr_html_()}\n</details>")

    return FoldedCode(src, language="python")


def html_table(header: Sequence[str], rows: Sequence[Sequence], caption: Optional[str] = None) -> str:
    """The HTML of a table with the given header and rows (cells shown with ``str``, escaped)."""
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table class="table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def table(header: Sequence[str], rows: Sequence[Sequence], caption: Optional[str] = None) -> None:
    """Display computed rows as a table. HTML, so that it renders the same in Jupyter, Colab and
    the built book; format numbers before passing them."""
    from IPython.display import HTML, display

    display(HTML(html_table(header, rows, caption)))


_PERCENT = re.compile(r"(?<![\w.,])([+\-\u2212\u00b1]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?(?:%|per ?cent\b)")


def impossible_percentages(text: str) -> list[str]:
    """The percentages in ``text`` that no share can be: an unsigned one above 100, or a signed one
    (a change, written ``+x %`` or ``-x %``) outside -100 to +100 (a change of a positive quantity
    is never below -100 %; one above +100 % is written as a factor, "2.5x"). A value printed 100
    times too large, ``100 * share`` formatted again as a percentage, is what this catches."""
    found = []
    for m in _PERCENT.finditer(text):
        value = float(m.group(2).replace(",", "") + (m.group(3) or ""))
        if value > 100:
            found.append(m.group(0).strip())
    return found


def say(text: str) -> None:
    """Show a sentence (Markdown and LaTeX) in the page as a cell output. Lessons write sentences
    that carry computed numbers this way, ``lab.say(f"... {n_params:,} parameters")``, so that
    the number is the one the code just computed, in Jupyter and Colab as in the book.

    A percentage that cannot be one (:func:`impossible_percentages`) raises ValueError."""
    bad = impossible_percentages(text)
    if bad:
        raise ValueError(f"lab.say: impossible percentage(s) {bad} in: {text[:200]!r}")
    from IPython.display import Markdown, display

    display(Markdown(text))


def run_time() -> float:
    """Print and return the seconds since :func:`setup` ran (the lesson's measured run time)."""
    if _STARTED is None:
        raise RuntimeError("run_time() measures from lab.setup(); call lab.setup() first")
    seconds = time.perf_counter() - _STARTED
    mode = "fast mode" if is_fast() else "normal mode"
    print(f"This lesson ran in {seconds:.0f} s ({mode}) on {machine()}.")
    return seconds


def on_meta(factory: Union[str, Callable[..., torch.nn.Module]], *args, **kwargs) -> torch.nn.Module:
    """Build a module (or a registered model, given its name) on PyTorch's ``meta`` device:
    parameters with shapes but no data. Counting parameters and FLOPs needs only shapes, so
    counting such a model is instant and exact."""
    with torch.device("meta"):
        if isinstance(factory, str):
            from .models.registry import create_model

            return create_model(factory, *args, **kwargs)
        return factory(*args, **kwargs)




def imagenet_weights(name: str, instead: str, **kwargs) -> Optional[torch.nn.Module]:
    """``create_model(name, pretrained=True)`` in eval mode, when the published ImageNet weights can
    be had (downloaded once into the hub cache, or already there); else ``None``. One printed line
    says which weights the cell shows: these, or ``instead`` (what the cell falls back to)."""
    from .data.weights import WeightsUnavailable, describe_weights
    from .models.registry import create_model

    try:
        model = create_model(name, pretrained=True, **kwargs).eval()
    except WeightsUnavailable as e:
        print(f"{name}: no ImageNet weights here ({str(e).split(': fetch')[0].split('(', 1)[-1].rstrip(')')}); "
              f"this cell shows {instead} instead")
        return None
    print(f"{name}: {describe_weights(model)}")
    return model


def download_sizes(names: Sequence[str]) -> str:
    """One sentence for a lesson's header: what it downloads when online, and how large it is.

    ``names``: ``"cifar10"``, ``"imagenette"`` (the 160px archive the lessons fetch), ``"pennfudan"``,
    or a model with published ImageNet weights (its file's size is computed: the values of its state
    dict, 4 bytes each, as the published float32 files hold them). Sizes come from where the library
    records them (``data.DATASETS``, ``dense.data.PENNFUDAN_SIZE``), so no lesson types them."""
    from .data.datasets import DATASETS
    from .data.weights import PUBLISHED
    from .dense.data import PENNFUDAN_SIZE
    from .models.registry import create_model

    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of names, got the string {names!r}")
    parts, weights = [], []
    for name in names:
        if name in ("cifar10", "imagenette"):
            info = DATASETS[name]
            size = info.download_size.split(" / ")[0].replace(" (", ", ").rstrip(")")  # "95 MB, 160px"
            parts.append(f"{info.title} ({size}, once, into the data directory)")
        elif name == "pennfudan":
            parts.append(f"the Penn-Fudan pedestrians ({PENNFUDAN_SIZE}, once, into the data directory)")
        elif name in PUBLISHED:
            state = create_model(name).state_dict().values()
            mb = sum(t.numel() * 4 for t in state if t.is_floating_point() or t.dtype == torch.int64) / 1e6
            weights.append(f"{name} ({mb:.1f} MB)")
        else:
            raise ValueError(f"unknown download {name!r}: expected cifar10, imagenette, pennfudan or one of "
                             f"{', '.join(PUBLISHED)}")
    if weights:
        parts.append("the published ImageNet weights of " + ", ".join(weights) + " (once, into PyTorch's hub cache)")
    if not parts:
        return "nothing: everything this lesson shows is computed here or read from committed files."
    return "; ".join(parts) + ". Offline, the lesson says in one line what it shows instead."


def weights_tag(model: torch.nn.Module) -> str:
    """A short name for the weights ``model`` holds, for figure titles."""
    info = getattr(model, "weights_info", None)
    if info is None:
        return "training lab"
    return "TEST weights (random)" if info["test"] else "ImageNet-1k weights"


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in the order of the models' outputs (torchvision's list)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` as a Python float."""
    return (a - b).abs().max().item()


__all__ = [
    "download_sizes",
    "is_fast",
    "pick",
    "repo_root",
    "data_dir",
    "results_dir",
    "checkpoints_dir",
    "seed_everything",
    "check_device",
    "Lab",
    "setup",
    "show_source",
    "html_table",
    "table",
    "say",
    "run_time",
    "on_meta",
    "randomize_",
    "max_diff",
    "machine",
]

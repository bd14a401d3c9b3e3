"""Figure helpers shared by the lessons of Part V.

* :func:`jshtml_slider`: a parameterised matplotlib figure as a slider that works without a
  kernel (``FuncAnimation(...).to_jshtml()``: one pre-rendered frame per value), so the static
  HTML book is interactive too.
* :func:`cam_grid`: Grad-CAM overlays side by side, one column per model (EMO's Fig. 7 layout).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def jshtml_slider(fig, draw: Callable[[object], None], values: Sequence, interval: int = 700):
    """A kernel-free slider over ``values``: ``draw(value)`` redraws ``fig`` for one value; each
    frame is rendered once and embedded in the page (keep figures small: every frame is a PNG).
    Returns an ``IPython.display.HTML`` object and closes the figure."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    values = list(values)
    if not values:
        raise ValueError("values must not be empty")
    with mpl.rc_context({"animation.embed_limit": 60.0}):  # MB
        anim = FuncAnimation(fig, draw, frames=values, interval=interval, repeat=False)
        out = HTML(anim.to_jshtml(default_mode="once"))
    plt.close(fig)
    return out


def cam_grid(images: Sequence[np.ndarray], columns: dict, class_names: Sequence[str],
             labels: Optional[Sequence[Optional[int]]] = None, title: Optional[str] = None, size: float = 1.9,
             captions: Optional[Sequence[str]] = None):
    """Grad-CAM overlays in a grid: one row per image, the image first, then one column per
    model (``columns``: ``{model label: CamResult}``), each titled with the prediction and its
    softmax confidence (a red title: wrong, when ``labels`` gives the true class; ``None``: no
    true class). ``captions`` replace the image titles ("true: <class>"). Returns the figure."""
    import matplotlib.pyplot as plt

    from .analysis.cam import overlay

    n, m = len(images), len(columns)
    fig, axes = plt.subplots(n, m + 1, figsize=(size * (m + 1), size * n + 0.4), squeeze=False)
    for i, rgb in enumerate(images):
        ax = axes[i, 0]
        ax.imshow(rgb)
        truth = labels[i] if labels is not None else None
        caption = captions[i] if captions is not None else ("image" if truth is None else f"true: {class_names[truth]}")
        ax.set_title(caption, fontsize=8)
        for j, (name, res) in enumerate(columns.items(), start=1):
            ax = axes[i, j]
            ax.imshow(overlay(rgb, res.cams[i]))
            pred, conf = res.preds[i], res.confidences[i]
            wrong = truth is not None and pred != truth
            ax.set_title(f"{class_names[pred]} {100 * conf:.0f}%", fontsize=8, color="crimson" if wrong else "black")
            if i == 0:
                ax.text(0.5, 1.32, name, transform=ax.transAxes, ha="center", fontsize=9, weight="bold")
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


__all__ = ["jshtml_slider", "cam_grid"]

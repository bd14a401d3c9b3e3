"""Figure helpers shared by the lessons.

* :func:`jshtml_slider`: a parameterised matplotlib figure as a slider that works without a
  kernel (``FuncAnimation(...).to_jshtml()``: one pre-rendered frame per value), so the static
  HTML book is interactive too.
* :func:`cam_grid`: Grad-CAM overlays side by side, one column per model (EMO's Fig. 7 layout).
* :func:`trace_block` and :func:`draw_block`: a block's diagram read from the module itself (its
  layers in the order they run, their output shapes, the branches and the residual paths), drawn
  in the style of the papers' block figures, so that the picture cannot drift from the code.
* :func:`profile_bars`, :func:`speed_scatter` and :func:`similarity_figure`: the plots of the
  benchmark lesson (CPU time per kind of operator; throughput against FLOPs) and of the feature
  similarity of lesson 15, kept here so that the lessons' cells stay short.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode


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




# ---- block diagrams ---------------------------------------------------------------------------

# The tensor operations that join two paths: each becomes a node of the diagram (⊕, ⊗, concat).
_JOINS = {"add": "add", "__add__": "add", "__radd__": "add", "add_": "add", "__iadd__": "add",
          "mul": "mul", "__mul__": "mul", "__rmul__": "mul", "mul_": "mul", "__imul__": "mul",
          "cat": "cat", "concat": "cat", "concatenate": "cat"}
_SYMBOL = {"add": "+", "mul": "×", "cat": "C"}


def _units() -> tuple:
    """The library's layer types drawn as one box each (their insides are one step of a block)."""
    from .blocks.attention import WindowAttention
    from .blocks.dyrelu import DyReLU
    from .blocks.layers import ConvNormAct, LayerNorm2d, SqueezeExcite

    return ConvNormAct, LayerNorm2d, SqueezeExcite, WindowAttention, DyReLU


def _passes(m: nn.Module) -> bool:
    """Layers that leave their input as it is in eval mode: not drawn."""
    from .blocks.layers import DropPath

    return isinstance(m, (nn.Identity, nn.Dropout, DropPath))


@dataclass
class DiagramNode:
    """One step of a block: a layer (``kind="layer"``), the input, or a join (``"add"``, ``"mul"``,
    ``"cat"``). ``preds`` index the nodes it reads; ``operands`` (joins only) the nodes each operand
    comes from; ``leaves`` the module's leaf layers the box stands for."""

    kind: str
    label: str
    shape: tuple
    preds: tuple = ()
    name: str = ""
    leaves: tuple = ()
    operands: tuple = ()
    info: dict = field(default_factory=dict)


@dataclass
class BlockDiagram:
    """The steps of one forward pass of a block, in the order they ran (node 0 is the input)."""

    title: str
    nodes: list
    output: int = 0

    def leaves(self) -> set:
        """The leaf layers (qualified names) that the drawn boxes stand for."""
        return {leaf for n in self.nodes for leaf in n.leaves}

    def labels(self) -> list:
        return [n.label for n in self.nodes if n.kind == "layer"]

    def ancestors(self, i: int) -> set:
        seen, todo = set(), [i]
        while todo:
            for p in self.nodes[todo.pop()].preds:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    def residuals(self) -> list:
        """``(source, join)`` for every ⊕ that adds a node to a path that starts at that node: a skip."""
        out = []
        for j, n in enumerate(self.nodes):
            if n.kind != "add" or len(n.operands) != 2:
                continue
            for a, b in (n.operands, n.operands[::-1]):
                if len(a) == 1 and all(next(iter(a)) in self.ancestors(x) | {x} for x in b):
                    out.append((next(iter(a)), j))
                    break
        return out

    @property
    def identity_skip(self) -> bool:
        """True when the block's input itself is added to its output path (the block's residual)."""
        return any(src == 0 for src, _ in self.residuals())


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


class _Tracer(TorchFunctionMode):
    """Follows which drawn node every tensor comes from while the block runs eagerly: a unit
    layer's hooks add a box, a join of two paths adds a join node, every other operation (reshape,
    window partition, chunk, ...) passes its inputs' origins on."""

    def __init__(self, diagram: BlockDiagram):
        super().__init__()
        self.d, self.depth, self.origin, self.stack = diagram, 0, {}, []

    def sources(self, obj) -> list:
        out = []
        for t in _tensors(obj):
            entry = self.origin.get(id(t))
            if entry is not None and entry[0] is t and entry[1]:
                out.append(entry[1])
        return out

    def mark(self, obj, origin: frozenset) -> None:
        for t in _tensors(obj):
            self.origin[id(t)] = (t, origin)  # the reference keeps the id from being reused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.depth:
            return out
        ops = self.sources((args, kwargs))
        kind = _JOINS.get(getattr(func, "__name__", ""))
        if kind and len(set(ops)) >= 2 and isinstance(out, torch.Tensor):
            preds = tuple(sorted(frozenset().union(*ops)))
            self.d.nodes.append(DiagramNode(kind, _SYMBOL[kind], tuple(out.shape[1:]), preds, operands=tuple(ops)))
            self.mark(out, frozenset({len(self.d.nodes) - 1}))
        elif ops:
            self.mark(out, frozenset().union(*ops))
        return out

    def before(self, module, args):
        if self.depth == 0:
            self.stack.append(self.sources(args))
        self.depth += 1

    def after(self, name: str, module, args, out):
        self.depth -= 1
        if self.depth:
            return
        ops = self.stack.pop()
        leaves = tuple(sorted(f"{name}.{n}".strip(".") for n, m in module.named_modules()
                              if not list(m.children()) and not _passes(m)))
        shape = tuple(_tensors(out)[0].shape[1:])
        info = _layer_info(module, args)
        node = DiagramNode("layer", _layer_label(module), shape, tuple(sorted(frozenset().union(*ops))),
                           name, leaves, info=info)
        self.d.nodes.append(node)
        self.mark(out, frozenset({len(self.d.nodes) - 1}))


def _conv_label(c: nn.Conv2d) -> str:
    k = "×".join(str(v) for v in c.kernel_size)
    dw = c.groups == c.in_channels and c.groups > 1
    kind = "DW-conv" if dw else ("PW-conv" if c.kernel_size == (1, 1) else "conv")
    groups = f", {c.groups} groups" if 1 < c.groups and not dw else ""
    stride = f", stride {c.stride[0]}" if c.stride[0] > 1 else ""
    return f"{kind} {k}{groups}{stride}"


def _layer_label(m: nn.Module) -> str:
    """A short label from the layer's own settings: ``DW-conv 3×3, BN, ReLU6``, ``attention``, ``LN``."""
    ConvNormAct, LayerNorm2d, SqueezeExcite, WindowAttention, DyReLU = _units()
    short = {nn.BatchNorm2d: "BN", nn.LayerNorm: "LN", LayerNorm2d: "LN", nn.GroupNorm: "GN",
             SqueezeExcite: "SE", nn.Linear: "linear"}
    if isinstance(m, ConvNormAct):
        parts = [_conv_label(m.conv)] + [_layer_label(x) for x in (m.norm, m.act) if not _passes(x)]
        return ", ".join(parts)
    if isinstance(m, nn.Conv2d):
        return _conv_label(m)
    if isinstance(m, WindowAttention):
        return f"attention, {m.num_heads} head{'s' if m.num_heads > 1 else ''}"
    return short.get(type(m), type(m).__name__)


def _layer_info(m: nn.Module, args) -> dict:
    """What a box shows beyond its label: heads and the window grid of an attention."""
    WindowAttention = _units()[3]
    if not isinstance(m, WindowAttention):
        return {}
    H, W = _tensors(args)[0].shape[-2:]
    w = m.window_size
    grid = (1, 1) if w is None else (math.ceil(H / w), math.ceil(W / w))
    window = "global" if w is None else f"{w}×{w} windows"
    return {"heads": m.num_heads, "grid": grid, "window": window, "map": (int(H), int(W))}


def trace_block(module: nn.Module, input_shape: Sequence[int], title: Optional[str] = None,
                collapse: Sequence[type] = ()) -> BlockDiagram:
    """Run ``module`` once (eval mode, random input of ``input_shape``, batch included) and record
    its steps: every library layer (:class:`~.blocks.layers.ConvNormAct`, norms, SE, attention)
    and every leaf module is one box, every sum, product or concatenation of two paths a join;
    reshapes and window partitions pass through. ``collapse``: further module types drawn as one
    box each (``GhostModule`` inside a larger block). Returns a :class:`BlockDiagram`."""
    from .blocks.layers import eval_mode

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    collapse = tuple(collapse)
    if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in collapse):
        raise TypeError(f"collapse must be nn.Module types, got {collapse!r}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise ValueError(f"input_shape must be a tuple of positive ints (B, C, H, W), got {input_shape!r}")
    diagram = BlockDiagram(title or type(module).__name__, [DiagramNode("input", "input", shape[1:])])
    tracer = _Tracer(diagram)
    units, hooks = _units() + collapse, []
    for name, m in module.named_modules():
        inside = any(name.startswith(u + ".") or u == "" for u in [h[0] for h in hooks]) and name != ""
        if inside or _passes(m) or not (isinstance(m, units) or not list(m.children())):
            continue
        hooks.append((name, m.register_forward_pre_hook(tracer.before),
                      m.register_forward_hook(lambda mod, a, o, name=name: tracer.after(name, mod, a, o))))
    x = torch.randn(shape)
    try:
        with eval_mode(module), torch.no_grad(), tracer:
            tracer.mark(x, frozenset({0}))
            y = module(x)
    finally:
        for _, pre, post in hooks:
            pre.remove()
            post.remove()
    origin = tracer.sources(y)
    diagram.output = max(origin[0]) if origin else 0
    return diagram


_COLORS = {"PW-conv": "#cfe2f3", "conv": "#cfe2f3", "DW-conv": "#d9ead3", "attention": "#fce5cd",
           "LN": "#fff2cc", "BN": "#fff2cc", "GN": "#fff2cc", "SE": "#e6d0f2", "linear": "#cfe2f3"}
_BOX_W, _BOX_H, _GAP, _ROW = 3.9, 0.62, 0.35, 1.0


def _layout(d: BlockDiagram) -> dict:
    """Rows by the longest path from the input, branches side by side within a row."""
    row = {0: 0}
    for i, n in enumerate(d.nodes[1:], start=1):
        row[i] = 1 + max((row[p] for p in n.preds), default=0)
    by_row = {}
    for i in range(len(d.nodes)):
        by_row.setdefault(row[i], []).append(i)
    pos = {}
    for r, ids in by_row.items():
        for j, i in enumerate(ids):
            pos[i] = ((j - (len(ids) - 1) / 2) * (_BOX_W + _GAP), -r * _ROW)
    return pos


def _half_width(n: DiagramNode) -> float:
    return _BOX_W / 2 if n.kind == "layer" else 0.2


def _draw_node(ax, n: DiagramNode, x: float, y: float) -> None:
    from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

    shape = "×".join(str(v) for v in n.shape)
    if n.kind == "input":
        ax.text(x, y, f"input  {shape}", ha="center", va="center", fontsize=9, weight="bold")
        return
    if n.kind != "layer":
        ax.add_patch(Circle((x, y), 0.2, facecolor="white", edgecolor="black", lw=1.1, zorder=3))
        ax.text(x, y, n.label, ha="center", va="center", fontsize=11 if n.kind != "cat" else 9, zorder=4)
        return
    color = _COLORS.get(n.label.split(" ")[0].rstrip(","), "#eeeeee")
    heads = n.info.get("heads", 1)
    for s in range(min(heads, 4) - 1, 0, -1):  # one shadow per head (at most three): the heads run side by side
        ax.add_patch(FancyBboxPatch((x - _BOX_W / 2 + 0.07 * s, y - _BOX_H / 2 + 0.07 * s), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color,
                                    edgecolor="#555555", lw=0.7, zorder=2))
    ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=color, edgecolor="black",
                                lw=1.0, zorder=3))
    where = f"{n.name}  →  {shape}" if n.name else shape
    dx = 0.25 if "grid" in n.info else 0.0  # room for the window grid
    ax.text(x + dx, y + 0.1, n.label, ha="center", va="center", fontsize=9, zorder=4)
    if "grid" in n.info:
        where = f"{n.info['window']}  →  {shape}"
        gy, gx = n.info["grid"]
        g = 0.42 / max(gx, gy)  # the map cut into its windows, drawn at the box's left
        for a in range(gy):
            for b in range(gx):
                ax.add_patch(Rectangle((x - _BOX_W / 2 + 0.1 + b * g, y - 0.21 + (gy - 1 - a) * g), g, g,
                                       facecolor="white", edgecolor="#8a4b08", lw=0.6, zorder=4))
    ax.text(x + dx, y - 0.15, where, ha="center", va="center", fontsize=7, color="#444444", zorder=4)


def _draw_edges(ax, d: BlockDiagram, pos: dict, row_of: dict) -> tuple:
    """Edges between neighbouring rows are straight arrows; a longer edge (a skip, or a branch that
    rejoins later) taps the path just below its source and runs in a lane at the side: at the right,
    or at the left when its source has a neighbour to the right. Returns the x range of the lanes."""
    right = max(x + _half_width(d.nodes[i]) for i, (x, _) in pos.items())
    left = min(x - _half_width(d.nodes[i]) for i, (x, _) in pos.items())
    long_edges = sorted(((p, i) for i, n in enumerate(d.nodes) for p in n.preds if row_of[i] - row_of[p] > 1),
                        key=lambda e: row_of[e[1]] - row_of[e[0]])
    arrow = dict(arrowstyle="-|>", color="black", lw=1.0, shrinkA=0, shrinkB=0, mutation_scale=9)

    def bottom(i):
        return pos[i][1] - (_BOX_H / 2 if d.nodes[i].kind == "layer" else (0.2 if i else 0.15))

    for i, n in enumerate(d.nodes):
        for p in n.preds:
            if (p, i) not in long_edges:
                (x0, _), (x1, y1) = pos[p], pos[i]
                top = y1 + (_BOX_H / 2 if n.kind == "layer" else 0.2)
                ax.annotate("", (x1, top), (x0, bottom(p)), arrowprops=arrow, zorder=1)
    lanes = {"right": [], "left": []}  # per side, per lane, the row intervals it carries
    lo, hi = left, right
    for p, i in long_edges:
        (x0, _), (x1, y1) = pos[p], pos[i]
        side = "left" if any(row_of[j] == row_of[p] and pos[j][0] > x0 for j in pos) else "right"
        span = (row_of[p], row_of[i])
        used = lanes[side]
        lane = next((k for k, iv in enumerate(used) if all(b < span[0] or a > span[1] for a, b in iv)), len(used))
        if lane == len(used):
            used.append([])
        used[lane].append(span)
        sign = 1 if side == "right" else -1
        xl = (right if side == "right" else left) + sign * (0.35 + 0.35 * lane)
        lo, hi = min(lo, xl), max(hi, xl)
        ty = bottom(p) - 0.13  # the tap, on the path just below the source
        ax.plot([x0, xl, xl], [ty, ty, y1], color="black", lw=1.0, zorder=1)
        ax.plot([x0], [ty], "o", color="black", ms=2.5, zorder=2)
        ax.annotate("", (x1 + sign * _half_width(d.nodes[i]), y1), (xl, y1), arrowprops=arrow, zorder=1)
    return lo, hi


def draw_block(module: nn.Module, input_shape: Sequence[int], title: Optional[str] = None, scale: float = 0.55,
               collapse: Sequence[type] = ()):
    """Draw ``module`` as a block diagram read from the module (:func:`trace_block`): boxes for the
    layers with their output shapes (C×H×W) and module names, ⊕ for a sum, ⊗ for a product, C for a
    concatenation, skips and branches that rejoin later routed in lanes at the side, heads as stacked boxes and the
    windows as a grid on the attention box. ``scale``: inches per unit (a box is 3.9 units wide);
    ``collapse``: module types drawn as one box (see :func:`trace_block`).
    Returns the matplotlib figure (the diagram is in ``fig.block_diagram``)."""
    import matplotlib.pyplot as plt

    d = trace_block(module, input_shape, title, collapse)
    pos = _layout(d)
    row_of = {i: round(-y / _ROW) for i, (_, y) in pos.items()}
    rows = max(row_of.values())
    y_min, y_max = -(rows + 1) * _ROW + 0.2, 0.7
    fig, ax = plt.subplots()
    fig.subplots_adjust(0, 0, 1, 1)  # the axes fill the figure: ``scale`` inches per unit
    for i, n in enumerate(d.nodes):
        _draw_node(ax, n, *pos[i])
    lo, hi = _draw_edges(ax, d, pos, row_of)
    x_min, x_max = min(lo, pos[0][0] - 1.5) - 0.3, max(hi, pos[0][0] + 1.5) + 0.3
    fig.set_size_inches(scale * (x_max - x_min), scale * (y_max - y_min))
    xo, yo = pos[d.output]
    ax.annotate("", (xo, -(rows + 0.75) * _ROW), (xo, yo - (_BOX_H / 2 if d.nodes[d.output].kind == "layer" else 0.2)),
                arrowprops=dict(arrowstyle="-|>", color="black", lw=1.0, mutation_scale=9))
    out_shape = "×".join(str(v) for v in d.nodes[d.output].shape)
    ax.text(xo, -(rows + 0.9) * _ROW, f"output  {out_shape}", ha="center", va="center", fontsize=9, weight="bold")
    ax.text(x_min, y_max - 0.1, d.title, ha="left", va="top", fontsize=10, weight="bold")
    ax.set(xlim=(x_min, x_max), ylim=(y_min, y_max), aspect="equal")
    ax.axis("off")
    fig.block_diagram = d
    return fig


def profile_bars(groups: Sequence[dict], kinds: Sequence[str], title: str):
    """Stacked bars of CPU seconds per training step by kind of operator, readable path against fast
    path, one panel per benchmark group (``group["profile"]`` of a ``bench`` report: ``{"model",
    "readable": {kind: s}, "fast": {kind: s}}``, with ``group["size"]`` and ``group["batch"]``).
    Returns the figure."""
    import matplotlib.pyplot as plt

    if not groups:
        raise ValueError("profile_bars needs at least one group with a profile")
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        prof = g["profile"]
        for i, path in enumerate(("readable", "fast")):
            left = 0.0
            for j, kind in enumerate(kinds):
                t = prof[path].get(kind, 0.0)
                ax.barh(i, t, left=left, color=f"C{j}", label=kind if i == 0 else None)
                left += t
        ax.set(yticks=[0, 1], yticklabels=["readable", "fast"], xlabel="CPU seconds per training step",
               title=f"{prof['model']}, training, {g['size']}² × {g['batch']}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(kinds), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def speed_scatter(groups: Sequence[dict], sizes: Sequence[int], models: Sequence[str], flops: dict):
    """Throughput of the fast path against FLOPs per image, one panel per input size, circles for
    training and squares for inference. ``groups``: a ``bench`` report's groups (``mode``, ``size``,
    ``runs["<model>/fast"]["img_per_s"]``); ``flops[(model, size)]``: FLOPs per image. Returns the
    figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sizes):
        for mode, marker in (("train", "o"), ("eval", "s")):
            g = next((g for g in groups if g["size"] == s and g["mode"] == mode), None)
            if g is None:
                continue
            for i, m in enumerate(models):
                x_, y_ = flops[(m, s)] / 1e6, g["runs"][f"{m}/fast"]["img_per_s"]
                ax.scatter(x_, y_, color=f"C{i}", marker=marker, s=50, label=f"{m}, {mode}")
                ax.annotate(f"{m} ({mode})", (x_, y_), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set(xlabel="FLOPs per image (M, fvcore)", ylabel="images / s (fast path)", title=f"{s}×{s} input")
        ax.set_xlim(0, ax.get_xlim()[1] * 1.25)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    fig.tight_layout()
    return fig


def similarity_figure(sims: dict, curves: dict, trained: dict, side: int, title: str):
    """Feature similarity of several models: one matrix per model (``sims[label]``, cosine similarity
    between the pixels of the map's diagonal, annotated), then the mean similarity against the
    distance between pixels (``curves[label] = (distances, values)``) in a last panel. ``trained[label]``
    says whether the weights were trained (else the title says UNTRAINED); ``side`` is the map's side.
    Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sims) + 1, figsize=(3.3 * (len(sims) + 1), 3.2), layout="constrained")
    im = None
    for ax, (label, s) in zip(axes, sims.items()):
        im = ax.imshow(s, cmap="viridis", vmin=0, vmax=1)
        ax.set(title=f"{label}\n({'trained' if trained[label] else 'UNTRAINED'})",
               xticks=range(len(s)), yticks=range(len(s)))
        ax.title.set_fontsize(9)
        ax.grid(False)
        for i in range(len(s)):
            for j in range(len(s)):
                ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if s[i, j] < 0.6 else "black")
    if im is not None:
        fig.colorbar(im, ax=axes[len(sims) - 1], shrink=0.8, label="cosine similarity")
    bx = axes[-1]
    for label, (ds, vals) in curves.items():
        bx.plot(ds, vals, "o-", label=label)
    bx.set(xlabel=f"distance (pixels of the {side}×{side} map)", ylabel="mean cosine similarity",
           title="all pixel pairs")
    bx.title.set_fontsize(9)
    bx.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


__all__ = ["jshtml_slider", "cam_grid", "trace_block", "draw_block", "BlockDiagram", "DiagramNode",
           "profile_bars", "speed_scatter", "similarity_figure"]

"""Where a model looks: Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391) with
pytorch-grad-cam, and the attention maps of EW-MHSA (EMO) and MoSA (MoCoViT) for one query.

Grad-CAM weighs the activations ``A^k`` of a target layer by the spatial mean of the gradient of
the class score ``y^c``, sums over channels and keeps the positive part:

.. math::

    \\alpha_k^c = \\frac{1}{Z} \\sum_{i, j} \\frac{\\partial y^c}{\\partial A^k_{ij}}, \\qquad
    L^c_{\\text{Grad-CAM}} = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big).

Every model of the library names its target layers (``model.cam_target_layers()``, the last
spatial feature map before pooling) and any reshape they need (``model.cam_reshape_transform()``),
so :func:`grad_cam` works on all of them without guessing. pytorch-grad-cam rescales each map to
[0, 1] and resizes it to the input; on an untrained network the map can be all zeros.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..blocks.attention import WINDOW_LAYOUTS, attention_modules, set_attention, window_pixels
from ..env import PathLike


@dataclass
class CamResult:
    """Grad-CAM of a batch.

    * ``cams``: ``(B, H, W)`` float32 maps in [0, 1] at the input resolution.
    * ``preds``: predicted class of each image; ``confidences``: its softmax probability.
    * ``targets``: the class each map explains (the prediction unless asked otherwise).
    * ``target_confidences``: the softmax probability of that class.
    """

    cams: np.ndarray
    preds: list
    confidences: list
    targets: list
    target_confidences: list


def cam_layers(model: nn.Module) -> tuple[list[nn.Module], Optional[callable]]:
    """The model's Grad-CAM target layers and reshape transform (``cam_target_layers()`` and
    ``cam_reshape_transform()``); a clear error for a model that does not name them."""
    if not hasattr(model, "cam_target_layers"):
        raise ValueError(f"{type(model).__name__} has no cam_target_layers(); pass target_layers explicitly")
    layers = list(model.cam_target_layers())
    reshape = model.cam_reshape_transform() if hasattr(model, "cam_reshape_transform") else None
    return layers, reshape


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    targets: Optional[Sequence[int]] = None,
    target_layers: Optional[Sequence[nn.Module]] = None,
    reshape_transform=None,
) -> CamResult:
    """Grad-CAM maps of ``x: (B, 3, H, W)`` (normalised images) for ``model``.

    Args:
        model: a classifier; put in eval mode by pytorch-grad-cam.
        x: the batch of input images.
        targets: class to explain per image; default the predicted class.
        target_layers: default ``model.cam_target_layers()``.
        reshape_transform: default ``model.cam_reshape_transform()``.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module (a classifier), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] == 0:
        hint = ": add a batch dimension with x.unsqueeze(0)" if isinstance(x, torch.Tensor) and x.dim() == 3 else ""
        raise ValueError(f"x must be a non-empty batch of images (B, 3, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}{hint}")
    if target_layers is None:
        target_layers, default_reshape = cam_layers(model)
        reshape_transform = reshape_transform or default_reshape
    target_layers = _check_target_layers(model, target_layers)
    if reshape_transform is not None and not callable(reshape_transform):
        raise ValueError(f"reshape_transform must be a function or None, got {reshape_transform!r}")
    if targets is not None and (isinstance(targets, (str, bytes)) or not hasattr(targets, "__len__")):
        raise ValueError(f"targets must be a list with one class per image, e.g. [3], got {targets!r}")
    model.eval()
    logits, maps = _forward_keeping(model, x, target_layers)
    _check_feature_maps(maps, target_layers, reshape_transform)
    _check_map_size(model, x, maps, target_layers, reshape_transform)
    probs = logits.float().softmax(-1)  # (B, classes)
    conf, preds = probs.max(-1)
    classes = [int(p) for p in preds] if targets is None else _check_targets(targets, x.shape[0], probs.shape[-1])
    with GradCAM(model=model, target_layers=list(target_layers), reshape_transform=reshape_transform) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    return CamResult(
        cams=np.asarray(maps, dtype=np.float32),
        preds=[int(p) for p in preds],
        confidences=[float(c) for c in conf],
        targets=classes,
        target_confidences=[float(probs[i, c]) for i, c in enumerate(classes)],
    )


def _forward_keeping(model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module]) -> tuple[torch.Tensor, list]:
    """``model(x)`` without gradients, and the outputs of ``layers`` in that pass."""
    maps: list = []
    hooks = [layer.register_forward_hook(lambda m, a, out: maps.append(out)) for layer in layers]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    if not maps:
        raise ValueError("the target layers did not run in the model's forward pass: pass layers of this model")
    return logits, maps


def _check_target_layers(model: nn.Module, target_layers) -> list[nn.Module]:
    """``target_layers`` as a non-empty list of submodules of ``model``."""
    if isinstance(target_layers, nn.Module):
        raise ValueError(f"target_layers must be a list of layers, e.g. [model.norm], got a single "
                         f"{type(target_layers).__name__}: put it in a list")
    if not isinstance(target_layers, (list, tuple)):
        raise ValueError(f"target_layers must be a list of layers of the model, got {type(target_layers).__name__}")
    layers = list(target_layers)
    if not layers:
        raise ValueError("target_layers is empty: name at least one layer of the model")
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
            what = type(layer).__name__
            raise ValueError(f"target_layers[{i}] ({what}) is not a layer of the model: pass submodules of the "
                             "model, e.g. model.cam_target_layers()")
    return layers


def _check_feature_maps(maps: Sequence, layers: Sequence[nn.Module], reshape_transform) -> None:
    """Every target layer must give a feature map ``(B, C, h, w)`` (after the reshape): a Linear
    layer or the pooled head has no spatial map to weigh."""
    for layer, out in zip(layers, maps):
        a = reshape_transform(out) if reshape_transform is not None and isinstance(out, torch.Tensor) else out
        if not isinstance(a, torch.Tensor) or a.dim() != 4:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"target layer {type(layer).__name__} gives {shape}, not a feature map (B, C, h, w): "
                             "Grad-CAM needs a layer before the pooling, e.g. model.cam_target_layers()")


def _map_sizes(model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module], reshape_transform) -> list:
    """The ``(h, w)`` of every target layer's map for the input ``x`` (one forward pass)."""
    maps = _forward_keeping(model, x, layers)[1]
    maps = [reshape_transform(a) if reshape_transform is not None else a for a in maps]
    return [tuple(a.shape[-2:]) for a in maps if isinstance(a, torch.Tensor) and a.dim() == 4]


def _check_targets(targets: Sequence[int], batch: int, n_classes: int) -> list[int]:
    """One class index in ``[0, n_classes)`` per image (a negative index would wrap around)."""
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"targets must have one class per image ({batch}), got {len(targets)}")
    bad = [t for t in targets if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < n_classes]
    if bad:
        raise ValueError(f"targets must be class indices in [0, {n_classes - 1}] (the model has {n_classes} "
                         f"outputs), got {bad}")
    return [int(t) for t in targets]


def _check_map_size(model: nn.Module, x: torch.Tensor, maps: Sequence[torch.Tensor], layers, reshape_transform) -> None:
    """Refuse an input so small that a target layer's map is a single pixel: Grad-CAM then has
    nothing to localise and pytorch-grad-cam returns an all-zero map."""
    maps = [reshape_transform(a) if reshape_transform is not None else a for a in maps]
    sizes = [tuple(a.shape[-2:]) for a in maps if isinstance(a, torch.Tensor) and a.dim() == 4]
    small = [hw for hw in sizes if min(hw) < 2]
    if not small:
        return
    H, W = x.shape[-2:]
    least = None
    for side in (2 ** k for k in range(3, 12)):  # the smallest square input that gives a map of 2x2 or more
        if side <= min(H, W):
            continue
        probe = torch.zeros(1, *x.shape[1:-2], side, side, dtype=x.dtype, device=x.device)
        if all(min(hw) >= 2 for hw in _map_sizes(model, probe, layers, reshape_transform)):
            least = side
            break
    name = getattr(getattr(model, "cfg", None), "name", type(model).__name__)
    h, w = small[0]
    raise ValueError(f"x of {H}x{W} is too small for Grad-CAM on {name}: its target layer's map is {h}x{w}, "
                     "so the map would be all zeros; "
                     + (f"use inputs of at least {least}x{least}" if least else "use larger inputs"))


def overlay(rgb: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The map drawn over the image with pytorch-grad-cam's ``show_cam_on_image`` (jet colours):
    ``rgb`` is ``(H, W, 3)`` float in [0, 1], ``cam`` ``(H, W)`` in [0, 1]; returns uint8 RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
    cam = np.asarray(cam, dtype=np.float32)
    if not 0 <= image_weight <= 1:
        raise ValueError(f"image_weight must be in [0, 1], got {image_weight!r}")
    if rgb.shape[:2] != cam.shape:
        raise ValueError(f"rgb {rgb.shape[:2]} and cam {cam.shape} must have the same size")
    return show_cam_on_image(np.clip(rgb, 0, 1), np.clip(cam, 0, 1), use_rgb=True, image_weight=image_weight)


def to_rgb(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalisation of one image ``(3, H, W)``: ``(H, W, 3)`` float in [0, 1]."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"x must be one image (3, H, W), got shape {tuple(x.shape)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need one value per channel (3), got {len(mean)} and {len(std)}")
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


# ---- natural photos ------------------------------------------------------------------------------


PHOTOS_DIR = Path(__file__).parent.parent / "assets" / "photos"  # shipped with the package: see LICENSE.md there


def photos_dir(root: Optional[PathLike] = None) -> Path:
    """The folder of the photos: ``root`` when given, else the package's own openly licensed
    photos (:data:`PHOTOS_DIR`, CC0 / public domain, installed with the library), so that every
    reader has them with no data directory and no network."""
    return Path(root) if root is not None else PHOTOS_DIR


def load_photos(root: Optional[PathLike] = None) -> list[dict]:
    """The photos and their metadata (``photos.json``): one dict per photo with the keys of the
    metadata (``file``, ``object``, ``cifar10_class`` (``None`` when no CIFAR-10 class fits),
    ``license``, ``source``, ...) plus ``image``, the PIL image in RGB. Default folder:
    :func:`photos_dir`. A clear error when the folder or its index is missing."""
    from PIL import Image

    folder = photos_dir(root)
    index = folder / "photos.json"
    if not index.is_file():
        raise FileNotFoundError(f"no photos.json in {folder}: a photo folder needs a photos.json index "
                                f"(a list of {{'file': ..., ...}}); load_photos() without a folder reads "
                                f"the photos shipped with the library")
    out = []
    for meta in json.loads(index.read_text()):
        with Image.open(folder / meta["file"]) as im:
            out.append({**meta, "image": im.convert("RGB")})
    return out


def prepare(image, size: int, mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, np.ndarray]:
    """A PIL image resized (shorter side to ``size``) and centre-cropped to ``size x size``:
    the normalised tensor ``(3, size, size)`` and the RGB picture ``(size, size, 3)`` in [0, 1]."""
    from PIL import Image
    from torchvision import transforms as T

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer (pixels), got {size!r}")
    if not isinstance(image, Image.Image):
        hint = (": open it with PIL.Image.open(path).convert('RGB') (or use load_photos)"
                if isinstance(image, (str, Path)) or hasattr(image, "__fspath__") else "")
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}{hint}")
    if image.mode != "RGB":
        raise ValueError(f"image must be an RGB image, got mode {image.mode!r}: convert with image.convert('RGB')")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need one value per channel (3), got {len(mean)} and {len(std)}")
    crop = T.Compose([T.Resize(size, antialias=True), T.CenterCrop(size), T.ToTensor()])(image)
    return T.Normalize(mean, std)(crop), crop.permute(1, 2, 0).numpy()


# ---- attention maps for one query -------------------------------------------------------------------


def query_attention(attn: torch.Tensor, query: tuple[int, int], size: tuple[int, int],
                    window_size: Optional[int] = None, layout: str = "block", batch_index: int = 0) -> torch.Tensor:
    """The attention weights of one query pixel over the map: ``(heads, H, W)``.

    Args:
        attn: a kept attention map: ``(B, heads, H·W, H·W)`` for global attention (MoSA) or
            ``(B·nW, heads, w², w²)`` for windows (EW-MHSA, W-MHSA), windows ordered as
            :func:`~mobileblocks_edu.blocks.attention.window_partition` cuts them.
        query: ``(row, column)`` of the query pixel.
        size: ``(H, W)`` of the map.
        window_size, layout: the windows (``None`` for global attention).
        batch_index: which image of the batch.

    Keys outside the query's window get 0; weight on padded keys is not drawn (the map then
    sums to less than 1).
    """
    if not isinstance(attn, torch.Tensor) or attn.dim() != 4:
        raise ValueError(f"attn must be a kept attention map (B, heads, N, N), got "
                         f"{tuple(attn.shape) if isinstance(attn, torch.Tensor) else type(attn).__name__}")
    try:
        (H, W), (qi, qj) = size, query
    except (TypeError, ValueError):
        raise ValueError(f"size and query must be pairs (H, W) and (row, column), got {size!r} and {query!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (H, W, qi, qj)) or H < 1 or W < 1:
        raise ValueError(f"size and query must be pairs of integers (H, W >= 1), got {size!r} and {query!r}")
    if not (0 <= qi < H and 0 <= qj < W):
        raise ValueError(f"query {query} lies outside the {H}x{W} map: rows 0..{H - 1}, columns 0..{W - 1}")
    if window_size is not None and (isinstance(window_size, bool) or not isinstance(window_size, int)
                                    or window_size < 1):
        raise ValueError(f"window_size must be a positive integer or None (global attention), got {window_size!r}")
    if window_size is not None and layout not in WINDOW_LAYOUTS:
        raise ValueError(f"layout must be one of {WINDOW_LAYOUTS}, got {layout!r}")
    n_windows = 1 if window_size is None else -(-H // window_size) * -(-W // window_size)
    n_images = attn.shape[0] // n_windows
    if isinstance(batch_index, bool) or not isinstance(batch_index, int) or not 0 <= batch_index < n_images:
        raise ValueError(f"batch_index must be in [0, {n_images - 1}], got {batch_index!r}")
    q = qi * W + qj
    if window_size is None:
        if attn.shape[-1] != H * W:
            raise ValueError(f"a global attention map needs {H * W} keys, got {attn.shape[-1]}")
        return attn[batch_index, :, q].reshape(-1, H, W).float()
    pix = window_pixels(H, W, window_size, layout)  # (nW, w²)
    nW = pix.shape[0]
    where = (pix == q).nonzero()
    k, p = int(where[0, 0]), int(where[0, 1])  # the query's window and its position in it
    row = attn[batch_index * nW + k, :, p].float()  # (heads, w²)
    out = torch.zeros(row.shape[0], H * W)
    real = pix[k] >= 0
    out[:, pix[k][real]] = row[:, real]
    return out.view(-1, H, W)


class _Capture:
    """Record the input of one module during a forward pass."""

    def __init__(self, module: nn.Module):
        self.value = None
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.value = args[0].detach()

    def remove(self):
        self.handle.remove()


def model_block_attention(model: nn.Module, block: nn.Module, x: torch.Tensor, query: tuple[int, int],
                          batch_index: int = 0) -> torch.Tensor:
    """The attention weights ``(heads, h, w)`` of the ``query`` pixel in one attention block of a
    model (an iRMB with EW-MHSA, or a MoSA / MTB), for the image batch ``x``."""
    from ..blocks.mtb import MobileTransformerBlock, MoSA

    if not any(m is block for m in model.modules()):
        raise ValueError(f"block ({type(block).__name__}) is not a submodule of the model")
    if not attention_modules(block):
        raise ValueError(f"block ({type(block).__name__}) has no attention: pass an iRMB with has_attn=True, a MoSA "
                         "or a Mobile Transformer Block")
    mosa = block.attn if isinstance(block, MobileTransformerBlock) else block
    holder = mosa if isinstance(mosa, MoSA) else block  # its attention core (``.attn``) keeps the map
    keep = holder.attn.keep_attn
    set_attention(holder, keep_attn=True)
    cap = _Capture(holder)
    try:
        with torch.no_grad():
            model(x)
        attn, size = holder.attn.last_attn, tuple(cap.value.shape[-2:])
    finally:
        set_attention(holder, keep_attn=keep)
        cap.remove()
    if isinstance(holder, MoSA):  # global attention over the whole map
        return query_attention(attn, query, size, None, batch_index=batch_index)
    return query_attention(attn, query, size, block.window_size, block.window_layout, batch_index)


__all__ = ["CamResult", "cam_layers", "grad_cam", "overlay", "to_rgb", "PHOTOS_DIR", "photos_dir", "load_photos",
           "prepare", "query_attention", "model_block_attention"]

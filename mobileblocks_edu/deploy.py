"""From a trained block to a deployable graph: BatchNorm folding, export, latency and int8.

Both papers argue about speed on devices, not about FLOPs: EMO reports throughput and iPhone
latency, MoCoViT iPhone latency and the argument that BatchNorm beats LayerNorm because BN
*folds away* at inference. This module turns the library's models into what a deployment sees.

**Folding.** In eval mode a BatchNorm is a per-channel affine map with frozen statistics,

.. math::

    \\mathrm{BN}(y) = \\gamma \\frac{y - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta = s \\odot y + t,
    \\qquad s = \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad t = \\beta - s \\mu,

so after a convolution ``y = W * x + b`` it merges into it: ``W' = s · W`` (per output channel),
``b' = s · b + t``. A BatchNorm *before* a 1x1 convolution folds too (``W' = W · diag(s)``,
``b' = b + W t``). A LayerNorm normalises every pixel by statistics of *that input*, computed at
run time, so nothing can be precomputed: it stays in the graph (MoCoViT's argument, Sec. 3).
:func:`fold_batchnorm` returns a folded copy; :func:`norm_counts` counts what is left.

**Export.** :func:`export_onnx` writes an ONNX file with ``torch.onnx``; :func:`ort_session`
and :func:`run_onnx` run it with onnxruntime; :func:`onnx_op_counts` counts its operators.
Every model also traces with ``torch.fx.symbolic_trace`` and exports with ``torch.export``.

Latency and int8 quantization are measured in :mod:`mobileblocks_edu.latency`; the command
``python -m mobileblocks_edu.deploy latency|quantize`` runs them.
"""
from __future__ import annotations

import copy
import io
import os
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from . import env
from .layers import ConvNormAct
from .registry import list_models, model_cfg

PathLike = Union[str, os.PathLike]
BN_TYPES = (nn.BatchNorm2d,)
LN_TYPES = (nn.LayerNorm, nn.GroupNorm)


# ---------------------------------------------------------------------------------------------
# Folding
# ---------------------------------------------------------------------------------------------
def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, t)`` with ``BN(y) = s ⊙ y + t`` in eval mode (per channel)."""
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -s * bn.running_mean
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode: ``W' = s·W``, ``b' = s·b + t``."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, BN_TYPES):
        raise TypeError(f"conv must be an nn.Conv2d and bn an nn.BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}")
    if bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False): it cannot fold")
    s, t = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    fused.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))  # (out, in/groups, k, k), scaled per output channel
    b = conv.bias if conv.bias is not None else torch.zeros_like(s)
    fused.bias = nn.Parameter(s * b + t)
    return fused


@torch.no_grad()
def fold_bn_into_next_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A new 1x1 convolution equal to ``conv(bn(x))`` in eval mode: ``W' = W·diag(s)``, ``b' = b + W t``.

    Only exact for a 1x1 kernel without padding (a padded border would see ``t`` instead of zero)
    and ``groups=1``.
    """
    if conv.kernel_size != (1, 1) or conv.padding not in ((0, 0), 0) or conv.groups != 1:
        raise ValueError(f"only a 1x1 convolution without padding and groups=1 can absorb a preceding BatchNorm, got {conv}")
    s, t = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    w = conv.weight[:, :, 0, 0]  # (out, in)
    fused.weight.copy_(conv.weight * s.view(1, -1, 1, 1))
    b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, device=w.device, dtype=w.dtype)
    fused.bias = nn.Parameter(b + w @ t)
    return fused


def _fold_prenorm(blk: nn.Module) -> bool:
    """Fold an iRMB's pre-norm BatchNorm into its 1x1 expansion ``v`` (blocks without attention:
    with attention, the padded pixels of a window are zeros *after* the norm, and folding would
    move them before it). Returns ``True`` when it folded."""
    from .irmb import iRMB

    if not isinstance(blk, iRMB) or blk.has_attn or not isinstance(blk.norm, BN_TYPES):
        return False
    v = getattr(blk, "v", None)
    if not isinstance(v, ConvNormAct):
        return False
    conv = v.conv
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding not in ((0, 0), 0):
        return False
    v.conv = fold_bn_into_next_conv(blk.norm, conv)
    blk.norm = nn.Identity()
    return True


def fold_batchnorm(model: nn.Module, prenorm: bool = True) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm that follows a convolution folded into it.

    Three patterns are folded (the original model is not changed):

    * ``ConvNormAct``: ``act(BN(conv(x)))`` -> ``act(conv'(x))``, the unit of every CNN in the book;
    * ``nn.Sequential(conv, BN, ...)``: EMO's stem;
    * with ``prenorm=True``, the pre-norm BatchNorm of an iRMB without attention folds forward
      into its 1x1 expansion (``W' = W·diag(s)``, ``b' = b + W t``): EMO's stages 1-2.

    Each folded BatchNorm becomes ``nn.Identity``; LayerNorms stay (they cannot fold). Use
    :func:`norm_counts` on the model before and after to see what was removed.
    """
    folded = copy.deepcopy(model).eval()
    for mod in list(folded.modules()):
        if prenorm:
            _fold_prenorm(mod)
        if isinstance(mod, ConvNormAct) and isinstance(mod.norm, BN_TYPES) and isinstance(mod.conv, nn.Conv2d):
            mod.conv = fold_conv_bn(mod.conv, mod.norm)
            mod.norm = nn.Identity()
        elif isinstance(mod, nn.Sequential):
            keys = list(mod._modules)
            for a, b in zip(keys, keys[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], BN_TYPES):
                    mod._modules[a] = fold_conv_bn(mod._modules[a], mod._modules[b])
                    mod._modules[b] = nn.Identity()
    return folded


def norm_counts(model: nn.Module) -> dict[str, int]:
    """How many normalisation layers ``model`` runs at inference, and their parameters and buffers.

    ``batchnorm``: BatchNorm layers; ``layernorm``: LayerNorm (and GroupNorm) layers;
    ``norm_tensors``: elements of their weights, biases and running statistics.
    """
    bn = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    ln = [m for m in model.modules() if isinstance(m, LN_TYPES)]
    numel = sum(t.numel() for m in bn + ln for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
                if t.dim() > 0)
    return {"batchnorm": len(bn), "layernorm": len(ln), "norm_tensors": numel}


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def sample_images(n: int = 4, size: int = 224, model_name: Optional[str] = None,
                  data: Optional[PathLike] = None) -> tuple[torch.Tensor, str]:
    """``(x, source)``: ``n`` real images ``(n, 3, size, size)``, normalised with the model's mean and
    std, from the Imagenette validation folder or the photos of the data directory; random
    normal images when neither is there (``source`` says which)."""
    from PIL import Image
    from torchvision import transforms as T

    cfg = model_cfg(model_name) if model_name else None
    mean = cfg.mean if cfg else (0.485, 0.456, 0.406)
    std = cfg.std if cfg else (0.229, 0.224, 0.225)
    root = Path(data) if data is not None else env.data_dir()
    files: list[Path] = []
    for folder, pattern in ((root / "imagenet_subset" / "val", "*/*.JPEG"), (root / "photos", "*.JPEG")):
        if folder.is_dir():
            files = sorted(folder.glob(pattern))
            if files:
                step = max(1, len(files) // n)
                files = files[::step][:n]
                break
    if not files:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, 3, size, size, generator=g), "random (no images in the data directory)"
    tf = T.Compose([T.Resize(int(round(size / 0.875)), antialias=True), T.CenterCrop(size), T.ToTensor(),
                    T.Normalize(mean, std)])
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    return x, f"{len(files)} images from {files[0].parent.parent.name}/{files[0].parent.name}"


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
# torch.onnx.export(..., dynamo=True), the torch.export-based exporter, exists from torch 2.5
HAS_DYNAMO_EXPORT = "dynamo" in torch.onnx.export.__code__.co_varnames


def export_onnx(model: nn.Module, path: Optional[PathLike] = None, size: int = 224, batch: int = 1,
                dynamo: bool = False, opset: int = 17) -> Union[Path, bytes]:
    """Export ``model`` (eval mode) for a ``(batch, 3, size, size)`` input with ``torch.onnx.export``.

    ``dynamo=False`` uses the TorchScript exporter (it needs only ``onnx``; a few times faster);
    ``dynamo=True`` the ``torch.export``-based exporter (needs ``onnxscript``). Returns ``path``,
    or the file's bytes when ``path`` is ``None``. The input is called ``"x"``, the output ``"logits"``.
    """
    model = model.eval()
    x = torch.randn(batch, 3, size, size)
    target = Path(path) if path is not None else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            if not HAS_DYNAMO_EXPORT:
                raise RuntimeError(f"dynamo=True needs torch 2.5 or newer (this is {torch.__version__}); "
                                   "dynamo=False exports with the TorchScript exporter")
            with tempfile.TemporaryDirectory() as tmp:
                f = target or Path(tmp) / "model.onnx"
                prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["logits"],
                                         verbose=False)
                prog.save(str(f))
                return target if target else f.read_bytes()
        buf = io.BytesIO() if target is None else str(target)
        kw = {"dynamo": False} if HAS_DYNAMO_EXPORT else {}
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["logits"], opset_version=opset, **kw)
    return target if target is not None else buf.getvalue()


def ort_session(onnx_model: Union[PathLike, bytes], threads: int = 1, optimized_path: Optional[PathLike] = None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (one inter-op thread, all graph
    optimisations). ``optimized_path``: also write the graph onnxruntime runs after its
    optimisations (constant folding, Conv+activation fusion, ...), to count its operators."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    src = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor) -> torch.Tensor:
    """Run ``session`` on ``x`` and return its first output as a tensor."""
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy().astype(np.float32)})[0])


def onnx_op_counts(onnx_model: Union[PathLike, bytes]) -> Counter:
    """``Counter`` of operator types in the ONNX graph (nodes of subgraphs and functions included)."""
    import onnx

    m = onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx.load(str(onnx_model))
    counts: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(m.graph)
    for fn in m.functions:
        for node in fn.node:
            counts[node.op_type] += 1
    return counts


def check_export(model: nn.Module, x: torch.Tensor, dynamo: bool = False) -> dict:
    """Export ``model`` at ``x``'s size, run it with onnxruntime on ``x`` and compare with PyTorch:
    ``{"max_abs_diff", "max_abs_output", "ops"}``."""
    size = x.shape[-1]
    blob = export_onnx(model, None, size=size, batch=x.shape[0], dynamo=dynamo)
    with torch.no_grad():
        ref = model.eval()(x)
    out = run_onnx(ort_session(blob), x)
    return {"max_abs_diff": (out - ref).abs().max().item(), "max_abs_output": ref.abs().max().item(),
            "ops": dict(onnx_op_counts(blob))}


def imagenet_models() -> list[str]:
    """Registered models whose default input is 224x224."""
    return [n for n in list_models() if model_cfg(n).input_size[-1] == 224]


__all__ = [
    "bn_scale_shift",
    "fold_conv_bn",
    "fold_bn_into_next_conv",
    "fold_batchnorm",
    "norm_counts",
    "sample_images",
    "export_onnx",
    "ort_session",
    "run_onnx",
    "onnx_op_counts",
    "check_export",
    "imagenet_models",
    "HAS_DYNAMO_EXPORT",
]

if __name__ == "__main__":  # the command line is latency's; this name is the one results record
    from .latency import main

    sys.exit(main())

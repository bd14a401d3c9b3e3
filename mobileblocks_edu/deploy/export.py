"""Export: a model as an ONNX graph run by onnxruntime, checked against PyTorch.

:func:`export_onnx` writes an ONNX file with ``torch.onnx``; :func:`ort_session` and
:func:`run_onnx` run it with onnxruntime; :func:`onnx_op_counts` counts its operators;
:func:`check_export` compares onnxruntime's output with PyTorch's. Every model also traces with
``torch.fx.symbolic_trace`` and exports with ``torch.export`` (lesson 17).
"""
from __future__ import annotations

import inspect
import io
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .. import env
from ..env import PathLike
from ..models.registry import list_models, model_cfg


def check_module(name: str, value) -> None:
    """Raise a ``TypeError`` naming the argument unless ``value`` is an ``nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be an nn.Module (a model), got {type(value).__name__}")


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

    env.check_positive("n", n, int)
    env.check_positive("size", size, int)
    cfg = model_cfg(model_name) if model_name else None
    mean = cfg.mean if cfg else (0.485, 0.456, 0.406)
    std = cfg.std if cfg else (0.229, 0.224, 0.225)
    if data is not None and not Path(data).is_dir():
        raise ValueError(f"data {data} is not a folder: name the data directory, or None for the default")
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
HAS_DYNAMO_EXPORT = "dynamo" in inspect.signature(torch.onnx.export).parameters


def export_onnx(model: nn.Module, path: Optional[PathLike] = None, size: int = 224, batch: int = 1,
                dynamo: bool = False, opset: int = 17) -> Union[Path, bytes]:
    """Export ``model`` (eval mode) for a ``(batch, 3, size, size)`` input with ``torch.onnx.export``.

    ``dynamo=False`` uses the TorchScript exporter (it needs only ``onnx``; a few times faster);
    ``dynamo=True`` the ``torch.export``-based exporter (needs ``onnxscript``). Returns ``path``,
    or the file's bytes when ``path`` is ``None``. The input is called ``"x"``, the output ``"logits"``.
    """
    check_module("model", model)
    env.check_positive("size", size, int)
    env.check_positive("batch", batch, int)
    env.check_positive("opset", opset, int)
    if path is not None and Path(path).is_dir():
        raise ValueError(f"path {path} is a folder: name an .onnx file")
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

    if not isinstance(onnx_model, bytes):
        if not isinstance(onnx_model, (str, os.PathLike)):
            raise TypeError(f"onnx_model must be a path or the bytes of an ONNX file, got {type(onnx_model).__name__}")
        if not Path(onnx_model).is_file():
            raise FileNotFoundError(f"onnx_model: no ONNX file at {onnx_model}")
    env.check_positive("threads", threads, int)
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
    """Export ``model`` at ``x``'s size, validate the graph with ``onnx.checker`` (full check, shape
    inference included; it raises ``onnx.checker.ValidationError``), run it with onnxruntime on ``x``
    and compare with PyTorch: ``{"max_abs_diff", "max_abs_output", "ops"}``."""
    import onnx

    check_module("model", model)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] < 1 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of square images (B, 3, S, S) with B >= 1, got {shape}")
    size = x.shape[-1]
    blob = export_onnx(model, None, size=size, batch=x.shape[0], dynamo=dynamo)
    onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
    with torch.no_grad():
        ref = model.eval()(x)
    out = run_onnx(ort_session(blob), x)
    return {"max_abs_diff": (out - ref).abs().max().item(), "max_abs_output": ref.abs().max().item(),
            "ops": dict(onnx_op_counts(blob))}


def imagenet_models() -> list[str]:
    """Registered models whose default input is 224x224."""
    return [n for n in list_models() if model_cfg(n).input_size[-1] == 224]


__all__ = [
    "sample_images",
    "export_onnx",
    "ort_session",
    "run_onnx",
    "onnx_op_counts",
    "check_export",
    "imagenet_models",
    "HAS_DYNAMO_EXPORT",
]

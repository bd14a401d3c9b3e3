"""The dense models deployed the way Part VI deploys the classifiers: ONNX export checked against
onnxruntime, and batch-1 CPU latency at the papers' input sizes beside the FLOPs.

What is exported and timed is the trunk (:func:`~.backbones.trunk`): backbone, neck and head up to
the raw scores and box offsets (detectors) or the logits at stride 32 (segmenters). Resizing,
decoding the boxes, NMS and the final upsampling stay outside, as they do in deployed detectors.
"""
from __future__ import annotations

import io
import warnings
from typing import Sequence

import torch
from torch import nn

from ..analysis.complexity import count_flops
from ..analysis.timing import summarize_ms, time_rounds
from ..deploy.export import HAS_DYNAMO_EXPORT, ort_session
from ..models.registry import create_model, model_cfg
from .backbones import trunk
from .counts import padded


def _outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def export_trunk(model: nn.Module, size: Sequence[int], opset: int = 17) -> bytes:
    """The ONNX file (bytes) of ``model``'s trunk for a ``(1, 3, H, W)`` input; input ``"x"``, outputs
    ``"out0"``, ``"out1"``, ... (TorchScript exporter)."""
    t = trunk(model).eval()
    x = torch.randn(1, 3, *padded(size))
    with torch.no_grad():
        n = len(_outputs(t(x)))
    buf = io.BytesIO()
    kw = {"dynamo": False} if HAS_DYNAMO_EXPORT else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(t, (x,), buf, input_names=["x"], output_names=[f"out{i}" for i in range(n)],
                          opset_version=opset, **kw)
    return buf.getvalue()


def check_trunk_export(model: nn.Module, size: Sequence[int]) -> dict:
    """Export the trunk at ``size`` and compare onnxruntime with PyTorch on one random image:
    ``{"max_abs_diff", "max_abs_output", "outputs"}`` over every output."""
    blob = export_trunk(model, size)
    x = torch.randn(1, 3, *padded(size))
    with torch.no_grad():
        ref = _outputs(trunk(model).eval()(x))
    got = ort_session(blob).run(None, {"x": x.numpy()})
    return {"max_abs_diff": max((torch.from_numpy(g) - r).abs().max().item() for g, r in zip(got, ref)),
            "max_abs_output": max(r.abs().max().item() for r in ref), "outputs": len(ref)}


def dense_latency(names: Sequence[str], rounds: int = 5, inner: int = 2, threads: int = 1) -> list[dict]:
    """Batch-1 latency (ms, median of interleaved rounds) of each model's trunk at its input size, in
    PyTorch (eager) and onnxruntime on ``threads`` CPU threads, beside its fvcore FLOPs."""
    rows = []
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in names:
            size = padded(model_cfg(name).input_size)
            model = create_model(name).eval()
            t = trunk(model)
            x = torch.randn(1, 3, *size)
            session = ort_session(export_trunk(model, size), threads=threads)
            feed = {"x": x.numpy()}

            def eager(t=t, x=x):
                with torch.no_grad():
                    t(x)

            times = time_rounds({"eager": eager, "onnxruntime": lambda s=session, f=feed: s.run(None, f)},
                                rounds, inner=inner, warmup=1)
            rows.append(dict(model=name, input=f"{size[0]}x{size[1]}", flops=count_flops(t, (1, 3, *size), "fvcore"),
                             eager_ms=summarize_ms(times["eager"])["median_ms"],
                             onnxruntime_ms=summarize_ms(times["onnxruntime"])["median_ms"]))
    finally:
        torch.set_num_threads(old)
    return rows

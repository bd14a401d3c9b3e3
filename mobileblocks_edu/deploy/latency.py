"""Batch-1 latency of a deployable model in four settings.

``python -m mobileblocks_edu.deploy latency`` times batch-1 inference of every
ImageNet-size model in four settings (PyTorch eager, PyTorch with folded BN and channels-last,
onnxruntime with 1 and 2 threads), interleaved, and writes ``lessons/results/latency_cpu.json``.
"""
from __future__ import annotations

import difflib
import os
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .. import env
from ..analysis.timing import summarize_ms, time_rounds
from ..blocks.attention import set_attention
from ..blocks.layers import randomize_
from ..models.registry import create_model, list_models, model_cfg
from .export import export_onnx, imagenet_models, onnx_op_counts, ort_session
from .fold import fold_batchnorm, norm_counts

# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------
SETTINGS = ("eager", "folded_cl", "ort_1t", "ort_2t")
SETTING_TITLES = {
    "eager": "PyTorch eager (as built)",
    "folded_cl": "PyTorch, BN folded + channels-last",
    "ort_1t": "onnxruntime, 1 thread",
    "ort_2t": "onnxruntime, 2 threads",
}
# the smallest input size timed: the CIFAR models' 32x32 (every model runs at any size, but a
# smaller input times little more than the calls' overhead)
MIN_SIZE = 32


def check_count(name: str, value, low: int) -> None:
    """Raise a ``ValueError`` naming the argument unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_models(models) -> list[str]:
    """``models`` as a list of registered names (``None`` or empty: every ImageNet-size model), or a
    ``ValueError`` listing the unknown names and their close matches."""
    if isinstance(models, str):
        raise ValueError(f"models must be a list of model names, got the string {models!r}")
    models = list(models or imagenet_models())
    bad, hints = [], []
    for m in models:
        try:
            model_cfg(m)
        except ValueError:
            bad.append(m)
            close = difflib.get_close_matches(str(m), list_models(), n=3)
            hints += [f"{m!r}: did you mean {', '.join(map(repr, close))}?"] if close else []
    if bad:
        raise ValueError(f"unknown models {bad}" + (f" ({'; '.join(hints)})" if hints else "")
                         + "; list_models() shows all")
    return models


def readable_copy(name: str, model: nn.Module, **kwargs) -> nn.Module:
    """The same weights with the readable attention path (for exact FLOP counts), when the model has one."""
    try:
        r = set_attention(create_model(name, **kwargs), fused=False, reference_order=True)
    except ValueError:  # a model without attention
        return model
    r.load_state_dict(model.state_dict())
    return r.eval()


def model_costs(name: str, model: nn.Module, size: int = 224) -> dict:
    """Parameters and multiply-adds (``"macs"`` convention, readable attention path) at ``size``."""
    from ..analysis.complexity import count_flops, count_params

    return {"params": count_params(model),
            "macs": int(count_flops(readable_copy(name, model), (1, 3, size, size), "macs"))}


def build_contenders(name: str, size: int = 224, settings: Sequence[str] = SETTINGS,
                     seed: int = 0) -> tuple[dict[str, Callable[[], None]], dict]:
    """Callables running one batch-1 inference per setting, and a dict of checks (max |diff| of
    every setting against eager, and the number of BatchNorms folded)."""
    torch.manual_seed(seed)
    model = randomize_(create_model(name)).eval()  # random statistics: folding must not pass by accident
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
    calls: dict[str, Callable[[], None]] = {}
    checks: dict = {"max_abs_output": ref.abs().max().item()}
    if "eager" in settings:
        def eager():
            with torch.inference_mode():
                model(x)
        calls["eager"] = eager
    if "folded_cl" in settings:
        folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            checks["folded_cl"] = (folded(x_cl) - ref).abs().max().item()
        checks["bn_before"], checks["bn_after"] = norm_counts(model)["batchnorm"], norm_counts(folded)["batchnorm"]

        def folded_cl():
            with torch.inference_mode():
                folded(x_cl)
        calls["folded_cl"] = folded_cl
    ort_settings = [s for s in settings if s.startswith("ort_")]
    if ort_settings:
        blob = export_onnx(model, None, size=size)
        checks["onnx_ops"] = sum(onnx_op_counts(blob).values())
        for s in ort_settings:
            sess = ort_session(blob, threads=int(s[4:-1]))
            inp = {sess.get_inputs()[0].name: x.numpy()}
            checks[s] = (torch.from_numpy(sess.run(None, inp)[0]) - ref).abs().max().item()
            calls[s] = (lambda sess=sess, inp=inp: sess.run(None, inp))
    return calls, checks


def run_latency(models: Optional[Sequence[str]] = None, size: int = 224, rounds: int = 15, inner: int = 5,
                warmup: int = 2, threads: int = 1, settings: Sequence[str] = SETTINGS, log=print) -> dict:
    """Batch-1 CPU latency of ``models`` (default: every ImageNet-size model) in every setting.

    All contenders (every model in every setting) are built first, checked against eager, and then
    timed together, interleaved (:func:`time_rounds`), so that a load change on a shared machine hits
    them alike and models can be compared with each other. PyTorch runs with ``threads`` threads
    (the caller's count is restored afterwards). Returns the report written by
    ``python -m mobileblocks_edu.deploy latency``.
    """
    log = log or (lambda *a: None)
    check_count("size", size, MIN_SIZE)
    for name, value, low in (("rounds", rounds, 1), ("inner", inner, 1), ("warmup", warmup, 0),
                             ("threads", threads, 1)):
        check_count(name, value, low)
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings or isinstance(settings, str):
        raise ValueError(f"settings must be a non-empty list of {SETTINGS}, got {settings!r}")
    models = check_models(models)
    with env.torch_threads(threads):
        report = {**env.environment(), "size": size, "batch": 1, "rounds": rounds, "inner": inner,
                  "warmup": warmup, "settings": {s: SETTING_TITLES[s] for s in settings}, "models": {}}
        log(f"machine: {report['machine']}; torch {report['torch']}, onnxruntime {report.get('onnxruntime')}")
        calls: dict[str, Callable[[], None]] = {}
        for name in models:
            model_calls, checks = build_contenders(name, size, settings)
            for s in settings:
                if s != "eager" and checks[s] > 1e-4 * max(1.0, checks["max_abs_output"]):
                    raise RuntimeError(f"{name}: {s} disagrees with eager by {checks[s]:.2e}")
            calls.update({f"{name}/{s}": c for s, c in model_calls.items()})
            report["models"][name] = {**model_costs(name, create_model(name)), "checks": checks}
            log(f"built and checked {name}")
        times = time_rounds(calls, rounds, inner, warmup, log=lambda m: log(m[:120] + " ..."))
    for name in models:
        report["models"][name]["latency"] = {s: summarize_ms(times[f"{name}/{s}"]) for s in settings}
        log(f"{name:<18}" + "  ".join(f"{s} {report['models'][name]['latency'][s]['median_ms']:7.1f} ms"
                                      for s in settings))
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


__all__ = [
    "SETTINGS",
    "SETTING_TITLES",
    "MIN_SIZE",
    "check_count",
    "check_models",
    "readable_copy",
    "model_costs",
    "build_contenders",
    "run_latency",
]

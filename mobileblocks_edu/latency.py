"""Measuring a deployable model: batch-1 latency in four settings, and what int8 quantization costs.

**Latency.** ``python -m mobileblocks_edu.deploy latency`` times batch-1 inference of every
ImageNet-size model in four settings (PyTorch eager, PyTorch with folded BN and channels-last,
onnxruntime with 1 and 2 threads), interleaved, and writes ``lessons/results/latency_cpu.json``.

**Quantization.** ``python -m mobileblocks_edu.deploy quantize`` applies onnxruntime's static int8
quantization to the Imagenette-trained EMO-1M and GhostNet-1.0x, calibrated on training images,
and measures accuracy, file size and latency before and after
(``lessons/results/quant_imagenette.json``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from . import env
from .attention import set_attention
from .bench import time_interleaved
from .deploy import (PathLike, export_onnx, fold_batchnorm, imagenet_models, norm_counts, onnx_op_counts,
                     ort_session, run_onnx)
from .layers import randomize_
from .registry import create_model, list_models, model_cfg

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
    from .complexity import count_flops, count_params

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


def time_rounds(calls: dict[str, Callable[[], None]], rounds: int, inner: int = 5, warmup: int = 2,
                log=None) -> dict[str, list[float]]:
    """Milliseconds per call: ``warmup`` untimed calls each, then ``rounds`` interleaved rounds
    (:func:`~mobileblocks_edu.bench.time_interleaved`) in which every contender runs ``inner``
    calls; their mean is one sample."""
    for call in calls.values():
        for _ in range(warmup):
            call()

    def sample(call: Callable[[], None]) -> Callable[[], float]:
        def mean_ms() -> float:
            t0 = time.perf_counter()
            for _ in range(inner):
                call()
            return (time.perf_counter() - t0) / inner * 1e3
        return mean_ms

    return time_interleaved({n: sample(c) for n, c in calls.items()}, rounds, warmup=0, log=log, unit="ms")


def summarize_ms(samples: Sequence[float]) -> dict:
    """Median, quartiles, min and max of ``samples`` (ms), rounded to 0.01 ms."""
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_ms": round(statistics.median(samples), 3), "q1_ms": round(q[0], 3), "q3_ms": round(q[2], 3),
            "min_ms": round(min(samples), 3), "max_ms": round(max(samples), 3),
            "samples_ms": [round(s, 3) for s in samples]}


def environment(threads: int) -> dict:
    """Machine, versions and load: what a latency number must be read with."""
    import onnxruntime

    try:
        import onnx
        onnx_version = onnx.__version__
    except ImportError:  # pragma: no cover
        onnx_version = None
    return {
        "machine": env.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx_version,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_latency(models: Optional[Sequence[str]] = None, size: int = 224, rounds: int = 15, inner: int = 5,
                warmup: int = 2, threads: int = 1, settings: Sequence[str] = SETTINGS, log=print) -> dict:
    """Batch-1 CPU latency of ``models`` (default: every ImageNet-size model) in every setting.

    All contenders (every model in every setting) are built first, checked against eager, and then
    timed together, interleaved (:func:`time_rounds`), so that a load change on a shared machine hits
    them alike and models can be compared with each other. PyTorch runs with ``threads`` threads.
    Returns the report written by ``python -m mobileblocks_edu.deploy latency``.
    """
    log = log or (lambda *a: None)
    models = list(models or imagenet_models())
    bad = [m for m in models if m not in list_models()]
    if bad:
        raise ValueError(f"unknown models {bad}; list_models() shows all")
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise ValueError(f"settings must be among {SETTINGS}, got {bad}")
    torch.set_num_threads(threads)
    report = {**environment(threads), "size": size, "batch": 1, "rounds": rounds, "inner": inner, "warmup": warmup,
              "settings": {s: SETTING_TITLES[s] for s in settings}, "models": {}}
    log(f"machine: {report['machine']}; torch {report['torch']}, onnxruntime {report['onnxruntime']}")
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
        log(f"{name:<18}" + "  ".join(f"{s} {report['models'][name]['latency'][s]['median_ms']:7.1f} ms" for s in settings))
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------
QUANT_EXPERIMENTS = ("imagenette_emo_1m", "imagenette_ghostnet_100")


def _imagenette(split: str, n_per_class: Optional[int], size: int):
    from .data import build_transforms, load_dataset

    return load_dataset("imagenette", split, download=False, transform=build_transforms("imagenette", False, size),
                        subset=n_per_class)


def quantize_int8(onnx_in: PathLike, onnx_out: PathLike, calibration: torch.Tensor, per_channel: bool = True) -> Path:
    """onnxruntime's static int8 quantization (QDQ format, per-channel weights, MinMax calibration
    on the ``calibration`` images) of the float model ``onnx_in``; writes ``onnx_out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calibration[i:i + 1].numpy()} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    import logging

    logging.disable(logging.WARNING)  # one warning per 1-D norm weight that per-channel quantization skips
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(onnx_out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return Path(onnx_out)


def ort_accuracy(session, dataset) -> float:
    """Top-1 accuracy (%) of an onnxruntime session (batch-1 graph: run image by image)."""
    correct = 0
    for i in range(len(dataset)):
        x, y = dataset[i]
        correct += int(run_onnx(session, x[None]).argmax(1).item() == y)
    return 100.0 * correct / len(dataset)


def run_quantization(experiments: Sequence[str] = QUANT_EXPERIMENTS, calib_per_class: int = 10,
                     eval_per_class: Optional[int] = None, rounds: int = 15, inner: int = 5, threads: int = 1,
                     log=print) -> dict:
    """Quantize the trained Imagenette models and measure accuracy, size and batch-1 latency before
    and after (PyTorch and onnxruntime on ``threads`` threads). Needs the Imagenette images in the
    data directory and the committed checkpoints."""
    from .experiments import load_trained, resolve_experiment

    log = log or (lambda *a: None)
    torch.set_num_threads(threads)
    report = {**environment(threads), "calibration_per_class": calib_per_class,
              "eval_per_class": eval_per_class, "rounds": rounds, "inner": inner,
              "method": "onnxruntime quantize_static: QDQ, int8 activations and per-channel int8 weights, "
                        "MinMax calibration on training images", "models": {}}
    for exp in experiments:
        model = load_trained(exp)
        if model is None:
            raise FileNotFoundError(f"no committed checkpoint for {exp}")
        name = resolve_experiment(exp).model
        size = model_cfg(name).input_size[-1]
        calib_ds = _imagenette("train", calib_per_class, size)
        val_ds = _imagenette("val", eval_per_class, size)
        calib = torch.stack([calib_ds[i][0] for i in range(len(calib_ds))])
        with tempfile.TemporaryDirectory() as tmp:
            f32, i8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            export_onnx(model, f32, size=size)
            quantize_int8(f32, i8, calib)
            sessions = {"fp32": ort_session(f32, threads), "int8": ort_session(i8, threads)}
            entry = {"model": name, "size": size, "val_images": len(val_ds), "calibration_images": len(calib)}
            for k, sess in sessions.items():
                entry[f"{k}_bytes"] = (f32 if k == "fp32" else i8).stat().st_size
                entry[f"{k}_top1"] = round(ort_accuracy(sess, val_ds), 2)
                log(f"{exp} {k}: top-1 {entry[f'{k}_top1']:.2f} %, {entry[f'{k}_bytes'] / 1e6:.2f} MB")
            x = torch.randn(1, 3, size, size).numpy()
            calls = {k: (lambda s=s: s.run(None, {"x": x})) for k, s in sessions.items()}
            with torch.inference_mode():
                calls["pytorch"] = lambda: model(torch.from_numpy(x))
            times = time_rounds(calls, rounds, inner)
            entry["latency"] = {k: summarize_ms(v) for k, v in times.items()}
            with torch.inference_mode():
                ref = model(val_ds[0][0][None])
            entry["fp32_max_abs_diff"] = (run_onnx(sessions["fp32"], val_ds[0][0][None]) - ref).abs().max().item()
            entry["int8_ops"] = dict(onnx_op_counts(i8))
            log(f"  latency (ms): " + ", ".join(f"{k} {entry['latency'][k]['median_ms']:.2f}" for k in calls))
        report["models"][exp] = entry
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _results_path(filename: str) -> Path:
    """Where a report goes unless ``--output`` names a file: ``runs/``, never over the committed
    results that the lessons read (``lessons/results/``, written only when named)."""
    return Path("runs") / filename


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobileblocks_edu.deploy",
                                     description="Batch-1 CPU latency (eager, folded, onnxruntime) and int8 quantization.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency", help="batch-1 latency of the ImageNet-size models")
    lat.add_argument("--models", nargs="+", default=None, help="registered names (default: every 224x224 model)")
    lat.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    lat.add_argument("--size", type=int, default=224)
    lat.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median and quartiles reported)")
    lat.add_argument("--inner", type=int, default=5, help="calls per round and setting (their mean is one sample)")
    lat.add_argument("--warmup", type=int, default=2)
    lat.add_argument("--threads", type=int, default=1, help="PyTorch threads")
    lat.add_argument("--fast", action="store_true", help="three models, five rounds (a quick look)")
    q = sub.add_parser("quantize", help="int8 quantization of the Imagenette-trained EMO-1M and GhostNet-1.0x")
    q.add_argument("--experiments", nargs="+", default=list(QUANT_EXPERIMENTS))
    q.add_argument("--calib-per-class", type=int, default=10)
    q.add_argument("--eval-per-class", type=int, default=None, help="default: every validation image")
    q.add_argument("--rounds", type=int, default=15)
    q.add_argument("--threads", type=int, default=1, help="PyTorch and onnxruntime threads")
    for p in (lat, q):
        p.add_argument("--output", type=Path, default=None, help="JSON report (default: runs/...; the lessons read lessons/results/...)")
        p.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.cmd == "latency":
        models, rounds = args.models, args.rounds
        if args.fast:
            models, rounds = models or ["mobilenetv2_100", "ghostnet_100", "emo_1m"], min(rounds, 5)
        if rounds < 1 or args.inner < 1 or args.threads < 1:
            parser.error("--rounds, --inner and --threads must be >= 1")
        report = run_latency(models, args.size, rounds, args.inner, args.warmup, args.threads, args.settings)
        default = "latency_cpu.json"
    else:
        report = run_quantization(args.experiments, args.calib_per_class, args.eval_per_class, args.rounds,
                                  threads=args.threads)
        default = "quant_imagenette.json"
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["command"] = "python -m mobileblocks_edu.deploy " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.no_save:
        out = args.output or _results_path(default)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out} ({report['wall_s']} s)")
    return 0


__all__ = [
    "SETTINGS",
    "SETTING_TITLES",
    "readable_copy",
    "model_costs",
    "build_contenders",
    "time_rounds",
    "summarize_ms",
    "environment",
    "run_latency",
    "QUANT_EXPERIMENTS",
    "quantize_int8",
    "ort_accuracy",
    "run_quantization",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())

"""int8 quantization: what onnxruntime's static quantization costs a trained model.

``python -m mobileblocks_edu.deploy quantize`` applies onnxruntime's static int8 quantization to
the Imagenette-trained EMO-1M and GhostNet-1.0x, calibrated on training images, and measures
accuracy, file size and latency before and after (``lessons/results/quant_imagenette.json``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from .. import env
from ..analysis.timing import summarize_ms, time_rounds
from ..env import PathLike
from ..models.registry import model_cfg
from .export import export_onnx, onnx_op_counts, ort_session, run_onnx
from .latency import check_count

# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------
QUANT_EXPERIMENTS = ("imagenette_emo_1m", "imagenette_ghostnet_100")
QUANT_DATA = "imagenette"  # what the quantization calibrates and evaluates on


def check_experiment(name: str) -> str:
    """``name`` when it is an experiment (or the model of one) trained on Imagenette, the images the
    quantization calibrates and evaluates on; otherwise a ``ValueError`` naming the experiment, its
    dataset and the experiments allowed (a CIFAR-10 model scored on Imagenette would read 0 %)."""
    from ..train.experiments import EXPERIMENTS, resolve_experiment

    if not isinstance(name, str):
        raise ValueError(f"an experiment name must be a string, got {type(name).__name__}")
    exp = resolve_experiment(name)  # an unknown name: a ValueError with close matches
    if exp.data != QUANT_DATA:
        allowed = [e.name for e in EXPERIMENTS.values() if e.data == QUANT_DATA]
        raise ValueError(f"experiment {name!r} is trained on {exp.data}, but the quantization calibrates and "
                         f"evaluates on {QUANT_DATA}; choose among {', '.join(allowed)}")
    return name


def _imagenette(split: str, n_per_class: Optional[int], size: int):
    from ..data.datasets import build_transforms, load_dataset

    return load_dataset("imagenette", split, download=False, transform=build_transforms("imagenette", False, size),
                        subset=n_per_class)


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Drop onnxruntime's log records below ERROR for the block (its quantizer warns once per 1-D
    norm weight that per-channel quantization skips). onnxruntime logs through the root logger, so
    the filter sits on the root logger and its handlers and keeps every record that another file
    emits; it is removed afterwards, and no level or handler of the caller's changes (a root
    logger without handlers gets a silent one for the block, or ``logging.warning`` would set up
    one for good)."""
    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or f"{os.sep}onnxruntime{os.sep}" not in record.pathname

    root = logging.getLogger()
    spare = None if root.handlers else logging.NullHandler()
    if spare is not None:
        root.addHandler(spare)
    targets = [root, *root.handlers]
    for t in targets:
        t.addFilter(keep)
    try:
        yield
    finally:
        for t in targets:
            t.removeFilter(keep)
        if spare is not None:
            root.removeHandler(spare)


def quantize_int8(onnx_in: PathLike, onnx_out: PathLike, calibration: torch.Tensor, per_channel: bool = True) -> Path:
    """onnxruntime's static int8 quantization (QDQ format, per-channel weights, MinMax calibration
    on the ``calibration`` images) of the float model ``onnx_in``; writes ``onnx_out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not Path(onnx_in).is_file():
        raise FileNotFoundError(f"onnx_in: no ONNX file at {onnx_in}")
    if Path(onnx_out).is_dir():
        raise ValueError(f"onnx_out {onnx_out} is a folder: name an .onnx file")
    if (not isinstance(calibration, torch.Tensor) or calibration.dim() != 4 or len(calibration) < 1
            or not calibration.is_floating_point()):
        what = tuple(calibration.shape) if isinstance(calibration, torch.Tensor) else type(calibration).__name__
        raise ValueError(f"calibration must be a float tensor of images (N, C, H, W) with N >= 1, got {what}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calibration[i:i + 1].numpy()} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)


    with _quiet_onnxruntime(), tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(onnx_out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
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
    and after (PyTorch and onnxruntime on ``threads`` threads; the caller's torch thread count is
    restored afterwards). Needs the Imagenette images in the data directory and the committed
    checkpoints."""
    from ..train.experiments import checkpoint_path, load_trained, resolve_experiment

    if isinstance(experiments, str) or not experiments:
        raise ValueError(f"experiments must be a non-empty list of experiment names, got {experiments!r}")
    for exp in experiments:
        check_experiment(exp)
    for name, value in (("calib_per_class", calib_per_class), ("rounds", rounds), ("inner", inner),
                        ("threads", threads)):
        check_count(name, value, 1)
    if eval_per_class is not None:
        check_count("eval_per_class", eval_per_class, 1)
    missing = [exp for exp in experiments if not ((p := checkpoint_path(exp)) is not None and p.is_file())]
    if missing:
        raise FileNotFoundError(f"no committed checkpoint for {missing}: train with "
                                "'python -m mobileblocks_edu.experiments run NAME', then 'collect NAME --checkpoint'")
    log = log or (lambda *a: None)
    with env.torch_threads(threads):
        report = {**env.environment(), "calibration_per_class": calib_per_class,
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
                calls = {k: (lambda s=s, x=x: s.run(None, {"x": x})) for k, s in sessions.items()}

                def forward(model=model, x=x):
                    with torch.inference_mode():
                        model(torch.from_numpy(x))

                calls["pytorch"] = forward
                times = time_rounds(calls, rounds, inner)
                entry["latency"] = {k: summarize_ms(v) for k, v in times.items()}
                with torch.inference_mode():
                    ref = model(val_ds[0][0][None])
                entry["fp32_max_abs_diff"] = (run_onnx(sessions["fp32"], val_ds[0][0][None]) - ref).abs().max().item()
                entry["int8_ops"] = dict(onnx_op_counts(i8))
                log("  latency (ms): " + ", ".join(f"{k} {entry['latency'][k]['median_ms']:.2f}" for k in calls))
            report["models"][exp] = entry
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return report

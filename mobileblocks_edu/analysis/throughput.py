"""``python -m mobileblocks_edu.analysis.throughput``: how much of the model's own training speed a
data path keeps.

Three measurements of the same training step (forward, loss, backward, AdamW step; bf16 autocast
on CUDA and channels-last, as :func:`~mobileblocks_edu.train.fit` trains by default) on one device:

* ``model``: the step alone, on one batch already on the device, repeated: the ceiling;
* ``tensor``: the step on batches of :class:`~mobileblocks_edu.data.batched.TensorBatches`
  (the split on the device, cropped, flipped and RandAugmented there);
* ``images``: the step on today's ``DataLoader`` with per-image transforms (``--workers``).

Each is timed ``--repeats`` times over ``--steps`` steps (the three paths in turn, after ``--warmup`` steps); the
JSON holds every time, the medians in images per second and each path's share of the model's rate (a share above
one is the machine's noise)::

    python -m mobileblocks_edu.analysis.throughput --model emo_1m_cifar --threads 1 \\
        --out lessons/results/throughput_cpu.json
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .. import env
from ..data.datasets import build_loaders, dataset_info
from ..data.sampling import set_epoch
from ..env import check_device, environment
from ..models.registry import create_model, model_cfg


def amp_dtype(device: torch.device):
    """bf16 autocast on a CUDA device that has it (else fp16), as ``fit`` with ``amp="auto"``; none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _step_fn(model: nn.Module, device: torch.device, dtype):
    """One training step of ``model`` on a batch ``(x, y)``; returns nothing, waits for the device."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    fmt = torch.channels_last

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(device, non_blocking=True, memory_format=fmt), y.to(device, non_blocking=True)
        with autocast(device, dtype):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step, batches: Iterable, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps over ``batches`` (after ``warmup`` untimed ones)."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    _sync(device)
    return time.perf_counter() - t0


def _endless(loader, seed: int):
    epoch = 0
    while True:
        set_epoch(loader, epoch, seed)
        yield from loader
        epoch += 1


def measure(model_name: str = "emo_1m_cifar", data: str = "cifar10", batch_size: int = 128, steps: int = 30,
            warmup: int = 5, repeats: int = 3, device: str = "auto", workers: int = 0,
            paths: Sequence[str] = ("model", "tensor", "images"), progress: bool = True) -> dict:
    """The three rates (see the module's text) as a dict ready for JSON."""
    dev = check_device(device)
    dtype = amp_dtype(dev)
    info = dataset_info(data)
    size = model_cfg(model_name).input_size[-1]
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=info.num_classes).to(dev, memory_format=torch.channels_last).train()
    step = _step_fn(model, dev, dtype)
    loaders = {}
    if "tensor" in paths or "model" in paths:
        loaders["tensor"], _ = build_loaders(data, img_size=size, batch_size=batch_size, randaugment=True,
                                             loader="tensor", device=dev)
    if "images" in paths:
        loaders["images"], _ = build_loaders(data, img_size=size, batch_size=batch_size, randaugment=True,
                                             workers=workers)
    batches = {p: itertools.repeat(next(iter(loaders["tensor"]))) if p == "model" else _endless(loaders[p], 0)
               for p in paths}
    seconds = {p: [] for p in paths}
    for k in range(repeats):  # the paths interleaved, so that a slow spell of the machine falls on all of them
        for path in paths:
            seconds[path].append(_time(step, batches[path], steps, warmup if k == 0 else 1, dev))
            if progress:
                print(f"{path}: {steps * batch_size / seconds[path][-1]:.0f} images/s", file=sys.stderr)
    runs = {p: {"seconds": [round(t, 4) for t in ts], "img_per_s": round(steps * batch_size / statistics.median(ts), 1)}
            for p, ts in seconds.items()}
    base = runs.get("model", {}).get("img_per_s")
    for r in runs.values():
        if base:
            r["share_of_model"] = round(r["img_per_s"] / base, 3)
    return {"model": model_name, "data": data, "train_images": len(loaders["tensor" if "tensor" in loaders
                                                                           else "images"].dataset),
            "img_size": size, "batch_size": batch_size, "steps": steps, "warmup": warmup, "repeats": repeats,
            "randaugment": True, "workers": workers, "device": str(dev),
            "dtype": str(dtype).replace("torch.", "") if dtype else "float32", "channels_last": True,
            "threads": torch.get_num_threads(), **environment(),
            "machine": env.machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": runs}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m mobileblocks_edu.analysis.throughput",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default="emo_1m_cifar")
    p.add_argument("--data", default="cifar10", choices=("cifar10", "imagenette"))
    p.add_argument("--batch-size", type=env.int_at_least(1), default=128)
    p.add_argument("--steps", type=env.int_at_least(1), default=30)
    p.add_argument("--warmup", type=env.int_at_least(0), default=5)
    p.add_argument("--repeats", type=env.int_at_least(1), default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=env.int_at_least(0), default=0, help="DataLoader workers of the images path")
    p.add_argument("--threads", type=env.int_at_least(1))
    p.add_argument("--paths", nargs="+", default=["model", "tensor", "images"], choices=("model", "tensor", "images"))
    p.add_argument("--out", help="write the JSON here (else print it)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        res = measure(args.model, args.data, args.batch_size, args.steps, args.warmup, args.repeats, args.device,
                      args.workers, args.paths)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    res["command"] = "python -m mobileblocks_edu.analysis.throughput " + shlex.join(argv)
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


__all__ = ["measure", "main"]

if __name__ == "__main__":
    sys.exit(main())

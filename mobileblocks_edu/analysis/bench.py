"""CPU throughput: the library's fast path against a readable path that mirrors the reference code.

For every model the benchmark builds two copies with identical weights:

* ``fast``: the library's default, fused attention (``scaled_dot_product_attention``), no
  projections of padded pixels, no forced copies, the channels-last memory format;
* ``readable``: the reference implementation's sequence of operations (pad, cut into windows,
  project inside the windows, explicit softmax, ``.contiguous()`` copies), NCHW memory format.

Models without a readable path (MobileNetV2) are timed in channels-last (``fast``) and NCHW
(``readable``). Before timing, the two copies' eval-mode outputs are compared. Then, for every
setting (input size, batch) and mode (``train``: forward, cross-entropy, backward, SGD step;
``eval``: forward under ``torch.inference_mode``), all contenders are timed *interleaved*, one
step each in turn, the order rotating every round, so that a busy machine slows them alike; the
report gives medians and the readable/fast ratio of each model.

On a shared machine, set ``OMP_WAIT_POLICY=PASSIVE`` so that idle OpenMP threads sleep instead of
spinning against other processes (it is recorded in the report).

Usage::

    python -m mobileblocks_edu.bench                      # EMO-1M, EMO-5M, MobileNetV2 at 224/32 and 32/128
    python -m mobileblocks_edu.bench --models emo_1m --settings 32:128 --modes eval --repeats 3
    python -m mobileblocks_edu.bench --output lessons/results/bench_cpu.json
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import env
from ..blocks.attention import set_attention
from ..checkpoint import output_problem, write_json
from ..env import int_at_least
from ..models.registry import create_model, model_cfg
from .timing import time_interleaved

DEFAULT_MODELS = ("emo_1m", "emo_5m", "mobilenetv2_100")
DEFAULT_SETTINGS = ("224:32", "32:128")
MODES = ("train", "eval")
PATHS = ("fast", "readable")


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse: no ``mmap`` for large blocks and no
    trimming of the heap. A training step allocates hundreds of megabytes of temporaries; by
    default glibc returns large blocks to the operating system when they are freed, and the next
    step pays a page fault for every 4 KiB it touches again. Returns ``False`` (and changes
    nothing) where the C library is not glibc."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def parse_setting(text: str) -> tuple[int, int]:
    """``"224:32"`` -> ``(224, 32)`` (input size, batch)."""
    try:
        size, batch = (int(t) for t in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is SIZE:BATCH such as 224:32, got {text!r}") from None
    if size <= 0 or batch <= 0:
        raise argparse.ArgumentTypeError(f"size and batch must be positive, got {text!r}")
    return size, batch


def build_pair(name: str, num_classes: int = 1000, seed: int = 0) -> dict[str, nn.Module]:
    """``{"fast": ..., "readable": ...}``: the same weights, the two execution paths."""
    torch.manual_seed(seed)
    fast = create_model(name, num_classes=num_classes)
    readable = create_model(name, num_classes=num_classes)
    readable.load_state_dict(fast.state_dict())
    if any(hasattr(m, "reference_order") for m in readable.modules()):  # EMO: its iRMBs' reference order
        set_attention(readable, reference_order=True)
    fast.to(memory_format=torch.channels_last)
    return {"fast": fast, "readable": readable}


def _input(path: str, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if path == "fast" else x.contiguous()


@torch.inference_mode()
def check_outputs(pair: dict[str, nn.Module], size: int, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Eval-mode outputs of both paths on the same random batch: max |difference| and max |output|."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    outs = {p: m.eval()(_input(p, x)) for p, m in pair.items()}
    return {
        "max_abs_diff": (outs["fast"] - outs["readable"]).abs().max().item(),
        "max_abs_output": outs["readable"].abs().max().item(),
    }


class Step:
    """One timed unit of work for one contender: a training step or a forward pass."""

    def __init__(self, model: nn.Module, path: str, mode: str, size: int, batch: int, num_classes: int):
        self.model, self.mode = model, mode
        g = torch.Generator().manual_seed(1)
        self.x = _input(path, torch.randn(batch, 3, size, size, generator=g))
        self.y = torch.randint(0, num_classes, (batch,), generator=g)
        if mode == "train":
            model.train()
            self.opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        else:
            model.eval()

    def __call__(self) -> float:
        t0 = time.perf_counter()
        if self.mode == "train":
            self.opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x), self.y).backward()
            self.opt.step()
        else:
            with torch.inference_mode():
                self.model(self.x)
        return time.perf_counter() - t0




# aten operators in groups, for the profile of one training step (first match wins)
OP_GROUPS = (
    ("convolution, backward", ("convolution_backward",)),
    ("convolution, forward", ("convolution",)),
    ("normalisation", ("batch_norm", "layer_norm")),
    ("activations", ("silu", "gelu", "sigmoid")),
    ("attention", ("bmm", "matmul", "softmax", "scaled_dot_product", "_flash_attention")),
    ("copies and reshapes", ("copy_", "contiguous", "clone", "cat", "pad", "_to_copy")),
)


def op_kind(name: str) -> str:
    """The group of an aten operator (``"other"`` when none of :data:`OP_GROUPS` matches)."""
    for kind, keys in OP_GROUPS:
        if any(k in name for k in keys):
            return kind
    return "other"


def profile_step(step: "Step") -> dict[str, float]:
    """Self CPU seconds of one step, summed by :func:`op_kind` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    out: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key.startswith("aten::"):
            kind = op_kind(evt.key)
            out[kind] = out.get(kind, 0.0) + evt.self_cpu_time_total / 1e6
    return out


def profile_paths(steps: dict[str, "Step"], rounds: int = 3) -> dict[str, dict[str, float]]:
    """Profile the steps in turn, ``rounds`` times, and keep for every kind of operator the
    smallest time seen: other processes on a shared machine can only add time."""
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            seen[name].append(profile_step(step))
    return {
        name: {k: round(min(p.get(k, 0.0) for p in profs), 4) for k in set().union(*profs)}
        for name, profs in seen.items()
    }


def _check_run_args(models, settings, modes, repeats, warmup, threads, num_classes) -> None:
    for arg, v, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("threads", threads, 1),
                        ("num_classes", num_classes, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {v!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes or isinstance(modes, str):
        raise ValueError(f"modes must be a non-empty list of {MODES}, got {modes!r}")
    if not models or isinstance(models, str):
        raise ValueError(f"models must be a non-empty list of registered model names, got {models!r}")
    for name in models:
        model_cfg(name)  # an unknown name: a ValueError with close matches
    if not settings or isinstance(settings, str):
        raise ValueError(f"settings must be a non-empty list of (size, batch) pairs, got {settings!r}")
    for setting in settings:
        if (not isinstance(setting, tuple) or len(setting) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in setting)):
            raise ValueError(f"settings must be (size, batch) pairs of positive integers, got {setting!r}")


def _report_header(allocator: str, repeats: int, warmup: int) -> dict:
    """The report's description of the machine (:func:`~mobileblocks_edu.env.environment`) and
    the run, before any measurement."""
    return {
        **env.environment(),
        "allocator": allocator,
        "repeats": repeats,
        "warmup": warmup,
        "paths": {
            "fast": "fused attention, no projections of padded pixels, channels-last memory format",
            "readable": "the reference implementation's order of operations and copies, NCHW memory format",
        },
        "checks": {},
        "groups": [],
    }


def _check_all_outputs(pairs: dict[str, dict[str, nn.Module]], sizes: Sequence[int], log) -> dict[str, dict]:
    """:func:`check_outputs` of every pair at every size; raises if the two paths disagree."""
    checks = {}
    for size in sizes:
        for name, pair in pairs.items():
            chk = checks[f"{name}@{size}"] = check_outputs(pair, size)
            log(f"check {name} at {size}x{size}: max |fast - readable| = {chk['max_abs_diff']:.2e} "
                f"(outputs up to {chk['max_abs_output']:.2f})")
            if chk["max_abs_diff"] > 1e-4 * max(1.0, chk["max_abs_output"]):
                raise RuntimeError(f"{name}: the fast and readable paths disagree at {size}x{size}: {chk}")
    return checks


def _time_group(pairs: dict[str, dict[str, nn.Module]], size: int, batch: int, mode: str, repeats: int, warmup: int,
                num_classes: int, profile: bool, log) -> dict:
    """One group of the report: every model's two paths timed in turns at one size, batch and mode."""
    log(f"{mode}, {size}x{size}, batch {batch}:")
    steps = {f"{name}/{path}": Step(pair[path], path, mode, size, batch, num_classes)
             for name, pair in pairs.items() for path in PATHS}
    times = time_interleaved(steps, repeats, warmup, log)
    runs = {
        key: {"seconds": [round(t, 5) for t in ts], "median_s": statistics.median(ts),
              "img_per_s": batch / statistics.median(ts)}
        for key, ts in times.items()
    }
    ratios = {name: runs[f"{name}/readable"]["median_s"] / runs[f"{name}/fast"]["median_s"] for name in pairs}
    group = {"size": size, "batch": batch, "mode": mode, "runs": runs, "ratios": ratios}
    for name in pairs:
        log(f"  {name:<18} fast {runs[f'{name}/fast']['img_per_s']:8.1f} img/s   readable "
            f"{runs[f'{name}/readable']['img_per_s']:8.1f} img/s   ratio {ratios[name]:.2f}x")
    if profile and mode == "train":
        name = next(iter(pairs))
        group["profile"] = {"model": name, **profile_paths({path: steps[f"{name}/{path}"] for path in PATHS})}
        log(f"  profile of one {name} step: {group['profile']}")
    return group


def run(
    models: Sequence[str] = DEFAULT_MODELS,
    settings: Sequence[tuple[int, int]] = tuple(parse_setting(s) for s in DEFAULT_SETTINGS),
    modes: Sequence[str] = MODES,
    repeats: int = 5,
    warmup: int = 1,
    threads: int = 2,
    num_classes: int = 1000,
    profile: bool = False,
    keep_memory: bool = False,
    log=print,
) -> dict:
    """Run the benchmark on ``threads`` torch threads (the caller's count is restored afterwards)
    and return the report (see :func:`main` for the command line)."""
    _check_run_args(models, settings, modes, repeats, warmup, threads, num_classes)
    log = log or (lambda *a: None)
    allocator = "default"
    if keep_memory:
        allocator = "glibc, freed memory kept (no mmap, no trim)" if keep_freed_memory() else "default (not glibc)"
    with env.torch_threads(threads):
        pairs = {name: build_pair(name, num_classes) for name in models}
        report = _report_header(allocator, repeats, warmup)
        log(f"machine: {report['machine']}; torch {report['torch']}; allocator: {allocator}")
        report["checks"] = _check_all_outputs(pairs, [size for size, _ in settings], log)
        for size, batch in settings:
            for mode in modes:
                report["groups"].append(_time_group(pairs, size, batch, mode, repeats, warmup, num_classes, profile,
                                                    log))
    return report


def default_output() -> Path:
    """``runs/bench_cpu.json`` (the scratch folder of runs; the committed report that lesson 7 reads,
    ``lessons/results/bench_cpu.json``, is only written when named with ``--output``)."""
    return Path("runs") / "bench_cpu.json"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobileblocks_edu.bench",
        description="CPU training and inference throughput: fast path vs the readable reference-order path.",
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered model names")
    parser.add_argument("--settings", nargs="+", type=parse_setting,
                        default=[parse_setting(s) for s in DEFAULT_SETTINGS],
                        metavar="SIZE:BATCH", help="input size and batch, e.g. 224:32 32:128")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int_at_least(1), default=5,
                        help="timed rounds per setting and mode (median reported)")
    parser.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int_at_least(1), default=2, help="torch.set_num_threads")
    parser.add_argument("--output", type=Path, default=None, help=f"JSON report (default: {default_output()})")
    parser.add_argument("--profile", action="store_true",
                        help="also profile training steps of the first model per setting (time by kind of operator)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc only: keep freed memory for reuse (no page faults on large temporaries)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    for name in args.models:
        try:
            model_cfg(name)
        except ValueError as e:
            parser.error(f"--models: {e}")
    problem = None if args.no_save else output_problem(args.output or default_output())
    if problem:
        parser.error(f"--output: {problem}")
    t0 = time.perf_counter()
    report = run(args.models, args.settings, args.modes, args.repeats, args.warmup, args.threads,
                 profile=args.profile, keep_memory=args.keep_freed_memory)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report["command"] = "python -m mobileblocks_edu.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.no_save:
        out = write_json(report, args.output or default_output())
        print(f"wrote {out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

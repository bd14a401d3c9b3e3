"""The command ``python -m mobileblocks_edu.deploy latency|quantize``: batch-1 latency and int8 quantization.

The reports go to ``runs/`` unless ``--output`` names a file; the committed ones in
``lessons/results/`` record the command that wrote them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoint import output_problem, write_json
from ..env import argument_type, int_at_least
from ..models.registry import model_cfg
from .latency import MIN_SIZE, SETTINGS, run_latency
from .quantize import QUANT_EXPERIMENTS, check_experiment, run_quantization


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _results_path(filename: str) -> Path:
    """Where a report goes unless ``--output`` names a file: ``runs/``, never over the committed
    results that the lessons read (``lessons/results/``, written only when named)."""
    return Path("runs") / filename


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobileblocks_edu.deploy",
                                     description="Batch-1 CPU latency (eager, folded, onnxruntime) "
                                                 "and int8 quantization.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency", help="batch-1 latency of the ImageNet-size models")
    lat.add_argument("--models", nargs="+", default=None, type=argument_type(model_cfg),
                     help="registered names (default: every 224x224 model)")
    lat.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    lat.add_argument("--size", type=int_at_least(MIN_SIZE), default=224, help=f"input size (>= {MIN_SIZE})")
    lat.add_argument("--rounds", type=int_at_least(1), default=15,
                     help="interleaved rounds (median and quartiles reported)")
    lat.add_argument("--inner", type=int_at_least(1), default=5,
                     help="calls per round and setting (their mean is one sample)")
    lat.add_argument("--warmup", type=int_at_least(0), default=2)
    lat.add_argument("--threads", type=int_at_least(1), default=1, help="PyTorch threads")
    lat.add_argument("--fast", action="store_true", help="three models, five rounds (a quick look)")
    q = sub.add_parser("quantize", help="int8 quantization of the Imagenette-trained EMO-1M and GhostNet-1.0x")
    q.add_argument("--experiments", nargs="+", default=list(QUANT_EXPERIMENTS),
                   type=argument_type(check_experiment), help="experiments trained on Imagenette")
    q.add_argument("--calib-per-class", type=int_at_least(1), default=10)
    q.add_argument("--eval-per-class", type=int_at_least(1), default=None, help="default: every validation image")
    q.add_argument("--rounds", type=int_at_least(1), default=15)
    q.add_argument("--threads", type=int_at_least(1), default=1, help="PyTorch and onnxruntime threads")
    for p in (lat, q):
        p.add_argument("--output", type=Path, default=None,
                       help="JSON report (default: runs/...; the lessons read lessons/results/...)")
        p.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    default = "latency_cpu.json" if args.cmd == "latency" else "quant_imagenette.json"
    problem = None if args.no_save else output_problem(args.output or _results_path(default))
    if problem:
        parser.error(f"--output: {problem}")
    t0 = time.perf_counter()
    if args.cmd == "latency":
        models, rounds = args.models, args.rounds
        if args.fast:
            models, rounds = models or ["mobilenetv2_100", "ghostnet_100", "emo_1m"], min(rounds, 5)
        report = run_latency(models, args.size, rounds, args.inner, args.warmup, args.threads, args.settings)
    else:
        report = run_quantization(args.experiments, args.calib_per_class, args.eval_per_class, args.rounds,
                                  threads=args.threads)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["command"] = "python -m mobileblocks_edu.deploy " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.no_save:
        out = write_json(report, args.output or _results_path(default))
        print(f"wrote {out} ({report['wall_s']} s)")
    return 0

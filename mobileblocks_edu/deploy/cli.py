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

from ..checkpoint import write_json
from .latency import SETTINGS, run_latency
from .quantize import QUANT_EXPERIMENTS, run_quantization


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
        p.add_argument("--output", type=Path, default=None,
                       help="JSON report (default: runs/...; the lessons read lessons/results/...)")
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
        out = write_json(report, args.output or _results_path(default))
        print(f"wrote {out} ({report['wall_s']} s)")
    return 0

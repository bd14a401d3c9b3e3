"""The training command: a command line turned into a run of :func:`~mobileblocks_edu.train.loop.fit`.

``python -m mobileblocks_edu.train`` runs :func:`main`. Every option's default is ``None`` (not
given) in the parser; :func:`default_options` fills in the defaults of
:class:`~mobileblocks_edu.train.recipes.TrainConfig` and :class:`RunOptions`, so the command line and
``fit()`` from Python cannot disagree.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .. import env
from ..checkpoint import CheckpointError, WriteError
from ..data.datasets import DATASETS, LOADERS
from ..env import argument_type, int_at_least
from . import distributed
from .loop import FitResult, fit, read_training_checkpoint
from .recipes import CHOICES, LIMITS, RESUME_MAY_CHANGE, UNIT, Interval, TrainConfig, check_device, get_recipe
from .runinfo import RunInUseError, prepare_out_dir, removed_if_left_empty

PROG = "python -m mobileblocks_edu.train"


@dataclass
class RunOptions:
    """The defaults of the options besides :class:`~mobileblocks_edu.train.recipes.TrainConfig`'s:
    the model, the data and the machine."""

    model: Optional[str] = None
    data: str = "cifar10"
    out: Optional[str] = None
    batch_size: int = 128
    subset: Optional[Union[int, str]] = None  # images per class, or "book"/"full" (the book's subset, the whole set)
    eval_subset: Optional[int] = None
    randaugment: Optional[bool] = None
    drop_path: Optional[float] = None
    img_size: Optional[int] = None
    model_arg: list = field(default_factory=list)
    workers: int = 0
    loader: str = "images"  # images: per-image transforms; tensor: the split on the device, batched augmentation
    threads: Optional[int] = None
    data_dir: Optional[str] = None
    download: Optional[bool] = None


OPTION_NAMES = {"weight_decay": "wd"}  # TrainConfig fields whose option has a shorter name


def option_name(field_name: str) -> str:
    """The key of a field among the options (``weight_decay`` is ``wd``)."""
    return OPTION_NAMES.get(field_name, field_name)


def default_options() -> dict:
    """Every option's default, from :class:`RunOptions` and :class:`~mobileblocks_edu.train.recipes.TrainConfig`."""
    return asdict(RunOptions()) | {option_name(k): v for k, v in asdict(TrainConfig()).items()}


def _within(interval: Interval):
    """An argparse type: a finite number in ``interval``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or value not in interval:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text!r}")
        return value

    return parse


def _subset(text: str) -> Union[int, str]:
    """An argparse type: images per class (an integer >= 1), or a named subset (``book``)."""
    from ..data.subsets import SUBSETS

    if text in SUBSETS:
        return text
    try:
        return int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (images per class) or one of "
                                         f"{', '.join(SUBSETS)}, got {text!r}") from None


class _ShowDefaults(argparse.RawDescriptionHelpFormatter):
    """Ends each option's help with its default from :func:`default_options` (the parser's own
    default is ``None``: not given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        value = default_options().get(action.dest)
        if value is None or value == []:
            return action.help
        return f"{action.help} (default: {'on' if value is True else 'off' if value is False else value})"


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; every option's default is ``None`` (not given), and
    :func:`options` fills in the defaults."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train a model of the library on CIFAR-10, Imagenette or any ImageFolder tree. Writes "
                    "last.pt, best.pt (checkpoints after every epoch), history.json (one record per epoch) and "
                    "result.json (command, code version, seed, hardware, wall time, metrics, params/FLOPs) to --out.",
        epilog=f"Resume an interrupted run with: {PROG} --out runs/NAME --resume\n"
               "Several processes (GPUs, or CPU processes with gloo): torchrun --nproc_per_node=N -m "
               "mobileblocks_edu.train ...\n"
               "On a CPU shared with other work, set OMP_WAIT_POLICY=PASSIVE in the environment: OpenMP threads\n"
               "that spin while waiting for a busy core can make two threads slower than one.",
        formatter_class=_ShowDefaults,
    )
    p.add_argument("--model", help="registered model name, e.g. mobilenetv2_100_cifar (required for a new run)")
    p.add_argument("--data", choices=tuple(sorted(DATASETS)),
                   help="dataset (imagefolder: any tree --data-dir/{train,val}/<class>/)")
    p.add_argument("--out", help="output folder (default: runs/<model>_<data>_seed<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, with its settings")
    p.add_argument("--batch-size", type=int_at_least(1),
                   help="training batch size (the global batch, shared by the processes of torchrun)")
    p.add_argument("--subset", type=_subset, metavar="N|book",
                   help="use only N training images per class (fast runs); or book: exactly the training and "
                        "evaluation images of the book's committed runs, out of a full download too; or full: the "
                        "whole dataset (a download, or a complete copy), never the book's subset")
    p.add_argument("--eval-subset", type=int_at_least(1), help="use only this many evaluation images per class")

    g = p.add_argument_group("training (what is not given comes from --recipe; its lr is scaled linearly to the "
                             "batch size)")
    g.add_argument("--epochs", type=int_at_least(1), help="training epochs")
    g.add_argument("--recipe", choices=CHOICES["recipe"], help="emo: AdamW + warm-up + cosine + label smoothing + "
                   "RandAugment; mocovit/ghostnet: SGD + cosine")
    g.add_argument("--opt", choices=CHOICES["opt"], help="optimizer (default: the recipe's)")
    g.add_argument("--lr", type=_within(LIMITS["lr"]),
                   help="peak learning rate (default: the recipe's, scaled to the batch size)")
    g.add_argument("--wd", type=_within(LIMITS["weight_decay"]),
                   help="weight decay, not applied to biases and norm weights")
    g.add_argument("--momentum", type=_within(LIMITS["momentum"]),
                   help="SGD momentum / AdamW beta1 (betas (momentum, 0.999))")
    g.add_argument("--warmup-epochs", type=_within(LIMITS["warmup_epochs"]),
                   help="linear warm-up epochs (may be fractional)")
    g.add_argument("--min-lr-ratio", type=_within(LIMITS["min_lr_ratio"]),
                   help="final lr as a fraction r of the peak: the cosine ends at r * lr")
    g.add_argument("--label-smoothing", type=_within(LIMITS["label_smoothing"]), help="label smoothing of the loss")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, help="evaluate an EMA of the weights and buffers")
    g.add_argument("--ema-decay", type=_within(LIMITS["ema_decay"]),
                   help="EMA decay per step (a horizon of ~1 / (1 - decay) steps)")
    g.add_argument("--clip-grad", type=_within(LIMITS["clip_grad"]), help="clip the gradient norm to this value")
    g.add_argument("--amp", choices=CHOICES["amp"], help="mixed precision, CUDA only (auto: bf16 where supported, "
                   "else fp16; off on the CPU)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory format for the model and the batches")
    g.add_argument("--seed", type=int_at_least(0),
                   help="seed of the model init, data order, augmentation and dropout")
    g.add_argument("--device", type=argument_type(check_device), help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bars")

    h = p.add_argument_group("model, data and machine")
    h.add_argument("--randaugment", action=argparse.BooleanOptionalAction,
                   help="RandAugment(2, 9) on training images (default: the recipe's)")
    h.add_argument("--drop-path", type=_within(UNIT),
                   help="stochastic depth rate given to the model (drop_path_rate; default: the recipe's)")
    h.add_argument("--img-size", type=int_at_least(8),
                   help="training/evaluation resolution (default: the model's input size)")
    h.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="extra keyword argument KEY=VALUE "
                   "for the model factory (VALUE read as JSON if it parses), repeatable")
    h.add_argument("--workers", type=int_at_least(0), help="DataLoader worker processes")
    h.add_argument("--loader", choices=LOADERS, help="images: a DataLoader with per-image transforms (default); "
                   "tensor: the whole split as one uint8 tensor on the device, each batch augmented there at once")
    h.add_argument("--threads", type=int_at_least(1), help="torch CPU threads (default: torch's choice)")
    h.add_argument("--data-dir", help="data directory (default: $MBE_DATA, else data/ of the repository)")
    download = h.add_mutually_exclusive_group()
    download.add_argument("--download", action="store_const", const=True, help="download the dataset if it is "
                          "not in the data directory (--offline: never; default: try only when it is missing)")
    download.add_argument("--offline", dest="download", action="store_const", const=False, help="never download")
    return p


def parse_model_args(items: Sequence[str]) -> dict:
    """``["KEY=VALUE", ...]`` as keyword arguments (a VALUE that parses as JSON is read as JSON)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.isidentifier():
            raise ValueError(f"--model-arg needs KEY=VALUE with KEY an argument name, got {item!r}")
        if key == "num_classes":
            raise ValueError("--model-arg num_classes=...: the number of classes comes from --data")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def resolve_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Command-line values over (the resumed run's settings or) the defaults."""
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    base = default_options()
    if args.resume:
        if args.out is None:
            p.error("--resume needs --out (the folder of the run to continue)")
        last = Path(args.out) / "last.pt"
        if not last.is_file():
            p.error(f"--resume: no checkpoint at {last}")
        try:
            saved = dict(read_training_checkpoint(last)["meta"].get("args") or {})
        except CheckpointError as e:
            p.error(f"--resume: {e}")
        if not saved:
            p.error(f"--resume: {last} was written by fit() from Python, not by this command: continue it with "
                    "fit(..., out_dir=..., resume=True)")
        bad = [f"--{k.replace('_', '-')} {given[k]!r} (the run used {saved.get(k)!r})"
               for k in given if k not in RESUME_MAY_CHANGE and given[k] != saved.get(k)]
        if bad:
            p.error("--resume continues a run with its own settings; these differ: " + "; ".join(bad))
        base.update(saved)
    opts = {**base, **given, "resume": args.resume}
    if not opts.get("model"):
        p.error("--model is required for a new run")
    if opts.get("out") is None:
        opts["out"] = f"runs/{opts['model']}_{opts['data']}_seed{opts['seed']}"
    return opts


def options(argv: Sequence[str]) -> dict:
    """The resolved options of a command line (defaults filled in; with ``--resume``, the run's
    own settings), as :func:`run` takes them: ``run(options(["--model", ..., "--out", ...]))``."""
    p = build_parser()
    return resolve_options(p, p.parse_args(list(argv)))


def train_config(opts: dict) -> TrainConfig:
    """The :class:`~mobileblocks_edu.train.recipes.TrainConfig` of resolved options."""
    return TrainConfig(**{k: opts[option_name(k)] for k in asdict(TrainConfig())})


def run(opts: dict, command: Optional[str] = None, resume: Optional[bool] = None, **fit_kwargs) -> FitResult:
    """Train from resolved command-line options (:func:`options`); ``fit_kwargs`` go to :func:`fit`
    (``on_step``, ``on_epoch``). ``resume`` defaults to the options' ``--resume``."""
    if not isinstance(opts, dict):
        raise TypeError(f"opts must be the dict of options([...]), got {type(opts).__name__}")
    missing = sorted(set(default_options()) - set(opts))
    if missing:
        raise ValueError(f"opts lacks {missing}: build the options with options([...command-line arguments...])")
    resume = bool(opts.get("resume")) if resume is None else resume
    if resume not in (True, False):
        raise ValueError(f"resume must be True, False or None, got {resume!r}")
    world = distributed.world()
    # a folder made here is removed again if the run fails before writing into it (a missing data folder ...)
    with removed_if_left_empty(opts["out"] if not resume else None, world.is_main):
        return _run(opts, command, resume, world, **fit_kwargs)


def _run(opts: dict, command: Optional[str], resume: bool, world, **fit_kwargs) -> FitResult:
    from .. import data
    from ..models import registry

    if opts.get("threads") is not None:
        env.check_positive("threads", opts["threads"], int)
        torch.set_num_threads(int(opts["threads"]))
    distributed.check_batch_size(opts["batch_size"], world)
    info = data.dataset_info(opts["data"])
    if info.num_classes is None:  # an ImageFolder tree: its class folders decide
        if opts["data_dir"] is None:
            raise ValueError(f"--data {opts['data']} needs --data-dir, the tree with train/ and val/ class folders")
        info = data.dataset_info(opts["data"], root=opts["data_dir"])
    recipe = get_recipe(opts["recipe"])
    randaugment = recipe.randaugment if opts["randaugment"] is None else opts["randaugment"]
    drop_path = recipe.drop_path if opts["drop_path"] is None else opts["drop_path"]
    img_size = registry.model_cfg(opts["model"]).input_size[-1] if opts["img_size"] is None else opts["img_size"]
    env.check_positive("img_size", img_size, int)
    model_kwargs = parse_model_args(opts["model_arg"])
    if drop_path:
        model_kwargs.setdefault("drop_path_rate", drop_path)
    if opts["out"] is not None and not resume:  # a file or a read-only place fails here, before the data is read
        distributed.on_main(lambda: prepare_out_dir(opts["out"]), world)

    env.seed_everything(opts["seed"])
    # the model first: a bad --model-arg fails before the data is read (building the loaders
    # draws no random number, so the weights are the same in either order)
    model = registry.create_model(opts["model"], num_classes=info.num_classes, **model_kwargs)
    train_loader, val_loader = data.build_loaders(
        info.name, root=opts["data_dir"], download=opts["download"], img_size=img_size,
        batch_size=opts["batch_size"], subset=opts["subset"], eval_subset=opts["eval_subset"],
        randaugment=randaugment, workers=opts["workers"], seed=opts["seed"], loader=opts["loader"],
        device=distributed.local_device(check_device(opts["device"]), world),
    )
    source = Path(train_loader.dataset.source)
    root = Path(opts["data_dir"]) if opts["data_dir"] else env.data_dir()
    meta = {
        "command": command,
        "model": opts["model"],
        "model_kwargs": model_kwargs,
        "data": {"name": info.name, "img_size": img_size, "subset": opts["subset"],
                 "eval_subset": opts["eval_subset"], "randaugment": randaugment,
                 # where the images came from, relative to the data directory (no machine-specific path)
                 "source": str(source.relative_to(root)) if source.is_relative_to(root) else source.name,
                 "workers": opts["workers"], "loader": opts["loader"]},
        "threads": torch.get_num_threads(),
        "args": {k: opts[k] for k in default_options()} | {"model": opts["model"], "out": str(opts["out"])},
    }
    return fit(model, train_loader, val_loader, train_config(opts), opts["out"], resume=resume, meta=meta,
               **fit_kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (130 after Ctrl-C, 2 for a usage error).
    Under ``torchrun`` every process runs it, in one process group."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    args = p.parse_args(argv)
    opts = resolve_options(p, args)
    try:
        from ..models.registry import model_cfg

        model_cfg(opts["model"])
        get_recipe(opts["recipe"])
    except ValueError as e:
        p.error(str(e))
    command = f"{PROG} " + shlex.join(argv)
    with distributed.process_group(opts["device"]) as world:
        try:
            res = run(opts, command, resume=args.resume)
        except KeyboardInterrupt:
            return 130
        except (ValueError, FileExistsError, FileNotFoundError, CheckpointError, RunInUseError, WriteError,
                FloatingPointError) as e:
            where = f"[process {world.rank}] " if world.size > 1 else ""
            print(f"{where}error: {e}", file=sys.stderr)
            return 1 if isinstance(e, FloatingPointError) else 2
    best = res.best.get("val_top1")
    if world.is_main:
        print(f"done: {len(res.history)} epochs in {res.result['wall_time_s']:.1f} s"
              + (f", best top-1 {best:.2f}% (epoch {res.best['epoch']})" if best is not None else "")
              + (f" on {world.size} processes" if world.size > 1 else "") + f"; results in {res.out_dir}")
    return 0

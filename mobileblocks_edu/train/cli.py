"""The training command: a command line turned into a run of :func:`~mobileblocks_edu.train.loop.fit`.

``python -m mobileblocks_edu.train`` runs :func:`main`. The options are the fields of
:class:`~mobileblocks_edu.train.recipes.TrainConfig` and :class:`RunOptions`: each option's
default, help and allowed values are the field's, so the command line and ``fit()`` from Python
cannot disagree.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import torch

from .. import env
from ..checkpoint import CheckpointError, WriteError, read_checkpoint
from ..data.datasets import DATASETS
from . import distributed
from .loop import FitResult, fit
from .recipes import (
    RESUME_MAY_CHANGE,
    UNIT,
    Interval,
    TrainConfig,
    check_device,
    get_recipe,
    setting,
)
from .runinfo import (
    RunInUseError,
    prepare_out_dir,
)

PROG = "python -m mobileblocks_edu.train"


@dataclass
class RunOptions:
    """The command line's settings besides a :class:`~mobileblocks_edu.train.recipes.TrainConfig`'s:
    the model, the data and the machine."""

    model: Optional[str] = setting(None, "registered model name, e.g. mobilenetv2_100_cifar (required for a new run)")
    data: str = setting("cifar10", "dataset (imagefolder: any tree --data-dir/{train,val}/<class>/)",
                        choices=tuple(sorted(DATASETS)))
    out: Optional[str] = setting(None, "output folder (default: runs/<model>_<data>_seed<seed>)")
    batch_size: int = setting(128, "training batch size (the global batch, shared by the processes of torchrun)",
                              interval=Interval(1))
    subset: Optional[int] = setting(None, "use only this many training images per class (fast runs)",
                                    interval=Interval(1))
    eval_subset: Optional[int] = setting(None, "use only this many evaluation images per class", interval=Interval(1))
    randaugment: Optional[bool] = setting(None, "RandAugment(2, 9) on training images (default: the recipe's)")
    drop_path: Optional[float] = setting(None, "stochastic depth rate given to the model (drop_path_rate; "
                                         "default: the recipe's)", interval=UNIT)
    img_size: Optional[int] = setting(None, "training/evaluation resolution (default: the model's input size)",
                                      interval=Interval(8))
    model_arg: list = field(default_factory=list, metadata={
        "help": "extra keyword argument KEY=VALUE for the model factory (VALUE read as JSON if it parses), repeatable"})
    workers: int = setting(0, "DataLoader worker processes", interval=Interval(0))
    threads: Optional[int] = setting(None, "torch CPU threads (default: torch's choice)", interval=Interval(1))
    data_dir: Optional[str] = setting(None, "data directory (default: $MBE_DATA, else data/ of the repository)")
    download: Optional[bool] = setting(None, "download the dataset if it is not in the data directory "
                                       "(--offline: never; default: try only when it is missing)")


def option_name(f: Field) -> str:
    """The key of a field among the command-line options (``weight_decay`` is ``wd``)."""
    return f.metadata.get("flag") or f.name


def option_fields() -> list[Field]:
    """Every field the command line sets: the run's options, then the training config's."""
    return list(fields(RunOptions)) + list(fields(TrainConfig))


def default_options() -> dict:
    """Every command-line option's default, read from the fields."""
    return {option_name(f): f.default if f.default is not MISSING else f.default_factory() for f in option_fields()}


def _int_arg(low: int):
    """An argparse type: an integer ``>= low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_arg(interval: Interval):
    """An argparse type: a finite number in ``interval``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text!r}") from None
        if v not in interval:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text!r}")
        return v

    parse.__name__ = f"number in {interval}"
    return parse


def _device_arg(text: str) -> str:
    try:
        check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_option(group, f: Field, kind: type) -> None:
    """One field as an option: its flag, type, allowed values, help and default from the field."""
    meta, name = f.metadata, option_name(f)
    flag = "--" + name.replace("_", "-")
    default = default_options()[name]
    if isinstance(default, bool):
        default = "on" if default else "off"
    shown = "" if default is None or default == [] else f" (default: {default})"
    kw = {"help": meta["help"] + shown, "dest": name}
    if name == "download":
        both = group.add_mutually_exclusive_group()
        both.add_argument("--download", action="store_const", const=True, **kw)
        both.add_argument("--offline", dest=name, action="store_const", const=False, help="never download")
        return
    if name == "model_arg":
        kw.update(action="append", metavar="KEY=VALUE")
    elif kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif meta.get("choices"):
        kw["choices"] = meta["choices"]
    elif meta.get("interval") is not None:
        kw["type"] = _int_arg(int(meta["interval"].low)) if kind is int else _float_arg(meta["interval"])
    elif name == "device":
        kw["type"] = _device_arg
    elif name in ("out", "data_dir"):
        kw["type"] = Path
    group.add_argument(flag, **kw)


def _kind(cls, f: Field) -> type:
    """The field's type without ``Optional``: ``Optional[float]`` -> ``float``."""
    hint = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; every option's default is ``None`` (not given), and
    :func:`options` fills in the fields' defaults."""
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_fields = list(fields(RunOptions))
    for f in run_fields[:3]:
        _add_option(p, f, _kind(RunOptions, f))
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt, with its settings")
    for f in run_fields[3:6]:
        _add_option(p, f, _kind(RunOptions, f))
    g = p.add_argument_group("training (what is not given comes from --recipe; its lr is scaled linearly to the batch size)")
    for f in fields(TrainConfig):
        _add_option(g, f, _kind(TrainConfig, f))
    h = p.add_argument_group("model, data and machine")
    for f in run_fields[6:]:
        _add_option(h, f, _kind(RunOptions, f))
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
    """Command-line values over (the resumed run's settings or) the fields' defaults."""
    given = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if v is not None and k != "resume"}
    base = default_options()
    if args.resume:
        if args.out is None:
            p.error("--resume needs --out (the folder of the run to continue)")
        last = Path(args.out) / "last.pt"
        if not last.is_file():
            p.error(f"--resume: no checkpoint at {last}")
        saved = dict(read_checkpoint(last)["meta"].get("args", {}))
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
    return TrainConfig(**{f.name: opts[option_name(f)] for f in fields(TrainConfig)})


def run(opts: dict, command: Optional[str] = None, resume: Optional[bool] = None, **fit_kwargs) -> FitResult:
    """Train from resolved command-line options (:func:`options`); ``fit_kwargs`` go to :func:`fit`
    (``on_step``, ``on_epoch``). ``resume`` defaults to the options' ``--resume``."""
    from .. import data
    from ..models import registry

    resume = bool(opts.get("resume")) if resume is None else bool(resume)
    world = distributed.world()
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
        randaugment=randaugment, workers=opts["workers"], seed=opts["seed"],
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
                 "workers": opts["workers"]},
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

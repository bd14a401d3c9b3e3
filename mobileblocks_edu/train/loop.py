"""The training loop: :func:`fit` runs the epochs of :func:`train_one_epoch`, with exact resume.

Around the loop: optional EMA of weights and buffers (``torch.optim.swa_utils.AveragedModel``),
mixed precision on CUDA (bf16, else fp16 with a gradient scaler), gradient clipping, ``tqdm``
progress bars, and a checkpoint after every epoch (``last.pt``, ``best.pt``; atomic, loadable
with ``weights_only=True``).

**Exact resume.** Every epoch starts from a state that is a pure function of ``(seed, epoch)``
plus what the checkpoint holds: the data order and each sample's augmentation come from
``derive_seed(seed, epoch[, index])`` (:mod:`mobileblocks_edu.data`), and torch's global random
stream (dropout, drop path) is re-seeded with ``derive_seed(seed, epoch, 1)``. A checkpoint
holds model, optimizer, scheduler, EMA, gradient scaler, random states and history at the end
of an epoch, so a run interrupted anywhere and resumed from ``last.pt`` repeats the unfinished
epoch exactly and ends with the same weights, bit for bit on the CPU (with the same number of
threads: a different number splits floating-point sums differently).

**Several processes.** Started by ``torchrun``, :func:`fit` trains with DistributedDataParallel
(:mod:`mobileblocks_edu.train.distributed`); the batch size of the training loader is the global one.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..analysis.complexity import count_flops, count_params
from ..checkpoint import CheckpointError, check_state_dict, read_checkpoint, save_checkpoint, training_weights
from ..data.batched import TensorBatches
from ..data.datasets import set_epoch
from ..data.images import check_same_classes
from . import distributed
from .distributed import World
from .recipes import (
    RESUME_MAY_CHANGE,
    TrainConfig,
    amp_dtype,
    autocast,
    check_device,
    make_optimizer,
    make_scheduler,
)
from .results import EvalResult, evaluate, topk_correct
from .runinfo import (
    PathLike,
    RunLock,
    check_free_space,
    clean_temporary_files,
    code_version,
    environment,
    prepare_out_dir,
    removed_if_left_empty,
    rng_state,
    seed_epoch,
    set_rng_state,
    write_json,
)

CHECKPOINT_FORMAT = 1


class StepInfo(NamedTuple):
    """What ``on_step`` receives after every optimizer step (``epoch`` counts from 1)."""

    epoch: int
    step: int
    global_step: int
    loss: float
    lr: float


@dataclass
class FitResult:
    """What :func:`fit` returns (``ema``: the EMA model when EMA was on)."""

    model: nn.Module
    ema: Optional[AveragedModel]
    history: list
    best: dict
    final: Optional[EvalResult]
    out_dir: Optional[Path]
    result: dict = field(default_factory=dict)


@dataclass
class RunState:
    """A run between two epochs: what it trains with, and what its checkpoints and results hold."""

    model: nn.Module                   # the model (its state dict is what a checkpoint holds)
    net: nn.Module                     # what the batches go through: the model, or it in DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: Optional[AveragedModel]
    criterion: nn.Module               # cross-entropy with the recipe's label smoothing
    cfg: TrainConfig
    device: torch.device
    dtype: Optional[torch.dtype]
    world: World
    train_loader: DataLoader           # this process's shard, batch_size / world size
    val_loader: Optional[DataLoader]
    batch_size: int                    # the global batch
    out: Optional[Path]
    meta: dict
    facts: dict                        # for result.json: complexity, classes, code version
    t_start: float
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    elapsed: float = 0.0
    commands: list = field(default_factory=list)
    start_epoch: int = 0
    saved_epoch: int = 0               # what last.pt holds
    saved_best: dict = field(default_factory=dict)

    @property
    def eval_model(self) -> nn.Module:  # what is evaluated: the EMA model when EMA is on, else the model
        return self.ema.module if self.ema is not None else self.model


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: Optional[DataLoader] = None,
    config: Optional[TrainConfig] = None,
    out_dir: Optional[PathLike] = None,
    *,
    resume: bool = False,
    on_step: Optional[Callable[[StepInfo], None]] = None,
    on_epoch: Optional[Callable[[dict], None]] = None,
    meta: Optional[dict] = None,
) -> FitResult:
    """Train ``model`` and return a :class:`FitResult`.

    Args:
        model: any classifier; trained in place.
        train_loader: training batches (:func:`mobileblocks_edu.data.build_loaders`: a ``DataLoader`` or a
            ``TensorBatches``); :func:`~mobileblocks_edu.data.set_epoch` gives it each epoch and ``config.seed``.
            In a distributed run its batch size is the global one, shared by the processes.
        val_loader: evaluated after every epoch (top-1 picks ``best.pt``); optional.
        config: a :class:`~mobileblocks_edu.train.recipes.TrainConfig` (default: EMO's recipe, 30 epochs).
        out_dir: where ``last.pt``, ``best.pt``, ``history.json`` and ``result.json`` go (nothing
            is written when ``None``). An existing ``last.pt`` is never overwritten by a new run.
        resume: continue the run in ``out_dir`` from ``last.pt``; the config must be the same
            (except ``progress`` and ``device``), and so must the steps per epoch, the batch and
            the number of processes. Bit-identical to the uninterrupted run on the CPU with the
            same number of threads (a different number gives a warning).
        on_step: called after every optimizer step with a :class:`StepInfo`.
        on_epoch: called after every epoch with its history record.
        meta: extra facts for ``result.json`` (the command line, model and data settings).

    Ctrl-C (``KeyboardInterrupt``) stops the run: ``last.pt`` then holds the last completed
    epoch, ``result.json`` says ``"interrupted"``, and the exception propagates.
    """
    t_start = time.perf_counter()
    _check_fit_args(model, train_loader, val_loader, config)
    world = distributed.world()
    cfg = (config or TrainConfig()).resolved(train_loader.batch_size or 1)  # lr scaled to the global batch
    device = distributed.local_device(check_device(cfg.device), world)
    if resume not in (True, False):
        raise ValueError(f"resume must be True or False, got {resume!r}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    out = Path(out_dir) if out_dir is not None else None
    # a folder this run made is removed again if the run fails before writing into it;
    # process 0 holds the folder's lock until the run ends
    with removed_if_left_empty(out, world.is_main), _claimed(out, resume, world):
        run = _start_run(model, train_loader, val_loader, cfg, device, world, out, dict(meta or {}), t_start)
        if resume:
            _restore(run, out / "last.pt")
        if run.meta.get("command"):
            run.commands.append(run.meta["command"])
        status, final = "running", None
        try:
            with tqdm(total=cfg.epochs, initial=run.start_epoch, desc="epochs", dynamic_ncols=True,
                      disable=not (cfg.progress and world.is_main)) as bar:
                for epoch in range(run.start_epoch, cfg.epochs):
                    record, final = _train_and_evaluate(run, epoch, on_step)
                    _record_epoch(run, epoch, record, final)
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record.get('val_top1', np.nan):.1f}%",
                                    best=f"{run.best.get('val_top1', np.nan):.1f}%")
                    if on_epoch is not None:
                        on_epoch(record)
            if run.val_loader is not None and final is None:  # resumed after the last epoch: evaluate once more
                final = _evaluate_run(run, run.eval_model)
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception:
            status = "failed"
            raise
        finally:
            if status != "running":
                _finish(run, status, final)
    return FitResult(model, run.ema, run.history, run.best, final, out, _run_result(run, status, final))


def _check_fit_args(model, train_loader, val_loader, config) -> None:
    """Raise ``TypeError``/``ValueError`` for arguments :func:`fit` cannot train with."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if loader is not None and not isinstance(loader, (DataLoader, TensorBatches)):
            raise TypeError(f"{name} must be a torch DataLoader or a TensorBatches, got {type(loader).__name__}")
    if train_loader is None:
        raise TypeError("train_loader must be a torch DataLoader or a TensorBatches, got None")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if len(train_loader) == 0:
        raise ValueError("train_loader yields no batch (fewer images than batch_size with drop_last?)")
    check_same_classes(_loader_classes(train_loader), _loader_classes(val_loader))
    n_out = getattr(model, "num_classes", None)
    classes = _loader_classes(train_loader)
    n_data = len(classes) if classes is not None else None
    targets = getattr(train_loader.dataset, "targets", None)
    if n_data is None and targets is not None and len(targets):
        n_data = int(max(targets)) + 1
    if isinstance(n_out, int) and n_out > 0 and n_data is not None and n_data > n_out:
        raise ValueError(f"the data has {n_data} classes but the model has {n_out} outputs: "
                         f"build the model with num_classes={n_data}")


def _loader_classes(loader: Optional[DataLoader]) -> Optional[list]:
    """The class ids (else names) of a loader's dataset, or ``None``."""
    if loader is None:
        return None
    ds = loader.dataset
    ids = getattr(ds, "class_ids", None) or getattr(ds, "classes", None)
    return list(ids) if ids is not None else None


@contextlib.contextmanager
def _claimed(out: Optional[Path], resume: bool, world: World):
    """Hold the run folder ``out`` (process 0 checks and locks it) for the block; a folder that
    cannot hold the run is an error in every process."""

    def claim() -> RunLock:
        prepare_out_dir(out)
        lock = RunLock(out).acquire()
        try:
            clean_temporary_files(out)
            if (out / "last.pt").exists() and not resume:
                raise FileExistsError(f"{out / 'last.pt'} exists: resume that run (resume=True, --resume) "
                                      "or choose another out_dir")
            if resume and not (out / "last.pt").is_file():
                raise CheckpointError(f"cannot resume: no checkpoint at {out / 'last.pt'}")
        except BaseException:
            lock.release()
            raise
        return lock

    lock = distributed.on_main(claim, world) if out is not None else None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _start_run(model, train_loader, val_loader, cfg, device, world, out, meta, t_start) -> RunState:
    """The run's state before its first epoch: model on its device, optimizer, schedule, EMA."""
    dtype = amp_dtype(cfg.amp, device)
    batch_size = train_loader.batch_size
    train_loader = distributed.shard_loader(train_loader, world, train=True)
    val_loader = distributed.shard_loader(val_loader, world, train=False) if val_loader is not None else None
    model.to(device=device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    first = val_loader if val_loader is not None else train_loader
    classes = getattr(first.dataset, "classes", None)
    facts = {"classes": list(classes) if classes else None, "params": count_params(model)}
    x, _ = first.dataset[0]
    if isinstance(x, torch.Tensor):
        facts.update(input_size=list(x.shape), macs=count_flops(model, (1, *x.shape), "macs"),
                     fvcore_flops=count_flops(model, (1, *x.shape), "fvcore"))
    if out is not None:
        distributed.on_main(lambda: check_free_space(out, model, cfg), world)
    facts["code_version"] = code_version()
    optimizer = make_optimizer(model, cfg)
    scaler = (torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=dtype == torch.float16))  # torch 2.2: CUDA's only
    return RunState(
        model=model, net=distributed.wrap(model, world, device), optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg, len(train_loader)), scaler=scaler,
        ema=AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema else None,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), cfg=cfg, device=device, dtype=dtype,
        world=world, train_loader=train_loader, val_loader=val_loader, batch_size=batch_size, out=out, meta=meta,
        facts=facts, t_start=t_start)


def _restore(run: RunState, path: Path) -> None:
    """Load the checkpoint ``path`` into ``run`` (every process loads it), after checking that it
    holds a run with the same settings and data."""
    ck = read_training_checkpoint(path)
    check_same_classes(ck.get("classes"), _loader_classes(run.train_loader), f"checkpoint {path}", "training data now")
    now = asdict(run.cfg)
    diff = [f"{k}: checkpoint {ck['config'].get(k)!r}, now {now.get(k)!r}"
            for k in sorted((set(ck["config"]) | set(now)) - RESUME_MAY_CHANGE) if ck["config"].get(k) != now.get(k)]
    steps = len(run.train_loader)
    if (ck["steps_per_epoch"], ck["batch_size"]) != (steps, run.batch_size):
        diff.append(f"steps per epoch x batch size: checkpoint {ck['steps_per_epoch']} x {ck['batch_size']}, "
                    f"now {steps} x {run.batch_size}")
    if ck.get("world_size", 1) != run.world.size:  # BatchNorm normalises each process's micro-batch
        diff.append(f"processes: checkpoint {ck.get('world_size', 1)}, now {run.world.size}")
    if diff:
        raise ValueError("cannot resume: the run differs from the checkpoint's\n  " + "\n  ".join(diff))
    try:
        check_state_dict(run.model, ck["model"], source=path)
    except CheckpointError as e:
        was = (ck.get("meta") or {}).get("model")
        raise CheckpointError(f"cannot resume: {e}" + (f"\n(the run trained {was})" if was else "")) from None
    run.model.load_state_dict(ck["model"])
    run.optimizer.load_state_dict(ck["optimizer"])
    run.scheduler.load_state_dict(ck["scheduler"])
    if ck["scaler"]:
        run.scaler.load_state_dict(ck["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(ck["ema"])
    set_rng_state(ck["rng"])
    if ck.get("threads") not in (None, torch.get_num_threads()):
        warnings.warn(f"the run used {ck['threads']} CPU threads, this process {torch.get_num_threads()}: "
                      "floating-point sums split differently, so the weights will not be bit-identical to "
                      "an uninterrupted run (set the same number of threads for that)", stacklevel=3)
    run.start_epoch = run.saved_epoch = ck["epoch"]
    run.history, run.best, run.saved_best = list(ck["history"]), dict(ck["best"]), dict(ck["best"])
    run.elapsed, run.commands = float(ck["elapsed_s"]), list(ck.get("commands", []))


def _train_and_evaluate(run: RunState, epoch: int, on_step) -> tuple[dict, Optional[EvalResult]]:
    """Epoch ``epoch`` (from 0): its seeded data order and random streams, training, evaluation;
    returns its history record and evaluation."""
    set_epoch(run.train_loader, epoch, run.cfg.seed)
    seed_epoch(run.cfg.seed, epoch, run.world.rank)
    record = train_one_epoch(run, epoch, on_step)
    distributed.broadcast_buffers(*([run.model] + ([run.ema] if run.ema is not None else [])))
    if run.val_loader is None:
        return record, None
    t_eval = time.perf_counter()
    ev = _evaluate_run(run, run.eval_model)
    record.update(val_loss=ev.loss, val_top1=ev.top1, val_top5=ev.top5, eval_time_s=time.perf_counter() - t_eval)
    if run.ema is not None:
        record["model_val_top1"] = _evaluate_run(run, run.model).top1
    return record, ev


def _evaluate_run(run: RunState, model: nn.Module) -> EvalResult:
    return evaluate(model, run.val_loader, run.device, run.cfg.amp, channels_last=run.cfg.channels_last)


def _record_epoch(run: RunState, epoch: int, record: dict, ev: Optional[EvalResult]) -> None:
    """Add the epoch to the history, keep the best, and (process 0) save the checkpoints and files."""
    improved = ev is None or not run.best or ev.top1 > run.best["val_top1"]
    run.history.append(record)
    if improved:
        run.best = {"epoch": epoch + 1, **{k: v for k, v in record.items() if k != "epoch"}}
        if ev is not None:
            run.best["eval"] = ev.to_dict()
    if run.out is None:
        return

    def save():
        ck = _checkpoint_state(run, epoch + 1)
        if improved:  # best.pt first: an interruption in between leaves last.pt one epoch behind
            save_checkpoint(ck, run.out / "best.pt")
        save_checkpoint(ck, run.out / "last.pt")
        run.saved_epoch, run.saved_best = epoch + 1, dict(run.best)
        write_json(run.history, run.out / "history.json")
        write_json(_run_result(run, "running"), run.out / "result.json")

    distributed.on_main(save, run.world)


def _checkpoint_state(run: RunState, epoch: int) -> dict:
    """What ``last.pt``/``best.pt`` hold after ``epoch`` epochs: everything to continue exactly."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "epoch": epoch,
        "steps_per_epoch": len(run.train_loader),
        "batch_size": run.batch_size,
        "world_size": run.world.size,
        "classes": _loader_classes(run.train_loader),
        "threads": torch.get_num_threads(),
        "history": run.history,
        "best": run.best,
        "rng": rng_state(),
        "config": asdict(run.cfg),
        "meta": run.meta,
        "commands": run.commands,
        "elapsed_s": run.elapsed + time.perf_counter() - run.t_start,
    }


def _run_result(run: RunState, status: str, final: Optional[EvalResult] = None) -> dict:
    """The content of ``result.json``: what ran, where, how fast, and what it reached."""
    train_speed = [h["train_img_per_s"] for h in run.history]
    res = {
        "name": run.out.name if run.out is not None else None,
        "status": status,
        **run.meta,
        "command": run.commands[0] if run.commands else None,  # the command that started the run
        "commands": run.commands,  # ... and every command that continued it
        "seed": run.cfg.seed,
        "config": asdict(run.cfg),
        "code_version": run.facts["code_version"],
        **environment(),
        "device": str(run.device),
        "world_size": run.world.size,
        "amp": str(run.dtype).replace("torch.", "") if run.dtype else "off",
        "wall_time_s": round(run.elapsed + time.perf_counter() - run.t_start, 3),
        "epochs_done": len(run.history),
        "steps_per_epoch": len(run.train_loader),
        "batch_size": run.batch_size,
        "train_images": len(run.train_loader.dataset),
        "val_images": len(run.val_loader.dataset) if run.val_loader is not None else None,
        **{k: v for k, v in run.facts.items() if k != "code_version"},
        "train_img_per_s": round(float(np.median(train_speed)), 2) if train_speed else None,
        "best": run.best,
        "last": run.history[-1] if run.history else None,
        "history": run.history,
    }
    if final is not None:
        res["final"] = final.to_dict()
    return res


def _finish(run: RunState, status: str, final: Optional[EvalResult]) -> None:
    """Write the final ``result.json`` (process 0). After an interruption or a failure it
    describes what ``last.pt`` holds, not an epoch whose save was cut."""
    if run.out is None or not run.world.is_main:
        return
    if status != "done":
        del run.history[run.saved_epoch:]
        run.best = run.saved_best
        if run.saved_epoch > 0:
            print(f"\n{status}: {run.out / 'last.pt'} holds epoch {run.saved_epoch} of {run.cfg.epochs}; continue "
                  f"with fit(..., resume=True) or python -m mobileblocks_edu.train --out {run.out} --resume",
                  file=sys.stderr)
        else:
            print(f"\n{status} before the first epoch ended: no checkpoint to resume", file=sys.stderr)
    try:
        write_json(_run_result(run, status, final if status == "done" else None), run.out / "result.json")
    except Exception as e:
        if status == "done":
            raise
        warnings.warn(f"could not write {run.out / 'result.json'}: {e}", stacklevel=3)


def train_one_epoch(run: RunState, epoch: int, on_step: Optional[Callable[[StepInfo], None]] = None) -> dict:
    """One epoch of ``run`` (``epoch`` counts from 0); returns its history record. In a distributed
    run ``run.net`` is the model in DDP, the loader yields this process's micro-batches, and the
    record counts the images of every process."""
    cfg, device, optimizer, scaler, loader = run.cfg, run.device, run.optimizer, run.scaler, run.train_loader
    run.net.train()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    loss_sum, correct, seen, steps = 0.0, 0, 0, len(loader)
    t0 = time.perf_counter()
    with tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
              disable=not (cfg.progress and run.world.is_main)) as bar:
        for step, (x, y) in enumerate(loader):
            x, y = x.to(device, non_blocking=True, memory_format=fmt), y.to(device, non_blocking=True)
            with autocast(device, run.dtype):
                logits = run.net(x)
                loss = run.criterion(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: "
                                         "lower the learning rate or clip gradients (clip_grad)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # DDP: the gradients are averaged over the processes here
            if cfg.clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update_parameters(run.model)
            loss_val = loss.item()
            loss_sum, seen = loss_sum + loss_val * len(y), seen + len(y)
            correct += topk_correct(logits.detach().float(), y, 1)
            bar.update(1)
            if step % 5 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            if on_step is not None:
                on_step(StepInfo(epoch + 1, step + 1, epoch * steps + step + 1, loss_val, lr))
    dt = time.perf_counter() - t0
    loss_sum, correct, seen = distributed.all_reduce_sum(torch.tensor([loss_sum, correct, seen],
                                                                      dtype=torch.float64)).tolist()
    return {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
            "epoch_time_s": dt, "train_img_per_s": seen / dt}


def read_training_checkpoint(path: PathLike) -> dict:
    """A training checkpoint of :func:`fit` (``last.pt``) read back, after checking that it is one,
    of this library's format: else :class:`~mobileblocks_edu.checkpoint.CheckpointError` naming
    the file and what it holds."""
    ck = read_checkpoint(path)
    if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
        raise CheckpointError(f"{path} holds weights only ({len(ck)} tensors, as export_weights writes them), not "
                              "a training checkpoint of fit: there is no run to resume (load_checkpoint loads it)")
    if not isinstance(ck, dict) or "format" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f"{path} is not a training checkpoint of fit (last.pt, best.pt); its top-level keys: "
                              f"{keys}")
    if ck["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a training checkpoint of format {ck['format']!r}; this version of the "
                              f"library reads format {CHECKPOINT_FORMAT}: continue it with the version that wrote "
                              "it (code_version in result.json)")
    missing = [k for k in _REQUIRED if k not in ck]
    if missing:
        raise CheckpointError(f"{path} is an incomplete training checkpoint: it lacks {missing}")
    return ck


_REQUIRED = ("model", "optimizer", "scheduler", "scaler", "ema", "epoch", "steps_per_epoch", "batch_size",
             "history", "best", "rng", "config", "meta", "elapsed_s")


def export_weights(checkpoint_path: PathLike, path: PathLike, ema: Optional[bool] = None, half: bool = False) -> Path:
    """Write only the weights of a training checkpoint (a plain state dict), by the rule of
    :func:`~mobileblocks_edu.checkpoint.training_weights` that ``load_checkpoint`` follows too: the
    EMA weights when the run had EMA (``ema=None``) or when ``ema=True``, else the model's; ``half``
    stores floating-point tensors as float16 (half the size, for committed checkpoints)."""
    if half not in (True, False):
        raise ValueError(f"half must be True or False, got {half!r}")
    sd = training_weights(read_checkpoint(checkpoint_path), ema, source=checkpoint_path)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    sd = {k: v.contiguous() for k, v in sd.items()}
    return save_checkpoint(sd, path)


__all__ = ["CHECKPOINT_FORMAT", "StepInfo", "FitResult", "RunState", "fit", "train_one_epoch", "export_weights",
           "read_training_checkpoint"]

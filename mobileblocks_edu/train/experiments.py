"""The named experiments of the training lab: each one a reproducible command.

An :class:`Experiment` fixes the model, the dataset, the recipe, the epochs and the seeds; its
run for one seed is exactly the command :meth:`Experiment.command` prints, written to ``runs/<name>_seed<seed>/``.
The lessons read the collected results from ``lessons/results`` and small checkpoints from ``lessons/checkpoints``::

    python -m mobileblocks_edu.experiments list                 # every command
    python -m mobileblocks_edu.experiments run cifar10_emo_1m --seed 0
    python -m mobileblocks_edu.experiments collect cifar10_emo_1m

``run`` resumes an interrupted run and skips a finished one; ``collect`` copies each finished run's ``result.json``,
checked and atomically, to ``lessons/results/<name>_seed<seed>.json`` and, with ``--checkpoint``, its final weights
(EMA when used, float16) to ``lessons/checkpoints``: the weights whose accuracy the result reports as ``final``
(``best.pt``, the epoch best on the test set, would flatter the model).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .. import env
from ..checkpoint import CheckpointError, WriteError
from ..env import PathLike
from . import results as _results
from .results import FULL_DATASET_IMAGES, ResultFileError, UnfinishedRunError, describe_run_data, read_report, run_data

ABLATION_CLAIMS, ABLATION_TABLES = _results.ABLATION_CLAIMS, _results.ABLATION_TABLES  # the papers' tables, re-exported

if TYPE_CHECKING:
    import torch

@dataclass(frozen=True)
class Experiment:
    """One training setting, run once per seed.

    Args:
        name: unique name; run folders and result files are ``<name>_seed<seed>``.
        model: registered model name.
        data: ``"cifar10"`` or ``"imagenette"``.
        epochs: training epochs.
        seeds: the seeds to run (mean ± std over them).
        recipe: ``"emo"`` or ``"mocovit"`` (see :data:`mobileblocks_edu.train.RECIPES`).
        batch_size: training batch size.
        model_args: keyword arguments for the model factory, as ``(key, value)`` pairs.
        options: further command-line flags, e.g. ``("--subset", "100")``.
        group: what the experiment belongs to (``"cifar10"``, ``"imagenette"``, ``"ablation"``).
        note: one line on what it shows.
    """

    name: str
    model: str
    data: str = "cifar10"
    epochs: int = 30
    seeds: tuple[int, ...] = (0, 1, 2)
    recipe: str = "emo"
    batch_size: int = 128
    model_args: tuple[tuple[str, Any], ...] = ()
    options: tuple[str, ...] = ()
    group: str = ""
    note: str = ""

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str) or "/" in self.name:
            raise ValueError(f"name must be a non-empty string without '/', got {self.name!r}")
        for arg in ("epochs", "batch_size"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Experiment {self.name}: {arg} must be a positive integer, got {v!r}")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ValueError(f"Experiment {self.name}: seeds must be a non-empty tuple of integers >= 0, "
                             f"got {self.seeds!r}")
        if self.data not in ("cifar10", "imagenette"):
            raise ValueError(f"Experiment {self.name}: data must be 'cifar10' or 'imagenette', got {self.data!r}")
        if self.recipe not in ("emo", "mocovit", "ghostnet"):
            raise ValueError(f"Experiment {self.name}: recipe must be emo, mocovit or ghostnet, got {self.recipe!r}")
        if not all(isinstance(o, str) for o in self.options):
            raise ValueError(f"Experiment {self.name}: options must be strings, got {self.options!r}")

    def run_name(self, seed: int) -> str:
        return f"{self.name}_seed{seed}"

    def out_dir(self, seed: int, runs: PathLike = "runs") -> Path:  # runs/<name>_seed<seed>
        return Path(runs) / self.run_name(seed)

    def argv(self, seed: int, runs: PathLike = "runs") -> list[str]:
        """The arguments of ``python -m mobileblocks_edu.train`` for ``seed``."""
        args = ["--model", self.model, "--data", self.data, "--recipe", self.recipe, "--epochs", str(self.epochs),
                "--batch-size", str(self.batch_size), "--seed", str(seed)]
        for key, value in self.model_args:
            args += ["--model-arg", f"{key}={json.dumps(value)}"]
        return args + list(self.options) + ["--out", str(self.out_dir(seed, runs))]

    def command(self, seed: int, runs: PathLike = "runs") -> str:
        return "python -m mobileblocks_edu.train " + shlex.join(self.argv(seed, runs))


# Sized for a 2-core CPU (two single-thread runs side by side). The learning rates come from a short sweep on a
# 1,000-image subset: the linear rule from the papers' batch sizes (EMO: 6e-3 at 2048 -> 3.75e-4 at 128; GhostNet/
# MoCoViT: 0.5 at 1024 -> 0.0625) learned slowest in a few hundred steps; 2e-3 (AdamW) and 0.25 (SGD) fastest.
CIFAR_EPOCHS, IMAGENETTE_EPOCHS = 8, 10
EMO_LR, SGD_LR = "2e-3", "0.25"
_CIFAR = dict(data="cifar10", epochs=CIFAR_EPOCHS, seeds=(0, 1, 2), recipe="emo", group="cifar10",
              options=("--lr", EMO_LR))
_INETTE = dict(data="imagenette", epochs=IMAGENETTE_EPOCHS, seeds=(0,), recipe="emo", group="imagenette",
               batch_size=64, options=("--lr", "1e-3"))  # 2,000 images: batch 64 for more steps, lr scaled linearly
_EMO_ABL = {**_CIFAR, "group": "ablation"}
_MOCOVIT_ABL = dict(data="cifar10", epochs=CIFAR_EPOCHS, seeds=(0, 1, 2), recipe="mocovit", group="ablation",
                    options=("--lr", SGD_LR))
# EMO-1M's norms and activations (BN + SiLU in stages 1-2, LN + GELU in stages 3-4) kept when F changes
_EMO_1M_LAYERS = (("norm_layers", ["bn", "bn", "ln", "ln"]), ("act_layers", ["silu", "silu", "gelu", "gelu"]))

MAIN_GROUPS = ("cifar10", "imagenette")  # the main runs; the rest are ablations

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    # --- CIFAR-10 (the offline subset: 5,438 training, 1,017 test images), one recipe for all
    Experiment("cifar10_emo_1m", "emo_1m_cifar", **_CIFAR, note="EMO-1M, small-input variant"),
    Experiment("cifar10_mocovit_100", "mocovit_100_cifar", **_CIFAR, note="MoCoViT-1.0x, small-input variant"),
    Experiment("cifar10_mocovit_d_100", "mocovit_d_100_cifar", **_CIFAR,
               note="MoCoViT-D-1.0x (dynamic ReLU), small-input variant"),
    Experiment("cifar10_ghostnet_100", "ghostnet_100_cifar", **_CIFAR, note="GhostNet-1.0x, small-input variant"),
    Experiment("cifar10_mobilenetv2_100", "mobilenetv2_100_cifar", **_CIFAR,
               note="MobileNetV2-1.0x, small-input variant"),
    # --- Imagenette (the offline subset: 2,000 training, 500 validation images) at 128x128
    Experiment("imagenette_emo_1m", "emo_1m_imagenette", **_INETTE, note="EMO-1M at 128x128"),
    Experiment("imagenette_ghostnet_100", "ghostnet_100_imagenette", **_INETTE, note="GhostNet-1.0x at 128x128"),
    # --- EMO Table 5 on emo_1m_cifar (F = EW-MHSA + DW-conv is cifar10_emo_1m itself)
    Experiment("ablation_emo_1m_dw_only", "emo_1m_cifar", **_EMO_ABL,
               model_args=(("attn_stages", [False, False, False, False]), *_EMO_1M_LAYERS),
               note="EMO Table 5: F = DW-conv only (no EW-MHSA; norms and activations as in EMO-1M)"),
    Experiment("ablation_emo_1m_attn_only", "emo_1m_cifar", **_EMO_ABL,
               model_args=(("dw_stages", [False, False, False, False]),),
               note="EMO Table 5: F = EW-MHSA only (no DW-conv outside the downsampling blocks)"),
    Experiment("ablation_emo_1m_identity", "emo_1m_cifar", **_EMO_ABL,
               model_args=(("attn_stages", [False, False, False, False]), ("dw_stages", [False, False, False, False]),
                           *_EMO_1M_LAYERS),
               note="EMO Table 5: F = identity (an MLP block; DW-conv only in the downsampling blocks)"),
    # Operator order. Attention after the DW-conv must attend over the expanded values (paper
    # order), which needs the heads to divide the hidden width: 588 channels in stage 4 of EMO-1M
    # with 8 heads of 21 do not, so both rows use 7 heads of 24 there, and the control keeps EMO's
    # order (EW-MHSA, then DW-conv) with attention on the expanded values too.
    Experiment("ablation_emo_1m_attn_dw", "emo_1m_cifar", **_EMO_ABL,
               model_args=(("attn_before_mlp_e", False), ("dim_heads", [16, 16, 20, 24])),
               note="EMO operator order, control: EW-MHSA then DW-conv, attention on the expanded values"),
    Experiment("ablation_emo_1m_dw_attn", "emo_1m_cifar", **_EMO_ABL,
               model_args=(("op_order", "dw_attn"), ("attn_before_mlp_e", False), ("dim_heads", [16, 16, 20, 24])),
               note="EMO operator order: DW-conv then EW-MHSA (the values are the DW-conv branch's output)"),
    # --- MoCoViT Table 7 at 0.5x on 32x32 inputs, GhostNet's SGD recipe (the paper's basic setting)
    Experiment("ablation_ghostnet_050", "ghostnet_050_cifar", **_MOCOVIT_ABL,
               note="MoCoViT Table 7: the GhostNet 0.5x baseline"),
    Experiment("ablation_mocovit_050_sa_mlp", "mocovit_050_cifar", **_MOCOVIT_ABL,
               model_args=(("attn_layer", "mhsa"), ("ffn_layer", "mlp")),
               note="MoCoViT Table 7: vanilla self-attention + vanilla MLP (LayerNorm ahead of each)"),
    Experiment("ablation_mocovit_050_sa_moffn", "mocovit_050_cifar", **_MOCOVIT_ABL,
               model_args=(("attn_layer", "mhsa"),),
               note="MoCoViT Table 7: vanilla self-attention (LayerNorm ahead) + MoFFN"),
    Experiment("ablation_mocovit_050", "mocovit_050_cifar", **_MOCOVIT_ABL,
               note="MoCoViT Table 7: MoSA + MoFFN (MoCoViT 0.5x)"),
    *(Experiment(f"ablation_mocovit_050_{n}", "mocovit_050_cifar", **_MOCOVIT_ABL,
                 model_args=(("norm_position", "ahead"),) + ((("vanilla_norm", n),) if n != "ln" else ()),
                 note=f"MoCoViT Table 8: {n.upper()} ahead of MoSA and MoFFN, no BN inside") for n in ("ln", "bn")),
]}
# The learning-rate sweep behind EMO_LR and SGD_LR: 100 training and 30 test images per class,
# 8 epochs, one seed (a check of which rates learn at all in a few dozen steps, not a tuning).
_SWEEPS = (("emo", "emo_1m_cifar", "emo", "EMO recipe (AdamW)", ("3.75e-4", "1e-3", EMO_LR, "4e-3")),
           ("sgd", "ghostnet_050_cifar", "mocovit", "GhostNet recipe (SGD)", ("0.0625", SGD_LR)))
for _kind, _model, _recipe, _what, _lrs in _SWEEPS:
    for _lr in _lrs:  # the first rate of each is the linear rule's
        EXPERIMENTS[f"lr_sweep_{_kind}_{_lr}"] = Experiment(
            f"lr_sweep_{_kind}_{_lr}", _model, "cifar10", 8, (0,), _recipe, group="lr_sweep",
            options=("--lr", _lr, "--subset", "100", "--eval-subset", "30"),
            note=f"{_what} at lr {_lr}" + (" (the linear rule)" if _lr == _lrs[0] else ""))
# For a GPU, on the whole datasets with batches made on the device: all of Imagenette v2 at 128x128 for fast.ai's
# leaderboard budgets (lesson 12), and one real-scale CIFAR-10 run (lesson 11's REAL_SCALE switch).
_WHOLE = ("--subset", "full", "--loader", "tensor")
for _m, _ep in [(m, ep) for m in ("emo_1m", "mobilenetv2_100", "ghostnet_100", "mocovit_100") for ep in (5, 20)]:
    EXPERIMENTS[f"leaderboard_{_m}_e{_ep}"] = Experiment(
        f"leaderboard_{_m}_e{_ep}", f"{_m}_imagenette", "imagenette", _ep, batch_size=64, group="leaderboard",
        options=("--lr", "1e-3", *_WHOLE), note=f"{_m} on all of Imagenette v2 at 128x128, {_ep} epochs")
EXPERIMENTS["fullscale_cifar10_emo_1m"] = Experiment(
    "fullscale_cifar10_emo_1m", "emo_1m_cifar", "cifar10", 100, (0,), group="fullscale",
    options=("--lr", EMO_LR, *_WHOLE), note="EMO-1M on all of CIFAR-10 for 100 epochs")
# Trained to a plateau (lessons 11-13): the main CIFAR-10 runs and both ablation tables again, for PLATEAU_EPOCHS
# epochs instead of 8, on the book's subset by name, batches made on the device (results.plateaued judges them).
PLATEAU_EPOCHS = 30
PLATEAU_PREFIX = "plateau_"
_TABLE_RUNS = [n for t in _results.ABLATION_TABLES.values() for n, _ in t.values()]  # the ablation tables' rows
for _e in [e for e in EXPERIMENTS.values() if e.group == "cifar10" or e.name in _TABLE_RUNS]:
    EXPERIMENTS[PLATEAU_PREFIX + _e.name] = dataclasses.replace(_e, name=PLATEAU_PREFIX + _e.name, group="plateau",
        epochs=PLATEAU_EPOCHS, options=_e.options + ("--subset", "book", "--loader", "tensor"),
        note=f"{_e.note}; {PLATEAU_EPOCHS} epochs")
# earlier names of experiments
ALIASES = {"ablation_emo_1m_no_attn": "ablation_emo_1m_dw_only"}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        import difflib

        close = difflib.get_close_matches(name, EXPERIMENTS, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown experiment {name!r}{hint} (list_experiments() shows all)")
    return EXPERIMENTS[name]


def groups() -> list[str]:  # the experiments' groups, in the order they first appear
    return list(dict.fromkeys(e.group for e in EXPERIMENTS.values()))


def list_experiments(group: Optional[str] = None) -> list[Experiment]:
    """Every experiment, or those of one group (a ``ValueError`` lists the groups for an unknown one)."""
    if group is not None and group not in groups():
        raise ValueError(f"unknown group {group!r}; the groups are {groups()}")
    return [e for e in EXPERIMENTS.values() if group is None or e.group == group]


class RunMismatchError(ValueError):
    """A run folder that holds another experiment's run (another model, dataset, recipe, seed ...)."""


def _run_record(out: Path) -> Optional[dict]:
    """The run folder's ``result.json`` as a dict (``None`` when there is none); an unreadable
    one raises :class:`RunMismatchError` naming it."""
    if not (out / "result.json").is_file():
        return None
    try:
        return _results.read_json_object(out / "result.json", f"(move the folder {out} away and run again)")
    except ResultFileError as e:
        raise RunMismatchError(str(e)) from None


def _saved_args(out: Path) -> Optional[dict]:
    """The command-line settings a run folder records (``result.json``, else ``last.pt``)."""
    args = (_run_record(out) or {}).get("args")
    if isinstance(args, dict):
        return dict(args)
    if (out / "last.pt").is_file():
        from ..checkpoint import read_checkpoint

        try:
            ck = read_checkpoint(out / "last.pt")
        except CheckpointError as e:
            raise RunMismatchError(f"{e}; move the folder {out} away and run again") from None
        meta = ck.get("meta") if isinstance(ck, dict) else None
        return dict((meta or {}).get("args") or {}) or None
    return None


def _settings_diff(exp: Experiment, seed: int, saved: dict, runs: PathLike = "runs",
                   who: str = "the folder's run") -> list[str]:
    """How the settings ``saved`` differ from ``exp.command(seed)`` in what changes the numbers."""
    from .cli import options
    from .recipes import RESUME_MAY_CHANGE

    want = options(exp.argv(seed, runs))
    diff = [f"{k}: {who} has {saved.get(k)!r}, {exp.name} needs {want[k]!r}"
            for k in sorted(want) if k not in RESUME_MAY_CHANGE and k in saved and saved.get(k) != want[k]]
    return diff + [f"{k}: not recorded by {who}" for k in ("model", "data", "seed") if k not in saved]


def check_run_identity(exp: Experiment, seed: int, runs: PathLike = "runs") -> None:
    """Raise :class:`RunMismatchError` when the folder of ``exp``'s run with ``seed`` holds a run
    made with other settings than ``exp.command(seed)`` (those that change the numbers: model,
    its arguments, data, recipe, epochs, seed ...), or a run that records none."""
    out = exp.out_dir(seed, runs)
    if not (out / "result.json").is_file() and not (out / "last.pt").is_file():
        return
    saved = _saved_args(out)
    if saved is None:
        raise RunMismatchError(f"{out} holds a run that records no settings, so it cannot be checked against "
                               f"{exp.name} (seed {seed}): move it away and run again")
    diff = _settings_diff(exp, seed, saved, runs)
    if diff:
        raise RunMismatchError(f"{out} holds another run than experiment {exp.name} with seed {seed}:\n  "
                               + "\n  ".join(diff) + "\nmove that folder away (or pass another --runs)")


def run_status(exp: Experiment, seed: int, runs: PathLike = "runs") -> str:
    """``"done"``, ``"partial"`` (a ``last.pt`` to resume) or ``"missing"``.

    A folder that holds a run of other settings raises :class:`RunMismatchError`."""
    out = exp.out_dir(seed, runs)
    check_run_identity(exp, seed, runs)
    if (_run_record(out) or {}).get("status") == "done":
        return "done"
    return "partial" if (out / "last.pt").is_file() else "missing"


def run_experiment(name: str, seed: int, runs: PathLike = "runs", extra: Sequence[str] = ()) -> int:
    """Train one seed of an experiment (resume a partial run, skip a finished one); exit status."""
    from .cli import main

    exp = get_experiment(name)
    if seed not in exp.seeds:
        raise ValueError(f"seed {seed!r} is not one of {exp.name}'s seeds {list(exp.seeds)}")
    _check_extra(extra)
    status = run_status(exp, seed, runs)
    if status == "done":
        print(f"{exp.run_name(seed)}: done already ({exp.out_dir(seed, runs)})")
        return 0
    if status == "partial":
        return main(["--out", str(exp.out_dir(seed, runs)), "--resume", *extra])
    return main(exp.argv(seed, runs) + list(extra))


def _check_extra(extra: Sequence[str]) -> None:
    """``extra`` options may change how a run is executed, never what it is (the folder would then
    hold another run than the experiment's)."""
    from .cli import build_parser
    from .recipes import RESUME_MAY_CHANGE

    parser = build_parser()
    try:
        given = vars(parser.parse_args(list(extra)))
    except SystemExit:
        raise ValueError(f"extra options {list(extra)} are not options of python -m mobileblocks_edu.train") from None
    allowed = sorted(RESUME_MAY_CHANGE - {"out", "resume"})
    bad = [k for k, v in given.items() if v is not None and v is not False and k not in allowed]

    def flags(keys):
        return ", ".join("--" + k.replace("_", "-") for k in keys)
    if bad:
        raise ValueError(f"extra options may change how a run is executed ({flags(allowed)}), "
                         f"not what it is; got {flags(bad)}")


def collect(name: str, runs: PathLike = "runs", results: Optional[PathLike] = None,
            checkpoints: Optional[PathLike] = None) -> list[Path]:
    """Copy the finished runs' ``result.json`` to ``results`` (default ``lessons/results``) as
    ``<name>_seed<seed>.json``, atomically and only once checked (:func:`read_result`); with
    ``checkpoints``, also their final weights (``last.pt``) as float16."""
    from ..checkpoint import atomic_write
    from .loop import export_weights

    exp = get_experiment(name)
    results = Path(results) if results is not None else env.results_dir()
    if results is None:
        raise ValueError("results: no repository checkout here; pass a folder")
    written = []
    for seed in exp.seeds:
        if run_status(exp, seed, runs) != "done":
            continue
        out = exp.out_dir(seed, runs)
        read_result(out / "result.json", exp.name, seed, rewrite=f"python -m mobileblocks_edu.experiments run {name} "
                    f"--seed {seed} (move the folder {out} away first)")
        content = (out / "result.json").read_bytes()
        written.append(atomic_write(results / f"{exp.run_name(seed)}.json", lambda f, c=content: f.write(c)))
        if checkpoints is not None:
            written.append(export_weights(out / "last.pt", Path(checkpoints) / f"{exp.run_name(seed)}.pt", half=True))
    return written


def resolve_experiment(name: str) -> Experiment:
    """The experiment called ``name``, or, for a model name such as ``"emo_1m_cifar"``, the one
    main (``cifar10``/``imagenette`` group) experiment that trains that model."""
    name = ALIASES.get(name, name)
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    main = [e for e in EXPERIMENTS.values() if e.model == name and e.group in MAIN_GROUPS and not e.model_args]
    if len(main) == 1:
        return main[0]
    return get_experiment(name)  # raises, with suggestions


def checkpoint_path(name: str, seed: int = 0, checkpoints: Optional[PathLike] = None) -> Optional[Path]:
    """Where :func:`collect` puts the float16 weights of ``name``'s run with ``seed``
    (``lessons/checkpoints/<name>_seed<seed>.pt``), or ``None`` outside a checkout."""
    exp = resolve_experiment(name)
    folder = Path(checkpoints) if checkpoints is not None else env.checkpoints_dir()
    return folder / f"{exp.run_name(seed)}.pt" if folder is not None else None


def build_model(name: str) -> "torch.nn.Module":
    """The untrained model of an experiment: its registered model with the experiment's
    ``model_args`` and the dataset's number of classes."""
    from ..data.datasets import dataset_info
    from ..models.registry import create_model

    exp = resolve_experiment(name)
    return create_model(exp.model, num_classes=dataset_info(exp.data).num_classes, **dict(exp.model_args))


def load_trained(experiment_name: str, seed: int = 0, checkpoints: Optional[PathLike] = None,
                 device: str = "cpu") -> Optional["torch.nn.Module"]:
    """The trained model of an experiment, in eval mode, or ``None`` when its checkpoint has not
    been collected (train it with ``python -m mobileblocks_edu.experiments run NAME --seed S``,
    then ``collect NAME --checkpoint``).

    ``experiment_name`` is an experiment's name (``"cifar10_emo_1m"``, ``"ablation_emo_1m_dw_only"``)
    or the name of a model with one main experiment (``"emo_1m_cifar"``). The weights are the
    committed float16 copy of the run's final weights (EMA weights when the run used EMA), read with
    ``weights_only=True`` and loaded strictly into a float32 model::

        model = load_trained("cifar10_emo_1m")          # seed 0
        if model is None: ...                           # not trained yet: train or skip
    """
    from ..checkpoint import load_checkpoint

    path = checkpoint_path(experiment_name, seed, checkpoints)
    if path is None or not path.is_file():
        return None
    try:
        model = load_checkpoint(build_model(experiment_name), path)
    except CheckpointError as e:
        name = resolve_experiment(experiment_name).name
        raise _results.CheckpointFileError(f"{e}\nwrite it again with: {_rewrite(name, seed)} --checkpoint") from None
    return model.to(device).eval()


def load_trained_or_fresh(experiment: str, seed: int = 0, fallback_model: Optional[str] = None,
                          **fallback_kwargs) -> tuple["torch.nn.Module", bool, str]:
    """``(model, trained, label)`` for a figure about a training-lab experiment: the committed checkpoint of
    ``experiment`` and ``seed`` (:func:`load_trained`), else the same architecture with fresh weights seeded by
    ``seed`` (:func:`build_model`; for a name that is not an experiment, ``create_model(fallback_model,
    **fallback_kwargs)``). ``label`` says which one the figure shows. The model is in eval mode."""
    import torch

    from ..models.registry import create_model

    try:
        known = bool(resolve_experiment(experiment))
    except ValueError:
        known = False
    model = load_trained(experiment, seed=seed) if known else None
    if model is not None:
        return model.float().eval(), True, f"{experiment} (trained, seed {seed})"
    if not known and fallback_model is None:
        raise ValueError(f"unknown experiment {experiment!r} and no fallback_model given")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(experiment) if known else create_model(fallback_model, **fallback_kwargs)
    what = "no checkpoint yet" if known else "no such experiment yet"
    return model.eval(), False, f"{experiment} (untrained: {what})"


def _rewrite(name: str, seed: int) -> str:
    return f"python -m mobileblocks_edu.experiments run {name} --seed {seed}, then collect {name}"


def read_result(path: PathLike, experiment: Optional[str] = None, seed: Optional[int] = None,
                rewrite: Optional[str] = None) -> dict:
    """The result file at ``path``, checked: a JSON object with every key the lessons read, no NaN,
    a finished run (:class:`UnfinishedRunError` otherwise) and, for ``experiment`` and ``seed``
    (read from a name ``<experiment>_seed<seed>.json`` when not given), a run of that
    experiment's command. Anything else raises :class:`ResultFileError` naming the file, what is
    wrong and the command that writes it again."""
    path = Path(path)
    if experiment is None:
        stem, _, s = path.stem.rpartition("_seed")
        if ALIASES.get(stem, stem) in EXPERIMENTS and s.isdigit():
            experiment, seed = stem, int(s) if seed is None else seed
    exp = resolve_experiment(experiment) if experiment is not None else None
    if rewrite is None:
        rewrite = _rewrite(exp.name, seed) if exp is not None and seed is not None else "the command that wrote it"
    result = _results.check_result(_results.read_json_object(path, rewrite), path, rewrite)
    if exp is not None and seed is not None:
        diff = _settings_diff(exp, seed, result["args"], who="the result")
        if result["seed"] != seed:
            diff.insert(0, f"seed: the result has {result['seed']!r}, the file name says {seed}")
        if diff:
            raise _results.file_error(path, f"is not a run of {exp.name} with seed {seed} as it now stands:\n  "
                                      + "\n  ".join(diff) + "\n", rewrite)
    return result


def load_results(name: str, results: Optional[PathLike] = None) -> list[dict]:
    """The collected result files of an experiment (one dict per finished seed), each checked by
    :func:`read_result`. A seed without a file is skipped; a run that did not finish is left out
    with one printed line; any other fault raises :class:`ResultFileError`."""
    exp = resolve_experiment(name)
    results = Path(results) if results is not None else env.results_dir()
    files = [(s, results / f"{exp.run_name(s)}.json") for s in exp.seeds] if results is not None else []
    finished = []
    for seed, f in files:
        if not f.exists():
            continue
        try:
            finished.append(read_result(f, exp.name, seed))
        except UnfinishedRunError as e:
            print(f"left out: {e}")
    return finished


def summarize(name: str, results: Optional[PathLike] = None, metric: str = "top1") -> dict:
    """Mean and SD over the finished seeds of the final ``metric``, with params, MACs, times (``summarize_runs``)."""
    runs = load_results(name, results)
    if not runs:
        raise FileNotFoundError(f"no collected results for {name!r} in {results or env.results_dir()}")
    return _results.summarize_runs(name, runs, metric)


def ablation_claims(results: Optional[PathLike] = None, plateau: bool = False) -> dict:
    """The papers' ablation claims judged on the runs in ``results`` (``results.judge_ablation_claims``), or on
    the runs trained to a plateau."""
    pre = PLATEAU_PREFIX if plateau else ""
    summaries = {pre + n: summarize(pre + n, results) for n in _TABLE_RUNS if load_results(pre + n, results)}
    return _results.judge_ablation_claims(summaries, prefix=pre)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobileblocks_edu.experiments",
                                description="The training lab's named experiments.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="print every experiment's commands and the state of its runs")
    r = sub.add_parser("run", help="train an experiment (every seed, or --seed)")
    r.add_argument("--seed", type=int)
    r.add_argument("--threads", type=env.int_at_least(1))
    c = sub.add_parser("collect", help="copy finished results (and --checkpoint weights) into lessons/")
    c.add_argument("--checkpoint", action="store_true")
    for q, arg in ((ls, "--group"), (r, "name"), (c, "name")):
        q.add_argument(arg)
    for q in (ls, r, c):
        q.add_argument("--runs", default="runs")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            for e in list_experiments(args.group):
                print(f"# {e.name} [{e.group}]: {e.note}")
                for s in e.seeds:
                    try:
                        state = run_status(e, s, args.runs)
                    except RunMismatchError as err:
                        state = f"unusable folder: {str(err).splitlines()[0]}"
                    print(f"{e.command(s, args.runs)}    # {state}")
            return 0
        if args.cmd == "run":
            exp = get_experiment(args.name)
            extra = ["--threads", str(args.threads)] if args.threads else []
            codes = (run_experiment(args.name, s, args.runs, extra) for s in ([args.seed] if args.seed is not None
                                                                             else exp.seeds))
            return next((rc for rc in codes if rc), 0)  # stops at the first seed that fails
        print(*collect(args.name, args.runs, checkpoints=env.checkpoints_dir() if args.checkpoint else None), sep="\n")
        return 0
    except (ValueError, CheckpointError, WriteError) as e:
        p.error(str(e))


__all__ = ["Experiment", "EXPERIMENTS", "get_experiment", "groups", "list_experiments", "RunMismatchError", "main",
           "check_run_identity", "run_status", "run_experiment", "collect", "resolve_experiment", "checkpoint_path",
           "build_model", "load_trained", "load_trained_or_fresh", "ResultFileError", "UnfinishedRunError",
           "read_result", "read_report", "load_results", "FULL_DATASET_IMAGES", "run_data", "describe_run_data",
           "summarize", "ablation_claims"]

if __name__ == "__main__":
    sys.exit(main())

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
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from .. import env
from ..checkpoint import CheckpointError, WriteError
from ..env import PathLike
from . import results as _results
from .catalog import (  # the catalogue of named experiments, re-exported
    ABLATION_SETTINGS,
    ALIASES,
    CIFAR_EPOCHS,
    EMO_LR,
    EXPERIMENTS,
    IMAGENETTE_EPOCHS,
    LEADERBOARD_ROW,
    MAIN_GROUPS,
    PLATEAU_EPOCHS,
    PLATEAU_PREFIX,
    SCALING_CLAIMS,
    SCALING_RUNS,
    SCALING_SIZES,
    SGD_LR,
    TABLE_RUNS,
    Experiment,
    ablation_experiment,
)
from .results import FULL_DATASET_IMAGES, ResultFileError, UnfinishedRunError, describe_run_data, read_report, run_data

ABLATION_CLAIMS, ABLATION_TABLES = _results.ABLATION_CLAIMS, _results.ABLATION_TABLES  # the papers' tables, re-exported

if TYPE_CHECKING:
    import torch


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


def train_with_progress(name: str, seed: int = 0, runs: PathLike = "runs", extra: Sequence[str] = ()) -> dict:
    """Train one seed of an experiment like :func:`run_experiment` (resume a partial run, skip a finished one),
    printing after every epoch the minutes it took on average and the estimate for the epochs left (lesson 11's
    real-scale switch); returns the run's ``result.json`` content."""
    import json
    import time

    from .cli import options, run

    exp = get_experiment(name)
    _check_extra(extra)
    status, out = run_status(exp, seed, runs), exp.out_dir(seed, runs)
    if status == "done":
        print(f"{exp.run_name(seed)}: done already ({out})")
        return _run_record(out)
    first = len(json.loads((out / "history.json").read_text())) if status == "partial" else 0
    t0 = time.perf_counter()

    def report(h: dict) -> None:
        per_epoch = (time.perf_counter() - t0) / (h["epoch"] - first)
        print(f"epoch {h['epoch']}/{exp.epochs}: {per_epoch / 60:.2f} min per epoch, about "
              f"{per_epoch * (exp.epochs - h['epoch']) / 60:.0f} min to go; test top-1 {h.get('val_top1', 0):.1f} %")

    argv = ["--out", str(out), "--resume", *extra] if status == "partial" else [*exp.argv(seed, runs), *extra]
    return run(options(argv), on_epoch=report).result


def run_in_parallel(exp: Experiment, seeds: Sequence[int], jobs: int, runs: PathLike = "runs",
                    extra: Sequence[str] = ()) -> int:
    """Train ``seeds`` of ``exp`` with ``jobs`` processes at once (``experiments run NAME --jobs K``): on one GPU,
    several small runs keep it busier than one. Each process runs ``run NAME --seed S`` (resuming, or skipping a
    finished run) and writes to ``<runs>/<name>_seed<S>.log``; returns the first non-zero exit status, else 0."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    Path(runs).mkdir(parents=True, exist_ok=True)

    def one(seed: int) -> int:
        cmd = [sys.executable, "-m", "mobileblocks_edu.experiments", "run", exp.name, "--seed", str(seed),
               "--runs", str(runs), *extra]
        with open(Path(runs) / f"{exp.run_name(seed)}.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{exp.run_name(seed)}: exit status {rc} (log: {Path(runs) / f'{exp.run_name(seed)}.log'})")
        return rc

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(one, seeds))
    return next((rc for rc in codes if rc), 0)


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
    """``(model, trained, label)`` for a figure about a training-lab experiment: the checkpoint of a better-trained
    run of the same model when one is here (:data:`PREFERRED`: a real-scale, leaderboard or plateau run a reader
    trained and collected), else the committed checkpoint of ``experiment`` and ``seed`` (:func:`load_trained`),
    else the same architecture with fresh weights seeded by ``seed`` (:func:`build_model`; for a name that is not an
    experiment, ``create_model(fallback_model, **fallback_kwargs)``). ``label`` says which one the figure shows. The
    model is in eval mode."""
    import torch

    from ..models.registry import create_model

    try:
        known = resolve_experiment(experiment).name
    except ValueError:
        known = None
    for name in (*PREFERRED.get(known, ()), known) if known else ():
        model = load_trained(name, seed=seed)
        if model is not None:
            return model.float().eval(), True, f"{name} (trained, seed {seed})"
    if not known and fallback_model is None:
        raise ValueError(f"unknown experiment {experiment!r} and no fallback_model given")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(experiment) if known else create_model(fallback_model, **fallback_kwargs)
    what = "no checkpoint yet" if known else "no such experiment yet"
    return model.eval(), False, f"{experiment} (untrained: {what})"


# Better-trained runs of the same model as a main experiment, best first: when a reader has trained and collected
# one (lesson 11's REAL_SCALE switch, the leaderboard or plateau runs), the later lessons' figures show it.
PREFERRED = {"cifar10_emo_1m": ("fullscale_cifar10_emo_1m", "plateau_cifar10_emo_1m"),
             **{f"imagenette_{m}": (f"leaderboard_{m}_e20", f"leaderboard_{m}_e5") for m in ("emo_1m", "ghostnet_100")}}


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


def ablation_claims(results: Optional[PathLike] = None, setting: str = "short") -> dict:
    """The papers' ablation claims judged on the runs in ``results`` (``results.judge_ablation_claims``) of one of
    :data:`ABLATION_SETTINGS`: the short runs, the runs trained to a plateau, or EMO's table on the whole
    Imagenette (its claims only)."""
    names = [n for n in (ablation_experiment(n, setting) for n in TABLE_RUNS) if n]
    summaries = {n: summarize(n, results) for n in names if load_results(n, results)}
    return _results.judge_ablation_claims(summaries, lambda n: ablation_experiment(n, setting))


def scaling_gaps(results: Optional[PathLike] = None) -> dict:
    """Each set of :data:`SCALING_RUNS` at every training-set size with runs of all its rows:
    ``{key: [row, ...]}`` in order of size, ``row`` with ``per_class`` (images per class; ``None``: the short runs
    on the book's subset), ``images`` (training images), ``top1`` and ``seeds`` (per experiment), and for a pair
    ``gap`` and ``se`` (:func:`results.gap <mobileblocks_edu.train.results.gap>`)."""
    out = {}
    for key, names in SCALING_RUNS.items():
        rows = []
        for n in (*SCALING_SIZES, None):
            runs = [load_results(f"scale{n}_{name}" if n else name, results) for name in names]
            if not all(runs):
                continue
            tops = [[r["final"]["top1"] for r in rs] for rs in runs]
            row = {"per_class": n, "images": runs[0][0]["train_images"], "top1": [statistics.fmean(t) for t in tops],
                   "seeds": [len(t) for t in tops], "runs": runs}
            if len(names) == 2:
                row["gap"], row["se"] = _results.gap(*tops)
            rows.append(row)
        out[key] = sorted(rows, key=lambda r: r["images"])
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobileblocks_edu.experiments",
                                description="The training lab's named experiments.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="print every experiment's commands and the state of its runs")
    r = sub.add_parser("run", help="train an experiment (every seed, or --seed)")
    r.add_argument("--seed", type=int)
    r.add_argument("--threads", type=env.int_at_least(1))
    r.add_argument("--jobs", type=env.int_at_least(1), default=1,
                   help="train this many seeds at once, each in its own process (they share one GPU; the output of "
                        "each goes to <runs>/<name>_seed<seed>.log)")
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
            seeds = [args.seed] if args.seed is not None else list(exp.seeds)
            if args.jobs > 1 and len(seeds) > 1:
                return run_in_parallel(exp, seeds, args.jobs, args.runs, extra)
            codes = (run_experiment(args.name, s, args.runs, extra) for s in seeds)
            return next((rc for rc in codes if rc), 0)  # stops at the first seed that fails
        print(*collect(args.name, args.runs, checkpoints=env.checkpoints_dir() if args.checkpoint else None), sep="\n")
        return 0
    except (ValueError, CheckpointError, WriteError) as e:
        p.error(str(e))


__all__ = ["Experiment", "EXPERIMENTS", "ALIASES", "MAIN_GROUPS", "CIFAR_EPOCHS", "IMAGENETTE_EPOCHS", "EMO_LR",
           "SGD_LR", "PLATEAU_EPOCHS", "PLATEAU_PREFIX", "TABLE_RUNS", "get_experiment", "groups",
           "list_experiments", "RunMismatchError", "main", "check_run_identity", "run_status", "run_experiment",
           "collect", "resolve_experiment", "checkpoint_path", "build_model", "load_trained",
           "load_trained_or_fresh", "PREFERRED", "run_in_parallel", "train_with_progress", "ResultFileError",
           "UnfinishedRunError", "read_result", "read_report", "load_results", "FULL_DATASET_IMAGES", "run_data",
           "describe_run_data", "summarize", "ablation_claims", "SCALING_SIZES", "SCALING_CLAIMS", "SCALING_RUNS",
           "scaling_gaps", "ABLATION_SETTINGS", "LEADERBOARD_ROW", "ablation_experiment"]

if __name__ == "__main__":
    sys.exit(main())

"""What a run reached: the evaluation of a classifier (loss, top-1, top-5, per-class accuracy, confusion
matrix: :func:`evaluate`), and reading back the files the lessons read: training results and measurement reports.

Nothing a lesson reads is trusted blindly. A file that is missing, empty, truncated, not a JSON
object, without a key the lessons read, or with a NaN raises :class:`ResultFileError`, whose
message names the file, says what is wrong and gives the command that writes it again. A training
result must also be of a finished run (status ``"done"`` and every epoch its command asks for);
one that is not raises :class:`UnfinishedRunError` (a ``ResultFileError``), and
:func:`mobileblocks_edu.train.experiments.load_results` leaves such a run out with one printed line.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import env
from ..blocks.layers import eval_mode
from ..checkpoint import CheckpointError
from ..env import PathLike, check_device, check_positive
from . import distributed
from .recipes import amp_dtype, autocast


@dataclass
class EvalResult:
    """Accuracy of a classifier on a dataset; accuracies in percent.

    ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j``; ``per_class[i]`` is
    the recall of class ``i`` (``None`` when the data holds no image of it).
    """

    loss: float
    top1: float
    top5: float
    per_class: list
    confusion: torch.Tensor
    n: int
    classes: Optional[list] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = self.confusion.tolist()
        return d


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = prediction."""
    check_positive("num_classes", num_classes, int)
    for name, t in (("targets", targets), ("preds", preds)):
        if t.numel() and not 0 <= int(t.min()) <= int(t.max()) < num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes - 1}], "
                             f"got values from {int(t.min())} to {int(t.max())}")
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """How many targets are among the ``k`` highest logits (``k`` capped at the number of classes)."""
    check_positive("k", k, int)
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: Optional[Union[str, torch.device]] = None,
    amp: str = "auto",
    num_classes: Optional[int] = None,
    channels_last: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Top-1, top-5, per-class accuracy and confusion matrix of ``model`` on ``loader``
    (the loss is plain cross-entropy, without label smoothing).

    In a distributed run whose loader holds one shard of the images (its sampler's
    ``num_replicas`` > 1, :func:`mobileblocks_edu.train.distributed.shard_loader`), every process
    evaluates its shard and the sums and the confusion matrix are added over the processes, so
    each image counts exactly once and every process returns the result for all of them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = check_device(device)
    dtype = amp_dtype(amp, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top-1 hits, top-5 hits, images
    all_t, all_p, outputs = [], [], 0
    with eval_mode(model):  # every submodule gets its own mode back (a frozen BN stays in eval)
        for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
            x, y = x.to(device, memory_format=fmt), y.to(device)
            with autocast(device, dtype):
                logits = model(x)
            logits, outputs = logits.float(), logits.shape[1]
            if len(y) and int(y.max()) >= outputs:
                raise ValueError(f"the data has label {int(y.max())} but the model has {outputs} outputs")
            sums += torch.tensor([float(nn.functional.cross_entropy(logits, y, reduction="sum")),
                                  topk_correct(logits, y, 1), topk_correct(logits, y, 5), len(y)], dtype=torch.float64)
            all_t.append(y.cpu())
            all_p.append(logits.argmax(1).cpu())
    if sums[3] == 0:
        raise ValueError("evaluate got an empty loader")
    classes = getattr(loader.dataset, "classes", None)
    num_classes = max(num_classes or (len(classes) if classes else 0), outputs)  # a model may have more outputs
    cm = confusion_matrix(torch.cat(all_t), torch.cat(all_p), num_classes)
    if getattr(loader.sampler, "num_replicas", 1) > 1:  # one shard per process: add up the shards
        sums, cm = distributed.all_reduce_sum(sums), distributed.all_reduce_sum(cm)
    loss, top1, top5, n = sums.tolist()
    per_class = [100.0 * float(cm[i, i]) / float(s) if s > 0 else None for i, s in enumerate(cm.sum(1).tolist())]
    return EvalResult(loss / n, 100.0 * top1 / n, 100.0 * top5 / n, per_class, cm, int(n),
                      list(classes) if classes else None)


FINISHED = "done"  # the status result.json records for a run that ran every epoch
# the keys of a training result that the library and the lessons read
RESULT_KEYS = ("name", "status", "command", "seed", "args", "model", "data", "epochs_done", "steps_per_epoch",
               "batch_size", "train_images", "val_images", "classes", "input_size", "params", "wall_time_s",
               "train_img_per_s", "history", "final")
_TYPES = {"args": dict, "data": dict, "final": dict, "history": list, "classes": list, "input_size": list,
          "epochs_done": int, "seed": int, "command": str, "model": str}
# the committed measurement reports: the command that writes each one, and the keys the lessons read
_BENCH_KEYS = ("command", "machine", "torch", "threads", "repeats", "date", "omp_wait_policy", "allocator",
               "load_average_start", "load_average_end", "checks", "groups")
REPORTS = {
    "bench_cpu": ("python -m mobileblocks_edu.bench --profile --repeats 5 --output lessons/results/bench_cpu.json",
                  _BENCH_KEYS),
    "bench_cpu_keep_memory": ("python -m mobileblocks_edu.bench --profile --keep-freed-memory --repeats 5 "
                              "--output lessons/results/bench_cpu_keep_memory.json", _BENCH_KEYS),
    "latency_cpu": ("python -m mobileblocks_edu.deploy latency --output lessons/results/latency_cpu.json",
                    ("command", "machine", "platform", "python", "torch", "onnx", "onnxruntime", "rounds", "inner",
                     "date", "wall_s", "load_average_start", "load_average_end", "models")),
    "quant_imagenette": ("python -m mobileblocks_edu.deploy quantize",
                         ("command", "machine", "date", "method", "calibration_per_class", "load_average_start",
                          "models")),
}


class ResultFileError(ValueError):
    """A result or report file that cannot be used (missing, truncated, malformed, a missing key, a
    NaN, an unfinished run, another experiment's run); the message names the file, what is wrong
    and the command that writes it again."""


class UnfinishedRunError(ResultFileError):
    """The result of a run that did not finish: status ``"interrupted"``/``"failed"``, or fewer
    epochs than its command asks for."""


class CheckpointFileError(ResultFileError, CheckpointError):
    """A collected checkpoint that cannot be loaded (both a ``ResultFileError`` and a ``CheckpointError``)."""


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def file_error(path: PathLike, what: str, rewrite: str, kind: type = ResultFileError) -> ResultFileError:
    """The error for ``path``: ``"<path> <what>; write it again with: <rewrite>"``."""
    return kind(f"{path} {what}; write it again with: {rewrite}")


def read_json_object(path: PathLike, rewrite: str) -> dict:
    """The JSON object in ``path``, read strictly (no NaN or Infinity), else :class:`ResultFileError`."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "does not exist" if not path.exists() else "is not a file", rewrite)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise file_error(path, f"cannot be read ({type(e).__name__}: {e})", rewrite) from e
    if not text.strip():
        raise file_error(path, "is empty (an interrupted write?)", rewrite)
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as e:
        raise file_error(path, f"holds {e} (strict JSON has no NaN or Infinity)", rewrite) from None
    except json.JSONDecodeError as e:
        raise file_error(path, f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; truncated?)",
                         rewrite) from None
    if not isinstance(obj, dict):
        raise file_error(path, f"holds a JSON {type(obj).__name__}, not an object", rewrite)
    return obj


def check_keys(obj: dict, path: PathLike, keys, rewrite: str) -> None:
    """Raise :class:`ResultFileError` when ``obj`` lacks one of ``keys`` or holds one of another type."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise file_error(path, f"has no {', '.join(map(repr, missing))} (the lessons read them)", rewrite)
    wrong = [f"{k!r} is a {type(obj[k]).__name__}, not a {t.__name__}" for k, t in _TYPES.items()
             if k in keys and (not isinstance(obj[k], t) or (t is int and isinstance(obj[k], bool)))]
    if wrong:
        raise file_error(path, f"is malformed: {'; '.join(wrong)}", rewrite)


def check_result(result: dict, path: PathLike, rewrite: str) -> dict:
    """``result`` when it is a finished run's record with every key the lessons read, else
    :class:`ResultFileError` (:class:`UnfinishedRunError` for a run that did not finish)."""
    check_keys(result, path, RESULT_KEYS, rewrite)
    asked = result["args"].get("epochs") or (result.get("config") or {}).get("epochs")
    done = result["epochs_done"]
    if result["status"] != FINISHED or (isinstance(asked, int) and done < asked):
        raise file_error(path, f"is an unfinished run (status {result['status']!r}, {done} of {asked} epochs)",
                         rewrite, UnfinishedRunError)
    if not isinstance(result["final"].get("top1"), (int, float)):
        raise file_error(path, "is malformed: its 'final' evaluation has no number 'top1'", rewrite)
    return result


def read_report(name: str, results: Optional[PathLike] = None) -> dict:
    """A committed measurement report (``"bench_cpu"``, ``"bench_cpu_keep_memory"``, ``"latency_cpu"``,
    ``"quant_imagenette"``) from ``results`` (default ``lessons/results``), checked: a JSON object
    with the keys the lessons read, no NaN. Anything else raises :class:`ResultFileError`."""
    if name not in REPORTS:
        raise ValueError(f"unknown report {name!r}; the reports are {sorted(REPORTS)}")
    folder = Path(results) if results is not None else env.results_dir()
    if folder is None:
        raise ValueError("results: no repository checkout here; pass a folder")
    command, keys = REPORTS[name]
    path = folder / f"{name}.json"
    report = read_json_object(path, command)
    check_keys(report, path, keys, command)
    return report


def summarize_runs(name: str, runs: list[dict], metric: str = "top1") -> dict:
    """Mean and standard deviation of the final evaluation's ``metric`` over ``runs`` (checked,
    finished results), with the params, MACs, wall time and training throughput of the runs."""
    missing = [r.get("seed") for r in runs if metric not in (r.get("final") or {})]
    if missing:
        known = sorted(k for k, v in (runs[0].get("final") or {}).items() if isinstance(v, (int, float)))
        raise ValueError(f"metric {metric!r} is not in the final evaluation of {name!r} (seeds {missing}); "
                         f"choose one of {known}")
    values = [r["final"][metric] for r in runs]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"metric {metric!r} of {name!r} is not a number in every run: {values}")
    return {
        "name": name,
        "model": runs[0]["model"],
        "seeds": [r["seed"] for r in runs],
        metric: values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "params": runs[0]["params"],
        "macs": runs[0].get("macs"),
        "wall_time_s": [r["wall_time_s"] for r in runs],
        "train_img_per_s": [r["train_img_per_s"] for r in runs],
    }


# fast.ai's Imagenette leaderboard, 128-pixel rows (top-1 %, runs averaged): Imagenette v2 from random weights
# (github.com/fastai/imagenette, README at commit 02394868ec414f6d051b4ec420374bcd2a2867b4), quoted as theirs.
IMAGENETTE_LEADERBOARD = {5: (85.77, "5, mean", "fastai2 train_imagenette.py 2020-10 (mini net)"),
                          20: (91.57, "5, mean", "fastai2 train_imagenette.py 2020-01 + MaxBlurPool"),
                          80: (93.55, "1", "fastai2 train_imagenette.py 2020-01")}
IMAGENETTE_LEADERBOARD_URL = "https://github.com/fastai/imagenette#imagenette-leaderboard"

# Sizes of the full datasets (training, evaluation images): CIFAR-10 (Krizhevsky, 2009) and
# Imagenette v2 (fast.ai), to say how much of a dataset a committed run saw.
FULL_DATASET_IMAGES = {"cifar10": (50_000, 10_000), "imagenette": (9_469, 3_925)}


def run_data(result: dict) -> dict:
    """What a committed run trained on, read from its result file alone (so it is the same on
    every machine, whatever data is found locally): ``dataset`` (title), ``source`` (the folder
    of the data directory the images were read from), ``subset``/``eval_subset`` (images per
    class, ``None``: all; a ``subset`` of ``"book"``: the book's subset of both splits),
    ``train_images``, ``eval_images``, ``full_train_images``, ``full_eval_images`` (the whole
    dataset's), ``classes``, ``img_size``, ``epochs``, ``steps_per_epoch``, ``steps``, ``batch_size``."""
    from ..data.datasets import dataset_info

    info = dataset_info(result["data"]["name"])
    full = FULL_DATASET_IMAGES.get(info.name, (None, None))
    return {
        "dataset": info.title, "source": result["data"].get("source"),
        "subset": result["data"].get("subset"), "eval_subset": result["data"].get("eval_subset"),
        "train_images": result["train_images"], "eval_images": result["val_images"],
        "full_train_images": full[0], "full_eval_images": full[1],
        "classes": len(result["classes"]), "img_size": result["input_size"][-1],
        "epochs": result["epochs_done"], "steps_per_epoch": result["steps_per_epoch"],
        "steps": result["steps_per_epoch"] * result["epochs_done"], "batch_size": result["batch_size"],
    }


def describe_run_data(result: dict) -> str:
    """One sentence on a committed run's data and length, from its result file (see
    :func:`run_data`), e.g. "5,438 of CIFAR-10's 50,000 training images (folder cifar10/train)
    and 1,017 of its 10,000 test images, 10 classes at 32x32; 8 epochs of 42 steps (336 steps)
    at batch 128"."""
    d = run_data(result)
    split = "test" if d["dataset"] == "CIFAR-10" else "validation"

    def part(n, full, what):
        return f"{n:,} of {d['dataset']}'s {full:,} {what} images" if full and n < full else f"{n:,} {what} images"

    where = f" (folder {d['source']})" if d["source"] else ""
    per_class = (", the book's subset" if d["subset"] == "book" else f", {d['subset']} per class" if d["subset"]
                 else "")
    return (f"{part(d['train_images'], d['full_train_images'], 'training')}{where}{per_class} and "
            f"{part(d['eval_images'], d['full_eval_images'], split)}, {d['classes']} classes at "
            f"{d['img_size']}x{d['img_size']}; {d['epochs']} epochs of {d['steps_per_epoch']} steps "
            f"({d['steps']:,} steps) at batch {d['batch_size']}")


# The papers' ablation tables that the training lab repeats: row -> (named experiment, the paper's ImageNet-1K
# top-1, %). EMO's Table 5 was run on EMO-5M; the full operator's row is its 78.4, and the operator-order study
# (rows marked *) reports the order DW-conv first 0.6 below it (EMO, Sec. 4.3). The full operator's experiment is
# the main EMO-1M run; the two order rows are their own control pair (attention on the expanded values, another
# head split in stage 4: lesson 13), so neither of them stands for EMO-1M.
EMO_TABLE5 = {
    "F = identity": ("ablation_emo_1m_identity", 73.5),
    "F = DW-conv only": ("ablation_emo_1m_dw_only", 76.6),
    "F = EW-MHSA only": ("ablation_emo_1m_attn_only", 77.6),
    "F = EW-MHSA + DW-conv (EMO)": ("cifar10_emo_1m", 78.4),
    "EW-MHSA, then DW-conv *": ("ablation_emo_1m_attn_dw", 78.4),
    "DW-conv, then EW-MHSA *": ("ablation_emo_1m_dw_attn", 78.4 - 0.6),
}
# MoCoViT's Table 7 (0.5x, 180 epochs): row -> (named experiment, the paper's top-1, %).
MOCOVIT_TABLE7 = {
    "GhostNet 0.5x": ("ablation_ghostnet_050", 64.9),
    "vanilla SA + vanilla MLP": ("ablation_mocovit_050_sa_mlp", 65.0),
    "vanilla SA + MoFFN": ("ablation_mocovit_050_sa_moffn", 65.3),
    "MoSA + MoFFN (MoCoViT)": ("ablation_mocovit_050", 65.4),
}
# Each claim: (table, the row the paper puts higher, the row it puts lower).
ABLATION_CLAIMS = {
    "emo_dw": ("EMO", "F = DW-conv only", "F = identity"),
    "emo_attn": ("EMO", "F = EW-MHSA only", "F = identity"),
    "emo_attn_vs_dw": ("EMO", "F = EW-MHSA only", "F = DW-conv only"),
    "emo_both_vs_dw": ("EMO", "F = EW-MHSA + DW-conv (EMO)", "F = DW-conv only"),
    "emo_both_vs_attn": ("EMO", "F = EW-MHSA + DW-conv (EMO)", "F = EW-MHSA only"),
    "emo_order": ("EMO", "EW-MHSA, then DW-conv *", "DW-conv, then EW-MHSA *"),
    "t7_sa": ("MoCoViT", "vanilla SA + vanilla MLP", "GhostNet 0.5x"),
    "t7_moffn": ("MoCoViT", "vanilla SA + MoFFN", "vanilla SA + vanilla MLP"),
    "t7_mosa": ("MoCoViT", "MoSA + MoFFN (MoCoViT)", "vanilla SA + MoFFN"),
    "t7_mocovit": ("MoCoViT", "MoSA + MoFFN (MoCoViT)", "GhostNet 0.5x"),
}
ABLATION_TABLES = {"EMO": EMO_TABLE5, "MoCoViT": MOCOVIT_TABLE7}


def pooled_std(summaries: dict) -> float:
    """The seed-to-seed standard deviation pooled over the settings (``summarize`` results) with 2 or more seeds
    (NaN when none has)."""
    import math

    num = sum((len(s["seeds"]) - 1) * s["std"] ** 2 for s in summaries.values() if len(s["seeds"]) > 1)
    den = sum(len(s["seeds"]) - 1 for s in summaries.values() if len(s["seeds"]) > 1)
    return math.sqrt(num / den) if den else float("nan")


def gap(better: list[float], worse: list[float]) -> tuple[float, float]:
    """``(difference of the means, its standard error)`` of two rows' per-seed values; the standard error is
    ``sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with each row's own spread (NaN unless both rows have 2 or more seeds)."""
    import math

    if not better or not worse:
        raise ValueError(f"a gap needs values on both sides, got {len(better)} and {len(worse)}")
    diff = statistics.fmean(better) - statistics.fmean(worse)
    if min(len(better), len(worse)) < 2:
        return diff, float("nan")
    return diff, math.sqrt(statistics.variance(better) / len(better) + statistics.variance(worse) / len(worse))


def epoch_gaps(better_runs: list[dict], worse_runs: list[dict], key: str = "val_top1") -> list[tuple[float, float]]:
    """:func:`gap` after every epoch, from the runs' histories (up to the shortest history)."""
    epochs = min(len(r["history"]) for r in better_runs + worse_runs)
    return [gap([r["history"][e][key] for r in better_runs], [r["history"][e][key] for r in worse_runs])
            for e in range(epochs)]


# The calibration baseline's own figure: ResNet-20 on all of CIFAR-10 (45,000 training images, 64k iterations at
# batch 128, augmented with 4-pixel padding and flips): 8.75 % test error (He et al., CVPR 2016, Table 6).
RESNET20_PAPER_TOP1 = 100 - 8.75


def plateau_gain(history: list[dict], key: str = "val_top1") -> float:
    """Points of ``key`` gained over the last quarter of the epochs: the last epoch's value minus the
    best value up to the epoch where the last quarter starts (``epochs - ceil(epochs / 4)``)."""
    import math

    values = [h[key] for h in history if key in h]
    if len(values) < 4:
        raise ValueError(f"a plateau needs at least 4 epochs with {key!r}, got {len(values)}")
    start = len(values) - math.ceil(len(values) / 4)
    return values[-1] - max(values[:start])


def plateaued(history: list[dict], points: float = 1.0, key: str = "val_top1") -> bool:
    """Whether a run reached a plateau: it gained less than ``points`` over its last quarter (:func:`plateau_gain`)."""
    return plateau_gain(history, key) < points


def seeds_needed(gap: float, sd: float, power: float = 0.8, alpha: float = 0.05) -> dict:
    """Seeds per setting to resolve a difference ``gap`` between two settings whose runs spread with
    standard deviation ``sd`` (both in points):

    * ``test``: a two-sided two-sample z-test at level ``alpha`` with ``power``:
      ``n = 2 (z_{1-alpha/2} + z_{power})^2 sd^2 / gap^2``;
    * ``two_se``: the lab's verdict rule ("holds" beyond two standard errors) met by the expected
      difference itself: ``gap > 2 sd sqrt(2 / n)``, so ``n > 8 sd^2 / gap^2``.

    Both rounded up (at least 2); ``inf`` for a gap of 0."""
    import math
    from statistics import NormalDist

    if not (sd >= 0 and math.isfinite(sd)) or not math.isfinite(gap):
        raise ValueError(f"gap and sd must be finite numbers (sd >= 0), got {gap!r} and {sd!r}")
    if gap == 0:
        return {"test": math.inf, "two_se": math.inf}
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return {"test": max(2, math.ceil(2 * (z * sd / gap) ** 2)), "two_se": max(2, math.floor(8 * (sd / gap) ** 2) + 1)}


def judge_ablation_claims(summaries: dict, experiment=None) -> dict:
    """Every claim of :data:`ABLATION_CLAIMS` judged on ``summaries`` (experiment name -> :func:`summarize_runs`
    result, for the experiments that have runs): the paper's difference, ours (difference of the seed means), its
    standard error (the standard deviation pooled over all settings of the claim's table that have runs) and the
    verdict: "holds" beyond two standard errors in the paper's direction, "reversed" beyond two against it, else
    "within noise" ("not run" without runs; "one seed: no spread" when no row of the table has two seeds).
    ``experiment`` maps a row's short-run experiment to the one judged instead (e.g. its plateau twin); a claim
    whose rows it maps to ``None`` is left out."""
    import math

    out = {}
    for key, (t, better, worse) in ABLATION_CLAIMS.items():
        table = {row: ((experiment or str)(name), paper) for row, (name, paper) in ABLATION_TABLES[t].items()}
        if table[better][0] is None or table[worse][0] is None:
            continue
        sd = pooled_std({row: summaries[name] for row, (name, _) in table.items() if name in summaries})
        (a_name, a_paper), (b_name, b_paper) = table[better], table[worse]
        claim = {"claim": f"{better} > {worse}", "table": t, "better": a_name, "worse": b_name,
                 "paper": a_paper - b_paper, "ours": float("nan"), "se": float("nan"), "sd": sd, "verdict": "not run"}
        if a_name in summaries and b_name in summaries:
            a, b = summaries[a_name], summaries[b_name]
            diff = a["mean"] - b["mean"]
            se = sd * math.sqrt(1 / len(a["seeds"]) + 1 / len(b["seeds"]))
            word = "holds" if diff > 2 * se else "reversed" if diff < -2 * se else "within noise"
            word = word if math.isfinite(se) else "one seed: no spread"
            claim.update(ours=diff, se=se, verdict=word)
        out[key] = claim
    return out


__all__ = ["EvalResult", "confusion_matrix", "topk_correct", "evaluate", "ResultFileError", "UnfinishedRunError",
           "CheckpointFileError", "summarize_runs", "FINISHED", "RESULT_KEYS", "REPORTS", "file_error",
           "read_json_object", "check_keys", "check_result", "read_report", "FULL_DATASET_IMAGES", "run_data",
           "describe_run_data", "IMAGENETTE_LEADERBOARD", "IMAGENETTE_LEADERBOARD_URL", "EMO_TABLE5",
           "MOCOVIT_TABLE7", "ABLATION_CLAIMS", "ABLATION_TABLES", "pooled_std", "judge_ablation_claims",
           "plateau_gain", "plateaued", "seeds_needed", "gap", "epoch_gaps",
           "RESNET20_PAPER_TOP1"]

"""The training lab's named experiments: what each one trains, as the exact command of its runs.

:class:`Experiment` fixes the model, the dataset, the recipe, the epochs and the seeds; :data:`EXPERIMENTS`
holds every experiment of the book by name, in groups: the main CIFAR-10 and Imagenette runs, the papers'
ablation tables, the learning-rate sweep, the same runs trained to a plateau, the runs for a GPU on the
whole datasets (the leaderboard budgets, EMO's table there, one real-scale run), and the ResNet-20 baseline with the
scaling runs (each paper's headline pair on fewer images). :func:`ablation_experiment` maps a table row to the
experiment that repeats it in each setting. :mod:`mobileblocks_edu.train.experiments` runs, collects and reads them.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..env import PathLike
from .results import ABLATION_CLAIMS, ABLATION_TABLES


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
# EMO's Table 5 with the operator-order pair on the whole Imagenette at 128x128 (lesson 13), with the leaderboard's
# 20-epoch budget and EMO-1M's setting there (the full operator's row is leaderboard_emo_1m_e20 itself): stages 3 and 4
# see 8x8 and 4x4 maps, so windows and padding matter, and 3,925 validation images resolve about a point.
LEADERBOARD_ROW = "leaderboard_emo_1m_e20"
for _name in [n for n, _ in ABLATION_TABLES["EMO"].values() if n != "cifar10_emo_1m"]:
    _e = EXPERIMENTS[_name]
    EXPERIMENTS["leaderboard_" + _name] = dataclasses.replace(
        EXPERIMENTS[LEADERBOARD_ROW], name="leaderboard_" + _name, model_args=_e.model_args,
        group="leaderboard_ablation", note=f"{_e.note}; all of Imagenette v2 at 128x128, 20 epochs")
EXPERIMENTS["fullscale_cifar10_emo_1m"] = Experiment(
    "fullscale_cifar10_emo_1m", "emo_1m_cifar", "cifar10", 100, (0,), group="fullscale",
    options=("--lr", EMO_LR, *_WHOLE), note="EMO-1M on all of CIFAR-10 for 100 epochs")
# Trained to a plateau (lessons 11-13): the main CIFAR-10 runs and both ablation tables again, for PLATEAU_EPOCHS
# epochs instead of 8, on the book's subset by name, batches made on the device (results.plateaued judges them).
PLATEAU_EPOCHS = 30
PLATEAU_PREFIX = "plateau_"
TABLE_RUNS = [n for t in ABLATION_TABLES.values() for n, _ in t.values()]  # the ablation tables' rows
for _e in [e for e in EXPERIMENTS.values() if e.group == "cifar10" or e.name in TABLE_RUNS]:
    EXPERIMENTS[PLATEAU_PREFIX + _e.name] = dataclasses.replace(_e, name=PLATEAU_PREFIX + _e.name, group="plateau",
        epochs=PLATEAU_EPOCHS, options=_e.options + ("--subset", "book", "--loader", "tensor"),
        note=f"{_e.note}; {PLATEAU_EPOCHS} epochs")
# The calibration baseline (lesson 13): ResNet-20, a plain convolutional network, under the main runs' recipe,
# epochs and images; what the budget, not the blocks, allows.
EXPERIMENTS["baseline_cifar10_resnet20"] = Experiment(
    "baseline_cifar10_resnet20", "resnet20_cifar", **{**_CIFAR, "group": "baseline"},
    note="ResNet-20 (He et al. 2016), the calibration baseline under the main runs' budget")
# Why small ablations disagree (lesson 13): each paper's headline claim (keys of results.ABLATION_CLAIMS) and the
# baseline again on fewer training images (per class; the short runs themselves are the book's subset, about 544 per
# class), with the same recipe, epochs and test images.
SCALING_SIZES = (100, 250)
SCALING_CLAIMS = ("emo_both_vs_dw", "t7_mocovit")
SCALING_RUNS = {"baseline": ("baseline_cifar10_resnet20",),
                **{k: (ABLATION_TABLES[t][a][0], ABLATION_TABLES[t][b][0])
                   for k in SCALING_CLAIMS for t, a, b in [ABLATION_CLAIMS[k]]}}
for _n in SCALING_SIZES:
    for _e in [EXPERIMENTS[name] for names in SCALING_RUNS.values() for name in names]:
        EXPERIMENTS[f"scale{_n}_{_e.name}"] = dataclasses.replace(
            _e, name=f"scale{_n}_{_e.name}", group="scaling", options=_e.options + ("--subset", str(_n)),
            note=f"{_e.note}; {_n} training images per class")
# Where the ablation tables are repeated: the short runs, the same runs trained to a plateau, EMO's table on the whole
# Imagenette.
ABLATION_SETTINGS = {"short": "the short runs on the CIFAR subset",
                     "plateau": "trained to a plateau on the CIFAR subset",
                     "leaderboard": "EMO's table on all of Imagenette v2 at 128x128, 20 epochs"}


def ablation_experiment(name: str, setting: str = "short") -> "str | None":
    """The experiment that repeats the ablation table row run by ``name`` (a short run) in ``setting``
    (:data:`ABLATION_SETTINGS`); ``None`` where that setting has no such row (MoCoViT's table on Imagenette)."""
    if setting not in ABLATION_SETTINGS:
        raise ValueError(f"setting must be one of {sorted(ABLATION_SETTINGS)}, got {setting!r}")
    if setting == "short":
        return name
    if setting == "plateau":
        return PLATEAU_PREFIX + name
    return LEADERBOARD_ROW if name == "cifar10_emo_1m" else ("leaderboard_" + name if "leaderboard_" + name in
                                                               EXPERIMENTS else None)


# earlier names of experiments
ALIASES = {"ablation_emo_1m_no_attn": "ablation_emo_1m_dw_only"}


__all__ = ["Experiment", "EXPERIMENTS", "ALIASES", "MAIN_GROUPS", "CIFAR_EPOCHS", "IMAGENETTE_EPOCHS", "EMO_LR",
           "SGD_LR", "PLATEAU_EPOCHS", "PLATEAU_PREFIX", "TABLE_RUNS", "SCALING_SIZES", "SCALING_CLAIMS",
           "SCALING_RUNS", "LEADERBOARD_ROW", "ABLATION_SETTINGS",
           "ablation_experiment"]

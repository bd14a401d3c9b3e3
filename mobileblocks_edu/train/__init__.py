"""The trainer of the lab in one import, and its command line.

The parts live by concern: the recipes and the run's configuration in
:mod:`~mobileblocks_edu.train.recipes`, evaluation in :mod:`~mobileblocks_edu.train.results`, the run's
files and locks in :mod:`~mobileblocks_edu.train.runinfo`, the loop in :mod:`~mobileblocks_edu.train.loop`,
several processes in :mod:`~mobileblocks_edu.train.distributed`. This module gathers what the
lessons and a user call (``train.fit``, ``train.TrainConfig``, ``train.evaluate`` ...); the rest is
imported from its module.

The command line (:mod:`~mobileblocks_edu.train.cli`, run by ``python -m mobileblocks_edu.train``)
turns its options into a :class:`~mobileblocks_edu.train.recipes.TrainConfig` and a run::

    python -m mobileblocks_edu.train --model emo_1m_cifar --data cifar10 --epochs 30 --out runs/NAME
    python -m mobileblocks_edu.train --out runs/NAME --resume
    torchrun --nproc_per_node=4 -m mobileblocks_edu.train --model emo_1m_cifar ... --out runs/NAME
"""
from .cli import main, options, run
from .loop import FitResult, StepInfo, export_weights, fit, train_one_epoch
from .recipes import RECIPES, TrainConfig, make_optimizer, make_scheduler
from .results import EvalResult, evaluate
from .runinfo import write_json

__all__ = [
    "RECIPES", "TrainConfig", "make_optimizer", "make_scheduler",  # recipes and configuration
    "fit", "train_one_epoch", "StepInfo", "FitResult", "export_weights",  # the loop
    "evaluate", "EvalResult", "write_json",  # evaluation and run records
    "options", "run", "main",  # the command line
]

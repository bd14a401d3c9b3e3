"""The trainer of the lab in one import, and its command line.

The parts live by concern: the recipes and the run's configuration in
:mod:`~mobileblocks_edu.train.recipes`, evaluation in :mod:`~mobileblocks_edu.train.evaluate`, the run's
files and locks in :mod:`~mobileblocks_edu.train.runinfo`, the loop in :mod:`~mobileblocks_edu.train.loop`,
several processes in :mod:`~mobileblocks_edu.train.distributed`. This module gathers them
(``train.fit``, ``train.TrainConfig``, ``train.evaluate`` ...) and turns a command line into a run.

The command line (:mod:`~mobileblocks_edu.train.cli`, run by ``python -m mobileblocks_edu.train``)
turns its options into a :class:`~mobileblocks_edu.train.recipes.TrainConfig` and a run::

    python -m mobileblocks_edu.train --model emo_1m_cifar --data cifar10 --epochs 30 --out runs/NAME
    python -m mobileblocks_edu.train --out runs/NAME --resume
    torchrun --nproc_per_node=4 -m mobileblocks_edu.train --model emo_1m_cifar ... --out runs/NAME
"""
from .cli import (
    RunOptions,
    build_parser,
    default_options,
    main,
    option_name,
    options,
    parse_model_args,
    resolve_options,
    run,
    train_config,
)
from .evaluate import EvalResult, confusion_matrix, evaluate, topk_correct
from .loop import FitResult, StepInfo, export_weights, fit, train_one_epoch
from .recipes import (
    AMP_MODES,
    RECIPES,
    RESUME_MAY_CHANGE,
    Recipe,
    TrainConfig,
    WarmupCosine,
    amp_dtype,
    check_device,
    get_recipe,
    make_optimizer,
    make_scheduler,
    param_groups,
)
from .runinfo import (
    RunInUseError,
    RunLock,
    check_free_space,
    code_version,
    environment,
    prepare_out_dir,
    rng_state,
    seed_epoch,
    set_rng_state,
    write_json,
)

__all__ = [
    # recipes and configuration
    "Recipe", "RECIPES", "AMP_MODES", "RESUME_MAY_CHANGE", "get_recipe", "TrainConfig", "WarmupCosine",
    "param_groups", "make_optimizer", "make_scheduler", "amp_dtype", "check_device",
    # evaluation
    "EvalResult", "evaluate", "confusion_matrix", "topk_correct",
    # run records
    "write_json", "rng_state", "set_rng_state", "seed_epoch", "code_version", "environment", "RunInUseError",
    "RunLock", "prepare_out_dir", "check_free_space",
    # the loop
    "StepInfo", "FitResult", "fit", "train_one_epoch", "export_weights",
    # the command line
    "RunOptions", "option_name", "default_options", "build_parser", "parse_model_args", "resolve_options",
    "options", "train_config", "run", "main",
]

"""The model registry: ``create_model(name)`` and ``list_models()``, as in timm.

Every variant is a small factory function decorated with :func:`register_model`, with its
configuration next to it (:class:`ModelCfg`: input size, normalisation, the paper's numbers).
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from torch import nn

from ..data.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ModelCfg:
    """What a model expects and what its paper reports.

    ``reference`` holds the published numbers the model is checked against, e.g.
    ``{"params": 3_504_872, "macs": 300.77e6}`` (the keys name the counting convention:
    ``"macs"`` or ``"fvcore"``, see :mod:`mobileblocks_edu.analysis.complexity`); ``paper`` the figures
    as printed in the paper (rounded), ``source`` where they come from.
    """

    name: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reference: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    source: str = ""
    notes: str = ""
    task: str = "classification"


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}
TASKS = ("classification", "detection", "segmentation")
_SOURCES: list[str] = []  # packages above this one whose models register on first use (register_source)


def register_source(module: str) -> None:
    """Import ``module`` (a package that registers models, e.g. ``"mobileblocks_edu.dense"``) the first
    time the registry is used. The layers above the models plug their models in this way, so the
    models never import them."""
    if module not in _SOURCES:
        _SOURCES.append(module)


def register_model(fn: Optional[Callable] = None, **cfg_kwargs):
    """Register a factory under its function name; keyword arguments become its :class:`ModelCfg`.

    The model that the factory returns gets the configuration as ``model.cfg``.
    """

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = factory.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        cfg = ModelCfg(name=name, **cfg_kwargs)
        if cfg.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}")

        def build(*args, **kwargs) -> nn.Module:
            model = factory(*args, **kwargs)
            model.cfg = cfg
            return model

        build.__name__, build.__doc__, build.__wrapped__ = name, factory.__doc__, factory
        _MODELS[name], _CFGS[name] = build, cfg
        return build

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str = "*", task: Optional[str] = "classification") -> list[str]:
    """Names of the registered models matching a shell-style ``pattern`` (``"emo_*"``), sorted.

    ``task`` keeps the list to one task: the classifiers (the default), ``"detection"`` or
    ``"segmentation"`` (the dense models of :mod:`mobileblocks_edu.dense`); ``None`` lists every model.
    """
    _load_models()
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None (every task), got {task!r}")
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern) and task in (None, _CFGS[n].task))


def model_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` of a registered model, without building it."""
    _load_models()
    _check_name(name)
    return _CFGS[name]


def create_model(name: str, num_classes: Optional[int] = None, pretrained=False, **kwargs) -> nn.Module:
    """Build a registered model: ``create_model("mobilenetv2_100", num_classes=10)``.

    ``num_classes=None`` keeps the model's own default: 1000 (ImageNet) for the ImageNet
    layouts, 10 for the small-input ``*_cifar`` and ``*_imagenette`` variants. Extra keyword
    arguments go to the factory (for example ``drop_path_rate``).

    ``pretrained=True`` loads the published ImageNet weights (EMO-1M/2M/5M/6M, ``mobilenetv2_100``,
    ``ghostnet_100``), downloaded once into PyTorch's hub cache; a path or URL loads that copy of the
    file instead (see :mod:`mobileblocks_edu.data.weights`). With another ``num_classes`` the
    classifier stays new.
    """
    _load_models()
    _check_name(name)
    if pretrained is not False and pretrained is not None:
        from ..data.weights import load_pretrained, weight_file

        weight_file(name)  # a model without published weights says so before it is built
        return load_pretrained(create_model(name, num_classes, **kwargs), name, pretrained)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0: no classifier), got {num_classes!r}")
        kwargs["num_classes"] = num_classes
    try:
        return _MODELS[name](**kwargs)
    except TypeError as e:
        fixed = re.search(r"got multiple values for (?:keyword )?argument '(\w+)'", str(e))
        if fixed:
            raise ValueError(f"{name} sets {fixed.group(1)!r} itself (that is what makes this variant); "
                             f"build the model class directly to choose it") from None
        if "unexpected keyword argument" not in str(e):
            raise
        allowed = model_arguments(name)
        unknown = sorted(set(kwargs) - set(allowed))
        raise ValueError(f"{name} does not take the argument(s) {unknown or list(kwargs)}; "
                         f"it takes: {', '.join(allowed)}") from None


def model_arguments(name: str) -> list[str]:
    """The keyword arguments ``create_model(name, ...)`` accepts: the factory's and those of the
    model class it builds (the factory passes them on)."""
    import inspect

    _load_models()
    _check_name(name)
    factory = _MODELS[name].__wrapped__
    names = [p.name for p in inspect.signature(factory).parameters.values()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()):
        cls = type(_MODELS[name]())
        for klass in cls.__mro__:
            if klass is nn.Module or "__init__" not in vars(klass):
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
    return names


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise ValueError(f"a model name must be a string, got {type(name).__name__}")
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (list_models(task=None) shows all {len(_MODELS)})")


def _load_models() -> None:
    import importlib

    import mobileblocks_edu.models  # noqa: F401  (importing the package registers every model)

    for module in _SOURCES:
        importlib.import_module(module)

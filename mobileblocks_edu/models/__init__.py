"""The models, built from the blocks, and their registry.

:mod:`.registry` creates a model by name (``mobileblocks_edu.create_model``); one module per family:
:mod:`.mobilenetv2`, :mod:`.emo`, :mod:`.ghostnet` (with the architecture tables of the GhostNet skeleton, read
off a built model), :mod:`.mocovit`, :mod:`.mocovit_d`, and :mod:`.resnet` (ResNet-20, the training lab's
calibration baseline). Importing this package registers every model module in it.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

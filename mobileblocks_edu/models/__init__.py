"""The models, built from the blocks, and their registry.

:mod:`.registry` creates a model by name (``mobileblocks_edu.create_model``); one module per family:
:mod:`.mobilenetv2`, :mod:`.emo`, :mod:`.ghostnet`, :mod:`.mocovit`, :mod:`.mocovit_d`;
:mod:`.tables` prints the papers' architecture tables from a built model. Importing this package
registers every model module in it.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

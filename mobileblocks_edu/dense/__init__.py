"""Backbones for dense prediction: the library's classifiers as multi-scale feature extractors, and
the detectors and segmenters built on them with torchvision's heads (Part VII of the book).

:mod:`.backbones` turns a classifier into a feature extractor (the maps at strides 4 to 32, with
their channels); :mod:`.detection` builds SSDLite, RetinaNet and Mask R-CNN on it, :mod:`.segmentation`
DeepLabv3 and PSPNet; :mod:`.data` holds the generated shapes and the Penn-Fudan pedestrians, and
:mod:`.train` a few steps of training. Importing this package registers the dense models
(``create_model("ssdlite320_emo_1m")``; ``list_models(task="detection")``).
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

"""mobileblocks_edu: efficient attention-based vision blocks, built step by step.

The teaching library of the *mobileblocks-edu* book. Blocks: the inverted residual block
(MobileNetV2), multi-head self-attention and the FFN, the Meta Mobile Block and the iRMB
(EMO), Ghost modules, MoSA, MoFFN and the Mobile Transformer Block (MoCoViT). Models are
created by name::

    import mobileblocks_edu as mbe
    model = mbe.create_model("mobilenetv2_100")
    mbe.count_params(model), mbe.count_flops(model, (1, 3, 224, 224), "macs")
"""
from .analysis.complexity import count_flops, count_params
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models.registry import create_model, list_models, model_cfg, register_model, register_source
from .version import __version__

register_source("mobileblocks_edu.dense")  # the detectors and segmenters, built on first use

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "model_cfg",
    "register_model",
    "count_params",
    "count_flops",
    "load_checkpoint",
    "save_checkpoint",
    "CheckpointError",
]

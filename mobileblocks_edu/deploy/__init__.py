"""Deployment: from a trained network to what a device runs.

* :mod:`.fold`: BatchNorm folded into the convolutions (LayerNorm cannot be).
* :mod:`.export`: ONNX export checked against PyTorch with onnxruntime; ``torch.fx`` and ``torch.export``.
* :mod:`.latency`: batch-1 latency in four settings, timed interleaved.
* :mod:`.quantize`: onnxruntime's static int8 quantization of the trained Imagenette models.

The command ``python -m mobileblocks_edu.deploy latency|quantize`` is :mod:`.cli`.
"""
from .export import (
    HAS_DYNAMO_EXPORT,
    check_export,
    export_onnx,
    imagenet_models,
    onnx_op_counts,
    ort_session,
    run_onnx,
    sample_images,
)
from .fold import BN_TYPES, LN_TYPES, bn_scale_shift, fold_batchnorm, fold_bn_into_next_conv, fold_conv_bn, norm_counts

__all__ = [
    "BN_TYPES", "LN_TYPES", "bn_scale_shift", "fold_conv_bn", "fold_bn_into_next_conv", "fold_batchnorm",
    "norm_counts", "sample_images", "export_onnx", "ort_session", "run_onnx", "onnx_op_counts", "check_export",
    "imagenet_models", "HAS_DYNAMO_EXPORT",
]

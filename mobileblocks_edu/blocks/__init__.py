"""The book's parts and blocks, in the order the book builds them.

Parts: :mod:`.layers` (``ConvNormAct``, ``LayerNorm2d``, ``SqueezeExcite``, ``DropPath``),
:mod:`.attention` (windows, ``MHSA``, ``FFN``, ``TransformerBlock``), :mod:`.dyrelu` (dynamic ReLU).

Blocks: :mod:`.irb` (MobileNetV2's inverted residual block), :mod:`.mmb` (EMO's Meta Mobile Block),
:mod:`.irmb` (EMO's iRMB), :mod:`.ghost` (GhostNet's Ghost module and bottleneck),
:mod:`.mtb` (MoCoViT's MoSA, MoFFN and Mobile Transformer Block).

A block imports only the parts and :mod:`mobileblocks_edu.env`; the models are built from blocks.
"""

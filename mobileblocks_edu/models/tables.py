"""Architecture tables read off built models: GhostNet's Table 1 and MoCoViT's Table 2.

One row per layer, with the shapes a forward pass actually produces, so the table cannot drift
from the code. The block type decides the row's name and what ``exp`` and ``se`` mean.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks.ghost import GhostBottleneck
from ..blocks.layers import eval_mode
from ..blocks.mtb import MobileTransformerBlock, MoFFN
from .ghostnet import GhostNet


def block_row(blk: nn.Module) -> tuple[str, dict]:
    """``(operator, info)`` of one block of the GhostNet skeleton: its name in the papers' tables,
    its hidden channels (``exp``), whether it has squeeze-excitation and its stride."""
    if isinstance(blk, GhostBottleneck):
        return "G-bneck", {"exp": blk.mid_chs, "se": not isinstance(blk.se, nn.Identity), "stride": blk.stride}
    if isinstance(blk, MobileTransformerBlock):
        ffn = blk.ffn
        if isinstance(ffn, MoFFN):
            return "MTB", {"exp": ffn.mid_chs, "se": not isinstance(ffn.se, nn.Identity), "stride": 1}
        return "MTB", {"exp": ffn.fc1.out_channels, "se": False, "stride": 1}  # the vanilla MLP
    raise ValueError(f"no table row for a {type(blk).__name__}")


def _input_output_shapes(model: GhostNet, modules: list[nn.Module], img_size: int) -> list[tuple[tuple, tuple]]:
    """``(input shape, output shape)`` of each module in one eval-mode forward pass of a
    ``(1, 3, img_size, img_size)`` zero image."""
    shapes: list = [None] * len(modules)

    def hook(k):
        return lambda m, inp, out: shapes.__setitem__(k, (tuple(inp[0].shape), tuple(out.shape)))

    handles = [m.register_forward_hook(hook(k)) for k, m in enumerate(modules)]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size, device=model.stem.conv.weight.device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def architecture_table(model: GhostNet, img_size: int = 224) -> list[dict]:
    """The architecture table of a GhostNet or MoCoViT (GhostNet's Table 1, MoCoViT's Table 2),
    read off the built model by one forward pass (eval mode, no gradients) of a
    ``(1, 3, img_size, img_size)`` input: one dict per layer with ``input`` (H, W, C),
    ``operator``, ``exp`` (hidden channels or ``None``), ``out``, ``se`` and ``stride``."""
    layers: list[tuple[str, nn.Module, dict]] = [("Conv2d 3x3", model.stem, {"stride": model.stem.conv.stride[0]})]
    for blk in (b for stage in model.stages for b in stage):
        name, info = block_row(blk)
        layers.append((name, blk, info))
    layers += [("Conv2d 1x1", model.final_conv, {"stride": 1}), ("Avg-Pool", model.pool, {}),
               ("Conv2d 1x1", model.conv_head, {"stride": 1}), ("FC", model.classifier, {})]
    shapes = _input_output_shapes(model, [m for _, m, _ in layers], img_size)
    rows = []
    for (name, _, info), (i_shape, o_shape) in zip(layers, shapes):
        hw = i_shape[2:] if len(i_shape) == 4 else (1, 1)
        rows.append({"input": (*hw, i_shape[1]), "operator": name, "exp": info.get("exp"),
                     "out": o_shape[1], "se": info.get("se", False), "stride": info.get("stride")})
    return rows


__all__ = ["architecture_table", "block_row"]

"""The API every classifier in the library shares (timm's vocabulary)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..blocks.layers import is_symbolic


class Classifier(nn.Module):
    """``forward(x) = forward_head(forward_features(x))``; plain logits out.

    Subclasses set ``num_classes``, ``num_features`` (channels entering the classifier) and
    implement :meth:`forward_features`, :meth:`forward_head`, :meth:`reset_classifier` and
    :meth:`cam_target_layers`.
    """

    num_classes: int
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, h, w)
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_symbolic(x):
            self.check_images(x)
        return self.forward_head(self.forward_features(x))

    def check_images(self, x) -> None:
        """Raise a ``ValueError`` unless ``x`` is a non-empty batch of images ``(B, 3, H, W)`` with
        the dtype and device of the model's weights (what ``forward`` checks)."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            hint = ": make one with torch.from_numpy(x)" if type(x).__module__ == "numpy" else ""
            raise ValueError(f"{name} expects a torch.Tensor of images (B, 3, H, W), got {type(x).__name__}{hint}")
        if x.dim() == 3 and x.shape[0] == 3:
            raise ValueError(f"{name} expects a batch of images (B, 3, H, W), got one image {tuple(x.shape)}: "
                             "add a batch dimension with x.unsqueeze(0)")
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
            hint = ": channels last? use x.permute(0, 3, 1, 2)" if x.dim() == 4 and x.shape[-1] == 3 else ""
            raise ValueError(f"{name} expects images of shape (B, 3, H, W) with B >= 1, got {tuple(x.shape)}{hint}")
        weights = list(self.parameters())  # not next(): torch.export cannot trace it on torch 2.2
        if not weights:
            return
        w = weights[0]
        if not x.is_floating_point():
            raise ValueError(f"{name} expects floating-point images ({w.dtype}), got {x.dtype}: convert with "
                             "x.float() (pixels in 0..255 also need scaling and normalising, as the data "
                             "transforms do)")
        if x.dtype != w.dtype:
            raise ValueError(f"{name} expects {w.dtype} images (the dtype of its weights), got {x.dtype}: "
                             f"convert with x.to({w.dtype})")
        if x.device != w.device:
            raise ValueError(f"{name}'s weights are on {w.device}, the images on {x.device}: "
                             f"move them with x.to('{w.device}')")

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def cam_target_layers(self) -> list[nn.Module]:
        """The layers Grad-CAM should look at: the last spatial feature map before pooling."""
        raise NotImplementedError

    def cam_reshape_transform(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """A function turning the target layers' activations into ``(B, C, H, W)``, or ``None``
        when they already have that shape (every model in this library)."""
        return None

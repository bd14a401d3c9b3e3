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
        if not is_symbolic(x) and (x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0):
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, H, W) with B >= 1, "
                f"got {tuple(x.shape)}"
            )
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def cam_target_layers(self) -> list[nn.Module]:
        """The layers Grad-CAM should look at: the last spatial feature map before pooling."""
        raise NotImplementedError

    def cam_reshape_transform(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """A function turning the target layers' activations into ``(B, C, H, W)``, or ``None``
        when they already have that shape (every model in this library)."""
        return None

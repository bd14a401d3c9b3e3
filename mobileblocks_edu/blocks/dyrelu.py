"""Dynamic ReLU (Chen et al., "Dynamic ReLU", ECCV 2020, arXiv:2003.10027).

A ReLU is the maximum of two fixed lines, ``max(x, 0)``. Dynamic ReLU makes the lines depend on
the input: a small *hyper-function* reads the global context of the whole feature map ``x`` and
returns the slopes and intercepts of ``K`` lines for every channel ``c``:

.. math::

    y_c = \\max_{1 \\le k \\le K} \\big( a_c^k(x)\\, x_c + b_c^k(x) \\big)

The hyper-function is a squeeze-excitation without the gate: global average pooling,
``FC(C -> C/R)``, ReLU, ``FC(C/R -> 2KC')``, then ``2σ(·) - 1`` maps every output ``θ`` into
``(-1, 1)``. The coefficients are residuals around a static start:

.. math::

    a_c^k(x) = \\alpha^k + \\lambda_a\\, \\theta_{a,c}^k(x), \\qquad
    b_c^k(x) = \\beta^k + \\lambda_b\\, \\theta_{b,c}^k(x)

with ``α¹ = 1`` and ``α^{k>1} = β^k = 0`` (so ``θ = 0`` is the plain ReLU) and the paper's
``λ_a = 1.0``, ``λ_b = 0.5``, ``K = 2``.

The paper's variants differ in what the coefficients are shared over (``C'`` above):

* **DY-ReLU-A** (``mode="a"``): spatially and channel-shared, one set of ``2K`` coefficients
  per image (``C' = 1``).
* **DY-ReLU-B** (``mode="b"``): channel-wise, ``2K`` coefficients per channel (``C' = C``);
  the variant the paper recommends for image classification.
* DY-ReLU-C (spatial and channel-wise, with an extra spatial attention branch) is not built here.

Costs (:func:`mobileblocks_edu.analysis.complexity.dyrelu_cost`): the hyper-function's two linear layers hold
``C r + r + (r + 1) 2K C'`` parameters (``r = C // R``) and cost ``C r + r 2K C'``
multiply-adds per image (they run on the pooled vector, whatever the map size); applying the
lines costs ``K`` multiplications and additions per element, which, like every activation, no
FLOP convention of the library counts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..env import check_number, check_positive
from .layers import check_input

DYRELU_MODES = ("a", "b")


def hyper_width(chs: int, reduction: int) -> int:
    """The hyper-function's hidden width ``r = max(1, C // R)``."""
    return max(1, chs // reduction)


class DyReLU(nn.Module):
    """Dynamic ReLU: ``y_c = max_k (a_c^k(x) x_c + b_c^k(x))``, coefficients from a hyper-function
    on the global average of ``x``.

    Args:
        chs: channels C of ``x`` (``(B, C, H, W)``; the output has the same shape).
        k: number of linear pieces K (2 in the paper).
        reduction: R; the hyper-function's hidden width is ``r = max(1, C // R)``.
        mode: ``"b"`` (DY-ReLU-B: coefficients per channel) or ``"a"`` (DY-ReLU-A: shared by
            all channels).
        lambda_a, lambda_b: ranges λ of the residual slopes and intercepts (1.0 and 0.5).
        init_a, init_b: the static start α, β (K values each); default ``α = (1, 0, ...)``,
            ``β = 0``: the ReLU.

    ``fc2`` starts at zero, so a fresh DyReLU *is* the ReLU of its start; training moves it away.
    ``fc2``'s outputs are read as ``(B, K, 2, C')``: the slope and the intercept of each piece.
    """

    def __init__(
        self,
        chs: int,
        k: int = 2,
        reduction: int = 4,
        mode: str = "b",
        lambda_a: float = 1.0,
        lambda_b: float = 0.5,
        init_a=None,
        init_b=None,
    ):
        super().__init__()
        check_positive("chs", chs, int)
        check_positive("k", k, int)
        check_positive("reduction", reduction, int)
        if mode not in DYRELU_MODES:
            raise ValueError(f"mode must be one of {DYRELU_MODES}, got {mode!r}")
        check_number("lambda_a", lambda_a, 0, why="the range of the residual slopes")
        check_number("lambda_b", lambda_b, 0, why="the range of the residual intercepts")
        init_a = [1.0] + [0.0] * (k - 1) if init_a is None else list(init_a)
        init_b = [0.0] * k if init_b is None else list(init_b)
        if len(init_a) != k or len(init_b) != k:
            raise ValueError(f"init_a and init_b need k={k} values each, got {len(init_a)} and {len(init_b)}")
        for name, values in (("init_a", init_a), ("init_b", init_b)):
            for i, v in enumerate(values):
                check_number(f"{name}[{i}]", v)
        self.chs, self.k, self.reduction, self.mode = chs, k, reduction, mode
        self.lambda_a, self.lambda_b = float(lambda_a), float(lambda_b)
        self.coef_chs = chs if mode == "b" else 1  # C'
        rd = hyper_width(chs, reduction)
        self.fc1 = nn.Linear(chs, rd)  # (B, C) -> (B, r)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(rd, 2 * k * self.coef_chs)  # (B, r) -> (B, 2K C')
        self.register_buffer("init_a", torch.tensor(init_a).view(1, k, 1), persistent=False)
        self.register_buffer("init_b", torch.tensor(init_b).view(1, k, 1), persistent=False)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hyper-function: slopes ``a`` and intercepts ``b``, each ``(B, K, C')``."""
        check_input(self, x, self.chs)
        B = x.shape[0]
        theta = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1).flatten(1))))  # (B, C) -> (B, 2K C')
        theta = 2 * torch.sigmoid(theta) - 1  # in (-1, 1)
        theta = theta.view(B, self.k, 2, self.coef_chs)  # (B, K, 2, C')
        a = self.init_a + self.lambda_a * theta[:, :, 0]  # (B, K, C')
        b = self.init_b + self.lambda_b * theta[:, :, 1]
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(x)
        a, b = a[..., None, None], b[..., None, None]  # (B, K, C', 1, 1)
        y = x * a[:, 0] + b[:, 0]  # 4-D throughout: keeps x's memory format (channels-last)
        for i in range(1, self.k):
            y = torch.maximum(y, x * a[:, i] + b[:, i])
        return y

    def extra_repr(self) -> str:
        return f"chs={self.chs}, k={self.k}, reduction={self.reduction}, mode={self.mode!r}"


__all__ = ["DyReLU", "hyper_width", "DYRELU_MODES"]

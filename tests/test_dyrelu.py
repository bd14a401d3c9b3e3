"""Dynamic ReLU: the equation written out, the two variants, the start at ReLU, the cost formulas
against measurement, and the argument checks."""
import pytest
import torch

from mobileblocks_edu.analysis.complexity import count_flops, count_params, dyrelu_cost
from mobileblocks_edu.blocks.dyrelu import DyReLU
from mobileblocks_edu.lab import randomize_


def _scratch(x, fc1, fc2, k, mode, lambda_a=1.0, lambda_b=0.5):
    """y_c = max_k (a_c^k x_c + b_c^k), a = α + λ_a θ_a, b = β + λ_b θ_b, θ = 2σ(FC(ReLU(FC(mean x)))) - 1."""
    B, C = x.shape[:2]
    theta = 2 * torch.sigmoid(fc2(torch.relu(fc1(x.mean((2, 3)))))) - 1
    theta = theta.view(B, k, 2, C if mode == "b" else 1)
    alpha = torch.tensor([1.0] + [0.0] * (k - 1)).view(1, k, 1)
    a = alpha + lambda_a * theta[:, :, 0]  # (B, K, C')
    b = lambda_b * theta[:, :, 1]
    pieces = x[:, None] * a[..., None, None] + b[..., None, None]  # (B, K, C, H, W)
    return pieces.max(dim=1).values


@pytest.mark.parametrize("mode", ["a", "b"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_dyrelu_is_the_equation(mode, k):
    m = randomize_(DyReLU(12, k=k, reduction=4, mode=mode))
    x = torch.randn(3, 12, 5, 6)
    torch.testing.assert_close(m(x), _scratch(x, m.fc1, m.fc2, k, mode))
    a, b = m.coefficients(x)
    assert a.shape == b.shape == (3, k, 12 if mode == "b" else 1)
    # the coefficients stay in the ranges the residual form allows
    assert (a[:, 0] > 0).all() and (a[:, 0] < 2).all() and (b.abs() < 0.5).all()


def test_coefficients_depend_on_the_whole_map():
    m = randomize_(DyReLU(8, mode="b"))
    x = torch.randn(1, 8, 4, 4)
    y = m(x)
    x2 = x.clone()
    x2[..., 0, 0] += 5.0  # change one pixel: the other pixels' outputs move too (global context)
    assert not torch.allclose(m(x2)[..., 3, 3], y[..., 3, 3])


def test_a_fresh_dyrelu_is_relu_and_learns():
    m = DyReLU(16)
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(m(x), torch.relu(x))
    m(x).square().sum().backward()
    assert m.fc2.weight.grad.abs().sum() > 0  # the hyper-function is trained from the first step


def test_channels_last_is_kept():
    m = randomize_(DyReLU(8))
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    assert m(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("chs,hw", [(16, (7, 7)), (960, (1, 1)), (30, (5, 9))])
@pytest.mark.parametrize("mode", ["a", "b"])
@pytest.mark.parametrize("k,reduction", [(2, 4), (2, 8), (3, 4)])
def test_cost_formula_matches_measurement(chs, hw, mode, k, reduction):
    m = DyReLU(chs, k=k, reduction=reduction, mode=mode)
    cost = dyrelu_cost(chs, k=k, reduction=reduction, mode=mode)
    shape = (1, chs, *hw)
    assert cost.params == count_params(m)
    for conv in ("macs", "conv_linear", "fvcore"):  # only the two linear layers are counted
        assert cost.macs == count_flops(m, shape, conv), conv


def test_cost_in_words():
    r = 160 // 4
    assert dyrelu_cost(160).params == 160 * r + r + (r + 1) * 4 * 160  # DY-ReLU-B, K = 2, R = 4
    assert dyrelu_cost(160, mode="a").params == 160 * r + r + (r + 1) * 4


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode must be one of"):
        DyReLU(8, mode="c")
    with pytest.raises(ValueError, match="k must be a positive number"):
        DyReLU(8, k=0)
    with pytest.raises(ValueError, match="reduction must be a positive number"):
        dyrelu_cost(8, reduction=0)
    with pytest.raises(ValueError, match="init_a and init_b need k=2"):
        DyReLU(8, init_a=[1.0])
    with pytest.raises(ValueError, match="expects 8 input channels"):
        DyReLU(8)(torch.randn(1, 4, 2, 2))

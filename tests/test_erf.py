"""Effective receptive fields against the theoretical ones, inside models, and EMO Fig. 9's
similarity measures."""
import pytest
import torch
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu.analysis.erf import (
    block_stack,
    diagonal_similarity,
    effective_receptive_field,
    erf_area,
    feature_maps,
    similarity_by_distance,
)
from mobileblocks_edu.analysis.receptive import conv_op, reach, window_op

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_erf_of_a_single_conv_is_its_kernel_footprint(k):
    conv = nn.Conv2d(3, 4, k, padding=k // 2)
    erf = effective_receptive_field(conv, torch.randn(4, 3, 11, 11))
    support = torch.zeros(11, 11, dtype=torch.bool)
    support[5 - k // 2: 6 + k // 2, 5 - k // 2: 6 + k // 2] = True
    assert torch.equal(erf > 0, support)
    assert erf_area(erf, 1.0) == k * k


def test_erf_of_stacks_matches_the_theoretical_field():
    x = torch.randn(2, 16, 12, 12)
    irb = block_stack("IRB", 3)
    assert torch.equal(effective_receptive_field(irb, x) > 0, reach(conv_op(3), 12, 3))  # 7x7 around the centre
    blk = block_stack("EW-MHSA", 2, window_size=4, layout="block")
    assert torch.equal(effective_receptive_field(blk, x, position=(1, 6)) > 0,
                       reach(window_op(4, "block"), 12, 2, source=(1, 6)))  # one window, twice
    grid = block_stack("EW-MHSA", 1, window_size=4, layout="grid")
    g = effective_receptive_field(grid, x, position=(1, 6)) > 0
    assert g.sum() == 16 and g[1::3, 0::3].all()  # interleaved: every third pixel from (1, 0)
    full = block_stack("iRMB", 2, window_size=4, layout="grid")
    assert (effective_receptive_field(full, x) > 0).all()


def test_erf_inside_a_model_stops_at_the_layer():
    model = mbe.create_model("emo_1m_cifar").eval()
    layer = model.stage2[-1]
    erf = effective_receptive_field(model, torch.randn(2, 3, 32, 32), layer=layer)
    assert erf.shape == (32, 32) and torch.isfinite(erf).all() and erf.sum() > 0
    with pytest.raises(ValueError, match="did not run"):
        effective_receptive_field(model, torch.randn(1, 3, 32, 32), layer=nn.Conv2d(1, 1, 1))


def test_erf_measures():
    e = torch.zeros(9, 9)
    e[4, 4], e[4, 6] = 3.0, 1.0
    assert erf_area(e, 0.75) == 1 and erf_area(e, 0.9) == 2
    with pytest.raises(ValueError, match="mass"):
        erf_area(e, 0)


# ---- feature similarity (EMO Fig. 9) ----------------------------------------------------------------------


def test_diagonal_similarity():
    f = torch.zeros(2, 4, 4, 4)
    for t in range(4):
        f[:, t, t, t] = 1.0 + t  # orthogonal diagonal pixels
    assert torch.allclose(diagonal_similarity(f), torch.eye(4))
    same = torch.randn(3, 8, 1, 1).expand(3, 8, 5, 5)
    assert torch.allclose(diagonal_similarity(same), torch.ones(5, 5), atol=1e-6)
    ds, sims = similarity_by_distance(same)
    assert ds == [0, 1, 2, 3, 4] and all(abs(s - 1) < 1e-6 for s in sims)
    ds, sims = similarity_by_distance(torch.randn(4, 32, 6, 6))
    assert sims[0] == pytest.approx(1.0) and abs(sims[-1]) < 0.5


def test_feature_maps_hooks():
    model = mbe.create_model("mobilenetv2_100_cifar").eval()
    a, b = feature_maps(model, [model.blocks[3], model.conv_head], torch.randn(2, 3, 32, 32))
    assert a.dim() == 4 and b.shape[:2] == (2, 1280)

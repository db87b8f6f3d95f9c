"""The GDSS score networks: permutation equivariance, symmetry of s_A, masking (issue 15 must-show 1)."""

import pytest
import torch

from sdekit.graphs import GDSSNetwork, ScoreNetworkA, ScoreNetworkX, mask_adjs, mask_x, symmetric_noise


def _noisy_state(B=3, N=9, F=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    flags = (torch.rand(B, N, generator=g) < 0.75).float()
    flags[:, 0] = 1
    x = mask_x(torch.randn(B, N, F, generator=g), flags)
    a = symmetric_noise((B, N, N), flags, g) + 0.5 * mask_adjs(torch.ones(B, N, N) - torch.eye(N), flags)
    return x, a, flags


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return GDSSNetwork(5, depth_x=3, layers_adj=3).eval()


def test_permutation_equivariance(net):
    """Permuting the nodes (flags not contiguous) permutes both outputs: max error <= 1e-5 in float32."""
    x, a, flags = _noisy_state()
    with torch.no_grad():
        ex, ea = net(x, a, flags)
        for seed in range(3):
            perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(seed))
            px, pa = net(x[:, perm], a[:, perm][:, :, perm], flags[:, perm])
            assert (px - ex[:, perm]).abs().max() <= 1e-5
            assert (pa - ea[:, perm][:, :, perm]).abs().max() <= 1e-5
    assert ex.abs().max() > 1e-2 and ea.abs().max() > 1e-2  # not trivially zero


def test_score_a_symmetric_zero_diagonal_and_masked(net):
    x, a, flags = _noisy_state(seed=1)
    ex, ea = net(x, a, flags)
    assert torch.equal(ea, ea.transpose(-1, -2))
    assert torch.all(ea.diagonal(dim1=-2, dim2=-1) == 0)
    pad = flags == 0
    assert pad.any()
    assert torch.all(ex[pad] == 0)
    assert torch.all(ea[pad] == 0) and torch.all(ea.transpose(-1, -2)[pad] == 0)


def test_outputs_do_not_depend_on_padding(net):
    """A graph padded to 9 or to 12 nodes gets the same outputs on its nodes."""
    x, a, flags = _noisy_state()
    ex, ea = net(x, a, flags)
    B, N, F = x.shape
    x2 = torch.cat([x, torch.zeros(B, 3, F)], 1)
    a2 = torch.zeros(B, N + 3, N + 3)
    a2[:, :N, :N] = a
    f2 = torch.cat([flags, torch.zeros(B, 3)], 1)
    ex2, ea2 = net(x2, a2, f2)
    assert (ex2[:, :N] - ex).abs().max() <= 1e-5 and (ea2[:, :N, :N] - ea).abs().max() <= 1e-5
    assert torch.all(ex2[:, N:] == 0) and torch.all(ea2[:, N:] == 0)


def test_single_networks_and_gradients():
    torch.manual_seed(1)
    x, a, flags = _noisy_state(B=2, N=6, F=3)
    sx = ScoreNetworkX(3, depth=2, nhid=8)(x, a, flags)
    sa = ScoreNetworkA(3, layers=2, nhid=8, adim=8, heads=2, c_hid=4, c_final=2)(x, a, flags)
    assert sx.shape == x.shape and sa.shape == a.shape
    (sx.square().sum() + sa.square().sum()).backward()


def test_bad_sizes():
    with pytest.raises(ValueError, match="depth"):
        ScoreNetworkX(3, depth=0)
    with pytest.raises(ValueError, match="divisible"):
        ScoreNetworkA(3, adim=10, heads=4)
    with pytest.raises(ValueError, match="c_init"):
        ScoreNetworkA(3, c_init=0)

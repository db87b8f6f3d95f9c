"""The forward system of GDSS: closed-form transition of each component (issue 15 must-show 2, first half)."""

import math

import pytest
import torch

from sdekit.diffusion import VE, VP
from sdekit.graphs import GDSS_SDE_PRESETS, GraphSDE, mask_adjs


@pytest.mark.parametrize("sde", [GraphSDE.gdss("community_small"), GraphSDE.gdss("grid"),
                                 GraphSDE(VP(0.1, 1.0), VE(0.2, 1.0))])
def test_forward_transition_matches_closed_form(sde):
    """Mean and variance of every entry of X_t and of the upper triangle of A_t over 1e5 draws are within
    4 standard errors of alpha x0 and sigma^2; padding entries and the diagonal are exactly zero."""
    n, N, F = 100_000, 4, 2
    g = torch.Generator().manual_seed(0)
    flags = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(n, N)
    x0 = torch.tensor([[1.0, -0.5], [0.0, 2.0], [0.3, 0.0], [0.0, 0.0]]).expand(n, N, F)
    a1 = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    a0 = a1.expand(n, N, N)
    t = torch.full((n,), 0.6)  # per-graph times (B,)
    x_t, a_t, z_x, z_a = sde.perturb(x0.double(), a0.double(), flags.double(), t.double(), g)
    ax, sx, aa, sa = (float(c[0]) for c in sde.marginal(0.6, x0.double()))
    assert math.isclose(ax, float(sde.x.alpha(0.6)), rel_tol=1e-12)
    upper = ([0, 0, 1], [1, 2, 2])
    for v, mean, std in ((x_t[:, :3, :], ax * x0[0, :3, :], sx), (a_t[:, upper[0], upper[1]], aa * a1[upper], sa)):
        m, var = v.mean(0), v.var(0)
        se_m, se_v = std / math.sqrt(n), std**2 * math.sqrt(2 / (n - 1))
        assert torch.all((m - mean.double()).abs() < 4 * se_m), (m, mean)
        assert torch.all((var - std**2).abs() < 4 * se_v), (var, std**2)
    assert torch.all(x_t[:, 3] == 0) and torch.all(a_t[:, 3] == 0) and torch.all(a_t[:, :, 3] == 0)
    assert torch.all(a_t.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.equal(a_t, a_t.transpose(-1, -2))
    assert torch.equal(z_a, mask_adjs(z_a, flags.double()))
    # the returned noise is the one that made the state
    torch.testing.assert_close(x_t, ax * x0.double() * flags.double()[..., None] + sx * z_x)


def test_presets_and_prior_mismatch():
    assert set(GDSS_SDE_PRESETS) == {"community_small", "ego_small", "grid"}
    sde = GraphSDE.gdss("grid")
    assert isinstance(sde.adj, VP) and (sde.adj.beta_min, sde.adj.beta_max) == (0.2, 0.8)
    alpha, sigma = sde.prior_mismatch()["x"]
    # linear VP 0.1 -> 1 at t = 1: B = 0.55, alpha = exp(-0.275)
    assert math.isclose(alpha, math.exp(-0.275), rel_tol=1e-6)
    assert math.isclose(sigma, math.sqrt(1 - math.exp(-0.55)), rel_tol=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="Schedule"):
        GraphSDE("vp", VP())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_min"):
        GraphSDE(VP(), VP(), t_min=1.0, t_max=0.5)
    with pytest.raises(ValueError, match="dataset must be one of"):
        GraphSDE.gdss("zinc")
    sde = GraphSDE.gdss("ego_small")
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        sde.marginal(torch.ones(3), torch.zeros(2, 1, 1))

"""Dirichlet diffusion: stick-breaking, the Jacobi SDE (run by ``sdekit.sdeint``) and its transition density
and score against exact answers (Gauss-Legendre quadrature, Monte Carlo with chi-square / KS bounds,
autograd), and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import eval_jacobi

import sdekit
from sdekit.domains import (
    JacobiDiffusion,
    JacobiScoreTable,
    inverse_stick_breaking,
    jacobi_density,
    jacobi_log_density,
    jacobi_polynomials,
    jacobi_score,
    stick_breaking,
    stick_parameters,
)

torch.set_num_threads(1)

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(400)
V_GL = torch.tensor((_GL_NODES + 1) / 2, dtype=torch.float64)
W_GL = torch.tensor(_GL_WEIGHTS / 2, dtype=torch.float64)


def test_jacobi_polynomials_match_scipy():
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    for alpha, beta in [(0.0, 0.0), (7.0, 0.0), (2.0, -0.5), (-0.3, 1.5)]:
        p = jacobi_polynomials(40, alpha, beta, x)
        for n in range(40):
            ref = eval_jacobi(n, alpha, beta, x.numpy())
            assert np.allclose(p[n].numpy(), ref, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(ref).max()))


def test_stick_breaking_round_trip_and_one_hot():
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(100, 5, generator=gen, dtype=torch.float64)
    x = stick_breaking(v)
    assert x.shape == (100, 6) and torch.allclose(x.sum(-1), torch.ones(100, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(inverse_stick_breaking(x), v, atol=1e-12)
    onehot = torch.eye(4, dtype=torch.float64)
    sticks = inverse_stick_breaking(onehot)
    # category c: sticks before c are 0, stick c is 1, the undefined ones after are 0; the last category is all 0
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.float64)
    assert torch.equal(sticks, expected)
    assert torch.equal(stick_breaking(sticks), onehot)


def test_stationary_sticks_give_the_flat_dirichlet():
    """Exact stationary sticks v_k ~ Beta(1, K - k): every simplex marginal is Beta(1, K - 1) (KS), and the
    mean of x is 1/K within 4 standard errors."""
    K, n = 5, 20000
    a, b = stick_parameters(K)
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(n, K - 1, generator=gen, dtype=torch.float64)
    v = 1 - (1 - u) ** (1 / b)                       # inverse CDF of Beta(1, b)
    x = stick_breaking(v)
    for k in range(K):
        assert stats.kstest(x[:, k].numpy(), stats.beta(1, K - 1).cdf).pvalue > 1e-3
    se = np.sqrt((K - 1) / (K ** 2 * (K + 1)) / n)
    assert float((x.mean(0) - 1 / K).abs().max()) < 4 * se


def test_long_time_jacobi_sde_reaches_the_flat_dirichlet():
    """Sticks started at a one-hot point and run by sdekit.sdeint to t = 10 (the slowest mode decays as
    exp(-t)): the simplex marginals are Beta(1, K - 1) by KS."""
    K, n = 4, 4000
    a, b = stick_parameters(K)
    torch.manual_seed(2)
    v0 = inverse_stick_breaking(torch.eye(K, dtype=torch.float64)[torch.zeros(n, dtype=torch.long)])
    vt = sdekit.sdeint(JacobiDiffusion(a, b), v0, [0.0, 10.0], method="euler", dt=5e-3)[-1].clamp(0, 1)
    x = stick_breaking(vt)
    for k in range(K):
        assert stats.kstest(x[:, k].numpy(), stats.beta(1, K - 1).cdf).pvalue > 1e-3


@pytest.mark.parametrize("b", [1.0, 3.0, 8.0])
def test_density_integrates_to_one_and_is_nonnegative(b):
    t = torch.tensor([0.05, 0.1, 0.3, 1.0, 3.0], dtype=torch.float64)[:, None, None]
    v0 = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)[:, None]
    p = jacobi_density(V_GL, v0, t, 1.0, b)                                     # (t, v0, v)
    assert float(((p * W_GL).sum(-1) - 1).abs().max()) < 1e-10                # measured: <= 6e-13
    assert float(p.min()) >= -1e-10
    edges = jacobi_density(torch.tensor([0.0, 1.0], dtype=torch.float64), v0, t, 1.0, b)
    assert float(edges.min()) >= -1e-10


def test_density_with_general_parameters_and_speed():
    """a, b not of the Dirichlet form and a speed: still a density, and the large-t limit is Beta(a, b)."""
    p = jacobi_density(V_GL, 0.3, 0.2, 2.0, 3.0, speed=0.4)
    assert abs(float((p * W_GL).sum()) - 1) < 1e-10 and float(p.min()) >= -1e-10
    far = jacobi_density(V_GL, 0.3, 200.0, 2.0, 3.0, speed=0.4)
    assert torch.allclose(far, torch.tensor(stats.beta(2.0, 3.0).pdf(V_GL.numpy())), atol=1e-12)


def _bin_probabilities(edges, v0, t, a, b):
    nodes, weights = np.polynomial.legendre.leggauss(40)
    lo, hi = edges[:-1, None], edges[1:, None]
    v = torch.tensor(lo + (hi - lo) * (nodes + 1) / 2)
    return (jacobi_density(v, v0, t, a, b).numpy() * weights * (hi - lo) / 2).sum(1)


@pytest.mark.parametrize("a, b, v0", [(1.0, 3.0, 0.7), (1.0, 8.0, 1.0)])
def test_density_matches_monte_carlo_of_the_sde(a, b, v0):
    """Euler-Maruyama by sdekit.sdeint, dt = 1e-3, 40000 paths, clamped to [0, 1] at the output times (the
    scheme can step outside by O(dt)); 20-bin histograms at 5 times against the density integrated over each
    bin: chi-square below its 0.999 quantile (19 degrees of freedom)."""
    n = 40000
    ts = [0.0, 0.05, 0.1, 0.3, 0.7, 1.5]
    torch.manual_seed(3)
    y0 = torch.full((n, 1), v0, dtype=torch.float64)
    ys = sdekit.sdeint(JacobiDiffusion(a, b), y0, ts, method="euler", dt=1e-3).clamp(0, 1)
    edges = np.linspace(0, 1, 21)
    bound = stats.chi2.ppf(0.999, 19)
    for i, t in enumerate(ts[1:], start=1):
        counts, _ = np.histogram(ys[i, :, 0].numpy(), edges)
        expected = n * _bin_probabilities(edges, v0, t, a, b)
        assert abs(expected.sum() - n) < 1e-6
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < bound, (t, chi2)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (1.0, 8.0), (2.0, 0.7)])
def test_score_equals_autograd_and_finite_differences(a, b):
    v = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    for t in [0.05, 0.3, 2.0]:
        for v0 in [0.0, 0.4, 1.0]:
            # the series has an absolute rounding floor near 1e-12: compare where the density is resolved
            resolved = v[jacobi_density(v, v0, t, a, b, speed=0.5) > 1e-6]
            assert len(resolved) >= 5
            score = jacobi_score(resolved, v0, t, a, b, speed=0.5)
            vv = resolved.clone().requires_grad_(True)
            (auto,) = torch.autograd.grad(jacobi_log_density(vv, v0, t, a, b, speed=0.5).sum(), vv)
            assert torch.allclose(score, auto, rtol=1e-8, atol=1e-8)
            # central differences amplify the floor by 1 / (p h): only where p > 1e-3
            big = jacobi_density(resolved, v0, t, a, b, speed=0.5) > 1e-3
            h = 1e-5
            fd = (jacobi_log_density(resolved + h, v0, t, a, b, speed=0.5)
                  - jacobi_log_density(resolved - h, v0, t, a, b, speed=0.5)) / (2 * h)
            assert torch.allclose(score[big], fd[big], rtol=1e-5, atol=1e-5)


def test_jacobi_sde_drift_and_diffusion():
    sde = JacobiDiffusion(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 1.0]), speed=0.5)
    v = torch.tensor([[0.25, 0.5]])
    assert torch.allclose(sde.f(0.0, v), 0.25 * torch.tensor([[0.75 - 0.5, 0.5 - 0.5]]))
    assert torch.allclose(sde.g(0.0, v), torch.sqrt(0.5 * torch.tensor([[0.1875, 0.25]])))
    assert torch.equal(sde.g(0.0, torch.tensor([[-0.01, 1.01]])), torch.zeros(1, 2))
    a, b = stick_parameters(4)                                  # float64 parameters, float32 state
    out = sdekit.sdeint(JacobiDiffusion(a, b), torch.full((5, 3), 0.5), [0.0, 0.1], method="euler", dt=1e-2)
    assert out.dtype == torch.float32 and out.shape == (2, 5, 3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="K"):
        stick_parameters(1)
    with pytest.raises(ValueError, match="x must have shape"):
        inverse_stick_breaking(torch.ones(3, 1))
    with pytest.raises(ValueError, match="sum to 1"):
        inverse_stick_breaking(torch.tensor([[0.5, 0.6]]))
    with pytest.raises(ValueError, match="simplex"):
        inverse_stick_breaking(torch.tensor([[1.2, -0.2]]))
    with pytest.raises(ValueError, match="v \\(sticks\\)"):
        stick_breaking(torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ValueError, match="v \\(sticks\\)"):
        stick_breaking(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="v must lie"):
        jacobi_density(torch.tensor([1.2]), 0.5, 0.1, 1.0, 2.0)
    with pytest.raises(ValueError, match="v0 must lie"):
        jacobi_density(torch.tensor([0.2]), -0.5, 0.1, 1.0, 2.0)
    with pytest.raises(ValueError, match="t and speed"):
        jacobi_density(torch.tensor([0.2]), 0.5, 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="a and b"):
        jacobi_density(torch.tensor([0.2]), 0.5, 0.1, 0.0, 2.0)
    with pytest.raises(ValueError, match="open interval"):
        jacobi_score(torch.tensor([0.0]), 0.5, 0.1, 1.0, 2.0)
    with pytest.raises(ValueError, match="speed"):
        JacobiDiffusion(1.0, 2.0, speed=-1.0)


def test_score_table_matches_the_series():
    """The interpolated table against the series at off-grid times, weighted by the density (what training
    sees): the relative root-mean-square error of v (1 - v) score is below 1e-2 (measured about 1e-3)."""
    K = 4
    a, b = stick_parameters(K)
    table = JacobiScoreTable(a, b, t_min=0.02, t_max=1.0, num_t=40, num_u=301)
    v = V_GL[::2]
    w = W_GL[::2] * 2
    for t in [0.023, 0.11, 0.57]:
        for v0 in [0.0, 1.0]:
            for k in range(K - 1):
                p = jacobi_density(v, v0, t, a[k], b[k]).clamp(min=0) * w
                exact = v * (1 - v) * jacobi_score(v, v0, t, a[k], b[k])
                sticks = torch.full((len(v), K - 1), 0.5, dtype=torch.float64)
                sticks[:, k] = v
                got = table.scaled_score(sticks, torch.full_like(sticks, v0), t)[:, k]
                rel = float(((p * (got - exact) ** 2).sum() / (p * exact ** 2).sum()).sqrt())
                assert rel < 1e-2, (t, v0, k, rel)
                assert torch.allclose(table.score(sticks, torch.full_like(sticks, v0), t)[:, k],
                                      got / (v * (1 - v)))
    with pytest.raises(ValueError, match="t must lie"):
        table.scaled_score(torch.full((2, K - 1), 0.5), torch.zeros(2, K - 1), 2.0)
    with pytest.raises(ValueError, match="v0 must be 0 or 1"):
        table.scaled_score(torch.full((2, K - 1), 0.5), torch.full((2, K - 1), 0.5), 0.5)
    with pytest.raises(ValueError, match="last dimension"):
        table.scaled_score(torch.full((2, K), 0.5), torch.zeros(2, K), 0.5)

"""Samplers on exact oracles: the probability-flow ODE reaches the mixture, DDIM converges to the ODE
endpoint at first order, reverse-SDE samples have the right moments; errors at the boundary. The contract
every sampler meets is in test_sampler_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

import sdekit
from sdekit.diffusion import (
    DDIM,
    EDM,
    PFODE,
    VP,
    EmpiricalData,
    EulerMaruyama,
    GaussianMixture,
    LinearFlow,
    ProbabilityFlowODE,
    ReverseSDE,
    sample,
)

F64 = torch.float64


def _mixture() -> GaussianMixture:
    return GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]], [[0.4, -0.15], [-0.15, 0.3]]],
    )


def _check_distribution(x: torch.Tensor, target: GaussianMixture, ref: torch.Tensor, z: float = 4.0):
    """Mean, covariance and the fraction of points nearest to each component mean, each within ``z``
    standard errors (of the sample, plus the reference sample's for the fractions)."""
    n = x.shape[0]
    mu, cov = target.mean, target.covariance
    se = torch.sqrt(torch.diag(cov) / n)
    assert bool(((x.mean(0) - mu).abs() < z * se).all()), (x.mean(0), mu)
    xc = x - mu
    prods = xc[:, :, None] * xc[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert bool(((prods.mean(0) - cov).abs() < z * se_cov).all()), (prods.mean(0), cov)

    def fractions(y):
        return torch.bincount(torch.cdist(y, target.means).argmin(1), minlength=target.num_components) / y.shape[0]

    p_ref, p = fractions(ref), fractions(x)
    se_p = torch.sqrt(p_ref * (1 - p_ref) * (1 / n + 1 / ref.shape[0]))
    assert bool(((p - p_ref).abs() < z * se_p).all()), (p, p_ref)


@pytest.mark.parametrize("s", [VP(), EDM(), LinearFlow()], ids=lambda s: type(s).__name__)
def test_probability_flow_ode_reaches_the_mixture(s):
    gm = _mixture()
    g = torch.Generator().manual_seed(0)
    n = 2000
    x_T = gm.at(s.t_max, s).sample(n, g)  # the exact marginal at t_max: the ODE then transports exactly
    x, info = sample(gm.as_denoiser(s), s, x_T, solver=PFODE("dopri5", rtol=1e-5, atol=1e-5), return_info=True)
    target = gm.at(s.t_min, s)
    _check_distribution(x, target, target.sample(100_000, g))
    assert info.nfe > 10 and info.timesteps.tolist() == [s.t_max, s.t_min]


@pytest.mark.parametrize("s,grid", [(EDM(), "karras"), (VP(), "logsnr")], ids=["EDM-karras", "VP-logsnr"])
def test_ddim_converges_to_the_ode_endpoint_at_first_order(s, grid):
    gm = _mixture()
    x_T = gm.at(s.t_max, s).sample(256, torch.Generator().manual_seed(1))
    D = gm.as_denoiser(s)
    ref = sdekit.odeint(ProbabilityFlowODE(D, s), x_T, [s.t_max, s.t_min], rtol=1e-10, atol=1e-10)[-1]
    steps = [10, 20, 40, 80, 160, 320]
    errs = [float((sample(D, s, x_T, solver="ddim", steps=n, timesteps=grid) - ref).pow(2).mean().sqrt())
            for n in steps]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    # least-squares order over 20..320 steps (the asymptotic range), and on EDM every doubling
    logs_n, logs_e = torch.log(torch.tensor(steps[1:], dtype=F64)), torch.log(torch.tensor(errs[1:], dtype=F64))
    slope = -float(torch.cov(torch.stack([logs_n, logs_e]))[0, 1] / logs_n.var())
    assert 0.85 < slope < 1.2, (errs, slope)
    if isinstance(s, EDM):
        assert all(0.9 < math.log2(a / b) < 1.15 for a, b in zip(errs[1:], errs[2:])), errs
    assert errs[-1] < 0.015


@pytest.mark.parametrize("solver", [EulerMaruyama(), DDIM(eta=1.0)], ids=repr)
def test_stochastic_samplers_give_the_gaussian_moments(solver):
    gm = GaussianMixture([1.0], [[1.0, -0.5]], [[[0.3, 0.1], [0.1, 0.5]]])
    s = VP()
    n = 4000
    x_T = gm.at(s.t_max, s).sample(n, torch.Generator().manual_seed(2))
    x = sample(gm.as_denoiser(s), s, x_T, solver=solver, steps=500, generator=torch.Generator().manual_seed(3))
    target = gm.at(s.t_min, s)
    var = torch.diag(target.covariance)
    assert bool(((x.mean(0) - target.mean).abs() < 4 * torch.sqrt(var / n)).all()), x.mean(0)
    assert bool(((x.var(0) - var).abs() < 4 * var * math.sqrt(2 / (n - 1))).all()), (x.var(0), var)


def test_euler_maruyama_equals_sdeint_on_the_reverse_sde():
    gm = _mixture()
    s = VP()
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    bm = sdekit.BrownianPath(s.t_min, s.t_max, (64, 2), seed=7, dtype=F64)
    x = sample(gm.as_denoiser(s), s, x_T, solver="euler-maruyama", steps=40, bm=bm)
    ts = torch.linspace(s.t_max, s.t_min, 41, dtype=F64)
    y = sdekit.sdeint(ReverseSDE(gm.as_denoiser(s), s), x_T, ts, method="euler", dt=1.0, bm=bm)[-1]
    torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_ddim_is_exact_for_a_point_mass():
    """For data at one point D is constant; DDIM (eta = 0) then solves the probability-flow ODE exactly."""
    s = VP()
    point = torch.tensor([[0.7, -1.2]], dtype=F64)
    oracle = EmpiricalData(point)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = sample(oracle.as_denoiser(s), s, x_T, solver="ddim", steps=3)
    b = sdekit.odeint(ProbabilityFlowODE(oracle.as_denoiser(s), s), x_T, [s.t_max, s.t_min], rtol=1e-11,
                      atol=1e-11)[-1]
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


class _Net:
    """An eps-network acting sample by sample, that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return torch.tanh(x) * (0.5 + t.reshape(-1, *([1] * (x.dim() - 1))))


def test_samplers_on_an_empirical_oracle_reach_data_points():
    data = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    s = EDM()
    x_T = s.prior_sample((16, 2), torch.Generator().manual_seed(1), dtype=F64)
    x = sample(EmpiricalData(data).as_denoiser(s), s, x_T, solver="ddim", steps=40)
    # with sigma_min = 0.002 every sample lands within a few sigma_min of a data point
    assert float(torch.cdist(x, data).min(1).values.max()) < 0.05


def test_sample_errors():
    s = VP()
    x_T = torch.randn(4, 2)
    net = _Net()
    with pytest.raises(ValueError, match=r"unknown solver 'dpm\+\+9m'; choose one of"):
        sample(net, s, x_T, solver="dpm++9m", steps=4)
    with pytest.raises(TypeError, match="solver must be a name or a Sampler"):
        sample(net, s, x_T, solver=3, steps=4)
    with pytest.raises(ValueError, match="steps is required"):
        sample(net, s, x_T, solver="ddim")
    with pytest.raises(TypeError, match="Schedule"):
        sample(net, "vp", x_T, steps=4)
    with pytest.raises(TypeError, match="x_T must be a floating-point tensor"):
        sample(net, s, torch.zeros(4, 2, dtype=torch.long), steps=4)
    with pytest.raises(ValueError, match=r"bm\(ta, tb\) must return increments of the shape of x_T"):
        sample(net, s, x_T, solver="euler-maruyama", steps=4, bm=sdekit.BrownianPath(s.t_min, s.t_max, (3, 2)))
    with pytest.raises(ValueError, match="queries must lie inside"):
        sample(net, s, x_T, solver="euler-maruyama", steps=4, bm=sdekit.BrownianPath(0.5, 1.0, (4, 2)))
    with pytest.raises(ValueError, match="eta must be non-negative"):
        DDIM(eta=-1.0)
    with pytest.raises(ValueError, match="unknown ODE method"):
        PFODE("dopri7")
    with pytest.raises(FloatingPointError, match="non-finite"):
        sample(lambda x, t: x * float("nan"), s, x_T, steps=4)


def test_progress_and_named_grids():
    s = VP()
    x_T = torch.randn(3, 2, dtype=F64)
    for grid in ("uniform", "logsnr", "karras"):
        x, info = sample(_Net(), s, x_T, steps=3, timesteps=grid, progress=True, return_info=True)
        assert info.nfe == 3 and x.shape == (3, 2)
    ts = torch.tensor([1.0, 0.5, 0.2, 0.01], dtype=F64)
    _, info = sample(_Net(), s, x_T, timesteps=ts, return_info=True)
    assert torch.equal(info.timesteps, ts) and info.nfe == 3

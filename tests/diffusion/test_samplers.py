"""Samplers on exact oracles: the probability-flow ODE reaches the mixture, DDIM converges to the ODE
endpoint at first order, reverse-SDE samples have the right moments; plus the sampler contract."""

from __future__ import annotations

import math

import pytest
import torch

import sdekit
from sdekit.diffusion import (
    DDIM,
    EDM,
    PFODE,
    SAMPLERS,
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


# ------------------------------------------------------------------------------------------------
# The contract every sampler must meet
# ------------------------------------------------------------------------------------------------
# every registered sampler with its defaults, plus non-default settings of the samplers of this module
CONTRACT = [SAMPLERS[name]() for name in sorted(SAMPLERS)] + [DDIM(eta=0.7), PFODE("rk4")]


class _Net:
    """An eps-network acting sample by sample, that counts its calls and checks its time input."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, *, scale=1.0):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        self.calls += 1
        tt = t.reshape(-1, *([1] * (x.dim() - 1)))
        return scale * torch.tanh(x) * (0.5 + tt)


@pytest.mark.parametrize("solver", CONTRACT, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_sampler_contract(solver, dtype):
    s = VP()
    shape = (6, 1, 3, 3)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    net = _Net()
    x, info = sample(net, s, x_T, solver=solver, steps=5, generator=torch.Generator().manual_seed(1),
                     model_kwargs={"scale": 0.5}, return_info=True)
    assert x.shape == shape and x.dtype == dtype and bool(torch.isfinite(x).all())
    # the reported NFE is the counted number of model calls, and the declared one when known
    assert info.nfe == net.calls
    if solver.nfe(5) is not None:
        assert info.nfe == solver.nfe(5)
    assert info.timesteps.shape == (6,)
    # seed determinism
    again = sample(_Net(), s, x_T, solver=solver, steps=5, generator=torch.Generator().manual_seed(1),
                   model_kwargs={"scale": 0.5})
    assert torch.equal(x, again)
    other = sample(_Net(), s, x_T, solver=solver, steps=5, generator=torch.Generator().manual_seed(2),
                   model_kwargs={"scale": 0.5})
    assert torch.equal(x, other) != solver.stochastic
    # per-sample seeds: a sample does not depend on the batch it is drawn in
    seeds = [11, 12, 13, 14, 15, 16]
    bm6 = sdekit.BrownianPath(s.t_min, s.t_max, shape, seed=seeds, dtype=dtype)
    bm3 = sdekit.BrownianPath(s.t_min, s.t_max, (3, *shape[1:]), seed=seeds[:3], dtype=dtype)
    full = sample(_Net(), s, x_T, solver=solver, steps=5, bm=bm6)
    part = sample(_Net(), s, x_T[:3], solver=solver, steps=5, bm=bm3)
    if solver.nfe_per_step is None:  # adaptive steps follow the batch's error norm: equal to the tolerance
        torch.testing.assert_close(full[:3], part, rtol=1e-3, atol=1e-3)
    else:
        torch.testing.assert_close(full[:3], part, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
    # denoise_final costs one more call; trajectories start at x_T and end at the sample
    net2 = _Net()
    y, info2 = sample(net2, s, x_T, solver=solver, steps=5, bm=bm6, denoise_final=True, return_trajectory=True)
    assert info2.nfe == net2.calls and info2.trajectory.shape == (6, *shape)
    assert torch.equal(info2.trajectory[0], x_T) and torch.equal(info2.trajectory[-1], full)
    if solver.nfe(5) is not None:
        assert info2.nfe == solver.nfe(5) + 1


@pytest.mark.parametrize("solver", CONTRACT, ids=repr)
def test_gradients_flow_through_sampling(solver):
    """Autograd through every sampler equals central finite differences of the sample (same noise), in the
    direction of a random perturbation of x_T and of the model's weight w."""
    s = EDM()
    x_T = 80.0 * torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    dx = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    u = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(5))

    def loss(x0, w):
        x = sample(lambda x, sigma: w * x / (1 + sigma[:, None]) + 0.1 * torch.sin(x), s, x0, solver=solver,
                   steps=4, prediction="karras", generator=torch.Generator().manual_seed(0))
        return (u * x).sum()

    x0 = x_T.clone().requires_grad_(True)
    w = torch.tensor(0.3, dtype=F64, requires_grad=True)
    loss(x0, w).backward()
    eps = 1e-6
    with torch.no_grad():
        fd_x = (loss(x_T + eps * dx, w) - loss(x_T - eps * dx, w)) / (2 * eps)
        fd_w = (loss(x_T, w + eps) - loss(x_T, w - eps)) / (2 * eps)
    if getattr(solver, "nfe_per_step", 1) is None:
        # an adaptive solver (dopri5) chooses its steps from the state, and autograd differentiates the chosen
        # steps only: agreement to the error tolerance, measured against the size of the w-derivative
        scale = float(fd_w.abs())
        assert abs(float((x0.grad * dx).sum() - fd_x)) < 1e-3 * scale
        assert abs(float(w.grad - fd_w)) < 1e-3 * scale
        return
    torch.testing.assert_close((x0.grad * dx).sum(), fd_x, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(w.grad, fd_w, rtol=1e-6, atol=1e-9)


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

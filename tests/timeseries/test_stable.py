"""LSDE / LNSDE / GSDE against closed forms, the neural CDE against the exact integral, gradients through
sdeint (issue 18, must-show 1). Monte Carlo checks: fixed seeds, 4 standard errors."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import BrownianGrid, BrownianPath, odeint, sdeint
from sdekit.timeseries import GSDE, LNSDE, LSDE, NaiveNeuralSDE, NeuralCDE, PathClassifier, control_path

F64 = torch.float64
N = 8_000  # Monte Carlo samples (batch 4_000 x hidden 2)


def _path(batch: int, dtype=F64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, 1, generator=g, dtype=dtype)
    return control_path(x)  # channels: t, x, count


def _linear(module) -> torch.nn.Linear:
    assert isinstance(module, torch.nn.Linear)
    return module


def _constant(sde, drift: float, noise: float):
    """Make gamma == drift and sigma(t) == noise exactly (zero output weights, chosen biases)."""
    with torch.no_grad():
        last = sde.net[-1]
        last.weight.zero_()
        last.bias.fill_(math.atanh(drift))
        out = sde.sigma.net[-1]
        out.weight.zero_()
        # sigma = tanh(sigmoid(theta) * relu(b)): theta = 0 gives tanh(b / 2)
        sde.sigma.theta.fill_(0.0)
        out.bias.fill_(2 * math.atanh(noise))
    return sde


def _moments(samples: torch.Tensor):
    x = samples.reshape(-1)
    m = x.mean()
    dev2 = (x - m) ** 2
    v = dev2.mean() * len(x) / (len(x) - 1)
    return float(m), float(x.std() / math.sqrt(len(x))), float(v), float(dev2.std() / math.sqrt(len(x)))


def _solve(sde, z0: float, T: float, dt: float, seed: int):
    sde = sde.to(F64)
    sde.set_control(_path(N // 2))
    y0 = torch.full((N // 2, 2), z0, dtype=F64)
    n = round(T / dt)
    bm = BrownianGrid(torch.linspace(0.0, T, n + 1, dtype=F64), (N // 2, 2), seed=seed, dtype=F64)
    with torch.no_grad():
        return sdeint(sde, y0, torch.tensor([0.0, T], dtype=F64), dt=T / n, bm=bm, method="milstein")[-1]


def test_gsde_with_constant_networks_is_geometric_brownian_motion():
    mu, s, z0, T = 0.4, 0.5, 1.3, 1.0
    torch.manual_seed(0)
    z = _solve(_constant(GSDE(3, 2, 8), mu, s), z0, T, 5e-3, seed=1)
    mean, se_m, var, se_v = _moments(z)
    exact_mean = z0 * math.exp(mu * T)
    exact_var = z0 ** 2 * math.exp(2 * mu * T) * (math.exp(s ** 2 * T) - 1)
    assert abs(mean - exact_mean) < 4 * se_m, (mean, exact_mean, se_m)
    assert abs(var - exact_var) < 4 * se_v, (var, exact_var, se_v)
    assert (z > 0).all()  # a geometric SDE keeps the sign of z0


def test_lnsde_with_constant_drift_matches_the_linear_moment_equations():
    """dz = c dt + s z dW: E z = z0 + c t; E z^2 solves m2' = 2 c E z + s^2 m2."""
    c, s, z0, T = 0.3, 0.6, 0.8, 1.0
    torch.manual_seed(0)
    z = _solve(_constant(LNSDE(3, 2, 8), c, s), z0, T, 5e-3, seed=2)
    a = s ** 2
    i0 = (1 - math.exp(-a * T)) / a
    i1 = (1 - math.exp(-a * T) * (1 + a * T)) / a ** 2
    m2 = math.exp(a * T) * (z0 ** 2 + 2 * c * (z0 * i0 + c * i1))
    exact_mean = z0 + c * T
    exact_var = m2 - exact_mean ** 2
    mean, se_m, var, se_v = _moments(z)
    assert abs(mean - exact_mean) < 4 * se_m, (mean, exact_mean, se_m)
    assert abs(var - exact_var) < 4 * se_v, (var, exact_var, se_v)


def test_lsde_with_constant_drift_is_brownian_motion_with_drift():
    c, s, z0, T = -0.5, 0.7, 0.2, 1.5
    torch.manual_seed(0)
    z = _solve(_constant(LSDE(3, 2, 8), c, s), z0, T, 0.05, seed=3)
    mean, se_m, var, se_v = _moments(z)
    assert abs(mean - (z0 + c * T)) < 4 * se_m
    assert abs(var - s ** 2 * T) < 4 * se_v


def test_drift_reads_the_control_path_at_the_solver_time():
    """With no noise the LSDE drift at time t is a function of X(t): moving the data after t leaves the
    solution up to t unchanged and changes it after."""
    torch.manual_seed(0)
    sde = LSDE(3, 2, 8).to(F64)
    with torch.no_grad():
        _linear(sde.sigma.net[-1]).weight.zero_()
        _linear(sde.sigma.net[-1]).bias.fill_(-1.0)  # relu -> sigma = 0
    x = torch.randn(1, 11, 1, dtype=F64)
    x2 = x.clone()
    x2[0, 8:, 0] += 5.0  # change the data after t = 0.8 (hermite: causal, X on [t_k, t_k+1] sees x_k+1)
    ts = torch.tensor([0.0, 0.7, 1.0], dtype=F64)
    out = []
    for v in (x, x2):
        sde.set_control(control_path(v, kind="hermite"))
        out.append(sdeint(sde, torch.zeros(1, 2, dtype=F64), ts, dt=0.01))
    assert torch.allclose(out[0][1], out[1][1], atol=1e-14)
    assert (out[0][2] - out[1][2]).abs().max() > 1e-3


def test_neural_cde_with_constant_field_integrates_the_control_exactly():
    """F(z) == A gives z(T) = z0 + A (X(T) - X(0)); rk4 on the knot grid integrates the quadratic dX/dt exactly."""
    torch.manual_seed(0)
    cde = NeuralCDE(3, 2, 8).to(F64)
    with torch.no_grad():
        head = cde.net[-1]
        assert isinstance(head, torch.nn.Sequential)
        last = _linear(head[-1])
        last.weight.zero_()
        last.bias.uniform_(-1, 1)
    A = torch.tanh(last.bias.detach()).reshape(2, 3)
    x = torch.randn(4, 6, 1, dtype=F64)
    path = control_path(x)
    cde.set_control(path)
    z0 = torch.randn(4, 2, dtype=F64)
    zT = odeint(cde, z0, torch.tensor([0.0, 1.0], dtype=F64), method="rk4", dt=0.2)[-1]
    exact = z0 + (path.evaluate(1.0) - path.evaluate(0.0)) @ A.T
    assert torch.allclose(zT, exact, atol=1e-12)


@pytest.mark.parametrize("cls", [LSDE, LNSDE, GSDE, NaiveNeuralSDE])
def test_gradcheck_through_the_spline_and_sdeint(cls):
    torch.manual_seed(0)
    sde = cls(3, 2, 4).to(F64)
    if cls is NaiveNeuralSDE:
        sde = NaiveNeuralSDE(3, 2, 4, controlled=True).to(F64)
    x = torch.randn(2, 5, 1, dtype=F64)
    x[1, 2, 0] = float("nan")
    keep = ~torch.isnan(x)
    bm = BrownianPath(0.0, 1.0, (2, 2), seed=7, dtype=F64)
    z0 = torch.full((2, 2), 0.5, dtype=F64)

    def fn(v):
        sde.set_control(control_path(torch.where(keep, v, torch.full_like(v, float("nan")))))
        return sdeint(sde, z0, torch.tensor([0.0, 1.0], dtype=F64), dt=0.125, bm=bm)[-1]

    assert torch.autograd.gradcheck(fn, (x.nan_to_num().requires_grad_(),))


def test_classifier_shapes_and_errors():
    torch.manual_seed(0)
    x = torch.randn(5, 8, 2)
    packed = control_path(x).pack()
    model = PathClassifier(LSDE(5, 4, 8), 3, dt=0.1)
    assert model(packed).shape == (5, 3)
    with pytest.raises(ValueError, match="channels"):
        PathClassifier(LSDE(4, 4, 8), 3)(packed)
    with pytest.raises(TypeError, match="field"):
        PathClassifier(torch.nn.Linear(2, 2), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden"):
        GSDE(3, 0)
    with pytest.raises(RuntimeError, match="set_control"):
        LSDE(3, 2).f(torch.tensor(0.0), torch.zeros(1, 2))

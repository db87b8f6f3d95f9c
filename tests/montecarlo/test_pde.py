"""Crank–Nicolson for the variable-exponent Cauchy problem against exact solutions: GBM moments, a linear
datum under a variable diffusion exponent (exact for any q), Black–Scholes (non-smooth datum, Rannacher
start-up), the lognormal quadrature for a bounded datum; second order under refinement; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.montecarlo import (
    VariableExponentSDE,
    crank_nicolson,
    crank_nicolson_refined,
    gbm_expectation,
    gbm_power_expectation,
)

MU, SIGMA = 0.2, 0.5
X = [0.5, 1.0, 2.0]
T = [0.5, 1.0]


def q_dec(x):
    return (2 + x) / (2 * (1 + x))


def exact_boundary(u):
    return lambda xb, t: u(xb, t)


def orders(errs):
    return [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]


def test_gbm_power_moment_second_order():
    """f = x^2 under GBM with V = 0.05: u = x^2 exp((2 mu + sigma^2 - V) t), imposed at the boundary; the
    max error falls by 4 per halving of h and dt."""
    sde = VariableExponentSDE(MU, SIGMA)
    exact = gbm_power_expectation(X, T, 2, MU, SIGMA, V=0.05)

    def u(xb, t):
        return xb**2 * math.exp((2 * MU + SIGMA**2 - 0.05) * t)

    errs = []
    for i in range(3):
        got = crank_nicolson(sde, lambda x: x**2, X, T, V=0.05, n_y=100 * 2**i, dt=0.04 / 2**i,
                             y_bounds=(-4.0, 4.0), boundary=exact_boundary(u))
        errs.append(float(((got - exact) / exact).abs().max()))
    assert errs[-1] < 3e-4
    assert all(1.8 < o < 2.2 for o in orders(errs)), (errs, orders(errs))


def test_linear_datum_exact_for_any_diffusion_exponent():
    """p = 1, f(x) = x: u = x e^{(mu - V) t} whatever q (w = e^{y + (mu - V) t} has w_yy = w_y); the grid
    does not know that (central differences of e^y differ at O(h^2)), so this checks the variable-q scheme
    at second order."""
    sde = VariableExponentSDE(MU, SIGMA, p=1.0, q=q_dec)
    xs = torch.tensor(X, dtype=torch.float64)
    exact = xs * torch.exp(torch.tensor(T, dtype=torch.float64)[:, None] * (MU - 0.05))
    errs = []
    for i in range(3):
        got = crank_nicolson(sde, lambda x: x, X, T, V=0.05, n_y=100 * 2**i, dt=0.04 / 2**i, y_bounds=(-5.0, 5.0),
                             boundary=lambda xb, t: xb * math.exp((MU - 0.05) * t))
        errs.append(float(((got - exact) / exact).abs().max()))
    assert errs[-1] < 1e-4
    assert all(1.8 < o < 2.2 for o in orders(errs)), (errs, orders(errs))


def black_scholes(x, t, K, mu, sigma, V):
    x = torch.as_tensor(x, dtype=torch.float64)
    d1 = (torch.log(x / K) + (mu + 0.5 * sigma**2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    N = torch.distributions.Normal(0.0, 1.0).cdf
    return math.exp(-V * t) * (x * math.exp(mu * t) * N(d1) - K * N(d2))


def test_black_scholes_call_with_rannacher_start():
    """A non-smooth datum, f = max(x - 1, 0) (the kink on a grid node): with two Rannacher start-up steps
    the error at the kink falls at second order (the start-up's implicit half steps cost no order)."""
    sde = VariableExponentSDE(MU, SIGMA)
    xs, t = [0.8, 1.0, 1.25], 0.5
    exact = black_scholes(xs, t, 1.0, MU, SIGMA, 0.05)

    def boundary(xb, s):
        return black_scholes(xb, s, 1.0, MU, SIGMA, 0.05) if s > 0 else torch.clamp(xb - 1.0, min=0.0)

    def err(rannacher, i):
        got = crank_nicolson(sde, lambda x: torch.clamp(x - 1.0, min=0.0), xs, t, V=0.05, n_y=80 * 2**i,
                             dt=0.5 / (10 * 2**i), y_bounds=(-4.0, 4.0), rannacher=rannacher, boundary=boundary)
        return float((got[0] - exact).abs().max())

    errs = [err(2, i) for i in range(3)]
    assert errs[-1] < 2e-4
    assert all(1.7 < o < 2.3 for o in orders(errs)), (errs, orders(errs))


def test_bounded_datum_against_quadrature_and_richardson_estimate():
    """f = 1 / (1 + x^2) under GBM (default frozen-boundary Dirichlet values): the refined solution is
    within its Richardson error estimate (up to a factor 2) of the Gauss–Hermite answer, at order ~2."""
    sde = VariableExponentSDE(MU, SIGMA)

    def f(x):
        return 1 / (1 + x**2)

    exact = gbm_expectation(f, X, T, MU, SIGMA, V=0.05)
    res = crank_nicolson_refined(sde, f, X, T, V=0.05, n_y=200, dt=0.02, levels=3)
    true_err = (res.u - exact).abs()
    assert float(true_err.max()) < 1e-5
    assert bool((true_err <= 2 * res.error + 1e-9).all()), (true_err, res.error)
    assert res.order is not None and 1.8 < float(res.order.nanmedian()) < 2.2
    assert res.u.shape == (2, 3) and res.u.dtype == torch.float64 and len(res.levels) == 3


def test_variable_exponents_converge_at_second_order():
    """Both exponents non-constant, x-dependent V: the observed order of the refined solution is ~2."""
    sde = VariableExponentSDE(MU, SIGMA, p=lambda x: 1 + 0.5 * torch.sin(x) / (1 + x), q=q_dec)
    res = crank_nicolson_refined(sde, lambda x: 1 / (1 + x**2), X, T, V=lambda x: 0.05 + 0.1 * x / (1 + x),
                                 n_y=200, dt=0.02, levels=3)
    assert 1.8 < float(res.order.nanmedian()) < 2.2
    assert float(res.error.max()) < 1e-4


def test_bad_input_is_refused_by_name():
    sde = VariableExponentSDE(MU, SIGMA)

    def f(x):
        return 1 / (1 + x**2)

    with pytest.raises(TypeError, match="sde must be a VariableExponentSDE"):
        crank_nicolson(object(), f, X, T)
    with pytest.raises(ValueError, match=r"x must be in \(0, inf\).*x\[1\]=-1"):
        crank_nicolson(sde, f, [0.5, -1.0], T)
    with pytest.raises(ValueError, match=r"x must be in \(0, inf\).*nan"):
        crank_nicolson(sde, f, [float("nan")], T)
    with pytest.raises(ValueError, match="V must be >= 0"):
        crank_nicolson(sde, f, X, T, V=lambda x: 0.1 - x)
    with pytest.raises(ValueError, match="t must be strictly increasing"):
        crank_nicolson(sde, f, X, [1.0, 0.5])
    with pytest.raises(ValueError, match="t must be positive"):
        crank_nicolson(sde, f, X, [0.0, 0.5])
    with pytest.raises(ValueError, match="y_bounds"):
        crank_nicolson(sde, f, X, T, y_bounds=(-1.0, 0.5))
    with pytest.raises(ValueError, match="f\\(x\\) must return a tensor of x's shape"):
        crank_nicolson(sde, lambda x: x[:3], X, T)
    with pytest.raises(ValueError, match="f must be finite"):
        crank_nicolson(sde, lambda x: 1 / (x - x), X, T)
    with pytest.raises(ValueError, match="n_y must be >= 4"):
        crank_nicolson(sde, f, X, T, n_y=2)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        crank_nicolson(sde, f, torch.tensor([1, 2]), T)
    with pytest.raises(ValueError, match="x must be a non-empty 1-D tensor"):
        crank_nicolson(sde, f, torch.ones(2, 2, dtype=torch.float64), T)

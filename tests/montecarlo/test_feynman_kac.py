"""Feynman–Kac Monte Carlo against closed forms (GBM moments, the lognormal quadrature, E X_t under a
variable diffusion exponent, the Cameron–Martin formula for a quadratic potential), antithetic paths, the
control variate, the discretisation-bias probe, the log scheme's positivity, and bad input. Every Monte
Carlo assertion is within 4 standard errors with a fixed seed."""

from __future__ import annotations

import pytest
import torch

from sdekit import SDE
from sdekit.montecarlo import (
    AntitheticBrownian,
    ControlVariate,
    FeynmanKac,
    VariableExponentSDE,
    gbm_control,
    gbm_expectation,
    gbm_power_expectation,
)

MU, SIGMA = 0.2, 0.5
X = [0.5, 1.0, 2.0]
T = [0.5, 1.0]


def f_bounded(x):
    return 1 / (1 + x**2)


def p_sin(x):
    return 1 + 0.5 * torch.sin(x) / (1 + x)


def q_dec(x):
    return (2 + x) / (2 * (1 + x))


def test_log_coordinates_are_itos_formula():
    """f and g of the SDE in y = ln x are mu x^{p-1} - sigma^2/2 x^{2q-2} and sigma x^{q-1}."""
    sde = VariableExponentSDE(MU, SIGMA, p_sin, q_dec)
    x = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    y = torch.log(x)[:, None]
    p, q = p_sin(x), q_dec(x)
    assert torch.allclose(sde.f(0.0, y)[:, 0], MU * x ** (p - 1) - 0.5 * SIGMA**2 * x ** (2 * q - 2))
    assert torch.allclose(sde.g(0.0, y)[:, 0], SIGMA * x ** (q - 1))
    a, b = sde.log_coefficients(torch.log(x))
    assert torch.allclose(a * x**2, 0.5 * SIGMA**2 * x ** (2 * q)) and torch.allclose(b * x, MU * x**p)


def test_gbm_power_moment_within_4_se():
    """f = x^2, constant V: the log-Euler path of GBM is exact in law, so any dt is unbiased."""
    fk = FeynmanKac(VariableExponentSDE(MU, SIGMA), lambda x: x**2, V=0.05)
    est = fk.estimate(X, T, n_paths=20_000, dt=0.05, seed=0)
    exact = gbm_power_expectation(X, T, 2, MU, SIGMA, V=0.05)
    z = (est.mean - exact) / est.stderr
    assert float(z.abs().max()) < 4, z
    assert est.mean.shape == (2, 3) and est.mean.dtype == torch.float64


def test_gbm_bounded_datum_against_quadrature_with_antithetic_and_control():
    """f = 1 / (1 + x^2): plain, antithetic and antithetic + control estimates all within 4 SE of the
    Gauss–Hermite answer; both devices reduce the variance (the control to zero here: with constant V it is
    the payoff itself up to the factor e^{-Vt})."""
    fk = FeynmanKac(VariableExponentSDE(MU, SIGMA), f_bounded, V=0.05)
    exact = gbm_expectation(f_bounded, X, T, MU, SIGMA, V=0.05)
    for kw in ({}, {"antithetic": True}, {"antithetic": True, "control": gbm_control(MU, SIGMA, f_bounded)}):
        est = fk.estimate(X, T, n_paths=8_000, dt=0.05, seed=1, **kw)
        # with constant V the GBM control is the estimated payoff times e^{-Vt}: zero residual, exact answer
        assert bool(((est.mean - exact).abs() <= 4 * est.stderr + 1e-10).all()), (kw, est.mean - exact, est.stderr)
        assert bool((est.variance_reduction > (2.0 if kw else 0.5)).all()), (kw, est.variance_reduction)
    assert est.antithetic_factor is not None and est.control_factor is not None
    assert bool((est.control_factor > 1e6).all()) and float(est.stderr.max()) < 1e-9


def test_gauss_hermite_matches_the_power_closed_form():
    for k in (1, 2, 3):
        got = gbm_expectation(lambda x, k=k: x**k, X, T, MU, SIGMA, V=0.1)
        assert torch.allclose(got, gbm_power_expectation(X, T, k, MU, SIGMA, V=0.1), rtol=1e-12, atol=0)


def test_mean_under_variable_diffusion_exponent():
    """p = 1, any q <= 1: E X_t = x e^{mu t} (a true martingale part), so u = x e^{(mu - V) t} for f = x."""
    fk = FeynmanKac(VariableExponentSDE(MU, SIGMA, p=1.0, q=q_dec), lambda x: x, V=0.05)
    est = fk.estimate(X, T, n_paths=20_000, dt=5e-3, seed=2, antithetic=True)
    ts = torch.tensor(T, dtype=torch.float64)[:, None]
    exact = torch.tensor(X, dtype=torch.float64) * torch.exp(ts * (MU - 0.05))
    z = (est.mean - exact) / est.stderr
    assert float(z.abs().max()) < 4, z


class _BrownianMotion(SDE):
    def __init__(self):
        super().__init__(noise_type="diagonal", sde_type="ito")

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        return torch.ones_like(y)


def test_quadratic_potential_cameron_martin():
    """A generic core SDE (Brownian motion, points are states) with V(x) = k^2 x^2 / 2, f = 1:
    u = (cosh kt)^{-1/2} exp(-k x^2 tanh(kt) / 2) (Cameron–Martin); checks the running discount."""
    k = 1.0
    fk = FeynmanKac(_BrownianMotion(), lambda x: torch.ones_like(x), V=lambda x: 0.5 * k**2 * x**2)
    xs = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)
    est = fk.estimate(xs, T, n_paths=10_000, dt=5e-3, seed=3)
    ts = torch.tensor(T, dtype=torch.float64)[:, None]
    exact = torch.cosh(k * ts) ** -0.5 * torch.exp(-0.5 * k * xs**2 * torch.tanh(k * ts))
    z = (est.mean - exact) / est.stderr
    assert float(z.abs().max()) < 4, z


def test_antithetic_source_negates_the_second_half():
    from sdekit import BrownianGrid

    base = BrownianGrid([0.0, 0.5, 1.0], (3, 2), seed=0, dtype=torch.float64)
    bm = AntitheticBrownian(base)
    w = bm(0.0, 0.5)
    assert w.shape == (6, 2) and torch.equal(w[3:], -w[:3]) and torch.equal(w[:3], base(0.0, 0.5))


def test_seeded_runs_repeat_and_chunks_agree():
    fk = FeynmanKac(VariableExponentSDE(MU, SIGMA, p_sin, q_dec), f_bounded, V=0.05)
    a = fk.estimate(X, T, n_paths=2_000, dt=0.05, seed=7, antithetic=True)
    b = fk.estimate(X, T, n_paths=2_000, dt=0.05, seed=7, antithetic=True)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stderr, b.stderr)
    c = fk.estimate(X, T, n_paths=2_000, dt=0.05, seed=7, antithetic=True, chunk=500)
    assert c.n_paths == 2_000
    z = (a.mean - c.mean) / (a.stderr**2 + c.stderr**2).sqrt()
    assert float(z.abs().max()) < 4


def test_discretisation_bias_is_zero_for_gbm_and_small_otherwise():
    """GBM with constant V: the log-Euler path is exact at any dt, so u_dt - u_{dt/2} vanishes path by path
    (up to rounding); with variable exponents the difference is small and has a standard error."""
    gbm = FeynmanKac(VariableExponentSDE(MU, SIGMA), f_bounded, V=0.05)
    bias = gbm.discretisation_bias(X, T, n_paths=1_000, dt=0.05, seed=0)
    assert float(bias.difference.abs().max()) < 1e-12
    var = FeynmanKac(VariableExponentSDE(MU, SIGMA, p_sin, q_dec), f_bounded, V=0.05)
    bias = var.discretisation_bias(X, T, n_paths=2_000, dt=0.05, seed=0)
    assert float(bias.difference.abs().max()) < 2e-3 and bool((bias.stderr > 0).all())
    with pytest.raises(ValueError, match="multiple of dt"):
        var.discretisation_bias(X, [0.3], n_paths=100, dt=0.25)


def test_paths_stay_positive_where_euler_in_x_would_not():
    """The log scheme keeps X > 0 even with huge steps; Euler in x with the same increments goes negative."""
    from sdekit import BrownianGrid, sdeint

    sde = VariableExponentSDE(0.0, 2.0, q=q_dec)
    y0 = torch.zeros(4_000, 1, dtype=torch.float64)
    bm = BrownianGrid([0.0, 0.5, 1.0], (4_000, 1), seed=0, dtype=torch.float64)
    y = sdeint(sde, y0, [0.0, 1.0], dt=0.5, bm=bm)[-1]
    assert bool(torch.isfinite(y).all()) and bool((torch.exp(y) > 0).all())
    x = torch.ones(4_000, 1, dtype=torch.float64)
    for a, b in ((0.0, 0.5), (0.5, 1.0)):
        x = x + 2.0 * x ** q_dec(x.clamp_min(1e-300)) * bm(a, b)
    assert bool((x < 0).any())


def test_bad_exponents_are_refused_by_name():
    with pytest.raises(ValueError, match=r"p must be positive.*p\(x\)=0 at x=1"):
        VariableExponentSDE(MU, SIGMA, p=lambda x: 1 - x)
    with pytest.raises(ValueError, match="q must be positive"):
        VariableExponentSDE(MU, SIGMA, q=0.0)
    with pytest.raises(ValueError, match="q must be positive"):
        VariableExponentSDE(MU, SIGMA, q=-0.5)
    with pytest.raises(ValueError, match="p must be positive .*and finite"):
        VariableExponentSDE(MU, SIGMA, p=lambda x: 1 / (x - 1))
    with pytest.raises(ValueError, match="p\\(x\\) must return a tensor of x's shape"):
        VariableExponentSDE(MU, SIGMA, p=lambda x: x.sum())
    with pytest.raises(TypeError, match="q must be a callable"):
        VariableExponentSDE(MU, SIGMA, q="1/2")
    with pytest.raises(ValueError, match="sigma must be positive"):
        VariableExponentSDE(MU, 0.0)
    with pytest.raises(ValueError, match="mu must be finite"):
        VariableExponentSDE(float("nan"), SIGMA)


def test_bad_estimator_input_is_refused_by_name():
    sde = VariableExponentSDE(MU, SIGMA)
    with pytest.raises(ValueError, match="V must be >= 0"):
        FeynmanKac(sde, f_bounded, V=-0.1)
    with pytest.raises(ValueError, match=r"V must be >= 0.*on \(0, inf\)"):
        FeynmanKac(sde, f_bounded, V=lambda x: 0.5 - x)
    with pytest.raises(TypeError, match="f must be a callable"):
        FeynmanKac(sde, 1.0)
    with pytest.raises(TypeError, match="sde must be a core SDE"):
        FeynmanKac(object(), f_bounded)
    fk = FeynmanKac(sde, f_bounded, V=0.05)
    with pytest.raises(ValueError, match=r"x must be in \(0, inf\).*x\[0\]=0"):
        fk.estimate([0.0, 1.0], T, n_paths=10)
    with pytest.raises(ValueError, match=r"x must be in \(0, inf\).*inf"):
        fk.estimate([1.0, float("inf")], T, n_paths=10)
    with pytest.raises(ValueError, match="x must be a non-empty 1-D tensor"):
        fk.estimate(torch.ones(2, 1, dtype=torch.float64), T, n_paths=10)
    with pytest.raises(ValueError, match="t must be strictly increasing"):
        fk.estimate(X, [1.0, 1.0], n_paths=10)
    with pytest.raises(ValueError, match="n_paths must be even"):
        fk.estimate(X, T, n_paths=11, antithetic=True)
    with pytest.raises(TypeError, match="n_paths must be an int"):
        fk.estimate(X, T, n_paths=10.0)
    with pytest.raises(ValueError, match="dt must be positive"):
        fk.estimate(X, T, n_paths=10, dt=0.0)
    with pytest.raises(TypeError, match="control must be a ControlVariate"):
        fk.estimate(X, T, n_paths=10, control=lambda x: x)
    with pytest.raises(ValueError, match="f\\(x\\) must return a tensor of x's shape"):
        FeynmanKac(sde, lambda x: x.mean()).estimate(X, T, n_paths=10)
    with pytest.raises(ValueError, match="f must be finite"):
        FeynmanKac(sde, lambda x: 1 / (x - 1)).estimate(X, T, n_paths=10)
    bad_mean = ControlVariate(sde=sde, f=f_bounded, mean=lambda x, t: torch.zeros(1))
    with pytest.raises(ValueError, match="control.mean"):
        fk.estimate(X, T, n_paths=10, control=bad_mean)


def test_brownian_grid_is_the_solvers_grid():
    """The seeded BrownianGrid is built on sdeint's own fixed grid (read by step index, not re-queried)."""
    from sdekit.core._grid import StepGrid
    from sdekit.montecarlo.feynman_kac import _grid_times

    for ts, dt in (([0.0, 0.25, 0.5, 1.0], 5e-3), ([0.0, 0.3, 1.7], 0.07), ([0.0, 1e-3], 0.1)):
        assert _grid_times(ts, dt) == list(StepGrid(ts, dt))

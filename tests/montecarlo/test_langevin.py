"""ULA, ULMC (OBABO) and annealed Langevin against exact stationary laws (issue 19, must-shows 3 and 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov

from sdekit import SDE, sdeint
from sdekit.montecarlo import (
    OBABO,
    ULA,
    ULMC,
    AnnealedLangevin,
    AnnealingSchedule,
    Funnel,
    Gaussian,
    KineticLangevin,
)

F64 = torch.float64
N = 20000
MEAN = torch.tensor([1.0, -1.0], dtype=F64)
COV = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)


def draws(n, d, seed, scale=1.0):
    return scale * torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def var_se(v, n):  # the standard error of a sample variance of a Gaussian
    return v * math.sqrt(2 / n)


def obabo_stationary(s2: float, h: float, gamma: float) -> np.ndarray:
    """The exact stationary covariance of OBABO on N(0, s2) (a linear map plus noise: a discrete Lyapunov
    equation), the reference of the ULMC test."""
    a = math.exp(-gamma * h / 2)
    o = np.diag([1.0, a])
    b = np.array([[1.0, 0.0], [-h / (2 * s2), 1.0]])
    drift = np.array([[1.0, h], [0.0, 1.0]])
    inner = o @ b @ drift @ b
    e = np.diag([0.0, 1 - a * a])
    return solve_discrete_lyapunov(inner @ o, inner @ e @ inner.T + e)


@pytest.mark.parametrize("h", [0.2, 0.6])
def test_ula_stationary_variance_is_the_closed_form(h):
    """For N(0, s^2) ULA's stationary law is N(0, s^2 / (1 - h / (2 s^2))): O(h) bias, measured exactly."""
    s2 = 2.25
    exact = s2 / (1 - h / (2 * s2))
    target = Gaussian(torch.zeros(1), torch.tensor([[s2]]))
    res = ULA(h).sample(target, draws(N, 1, 0, math.sqrt(exact)), 200, seed=1)
    x = res.samples[:, 0]
    assert abs(x.mean().item()) < 4 * math.sqrt(exact / N)
    assert abs(x.var().item() - exact) < 4 * var_se(exact, N)
    assert res.grad_evals == 201 and res.n_steps == 200  # one per step + the contract check of sdeint
    if h == 0.6:  # the bias (0.16) is resolved: 6 standard errors from the true variance
        assert abs(x.var().item() - s2) > 4 * var_se(exact, N)


def test_ulmc_obabo_stationary_variance_is_the_lyapunov_solution_and_second_order():
    s2, gamma = 1.5, 1.0
    exact = {h: obabo_stationary(s2, h, gamma)[0, 0] for h in (0.1, 0.2, 0.4, 0.8)}
    # second order: the bias of the q-variance scales like h^2 (ratio 4 per halving of h)
    for h in (0.2, 0.4, 0.8):
        ratio = (exact[h] - s2) / (exact[h / 2] - s2)
        assert 3.8 < ratio < 4.6, ratio
    target = Gaussian(torch.zeros(1), torch.tensor([[s2]]))
    for h in (0.4, 0.8):
        res = ULMC(h, gamma).sample(target, draws(N, 1, 2, math.sqrt(s2)), int(80 / h), seed=3)
        x = res.samples[:, 0]
        assert abs(x.var().item() - exact[h]) < 4 * var_se(exact[h], N), (h, x.var().item(), exact[h])
        assert abs(x.mean().item()) < 4 * math.sqrt(exact[h] / N)
        assert res.grad_evals == int(80 / h) + 2  # + the contract check and OBABO's first force
    assert exact[0.8] - s2 > 4 * var_se(exact[0.8], N)  # the h = 0.8 bias is resolved


def test_obabo_on_a_2d_gaussian_recovers_mean_and_covariance():
    target = Gaussian(MEAN, COV)
    res = ULMC(0.1, 2.0).sample(target, draws(N, 2, 4), 600, seed=5)
    x = res.samples
    se_mean = (torch.diagonal(COV) / N).sqrt()
    assert ((x.mean(0) - MEAN).abs() < 4 * se_mean).all()
    cov = torch.cov(x.T)
    se_cov = torch.sqrt((COV**2 + torch.outer(torch.diagonal(COV), torch.diagonal(COV))) / N)  # Wishart SEs
    assert ((cov - COV).abs() < 4 * se_cov + 0.01).all(), cov  # 0.01 >> OBABO's O(h^2) bias at h = 0.1


def test_annealed_langevin_ends_at_the_target_law():
    """Annealing lambda from 0.01 to 1 and holding it for the second half: the underdamped version ends at
    N(m, Sigma) (OBABO bias O(h^2) << SE); the overdamped one at ULA's exact stationary law
    N(m, (Sigma^-1 - (h/2) Sigma^-2)^-1)."""
    target = Gaussian(MEAN, COV)
    schedule = AnnealingSchedule(0.01, 1.0, hold=0.5)
    x0 = draws(N, 2, 6)
    se_mean = (torch.diagonal(COV) / N).sqrt()
    under = AnnealedLangevin(0.1, schedule, friction=2.0).sample(target, x0, 600, seed=7)
    assert under.grad_evals == 602
    assert ((under.samples.mean(0) - MEAN).abs() < 4 * se_mean).all()
    se_cov = torch.sqrt((COV**2 + torch.outer(torch.diagonal(COV), torch.diagonal(COV))) / N)
    assert ((torch.cov(under.samples.T) - COV).abs() < 4 * se_cov + 0.01).all()
    h = 0.05
    over = AnnealedLangevin(h, schedule).sample(target, x0, 1200, seed=8)
    assert over.grad_evals == 1201
    prec = torch.linalg.inv(COV)
    ula_cov = torch.linalg.inv(prec - h / 2 * prec @ prec)
    se_ula = torch.sqrt((ula_cov**2 + torch.outer(torch.diagonal(ula_cov), torch.diagonal(ula_cov))) / N)
    assert ((over.samples.mean(0) - MEAN).abs() < 4 * se_mean).all()
    assert ((torch.cov(over.samples.T) - ula_cov).abs() < 4 * se_ula).all()


def test_annealing_schedule_shapes():
    s = AnnealingSchedule(0.1, 0.9, hold=0.5)
    assert s(0.0) == pytest.approx(0.1) and s(0.25) == pytest.approx(0.5) and s(0.5) == s(0.8) == pytest.approx(0.9)
    c = AnnealingSchedule(0.1, 0.9, cosine=True)
    assert c(0.5) == pytest.approx(0.5) and c(0.25) == pytest.approx(0.1 + 0.8 * (1 - math.cos(math.pi / 4)) / 2)


def test_bad_input_names_the_argument():
    g = Gaussian(torch.zeros(2), torch.eye(2))
    x0 = torch.zeros(4, 2, dtype=F64)
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size must be a positive finite number"):
            ULA(bad)
    with pytest.raises(TypeError, match="step_size must be a positive number"):
        ULMC("0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="friction must be a positive finite number, got -1"):
        ULMC(0.1, -1.0)
    with pytest.raises(ValueError, match=r"friction\[1\] must be a positive finite number"):
        ULMC(0.1, (0.5, 0.0))
    with pytest.raises(ValueError, match="n_steps must be a positive finite int, got 0"):
        ULA(0.1).sample(g, x0, 0)
    with pytest.raises(TypeError, match="n_steps must be a positive int"):
        ULA(0.1).sample(g, x0, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need 0 < lam_min < lam_max <= 1"):
        AnnealingSchedule(0.5, 0.2)
    with pytest.raises(ValueError, match="hold must be a number in"):
        AnnealingSchedule(hold=1.0)
    with pytest.raises(TypeError, match="diffused_grad_log_prob"):
        AnnealedLangevin(0.1).sample(Funnel(dim=2), x0, 3)
    with pytest.raises(ValueError, match=r"log_prob\(x0\) must be finite"):
        ULA(0.1).sample(lambda x: torch.log(x[:, 0] - 1), x0 + 0.5, 3)  # x0 outside the support: NaN
    with pytest.raises(ValueError, match=r"must return shape \(4,\)"):
        ULMC(0.1).sample(lambda x: x, x0, 3)
    with pytest.raises(TypeError, match="OBABO integrates a KineticLangevin"):
        sdeint(SDE(lambda t, y: -y, lambda t, y: torch.ones_like(y)), torch.zeros(2, 3), [0.0, 1.0], method=OBABO(),
               dt=0.1)


def test_kinetic_langevin_is_a_core_sde_that_euler_also_runs():
    """The same KineticLangevin under Euler-Maruyama (sdeint's default) targets the same law (less
    accurately): a contract check of the stacked state and its noise layout."""
    sde = KineticLangevin(lambda t, q: -q, 1.0)
    y0 = torch.zeros(2, N, 1, dtype=F64)
    y = sdeint(sde, y0, [0.0, 30.0], dt=0.05)[-1]
    # Euler for the Gaussian kinetic system: q-variance 1 + O(h); 0.1 is far above the 4-SE noise (0.04)
    assert abs(y[0].var().item() - 1) < 0.1 and abs(y[1].var().item() - 1) < 0.1

"""MultALMC / MultCDiff: the averaging property against the exact diffused score, gradient counts, Gaussian
convergence and bad input (issue 19, must-shows 3 and 4)."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.montecarlo import (
    ULA,
    AnnealingSchedule,
    ConditionalTarget,
    Gaussian,
    GaussianMixture,
    MultALMC,
    MultCDiff,
    StudentTNoise,
)

F64 = torch.float64
MEAN = torch.tensor([1.0, -1.0], dtype=F64)
COV = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)


def draws(n, d, seed):
    return torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lam", [0.3, 0.8])
def test_fast_process_average_is_the_exact_diffused_score(lam):
    """For Gaussian pi the fast target rho_{lam,x} is Gaussian and both estimators are linear in y; ULA's
    stationary mean on a Gaussian is exact, so the fast process's average equals grad log mu_lam(x) (within
    4 SE), for the noise-form and the target-form estimator alike."""
    target = Gaussian(MEAN, COV)
    n = 20000
    x = torch.tensor([0.5, 2.0], dtype=F64).expand(n, 2)
    rho = ConditionalTarget(target, x, lam)
    y = ULA(0.05).sample(rho, math.sqrt(lam) * x.clone(), 400, seed=11).samples
    exact = target.diffused_grad_log_prob(x[:1], lam)[0]
    for est in rho.score_estimates(y):
        se = est.std(0) / math.sqrt(n)
        assert ((est.mean(0) - exact).abs() < 4 * se).all(), (lam, est.mean(0), exact, se)
    assert rho.grad_evals == 401 and target.grad_evals >= 401  # rho's gradient costs one gradient of pi


def test_student_t_noise_estimators_agree():
    """With Student-t noise the two estimators of the score of mu_lam still average to the same value."""
    target = GaussianMixture.ring8()
    n, lam = 5000, 0.5
    x = torch.tensor([12.0, 3.0], dtype=F64).expand(n, 2)
    rho = ConditionalTarget(target, x, lam, StudentTNoise(3.0))
    y = ULA(0.02).sample(rho, math.sqrt(lam) * x.clone(), 600, seed=12).samples
    noise_form, target_form = rho.score_estimates(y)
    diff = noise_form - target_form
    assert (diff.mean(0).abs() < 4 * diff.std(0) / math.sqrt(n)).all(), diff.mean(0)


def test_gradient_counts_are_exact():
    g = Gaussian(MEAN, COV)
    x0 = draws(10, 2, 0)
    assert MultALMC(0.0005, 0.1).sample(g, x0, 7, seed=0).grad_evals == 8  # Euler: + the contract check
    assert MultALMC(0.005, 0.05, friction=1.0).sample(g, x0, 7, seed=0).grad_evals == 9  # OBABO: + first force
    assert MultCDiff(0.0005, 0.1).sample(g, x0, 7, seed=0).grad_evals == 8


def test_multiscale_samplers_converge_on_a_gaussian():
    """On N(m, Sigma) the samplers end at mu_{lam_max} = N(sqrt(lam_max) m, lam_max Sigma + (1 - lam_max) I)."""
    target = Gaussian(MEAN, COV)
    lam = 0.99
    mean, cov = math.sqrt(lam) * MEAN, lam * COV + (1 - lam) * torch.eye(2, dtype=F64)
    n = 4000
    x0 = draws(n, 2, 1)
    se_mean = (torch.diagonal(cov) / n).sqrt()
    se_cov = torch.sqrt((cov**2 + torch.outer(torch.diagonal(cov), torch.diagonal(cov))) / n)
    res = MultALMC(0.01, 0.1, AnnealingSchedule(hold=0.5), friction=2.0).sample(target, x0, 3000, seed=2)
    assert ((res.samples.mean(0) - mean).abs() < 4 * se_mean).all(), res.samples.mean(0)
    assert ((torch.cov(res.samples.T) - cov).abs() < 4 * se_cov + 0.05).all(), torch.cov(res.samples.T)


def test_bad_input_names_the_argument():
    g = Gaussian(MEAN, COV)
    for kwargs, match in [
        (dict(step_size=0.0, eps=0.1), "step_size must be a positive finite number, got 0.0"),
        (dict(step_size=0.001, eps=-0.1), "eps must be a positive finite number, got -0.1"),
        (dict(step_size=0.01, eps=0.1), r"overdamped fast step is unstable: step_size / \(eps \(1 - lam_max\)\)"),
        (dict(step_size=0.01, eps=0.02, friction=1.0), "underdamped fast step is unstable"),
        (dict(step_size=0.001, eps=0.1, switch=1.5), "switch must be a number in"),
        (dict(step_size=0.001, eps=0.1, schedule=AnnealingSchedule(0.01, 1.0)), "lam_max must be < 1"),
        (dict(step_size=0.001, eps=0.1, fast_friction=0.0), "fast_friction must be a positive"),
        (dict(step_size=0.001, eps=0.1, fast_start=-1.0), "fast_start must be a positive finite number, got -1.0"),
    ]:
        with pytest.raises(ValueError, match=match):
            MultALMC(**kwargs)
    with pytest.raises(TypeError, match="noise must be GaussianNoise"):
        MultALMC(0.001, 0.1, noise="student")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam_max must be < 1"):
        MultCDiff(0.0001, 0.1, lam_max=1.0)
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        MultCDiff(0.0001, float("nan"))
    with pytest.raises(ValueError, match="lam must lie in"):
        ConditionalTarget(g, draws(3, 2, 0), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        ConditionalTarget(g, draws(3, 3, 0), 0.5)
    x0 = draws(4, 2, 0)
    with pytest.raises(ValueError, match=r"target.log_prob\(x0\) must be finite"):
        MultALMC(0.001, 0.1).sample(lambda x: torch.where(x[:, 0] > 0, 0.0, float("nan")), x0.abs() * -1, 5)
    with pytest.raises(ValueError, match=r"must return shape \(4,\)"):
        MultCDiff(0.0001, 0.1).sample(lambda x: x.sum(), x0, 5)
    with pytest.raises(ValueError, match="n_steps must be a positive finite int"):
        MultCDiff(0.0001, 0.1).sample(g, x0, -3)

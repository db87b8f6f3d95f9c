"""Targets of sdekit.montecarlo against closed forms, autograd and exact samples (issue 19)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from sdekit.montecarlo import (
    Funnel,
    Gaussian,
    GaussianMixture,
    LogisticRegression,
    Rings,
    StudentT,
    Target,
    as_target,
)

F64 = torch.float64


def autograd_grad(fn, x):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(fn(x).sum(), x)[0]


def points(n=64, d=2, seed=0, scale=3.0):
    return scale * torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_gaussian_log_prob_grad_and_diffused_score():
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    g = Gaussian(mean, cov)
    x = points()
    ref = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    diff = g.log_prob(x) - ref
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-12)  # equal up to the normalising constant
    assert torch.allclose(g.grad_log_prob(x), autograd_grad(lambda z: torch.distributions.MultivariateNormal(
        mean, cov).log_prob(z), x), atol=1e-12)
    lam = 0.3
    mu = torch.distributions.MultivariateNormal(math.sqrt(lam) * mean, lam * cov + (1 - lam) * torch.eye(2, dtype=F64))
    assert torch.allclose(g.diffused_grad_log_prob(x, lam), autograd_grad(mu.log_prob, x), atol=1e-12)
    assert g.grad_evals == 2 and g.log_prob_evals == 1


def test_mixture_closed_forms_and_samples():
    ring = GaussianMixture.ring8()
    a = 2 * math.pi * 3 / 8
    assert torch.allclose(ring.means[3], torch.tensor([10 * (1 + math.cos(a)), 10 * (1 + math.sin(a))], dtype=F64))
    x = points(scale=8.0) + 10

    def logp(z, lam=1.0):
        cov = (0.7 * lam + 1 - lam) * torch.eye(2, dtype=F64)
        comps = [torch.distributions.MultivariateNormal(math.sqrt(lam) * m, cov) for m in ring.means]
        return torch.logsumexp(torch.stack([c.log_prob(z) for c in comps], 1), 1) - math.log(8)

    assert torch.allclose(ring.log_prob(x), logp(x), atol=1e-10)
    assert torch.allclose(ring.grad_log_prob(x), autograd_grad(logp, x), atol=1e-10)
    assert torch.allclose(ring.diffused_grad_log_prob(x, 0.2), autograd_grad(lambda z: logp(z, 0.2), x), atol=1e-10)
    n = 40000
    s = ring.sample(n, torch.Generator().manual_seed(1))
    # E X = (10, 10); Var X_1 = 0.7 + Var(10 cos) = 0.7 + 50; mean within 4 SE
    se = math.sqrt(50.7 / n)
    assert (s.mean(0) - 10).abs().max() < 4 * se
    counts = torch.bincount(ring.assign(s), minlength=8).double() / n
    assert (counts - 1 / 8).abs().max() < 4 * math.sqrt(1 / 8 * 7 / 8 / n)
    mix = GaussianMixture.mixture40()
    assert mix.means.shape == (40, 2) and mix.means.abs().max() <= 20
    assert torch.equal(mix.means, GaussianMixture.mixture40().means)  # fixed seed


def test_funnel_and_student_t():
    f = Funnel()
    x = points(d=10, scale=1.0)
    ref = torch.distributions.Normal(0, 3.0).log_prob(x[:, 0]) + torch.distributions.Normal(
        0, torch.exp(x[:, :1] / 2)).log_prob(x[:, 1:]).sum(1)
    diff = f.log_prob(x) - ref
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-10)
    assert torch.allclose(f.grad_log_prob(x), autograd_grad(f._log_prob, x), atol=1e-10)
    s = f.sample(20000, torch.Generator().manual_seed(2))
    v = s[:, 0]
    assert abs(v.var().item() - 9) < 4 * 9 * math.sqrt(2 / 20000)
    z = s[:, 1] / torch.exp(v / 2)  # standard normal given v
    assert abs(z.var().item() - 1) < 4 * math.sqrt(2 / 20000)

    t = StudentT(dim=1, df=3.0, loc=1.0, scale=2.0)
    y = points(d=1)
    ref = torch.distributions.StudentT(3.0, 1.0, 2.0).log_prob(y[:, 0])
    diff = t.log_prob(y) - ref
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-10)
    assert torch.allclose(t.grad_log_prob(y), autograd_grad(t._log_prob, y), atol=1e-10)
    n = 40000
    s = t.sample(n, torch.Generator().manual_seed(3))[:, 0]
    p = ((s - 1).abs() < 2).double().mean().item()  # P(|T_3| < 1) = 0.6090
    p_exact = 2 * stats.t(3).cdf(1.0) - 1
    assert abs(p - p_exact) < 4 * math.sqrt(p_exact * (1 - p_exact) / n)
    t2 = StudentT(dim=3, df=4.0)
    w = points(d=3)
    assert torch.allclose(t2.grad_log_prob(w), autograd_grad(t2._log_prob, w), atol=1e-10)


def test_logistic_regression_breast_cancer():
    pytest.importorskip("sklearn")
    lr = LogisticRegression.breast_cancer()
    assert lr.dim == 31 and lr.design.shape == (569, 31)
    w = points(n=8, d=31, scale=0.3)
    a, s = lr.design, lr.signs
    ref = torch.stack([torch.nn.functional.logsigmoid(s * (a @ wi)).sum() - (wi**2).sum() / 2 for wi in w])
    assert torch.allclose(lr.log_prob(w), ref, atol=1e-9)
    assert torch.allclose(lr.grad_log_prob(w), autograd_grad(lr._log_prob, w), atol=1e-9)


def test_rings_autograd_default_matches_finite_differences():
    r = Rings()
    x = points(n=16, scale=2.0)
    g = r.grad_log_prob(x)
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=F64)
        e[j] = h
        fd = (r.log_prob(x + e) - r.log_prob(x - e)) / (2 * h)
        assert torch.allclose(g[:, j], fd, atol=1e-5)
    assert r.grad_evals == 1


def test_as_target_refuses_bad_targets():
    x0 = torch.zeros(5, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"log_prob\(x\) must return shape \(5,\)"):
        as_target(lambda x: x.sum(1, keepdim=True), x0)
    with pytest.raises(ValueError, match=r"log_prob\(x0\) must be finite; 5 of 5"):
        as_target(lambda x: torch.full((x.shape[0],), float("nan"), dtype=x.dtype), x0)
    with pytest.raises(TypeError, match="must be a Target"):
        as_target(3, x0)
    with pytest.raises(ValueError, match="x0 has dimension 2 but target has dim=10"):
        as_target(Funnel(), x0)
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, d\)"):
        as_target(Funnel(), torch.zeros(10, dtype=F64))

    class BadGrad(Target):
        def _log_prob(self, x):
            return -(x**2).sum(1)

        def _grad_log_prob(self, x):
            return x[:, :1]

    with pytest.raises(ValueError, match=r"grad_log_prob\(x\) must return the shape of x"):
        BadGrad(2).grad_log_prob(x0)
    wrapped = as_target(lambda x: -(x**2).sum(1) / 2, x0 + 1)  # a callable: gradient by autograd
    assert torch.allclose(wrapped.grad_log_prob(x0 + 1), -(x0 + 1))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="eta must be positive"):
        Funnel(eta=-1.0)

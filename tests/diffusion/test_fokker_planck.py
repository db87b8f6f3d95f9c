"""The Fokker–Planck residual, the regularised loss and the ODE–SDE gap helper (issue 16; Deveney et al. 2023).

Exact scores come from the GaussianMixture oracle, whose log_prob solves the log-density Fokker–Planck equation
of the forward process exactly. No test here imports POT."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.diffusion import (
    VP,
    DenoisingScoreMatching,
    FokkerPlanckLoss,
    GaussianMixture,
    PotentialMLP,
    PotentialScore,
    SubVP,
    log_density_residual,
    ode_sde_gap,
    score_residual,
)
from sdekit.nn import MLPDenoiser
from sdekit.train import TrainConfig, Trainer

F64 = torch.float64


def mixture(d: int, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    K = 3
    means = 2.0 * torch.randn(K, d, generator=g, dtype=F64)
    variances = 0.2 + torch.rand(K, d, generator=g, dtype=F64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), means, variances)


def noisy_points(gm: GaussianMixture, schedule, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x0 = gm.sample(n, g)
    t = 0.02 + 0.96 * torch.rand(n, generator=g, dtype=F64)
    eps = torch.randn(x0.shape, generator=g, dtype=F64)
    xt = schedule.alpha(t)[:, None] * x0 + schedule.sigma(t)[:, None] * eps
    return xt, t


@pytest.mark.parametrize("d", [2, 8])
@pytest.mark.parametrize("schedule", [VP(), SubVP()], ids=["VP", "SubVP"])
def test_exact_log_density_and_score_have_zero_residual(d, schedule):
    gm = mixture(d)
    x, t = noisy_points(gm, schedule, 64)

    def u(xx, tt):
        return gm.log_prob(xx, tt, schedule)

    def s(xx, tt):
        return gm.score(xx, tt, schedule)

    r_u = log_density_residual(u, schedule, x, t, normalize=True)
    r_s = score_residual(s, schedule, x, t, normalize=True)
    assert r_u.shape == (64,) and r_s.shape == (64, d)
    # float64 round-off of terms of order one (normalised): many orders below the perturbed residual
    assert r_u.abs().max().item() < 1e-10
    assert r_s.abs().max().item() < 1e-10

    # a perturbed score (a tempered density) is clearly not a solution
    r_u_bad = log_density_residual(lambda xx, tt: 1.1 * u(xx, tt), schedule, x, t, normalize=True)
    r_s_bad = score_residual(lambda xx, tt: 1.1 * s(xx, tt), schedule, x, t, normalize=True)
    assert r_u_bad.abs().mean().item() > 1e-2
    assert r_s_bad.abs().mean().item() > 1e-2


def test_residual_off_by_a_time_function_is_its_derivative_and_normalisation():
    schedule, gm = VP(), mixture(2)
    x, t = noisy_points(gm, schedule, 32)
    r = log_density_residual(lambda xx, tt: gm.log_prob(xx, tt, schedule) + 3.0 * tt**2, schedule, x, t)
    torch.testing.assert_close(r, 6.0 * t, rtol=1e-9, atol=1e-9)
    rn = log_density_residual(lambda xx, tt: gm.log_prob(xx, tt, schedule) + 3.0 * tt**2, schedule, x, t,
                              normalize=True)
    torch.testing.assert_close(rn, 6.0 * t * schedule.sigma(t) ** 2 / schedule.g2(t), rtol=1e-9, atol=1e-9)


def test_score_residual_of_a_gradient_is_the_gradient_of_the_log_density_residual():
    # off the solution, so both sides are far from zero: R_s(grad u) = grad_x R_u
    schedule, gm = VP(), mixture(3, seed=4)
    x, t = noisy_points(gm, schedule, 16)

    def u(xx, tt):
        return 1.3 * gm.log_prob(xx, tt, schedule) + 0.1 * (xx**3).sum(1) * tt

    def s(xx, tt):
        with torch.enable_grad():
            xg = xx if xx.requires_grad else xx.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(u(xg, tt).sum(), xg, create_graph=True)
        return g

    r_s = score_residual(s, schedule, x, t)
    # grad_x R_u by central differences in float64
    eps = 1e-6
    fd = torch.zeros_like(x)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = eps
        fd[:, i] = (log_density_residual(u, schedule, x + e, t) - log_density_residual(u, schedule, x - e, t)) / (
            2 * eps)
    assert r_s.abs().mean().item() > 0.1
    torch.testing.assert_close(r_s, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("law", ["rademacher", "gaussian"])
def test_hutchinson_residual_is_unbiased_within_4_standard_errors(law):
    schedule, gm = VP(), mixture(8, seed=2)
    x, t = noisy_points(gm, schedule, 12)

    def u(xx, tt):
        return 1.1 * gm.log_prob(xx, tt, schedule)

    def s(xx, tt):
        return 1.1 * gm.score(xx, tt, schedule)

    reps = 1500
    xr, tr = x.repeat(reps, 1), t.repeat(reps)
    g = torch.Generator().manual_seed(7)
    for fn, exact_fn in ((log_density_residual, u), (score_residual, s)):
        exact = fn(exact_fn, schedule, x, t, normalize=True)
        est = fn(exact_fn, schedule, xr, tr, divergence=law, generator=g, normalize=True)
        est = est.reshape(reps, *exact.shape)
        se = est.std(0) / math.sqrt(reps)
        assert bool((se > 0).all())
        z = (est.mean(0) - exact) / se
        assert z.abs().max().item() < 4.0, z
    # more probes per point shrink the spread (the average of independent estimates)
    few = log_density_residual(u, schedule, xr[:12 * 200], tr[:12 * 200], divergence=law, probes=4, generator=g,
                               normalize=True).reshape(200, 12)
    one = log_density_residual(u, schedule, xr[:12 * 200], tr[:12 * 200], divergence=law, probes=1, generator=g,
                               normalize=True).reshape(200, 12)
    assert few.std(0).mean() < 0.7 * one.std(0).mean()


def test_potential_score_is_the_gradient_and_detaches_when_sampling():
    schedule = VP()
    phi = PotentialMLP(2, hidden=16, depth=2, seed=0).double()
    model = PotentialScore(phi, schedule)
    x = torch.randn(5, 2, dtype=F64)
    t = torch.full((5,), 0.3, dtype=F64)
    s = model(x, t)
    xg = x.clone().requires_grad_(True)
    u = phi(xg, t) / schedule.sigma(t)
    (ref,) = torch.autograd.grad(u.sum(), xg)
    torch.testing.assert_close(s, ref)
    assert s.requires_grad  # training: graph to the parameters
    with torch.no_grad():
        s0 = model(x, t)
    assert not s0.requires_grad
    torch.testing.assert_close(s0, s.detach())


def test_weight_zero_is_plain_dsm_and_the_regulariser_adds_the_squared_residual():
    schedule = VP()
    model = PotentialScore(PotentialMLP(2, hidden=16, depth=2, seed=1), schedule)
    x0 = torch.randn(8, 2)
    t = torch.linspace(0.1, 0.9, 8)
    noise = torch.randn(8, 2)
    dsm = DenoisingScoreMatching(schedule, "score", "eps").per_sample(model, x0, t=t, noise=noise)
    plain = FokkerPlanckLoss(schedule, weight=0.0, weighting="eps").per_sample(model, x0, t=t, noise=noise)
    torch.testing.assert_close(plain, dsm)
    loss = FokkerPlanckLoss(schedule, weight=2.0, weighting="eps")
    reg = loss.per_sample(model, x0, t=t, noise=noise)
    x_t = schedule.alpha(t)[:, None].float() * x0 + schedule.sigma(t)[:, None].float() * noise
    r = loss.residual(model, x_t, t)
    torch.testing.assert_close(reg, dsm + 2.0 * r**2, rtol=1e-5, atol=1e-6)


def test_loss_plugs_into_trainer_and_lowers_the_residual():
    schedule = VP()
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.randn(256, 2, generator=g) * 0.3 + 1.5, torch.randn(256, 2, generator=g) * 0.3 - 1.5])
    x_eval = data[:200] * 0.8 + 0.5 * torch.randn(200, 2, generator=g)
    t_eval = 0.05 + 0.9 * torch.rand(200, generator=g)
    probe = FokkerPlanckLoss(schedule, weight=1.0)
    residuals = {}
    for w in (0.0, 1.0):
        model = PotentialScore(PotentialMLP(2, hidden=32, depth=2, seed=0), schedule)
        cfg = TrainConfig(steps=150, batch_size=64, lr=3e-3, ema_decay=None, progress=False, seed=0)
        trainer = Trainer(model, FokkerPlanckLoss(schedule, weight=w, weighting="eps"), data, cfg)
        hist = trainer.fit()
        assert all(math.isfinite(v) for v in hist)
        residuals[w] = probe.residual(model, x_eval, t_eval, create_graph=False).pow(2).mean().item()
    assert residuals[1.0] < 0.3 * residuals[0.0], residuals

    # a general (non-conservative) score network takes the score form of the residual
    net = MLPDenoiser(2, hidden=16, depth=1, emb_dim=8, seed=0)
    loss = FokkerPlanckLoss(schedule, weight=0.5, prediction="eps", divergence="rademacher")
    trainer = Trainer(net, loss, data, TrainConfig(steps=3, batch_size=32, ema_decay=None, progress=False))
    assert all(math.isfinite(v) for v in trainer.fit())
    assert loss.residual(net, x_eval[:4], t_eval[:4]).shape == (4, 2)


def test_bad_input_is_refused_with_the_argument_named():
    schedule = VP()
    gm = mixture(2)
    x, t = noisy_points(gm, schedule, 4)

    def u(xx, tt):
        return gm.log_prob(xx, tt, schedule)

    with pytest.raises(ValueError, match="divergence"):
        log_density_residual(u, schedule, x, t, divergence="hutch")
    with pytest.raises(ValueError, match="probes"):
        log_density_residual(u, schedule, x, t, divergence="rademacher", probes=0)
    with pytest.raises(TypeError, match="schedule"):
        log_density_residual(u, "vp", x, t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x must have at least 2"):
        log_density_residual(u, schedule, x[0], t[0])
    with pytest.raises(ValueError, match="x must be finite"):
        log_density_residual(u, schedule, x * float("nan"), t)
    with pytest.raises(ValueError, match=r"potential\(x, t\) must return"):
        log_density_residual(lambda xx, tt: xx, schedule, x, t)
    with pytest.raises(ValueError, match=r"score\(x, t\) must return"):
        score_residual(lambda xx, tt: xx.sum(1), schedule, x, t)
    with pytest.raises(TypeError, match="score must be a callable"):
        score_residual(3, schedule, x, t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight must be non-negative"):
        FokkerPlanckLoss(schedule, weight=-1.0)
    with pytest.raises(ValueError, match="form"):
        FokkerPlanckLoss(schedule, form="density")
    with pytest.raises(ValueError, match="spread"):
        FokkerPlanckLoss(schedule, spread=0.0)
    with pytest.raises(TypeError, match="PotentialScore"):
        FokkerPlanckLoss(schedule, form="potential").residual(MLPDenoiser(2, hidden=8, depth=1), x.float(),
                                                              t.float())
    with pytest.raises(TypeError, match="potential must be a callable"):
        PotentialScore(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim"):
        PotentialMLP(0)
    # ode_sde_gap checks its arguments before it needs POT
    model = PotentialScore(PotentialMLP(2, hidden=8, depth=1), schedule)
    with pytest.raises(ValueError, match="n must be"):
        ode_sde_gap(model, schedule, 0, shape=(2,))
    with pytest.raises(ValueError, match="repeats"):
        ode_sde_gap(model, schedule, 10, shape=(2,), repeats=0)
    with pytest.raises(ValueError, match="shape"):
        ode_sde_gap(model, schedule, 10)
    with pytest.raises(ValueError, match="does not match"):
        ode_sde_gap(model, schedule, 10, shape=(3,), data=torch.zeros(5, 2))

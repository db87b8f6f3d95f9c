"""Schedules at the ends of their documented ranges, and every sampler from every schedule's t_max to t_min.

Regressions: ``CosineVP(t_min=0)`` had ``sigma(0)`` NaN in float64 rounding cases and ``0.0002`` in
float32 (``log(cos) - log(cos0)`` rounds), ``DiscreteVP(t_min=0)`` extrapolated ``alpha(0) = 1.00001``
(NaN ``sigma``), and ``euler-maruyama`` went non-finite when started where ``alpha = 0``
(LinearFlow's default ``t_max = 1``).
"""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.diffusion import (
    EDM,
    PFODE,
    VE,
    VP,
    CosineVP,
    DiscreteVP,
    GaussianMixture,
    LinearFlow,
    SubVP,
    sample,
)
from sdekit.diffusion.samplers.registry import SAMPLERS, get_sampler

F64 = torch.float64
INF = math.inf


# --------------------------------------------------------------------------------------------
# Every schedule at the ends of its documented range
# --------------------------------------------------------------------------------------------
# (schedule built on its widest documented interval, {end time: (alpha, sigma, log_snr)} where the
# value is exact, None where it is only required to be finite)
WIDEST = [
    (VP(t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: None}),
    (SubVP(t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: None}),
    (DiscreteVP.linear(t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: None}),
    (CosineVP(t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: (0.0, 1.0, -INF)}),
    (CosineVP(s=0.02, t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: (0.0, 1.0, -INF)}),
    (LinearFlow(t_min=0.0, t_max=1.0), {0.0: (1.0, 0.0, INF), 1.0: (0.0, 1.0, -INF)}),
    (VE(t_min=0.0, t_max=1.0), {0.0: None, 1.0: None}),
    (EDM(), {0.002: None, 80.0: None}),
]


@pytest.mark.parametrize("schedule, ends", WIDEST, ids=[repr(s) for s, _ in WIDEST])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_schedules_at_the_ends_of_their_range(schedule, ends, dtype):
    assert (schedule.t_min, schedule.t_max) == tuple(ends)
    for t, expected in ends.items():
        for time in (torch.tensor(t, dtype=dtype), torch.full((3,), t, dtype=dtype)):
            values = (schedule.alpha(time), schedule.sigma(time), schedule.log_snr(time))
            for name, v in zip(("alpha", "sigma", "log_snr"), values):
                assert not bool(torch.isnan(v).any()), f"{schedule!r}: {name}({t}) is NaN"
            if expected is None:
                assert all(bool(torch.isfinite(v).all()) for v in values), (schedule, t, values)
                continue
            for name, v, want in zip(("alpha", "sigma", "log_snr"), values, expected):
                assert bool((v == want).all()), f"{schedule!r}: {name}({t}) = {v.tolist()}, want {want}"
    # The documented ends are accepted by the constructors, and the interior is untouched: sigma^2 +
    # alpha^2 = 1 for VP schedules next to the ends.
    if schedule.is_variance_preserving:
        t = torch.tensor([1e-9, 1e-6, 0.5, schedule.t_max - 1e-6], dtype=F64)
        torch.testing.assert_close(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, torch.ones(4, dtype=F64))


def test_the_new_forms_agree_with_the_old_ones_inside_the_range():
    """CosineVP's log alpha (two cancellation-free forms) equals the textbook log cos(theta)/cos(theta0)
    away from the ends; DiscreteVP is unchanged on [1/N, 1] and runs linearly to log alpha(0) = 0 below."""
    cos = CosineVP()
    t = torch.linspace(0.01, 0.99, 99, dtype=F64)
    theta = (t + cos.s) / (1 + cos.s) * math.pi / 2
    textbook = torch.log(torch.cos(theta) / math.cos(cos.s / (1 + cos.s) * math.pi / 2))
    torch.testing.assert_close(cos.log_alpha(t), textbook, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cos.t_of_log_snr(cos.log_snr(t)), t, rtol=1e-10, atol=1e-12)
    assert float(cos.t_of_log_snr(INF)) == 0.0

    disc = DiscreteVP.linear(t_min=0.0)
    n = disc.num_steps
    knots = torch.arange(1, n + 1, dtype=F64) / n
    torch.testing.assert_close(disc.log_alpha(knots), 0.5 * torch.log(disc.alphas_cumprod), rtol=1e-14, atol=0)
    half = torch.tensor(0.5 / n, dtype=F64)
    assert float(disc.log_alpha(half)) == pytest.approx(0.25 * math.log(disc.alphas_cumprod[0].item()), rel=1e-12)
    assert float(disc.d_log_snr(0.0)) == -INF


# --------------------------------------------------------------------------------------------
# Every sampler from every schedule's t_max down to its t_min
# --------------------------------------------------------------------------------------------
MIXTURE = GaussianMixture([1.0, 2.0], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.2])
N = 1000
SCHEDULES = [VP(), CosineVP(), DiscreteVP.linear(), SubVP(), VE(), EDM(), LinearFlow(),
             CosineVP(t_min=0.0), DiscreteVP.linear(t_min=0.0), LinearFlow(t_min=0.0), CosineVP(t_max=1.0)]


def _steps(sampler):
    if isinstance(sampler, PFODE) and sampler.solver.adaptive:
        return None                   # one interval [t_max, t_min], error-controlled
    return 50 if sampler.order < 1.5 else 20


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_every_sampler_runs_from_t_max_to_t_min(schedule, name):
    """Finite samples whose per-coordinate mean and standard deviation match the exact marginal at t_min
    (the mixture pushed through the schedule) within 4 standard errors of an N-sample estimate plus a
    discretisation allowance of 5% of the standard deviation (first-order samplers get 50 steps,
    higher-order ones 20)."""
    sampler = get_sampler(name)
    x_T = schedule.prior_sample((N, 2), torch.Generator().manual_seed(0), dtype=F64)
    run = lambda: sample(MIXTURE.as_denoiser(schedule), schedule, x_T, solver=name,  # noqa: E731
                         steps=_steps(sampler), generator=torch.Generator().manual_seed(1))
    if isinstance(sampler, PFODE) and float(schedule.sigma(schedule.t_min)) == 0.0:
        with pytest.raises(ValueError, match="sigma = 0"):
            run()
        return
    x = run()
    assert x.shape == (N, 2) and bool(torch.isfinite(x).all())
    exact = MIXTURE.at(schedule.t_min, schedule)
    mean, std = exact.mean, exact.covariance.diagonal().sqrt()
    allowance = 0.05
    assert ((x.mean(0) - mean).abs() / std).max() < 4 / math.sqrt(N) + allowance, (x.mean(0), mean)
    # the standard error of a standard deviation is at most std / sqrt(2 N) for kurtosis <= 3 (a
    # two-component mixture is platykurtic)
    assert ((x.std(0) - std).abs() / std).max() < 4 / math.sqrt(2 * N) + allowance, (x.std(0), std)


def test_euler_maruyama_from_alpha_zero_is_the_exact_transition():
    """At alpha(t_0) = 0 the reverse SDE's f and g^2 are infinite; Euler-Maruyama's step there is
    x_1 = alpha_1 D + sigma_1 z with z the normalised Brownian increment of the step (one model call)."""
    from sdekit import BrownianPath

    schedule = LinearFlow()
    x_T = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    times = torch.tensor([1.0, 0.7], dtype=F64)
    bm = BrownianPath(0.0, 1.0, (8, 2), seed=5, dtype=F64)
    x, info = sample(MIXTURE.as_denoiser(schedule), schedule, x_T, solver="euler-maruyama", timesteps=times,
                     bm=bm, return_info=True)
    d = MIXTURE.denoiser(x_T, 1.0, schedule)
    z = bm(1.0, 0.7) / math.sqrt(0.3)
    torch.testing.assert_close(x, 0.3 * d + 0.7 * z, rtol=1e-12, atol=1e-12)
    assert info.nfe == 1

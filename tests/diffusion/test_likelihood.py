"""Probability-flow likelihoods, the ELBO and bits per dimension (issue 16, must-shows 1 and 6) against the exact
log-densities of Gaussian-mixture oracles."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdekit.diffusion import (
    EDM,
    VE,
    VP,
    GaussianMixture,
    LinearFlow,
    bits_per_dim,
    dequantize,
    elbo,
    log_likelihood,
)

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[2]


def mixture(d: int, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(3, d, generator=g, dtype=F64)
    variances = 0.2 + 0.3 * torch.rand(3, d, generator=g, dtype=F64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, variances)


def exact_prior(gm: GaussianMixture, schedule):
    return lambda z: gm.log_prob(z, schedule.t_max, schedule)


SCHEDULES = {"vp": VP, "edm": EDM, "ve": VE}


# ------------------------------------------------------------------------------------------------
# Must-show 1: the probability-flow likelihood equals the exact log-density
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vp", "edm", "ve"])
@pytest.mark.parametrize("d", [2, 8])
def test_pf_ode_matches_the_exact_log_density(name, d):
    schedule = SCHEDULES[name]()
    gm = mixture(d, seed=d)
    x = gm.sample(24, torch.Generator().manual_seed(1)).float()
    # float32 data, float64 solve; the exact p_{t_max} as prior isolates the ODE and the divergence
    logp, info = log_likelihood(gm.as_denoiser(schedule), schedule, x, prior=exact_prior(gm, schedule),
                                dtype=F64, return_info=True)
    exact = gm.log_prob(x.double(), schedule.t_min, schedule)
    assert logp.dtype == F64 and logp.shape == (24,)
    assert (logp - exact).abs().mean().item() <= 1e-3
    assert torch.allclose(info.prior_log_prob + info.delta_log_prob, logp)
    assert info.nfe > 10 and info.x_T.shape == x.shape


def test_pf_ode_with_the_schedule_prior_is_exact_for_stationary_gaussian_data():
    # data N(0, I) under VP: p_t = N(0, I) for every t, so the default prior N(0, I) is exact
    schedule = VP()
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 3, dtype=F64), torch.ones(1, dtype=F64))
    x = gm.sample(16, torch.Generator().manual_seed(0))
    logp = log_likelihood(gm.as_denoiser(schedule), schedule, x)
    exact = gm.log_prob(x, schedule.t_min, schedule)
    assert (logp - exact).abs().max().item() < 1e-5


def test_pf_ode_on_a_flow_schedule_and_a_network_output():
    # LinearFlow reaches the prior N(0, I) exactly at t = 1; the model is given as its velocity prediction
    schedule = LinearFlow()
    gm = mixture(2, seed=3)
    den = gm.as_denoiser(schedule)

    def velocity(x, t):
        a, s = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        da, ds = schedule.d_alpha(t)[:, None], schedule.d_sigma(t)[:, None]
        d = den(x, t)
        return da * d + ds * (x - a * d) / s

    x = gm.sample(16, torch.Generator().manual_seed(2))
    logp = log_likelihood(velocity, schedule, x, prediction="velocity")
    assert (logp - gm.log_prob(x, schedule.t_min, schedule)).abs().mean().item() <= 1e-3


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    schedule = VP()
    gm = mixture(4, seed=4)
    x = gm.sample(3, torch.Generator().manual_seed(5))
    reps = 150
    xr = x.repeat_interleave(reps, 0)
    den = gm.as_denoiser(schedule)
    exact = log_likelihood(den, schedule, x)
    est = log_likelihood(den, schedule, xr, divergence="hutchinson", noise=noise,
                         generator=torch.Generator().manual_seed(6)).reshape(3, reps)
    se = est.std(1) / math.sqrt(reps)
    assert bool((se > 0).all())
    assert ((est.mean(1) - exact).abs() <= 4 * se).all(), (est.mean(1) - exact, se)
    # more probes: smaller spread
    est4 = log_likelihood(den, schedule, xr, divergence="hutchinson", probes=4, noise=noise,
                          generator=torch.Generator().manual_seed(7)).reshape(3, reps)
    assert bool((est4.std(1) < est.std(1)).all())


# ------------------------------------------------------------------------------------------------
# The ELBO: tight for an exact model, below the exact log-likelihood for a wrong one
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vp", "edm"])
def test_elbo_of_the_exact_score_is_tight(name):
    # the exact score and the exact prior: the model's path measure is the forward one, so the ELBO is log p(x)
    schedule = SCHEDULES[name]()
    gm = mixture(2, seed=8)
    x = gm.sample(8, torch.Generator().manual_seed(9))
    est = elbo(gm.as_denoiser(schedule), schedule, x, samples=512, prior=exact_prior(gm, schedule),
               generator=torch.Generator().manual_seed(10))
    exact = gm.log_prob(x, schedule.t_min, schedule)
    z = (est.elbo - exact) / est.stderr
    assert bool((est.stderr < 0.4).all())
    assert z.abs().max().item() <= 4.0, z


def test_elbo_is_tight_for_gaussian_data_with_the_schedule_prior():
    schedule = VP()
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 3, dtype=F64), torch.ones(1, dtype=F64))
    x = gm.sample(8, torch.Generator().manual_seed(11))
    est = elbo(gm.as_denoiser(schedule), schedule, x, samples=256, generator=torch.Generator().manual_seed(12))
    exact = gm.log_prob(x, schedule.t_min, schedule)
    assert ((est.elbo - exact).abs() <= 4 * est.stderr).all()


def test_elbo_of_a_wrong_model_lies_below_the_exact_log_likelihood():
    # the data: a mixture; the model: the exact diffusion of the Gaussian with the mixture's moments, whose own
    # likelihood (closed form) the ELBO matches, and whose mean lies below the data's by KL(data || model)
    schedule = VP()
    gm = mixture(2, seed=13)
    model = GaussianMixture(torch.ones(1), gm.mean[None], gm.covariance[None])
    x = gm.sample(64, torch.Generator().manual_seed(14))
    est = elbo(model.as_denoiser(schedule), schedule, x, samples=64, prior=exact_prior(model, schedule),
               generator=torch.Generator().manual_seed(15))
    exact = gm.log_prob(x, schedule.t_min, schedule)
    own = model.log_prob(x, schedule.t_min, schedule)
    se_mean = est.stderr.pow(2).sum().sqrt() / x.shape[0]
    assert abs(est.elbo.mean() - own.mean()) <= 4 * se_mean
    gap = exact.mean() - est.elbo.mean()
    assert gap > 4 * se_mean + 0.1, (gap, se_mean)


def test_elbo_is_differentiable_in_the_model_parameters():
    schedule = VP()
    gm = mixture(2, seed=16)
    scale = torch.tensor(1.0, dtype=F64, requires_grad=True)
    den = gm.as_denoiser(schedule)

    def model(x, t):
        return scale * den(x, t)

    est = elbo(model, schedule, gm.sample(4, torch.Generator().manual_seed(17)), prediction="x0", samples=8,
               generator=torch.Generator().manual_seed(18))
    (-est.elbo.mean()).backward()
    assert scale.grad is not None and math.isfinite(scale.grad.item())


def test_elbo_uniform_time_sampling_agrees():
    schedule = VP()
    gm = mixture(2, seed=19)
    x = gm.sample(4, torch.Generator().manual_seed(20))
    est = elbo(gm.as_denoiser(schedule), schedule, x, time_sampling="uniform", prior=exact_prior(gm, schedule),
               samples=512, generator=torch.Generator().manual_seed(21))
    exact = gm.log_prob(x, schedule.t_min, schedule)
    assert ((est.elbo - exact).abs() <= 4 * est.stderr).all()


# ------------------------------------------------------------------------------------------------
# Bits per dimension
# ------------------------------------------------------------------------------------------------
def test_bits_per_dim_of_the_uniform_model_is_the_bit_depth():
    # the uniform density on the union of the 256 bins of [-1, 1] (width 2/255): log p = -d log(256 w)
    d = 5
    w = 2.0 / 255.0
    logp = torch.full((3,), -d * math.log(256 * w), dtype=F64)
    assert torch.allclose(bits_per_dim(logp, d), torch.full((3,), 8.0, dtype=F64))
    assert torch.allclose(bits_per_dim(logp, d, data_range=(0.0, 1.0)), torch.full((3,), 9.0, dtype=F64))
    # the stated formula: -(log p - d log 127.5) / (d log 2)
    lp = torch.tensor([-3.0, 2.0], dtype=F64)
    assert torch.allclose(bits_per_dim(lp, 4), -(lp - 4 * math.log(127.5)) / (4 * math.log(2)))
    assert torch.allclose(bits_per_dim(lp, 4, dequantization="none"), -lp / (4 * math.log(2)))
    # 17 levels (the 8x8 digits) on [-1, 1]: bins of width 1/8
    assert torch.allclose(bits_per_dim(lp, 4, levels=17), -(lp + 4 * math.log(1 / 8)) / (4 * math.log(2)))


def test_dequantize_spreads_each_value_over_its_bin():
    g = torch.Generator().manual_seed(22)
    k = torch.randint(0, 256, (2000, 3), generator=g)
    x = k / 127.5 - 1.0
    y = dequantize(x, generator=g)
    w = 2 / 255
    assert y.dtype == x.dtype and y.shape == x.shape
    assert ((y - x).abs() <= w / 2 + 1e-6).all()
    u = (y - x) / w + 0.5                            # U[0, 1)
    assert abs(u.mean().item() - 0.5) <= 4 * math.sqrt(1 / 12 / u.numel())


# ------------------------------------------------------------------------------------------------
# Must-show 6: bad input
# ------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_clear_errors():
    schedule = VP()
    gm = mixture(2)
    den = gm.as_denoiser(schedule)
    x = gm.sample(4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="probes must be an int >= 1, got 0"):
        log_likelihood(den, schedule, x, divergence="hutchinson", probes=0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        log_likelihood(den, schedule, x, divergence="trace")
    with pytest.raises(ValueError, match="noise must be one of"):
        log_likelihood(den, schedule, x, divergence="hutchinson", noise="uniform")
    with pytest.raises(ValueError, match="x must have at least 2 dimension"):
        log_likelihood(den, schedule, x[0])
    with pytest.raises(ValueError, match="x must be finite"):
        log_likelihood(den, schedule, torch.full_like(x, math.nan))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        log_likelihood(den, schedule, torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="t_min must be < t_max"):
        log_likelihood(den, schedule, x, t_min=0.5, t_max=0.5)
    with pytest.raises(ValueError, match=r"prior\(x\) must return a \(batch,\)"):
        log_likelihood(den, schedule, x, prior=lambda z: z)
    with pytest.raises(TypeError, match="schedule must be"):
        log_likelihood(den, "vp", x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model\\(x, t\\) must return a tensor of the shape of x"):
        log_likelihood(lambda z, t: z[:, :1], schedule, x)
    with pytest.raises(ValueError, match="samples must be an int >= 2"):
        elbo(den, schedule, x, samples=1)
    with pytest.raises(ValueError, match="samples must be even"):
        elbo(den, schedule, x, samples=5)
    with pytest.raises(ValueError, match="time_sampling must be one of"):
        elbo(den, schedule, x, time_sampling="beta")
    with pytest.raises(ValueError, match="alpha > 0"):
        elbo(lambda z, t: z, LinearFlow(), x, prediction="x0")
    with pytest.raises(ValueError, match=r"x must lie in data_range \[-1.0, 1.0\]"):
        dequantize(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(ValueError, match="x must lie on the grid"):
        dequantize(torch.tensor([[0.0, 0.001]]))
    with pytest.raises(ValueError, match="bits must be an int >= 1"):
        bits_per_dim(torch.zeros(2), 3, bits=0)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="dequantization must be one of"):
        bits_per_dim(torch.zeros(2), 3, dequantization="variational")
    with pytest.raises(ValueError, match="data_range must have lo < hi"):
        bits_per_dim(torch.zeros(2), 3, data_range=(1.0, -1.0))


# ------------------------------------------------------------------------------------------------
# benchmarks/methods/likelihood.py --quick (must-shows 1 and 5): the direction of every claim
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_quick_shows_the_claims(tmp_path):
    """PF-ODE within 1e-3 nats of the exact log-density (exact prior), the exact score's ELBO tight within 4 SE,
    Hutchinson unbiased with a spread that falls with the probes, a wrong model's ELBO below the data's exact
    log-likelihood, and a trained digits model better than the uniform law in bits per dimension."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/likelihood.py"), "--quick",
                          "--out", str(tmp_path / "l.md"), "--json", str(tmp_path / "l.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "l.json").read_text())
    for key, row in res["mixtures"].items():
        assert max(row["mae"]) <= 1e-3, (key, row["mae"])
        for diff, se in zip(row["elbo"], row["elbo_se"]):
            assert abs(diff) <= 4 * se, (key, diff, se)
    probes = res["probes"]
    assert all(v["z"] < 4 for v in probes.values()), probes
    for noise in ("rademacher", "gaussian"):
        assert probes[f"{noise}_4"]["std"] < probes[f"{noise}_1"]["std"]
    for key, row in res["wrong_models"].items():
        if key.startswith("Gaussian fit"):
            assert row["exact"] - row["elbo"] > 4 * row["se"], (key, row)
    digits = res["digits"]
    assert all(math.isfinite(v) and v < math.log2(17) for v in digits["pf_median"] + digits["elbo"]), digits
    assert (tmp_path / "l.md").read_text().startswith("# Likelihoods")
